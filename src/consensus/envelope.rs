//! The check of a Raft envelope against the certificate it arrived with, before its bytes are
//! parsed: the sender the envelope claims must be the node the TLS certificate names, a
//! current member of the configuration, and the envelope must be for this member. The
//! protobuf message inside must then claim the same sender (checked by
//! [`RaftMember::step_from`](super::RaftMember::step_from)).
//!
//! Pure: the Raft actor passes what it knows (its ID, the applied configuration and the Raft
//! ID of the certificate's node) and drops what this refuses.

/// What the receiving member knows when an envelope arrives.
#[derive(Debug, Clone, Copy)]
pub struct EnvelopeContext<'a> {
    /// This member's Raft ID.
    pub own_id: u64,
    /// The Raft ID of the node the sender's certificate names (`raft_id_of(node_id)`).
    pub certified_sender: u64,
    /// Voters of the applied configuration.
    pub voters: &'a [u64],
    /// Learners of the applied configuration.
    pub learners: &'a [u64],
}

/// Why an envelope was dropped before raft-rs saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeRefusal {
    /// The envelope claims a sender other than the certificate's node.
    #[error("envelope claims sender {claimed}, but the certificate is of member {certified}")]
    ForgedSender {
        /// The envelope's `from`.
        claimed: u64,
        /// The Raft ID of the certificate's node.
        certified: u64,
    },
    /// The sender is neither a voter nor a learner of the configuration.
    #[error("sender {from} is not a current member of the configuration")]
    NotAMember {
        /// The (certified) sender.
        from: u64,
    },
    /// The envelope is for another member.
    #[error("envelope is for member {to}, this is {own}")]
    NotForUs {
        /// The envelope's `to`.
        to: u64,
        /// This member's ID.
        own: u64,
    },
}

impl EnvelopeRefusal {
    /// A short stable name for the reason, for rate-limited logging.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ForgedSender { .. } => "forged-sender",
            Self::NotAMember { .. } => "not-a-member",
            Self::NotForUs { .. } => "not-for-us",
        }
    }
}

/// Whether an envelope claiming `from` and addressed `to` may be stepped. A member with no
/// configuration at all is a manager that joined and has not yet received the leader's
/// snapshot: it cannot know the members yet, so only the certificate binding applies (the
/// peer-message validator still checks that what arrives is a leader's first message).
pub fn check_envelope(
    context: &EnvelopeContext<'_>,
    from: u64,
    to: u64,
) -> Result<(), EnvelopeRefusal> {
    if from != context.certified_sender {
        return Err(EnvelopeRefusal::ForgedSender {
            claimed: from,
            certified: context.certified_sender,
        });
    }
    if to != context.own_id {
        return Err(EnvelopeRefusal::NotForUs {
            to,
            own: context.own_id,
        });
    }
    let joining = context.voters.is_empty() && context.learners.is_empty();
    if !joining && !context.voters.contains(&from) && !context.learners.contains(&from) {
        return Err(EnvelopeRefusal::NotAMember { from });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOTERS: [u64; 2] = [1, 2];
    const LEARNERS: [u64; 1] = [3];

    fn context(certified_sender: u64) -> EnvelopeContext<'static> {
        EnvelopeContext {
            own_id: 1,
            certified_sender,
            voters: &VOTERS,
            learners: &LEARNERS,
        }
    }

    #[test]
    fn an_envelope_from_the_certified_member_to_us_passes() {
        assert_eq!(check_envelope(&context(2), 2, 1), Ok(()));
        assert_eq!(check_envelope(&context(3), 3, 1), Ok(()), "a learner");
    }

    #[test]
    fn a_sender_other_than_the_certificates_is_forged() {
        assert_eq!(
            check_envelope(&context(3), 2, 1),
            Err(EnvelopeRefusal::ForgedSender {
                claimed: 2,
                certified: 3
            })
        );
    }

    #[test]
    fn an_envelope_for_another_member_is_refused() {
        assert_eq!(
            check_envelope(&context(2), 2, 3),
            Err(EnvelopeRefusal::NotForUs { to: 3, own: 1 })
        );
    }

    #[test]
    fn a_certified_manager_outside_the_configuration_is_refused() {
        assert_eq!(
            check_envelope(&context(9), 9, 1),
            Err(EnvelopeRefusal::NotAMember { from: 9 })
        );
    }

    #[test]
    fn a_joining_member_without_configuration_checks_only_the_binding() {
        let joining = EnvelopeContext {
            own_id: 1,
            certified_sender: 9,
            voters: &[],
            learners: &[],
        };
        assert_eq!(check_envelope(&joining, 9, 1), Ok(()));
        assert!(matches!(
            check_envelope(&joining, 2, 1),
            Err(EnvelopeRefusal::ForgedSender { .. })
        ));
    }
}
