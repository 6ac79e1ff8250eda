//! What the replica applies committed entries to, and how entries carry commands and ids.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::core::format;

/// Largest encoded command accepted on propose or decoded on apply, in bytes.
pub const MAX_COMMAND_BYTES: usize = 16 << 20;

/// A deterministic state machine replicated by Raft.
///
/// `apply` must depend only on the state and the command (no clock, no randomness, no I/O
/// that can fail differently on different managers): every replica applies the same commands
/// in the same order and must reach the same state.
pub trait StateMachine {
    /// A command as proposed and stored in the log (encoded with bincode 2).
    type Command: EntryCommand;
    /// What applying a command returns to the proposer.
    type Output;
    /// Why a snapshot could not be restored.
    type RestoreError: std::error::Error + Send + Sync + 'static;

    /// Applies the command committed at log `index`.
    fn apply(&mut self, index: u64, command: Self::Command) -> Self::Output;

    /// Serializes the whole state; [`StateMachine::restore`] must accept the result.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the whole state with the data of a snapshot taken at log `index` (from this or
    /// another replica).
    fn restore(&mut self, index: u64, data: &[u8]) -> Result<(), Self::RestoreError>;
}

/// A command that log entries carry. Entries of an older [`format::RAFT_ENTRY`] version than
/// this build writes are read through [`EntryCommand::decode_older`]: a command type whose
/// encoding changed keeps its older shape and converts it.
pub trait EntryCommand: Serialize + DeserializeOwned {
    /// Decodes the body of an entry of format `version` (older than the current one). The
    /// default: the body is today's encoding (nothing changed since `version`).
    fn decode_older(version: u8, body: &[u8]) -> Result<Self, String> {
        let _ = version;
        decode_body(body)
    }
}

impl EntryCommand for u64 {}

/// Decodes a bincode body of exactly `body.len()` bytes within the command size limit.
pub fn decode_body<C: DeserializeOwned>(body: &[u8]) -> Result<C, String> {
    let (command, read) = bincode::serde::decode_from_slice(body, command_config())
        .map_err(|error| error.to_string())?;
    if read != body.len() {
        return Err(format!(
            "{} trailing bytes after the command",
            body.len() - read
        ));
    }
    Ok(command)
}

fn command_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_COMMAND_BYTES>()
}

/// Encodes a command for a log entry: the [`format::RAFT_ENTRY`] header, then bincode 2.
pub(crate) fn encode_command<C: Serialize>(
    command: &C,
) -> Result<Vec<u8>, bincode::error::EncodeError> {
    let mut bytes = format::RAFT_ENTRY.header().to_vec();
    bincode::serde::encode_into_std_write(command, &mut bytes, command_config())?;
    Ok(bytes)
}

/// Decodes a command from a log entry (this format version or the first release's, which had
/// no header); trailing bytes count as corruption, a newer format version is refused.
pub(crate) fn decode_command<C: EntryCommand>(bytes: &[u8]) -> Result<C, String> {
    let (version, body) = format::RAFT_ENTRY
        .split(bytes)
        .map_err(|error| error.to_string())?;
    if version < format::RAFT_ENTRY.current {
        return C::decode_older(version, body);
    }
    decode_body(body)
}

/// Who proposed an entry, stored in the entry's `context` so the proposer's applier can answer
/// the waiting client. `boot_epoch` tells this incarnation's proposals from those of an earlier
/// run of the same node, whose proposal ids may repeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProposalContext {
    pub(crate) node_id: u64,
    pub(crate) boot_epoch: u64,
    pub(crate) proposal_id: u64,
}

impl ProposalContext {
    const ENCODED_BYTES: usize = 24;

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(Self::ENCODED_BYTES);
        bytes.extend_from_slice(&self.node_id.to_le_bytes());
        bytes.extend_from_slice(&self.boot_epoch.to_le_bytes());
        bytes.extend_from_slice(&self.proposal_id.to_le_bytes());
        bytes
    }

    /// `None` for entries without a context (such as a new leader's empty entry) or with one
    /// this version did not write.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::ENCODED_BYTES {
            return None;
        }
        let word = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        Some(Self {
            node_id: word(0)?,
            boot_epoch: word(8)?,
            proposal_id: word(16)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl EntryCommand for (u32, String) {}
    impl EntryCommand for (String, u64) {}

    #[test]
    fn entries_of_the_first_release_decode_and_newer_ones_are_refused() {
        let command = (7u32, "scale web".to_string());
        let legacy = bincode::serde::encode_to_vec(&command, command_config()).expect("encodes");
        assert_eq!(
            decode_command::<(u32, String)>(&legacy),
            Ok(command.clone())
        );
        let current = encode_command(&command).expect("encodes");
        assert_eq!(&current[..2], &format::BINARY_MAGIC);
        assert_eq!(decode_command::<(u32, String)>(&current), Ok(command));
        let mut newer = current;
        newer[2] = format::RAFT_ENTRY.current + 1;
        let error = decode_command::<(u32, String)>(&newer).expect_err("newer format");
        assert!(
            error.contains("Raft log entry has format version 6"),
            "{error}"
        );
    }

    #[test]
    fn proposal_context_round_trips_and_rejects_other_lengths() {
        let context = ProposalContext {
            node_id: 3,
            boot_epoch: 7,
            proposal_id: u64::MAX,
        };
        assert_eq!(ProposalContext::decode(&context.encode()), Some(context));
        assert_eq!(ProposalContext::decode(&[1, 2, 3]), None);
        assert_eq!(ProposalContext::decode(&[]), None);
    }

    #[test]
    fn garbage_commands_do_not_decode() {
        let bytes = encode_command(&("key".to_string(), 5u64)).expect("encodes");
        let decoded: (String, u64) = decode_command(&bytes).expect("decodes");
        assert_eq!(decoded, ("key".to_string(), 5));
        assert!(decode_command::<(String, u64)>(&[0xff, 0xff, 0xff]).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode_command::<(String, u64)>(&trailing).is_err());
    }
}
