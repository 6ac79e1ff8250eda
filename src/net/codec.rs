//! The frame format, pure over bytes: check, then parse.
//!
//! A frame is a big-endian `u32` length, then that many bytes: one protocol version byte and a
//! bincode 2 body holding one [`Message`]. The length is checked against
//! [`MAX_FRAME_BYTES`] before anything is allocated, and the bincode decoder is given the same
//! limit so a hostile body cannot make it allocate more. bincode is an unmaintained crate; it is
//! used only here, so swapping it touches one file.

use crate::net::message::Message;

/// The largest frame accepted or produced, counting the version byte and the body.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// The protocol version this build speaks; a frame with another version is refused. 2: the
/// join answer carries the data key, assignment sets carry secret files (issue 18); bincode
/// has no optional fields, so a node of version 1 could not read them.
pub const PROTOCOL_VERSION: u8 = 2;

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Why bytes could not be turned into a message, or a message into a frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The length prefix announces more than [`MAX_FRAME_BYTES`].
    #[error("frame of {length_bytes} bytes exceeds the limit of {MAX_FRAME_BYTES} bytes")]
    TooLarge {
        /// The announced or encoded length.
        length_bytes: usize,
    },
    /// The length prefix announces an empty frame (no room for the version byte).
    #[error("empty frame")]
    Empty,
    /// The frame speaks a protocol version this build does not.
    #[error("unsupported protocol version {found} (this node speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// The body is not a valid message.
    #[error("malformed message body: {0}")]
    Malformed(String),
    /// The body decoded but left bytes over.
    #[error("{extra_bytes} trailing bytes after the message")]
    TrailingBytes {
        /// How many bytes were left.
        extra_bytes: usize,
    },
    /// More bytes are needed to finish the frame (only from [`decode_frame`]).
    #[error("incomplete frame: need {needed_bytes} more bytes")]
    Incomplete {
        /// How many more bytes the frame needs.
        needed_bytes: usize,
    },
    /// The message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_BYTES>()
}

/// Encodes `message` as one complete frame (length prefix included).
pub fn encode(message: &Message) -> Result<Vec<u8>, CodecError> {
    let mut frame = vec![0u8; LENGTH_PREFIX_BYTES];
    frame.push(PROTOCOL_VERSION);
    let body = bincode::serde::encode_to_vec(message, bincode_config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    frame.extend_from_slice(&body);
    let length_bytes = frame.len() - LENGTH_PREFIX_BYTES;
    if length_bytes > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge { length_bytes });
    }
    let prefix = u32::try_from(length_bytes).map_err(|_| CodecError::TooLarge { length_bytes })?;
    frame[..LENGTH_PREFIX_BYTES].copy_from_slice(&prefix.to_be_bytes());
    Ok(frame)
}

/// Reads a length prefix and checks it, so the caller knows how much to read and may allocate.
pub fn decode_length(prefix: [u8; LENGTH_PREFIX_BYTES]) -> Result<usize, CodecError> {
    let length_bytes = u32::from_be_bytes(prefix) as usize;
    if length_bytes == 0 {
        return Err(CodecError::Empty);
    }
    if length_bytes > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge { length_bytes });
    }
    Ok(length_bytes)
}

/// Parses the bytes after the length prefix (version byte and body) into a message.
pub fn decode_payload(payload: &[u8]) -> Result<Message, CodecError> {
    if payload.len() > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge {
            length_bytes: payload.len(),
        });
    }
    let (&version, body) = payload.split_first().ok_or(CodecError::Empty)?;
    if version != PROTOCOL_VERSION {
        return Err(CodecError::UnsupportedVersion { found: version });
    }
    let (message, used) = bincode::serde::decode_from_slice::<Message, _>(body, bincode_config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::TrailingBytes {
            extra_bytes: body.len() - used,
        });
    }
    Ok(message)
}

/// Parses one frame from the front of `bytes`; returns the message and the bytes it used.
pub fn decode_frame(bytes: &[u8]) -> Result<(Message, usize), CodecError> {
    let Some(prefix) = bytes.first_chunk::<LENGTH_PREFIX_BYTES>() else {
        return Err(CodecError::Incomplete {
            needed_bytes: LENGTH_PREFIX_BYTES - bytes.len(),
        });
    };
    let length_bytes = decode_length(*prefix)?;
    let rest = &bytes[LENGTH_PREFIX_BYTES..];
    if rest.len() < length_bytes {
        return Err(CodecError::Incomplete {
            needed_bytes: length_bytes - rest.len(),
        });
    }
    let message = decode_payload(&rest[..length_bytes])?;
    Ok((message, LENGTH_PREFIX_BYTES + length_bytes))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::core::model::{Resources, Task, TaskStatus};
    use crate::core::store::TaskStatusUpdate;
    use crate::core::{spec::ServiceSpec, testkit};
    use crate::net::admin::{AdminReply, AdminRequest, NodeView, TaskView};
    use crate::net::message::{
        AssignmentSet, ChaosKind, ChaosRequest, ErrorKind, Heartbeat, HeartbeatAck, JoinAccepted,
        JoinRequest, NodeDescription, RaftEnvelope, WireError,
    };
    use crate::net::tls::Role;

    fn sample_task(id: &str) -> Task {
        let service = testkit::service("s1", "web", 3);
        Task::new(id.to_string(), &service, Some(2), Some("n1".into()))
    }

    /// A control command with a made-up proof (the codec does not verify it).
    fn unsigned(request: AdminRequest) -> crate::net::message::SignedControl {
        crate::net::message::SignedControl::without_signature(request, 0, [0; 16])
    }

    /// Structured kinds, built from samples with generated parts.
    fn any_structured_message() -> impl Strategy<Value = Message> {
        let description = |hostname: String| NodeDescription {
            hostname,
            addr: "127.0.0.1:4240".into(),
            engine_version: "process".into(),
            resources: Resources::default(),
            labels: [("zone".to_string(), "east".to_string())].into(),
        };
        prop_oneof![
            "[a-z]{1,20}".prop_map(|name| Message::Control(unsigned(
                AdminRequest::ServiceCreate {
                    spec: ServiceSpec::new(&name, "busybox"),
                }
            ))),
            any::<u64>().prop_map(|n| Message::Forwarded(unsigned(AdminRequest::ServiceScale {
                targets: vec![("web".into(), n)],
            }))),
            ".*".prop_map(
                |id| Message::AdminReply(AdminReply::Tasks(vec![TaskView::of(
                    &sample_task(&id),
                    Some("h")
                )]))
            ),
            (".*", any::<u64>()).prop_map(|(id, total)| Message::AdminReply(
                AdminReply::TaskPage {
                    tasks: vec![TaskView::of(&sample_task(&id), None)],
                    total,
                }
            )),
            (".*", any::<u64>(), any::<u64>()).prop_map(|(name, offset, limit)| {
                Message::Control(unsigned(AdminRequest::ServiceTasks {
                    services: vec![name],
                    offset,
                    limit,
                }))
            }),
            ".*".prop_map(
                |id| Message::AdminReply(AdminReply::Nodes(vec![NodeView::of(
                    &testkit::node(&id),
                    None,
                    false
                )]))
            ),
            (".*", any::<u64>()).prop_map(move |(hostname, version)| Message::Heartbeat(
                Heartbeat {
                    description: description(hostname),
                    assignments_version: version,
                    node_id: "n1".into(),
                    renewal_csr_der: Some(vec![version as u8; 3]),
                }
            )),
            (any::<u64>(), ".*").prop_map(|(version, id)| Message::HeartbeatAck(HeartbeatAck {
                period_ms: 1000,
                manager_addrs: vec!["127.0.0.1:4240".into()],
                assignments: Some(AssignmentSet {
                    version,
                    tasks: vec![sample_task(&id)],
                    node_id: "n1".into(),
                    sequence: version,
                    files: Vec::new(),
                }),
                role_change: None,
                renewed_cert_pem: Some(id.clone()),
            })),
            (any::<u64>(), ".*").prop_map(|(version, id)| Message::Assignments(AssignmentSet {
                version,
                tasks: vec![sample_task(&id)],
                node_id: id,
                sequence: version,
                files: Vec::new(),
            })),
            (".*", any::<i64>()).prop_map(|(task_id, code)| Message::TaskStatuses(vec![
                TaskStatusUpdate {
                    task_id,
                    status: TaskStatus {
                        exit_code: Some(code),
                        ..TaskStatus::default()
                    },
                    runtime: Some("process".into()),
                    runtime_id: None,
                    endpoints: None,
                }
            ])),
            proptest::option::of(".*").prop_map(|leader_addr| Message::NotLeader { leader_addr }),
            (
                proptest::sample::select(ChaosKind::ALL.to_vec()),
                proptest::option::of(".*")
            )
                .prop_map(|(kind, id)| Message::Chaos(ChaosRequest::KillActor { kind, id })),
            Just(Message::Ack),
        ]
    }

    fn any_role() -> impl Strategy<Value = Role> {
        prop_oneof![Just(Role::Manager), Just(Role::Worker), Just(Role::Admin)]
    }

    fn any_error_kind() -> impl Strategy<Value = ErrorKind> {
        prop_oneof![
            Just(ErrorKind::Unauthenticated),
            Just(ErrorKind::Forbidden),
            Just(ErrorKind::BadRequest),
            Just(ErrorKind::NotManager),
            Just(ErrorKind::NoQuorum),
            Just(ErrorKind::NotFound),
            Just(ErrorKind::Conflict),
            Just(ErrorKind::Timeout),
            Just(ErrorKind::Internal),
        ]
    }

    /// One strategy per message kind: a new variant that is not listed here fails to compile
    /// in `every_kind_is_covered`, so the round trip keeps covering every kind.
    fn any_message() -> impl Strategy<Value = Message> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..256);
        prop_oneof![
            (any::<u64>(), bytes()).prop_map(|(nonce, payload)| Message::Ping { nonce, payload }),
            (any::<u64>(), bytes()).prop_map(|(nonce, payload)| Message::Pong { nonce, payload }),
            (".*", bytes(), ".*", ".*").prop_map(|(secret, csr_der, hostname, advertise_addr)| {
                Message::Join(JoinRequest {
                    secret,
                    csr_der,
                    hostname,
                    advertise_addr,
                })
            }),
            (
                ".*",
                any_role(),
                ".*",
                ".*",
                proptest::collection::vec(".*", 0..4)
            )
                .prop_map(|(node_id, role, cert_pem, ca_pem, manager_addrs)| {
                    Message::JoinAccepted(JoinAccepted {
                        node_id,
                        role,
                        cert_pem,
                        ca_pem,
                        manager_addrs,
                        data_key: None,
                    })
                }),
            (any::<u64>(), any::<u64>(), bytes())
                .prop_map(|(from, to, bytes)| Message::Raft(RaftEnvelope { from, to, bytes })),
            (any_error_kind(), ".*")
                .prop_map(|(kind, message)| Message::Error(WireError { kind, message })),
            any_structured_message(),
            any_gossip_message(),
            Just(Message::DataKeyFetch),
            bytes().prop_map(|bytes| Message::DataKey(crate::core::secrets::Plaintext(bytes))),
        ]
    }

    fn any_gossip_message() -> impl Strategy<Value = Message> {
        use crate::core::gossip::{GossipId, GossipView, MemberState, MemberView};
        let addr = || std::net::SocketAddr::from(([127, 0, 0, 1], 4240));
        let bytes = || proptest::collection::vec(any::<u8>(), 0..256);
        prop_oneof![
            bytes().prop_map(Message::Gossip),
            any::<u64>().prop_map(|version| Message::GossipFetch { version }),
            (any::<u64>(), bytes())
                .prop_map(|(version, bytes)| Message::GossipTable { version, bytes }),
            Just(Message::GossipHello),
            ("[a-z0-9]{1,20}", any::<u64>()).prop_map(move |(id, bump)| {
                Message::GossipIdentity(GossipId::new(&id, addr(), bump))
            }),
            Just(Message::GossipViewRequest),
            (".*", proptest::option::of(any::<u64>())).prop_map(|(id, version)| {
                Message::GossipViewReply(GossipView {
                    node_id: id.clone(),
                    members: vec![MemberView {
                        node_id: id.clone(),
                        addr: "127.0.0.1:4240".into(),
                        state: MemberState::Suspect,
                    }],
                    suspected: vec![id],
                    table_version: version,
                    announced_version: version,
                })
            }),
        ]
    }

    #[test]
    fn every_kind_is_covered() {
        // Exhaustive on purpose: adding a Message variant breaks this until any_message()
        // (above) learns to generate it.
        let sample = Message::Ping {
            nonce: 0,
            payload: vec![],
        };
        match sample {
            Message::Ping { .. }
            | Message::Pong { .. }
            | Message::Join(_)
            | Message::JoinAccepted(_)
            | Message::Raft(_)
            | Message::Control(_)
            | Message::Forwarded(_)
            | Message::AdminReply(_)
            | Message::Heartbeat(_)
            | Message::HeartbeatAck(_)
            | Message::Assignments(_)
            | Message::TaskStatuses(_)
            | Message::NotLeader { .. }
            | Message::Chaos(_)
            | Message::Ack
            | Message::Error(_)
            | Message::Gossip(_)
            | Message::GossipFetch { .. }
            | Message::GossipTable { .. }
            | Message::GossipHello
            | Message::GossipIdentity(_)
            | Message::GossipViewRequest
            | Message::GossipViewReply(_)
            | Message::DataKeyFetch
            | Message::DataKey(_) => {}
        }
    }

    proptest! {
        #[test]
        fn every_message_round_trips(message in any_message()) {
            let frame = encode(&message).expect("encodes");
            let (decoded, used) = decode_frame(&frame).expect("decodes");
            prop_assert_eq!(used, frame.len());
            prop_assert_eq!(decoded, message);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = decode_frame(&bytes);
            let _ = decode_payload(&bytes);
        }

        #[test]
        fn a_valid_prefix_with_garbage_never_panics(
            length in 1u32..4096,
            body in proptest::collection::vec(any::<u8>(), 0..4096),
        ) {
            let mut frame = length.to_be_bytes().to_vec();
            frame.push(PROTOCOL_VERSION);
            frame.extend_from_slice(&body);
            let _ = decode_frame(&frame);
        }

        #[test]
        fn truncated_frames_are_incomplete(message in any_message(), cut in 0usize..64) {
            let frame = encode(&message).expect("encodes");
            let keep = frame.len().saturating_sub(cut + 1);
            let result = decode_frame(&frame[..keep]);
            prop_assert!(matches!(result, Err(CodecError::Incomplete { .. })), "{:?}", result);
        }
    }

    #[test]
    fn an_oversized_length_is_refused_before_reading_the_body() {
        let prefix = ((MAX_FRAME_BYTES + 1) as u32).to_be_bytes();
        assert_eq!(
            decode_length(prefix),
            Err(CodecError::TooLarge {
                length_bytes: MAX_FRAME_BYTES + 1
            })
        );
        assert!(decode_length(u32::MAX.to_be_bytes()).is_err());
        assert_eq!(decode_length([0; 4]), Err(CodecError::Empty));
    }

    #[test]
    fn a_huge_length_inside_the_body_does_not_allocate_past_the_limit() {
        // A Ping whose payload claims u64::MAX bytes: bincode must stop at the limit.
        let mut frame = vec![0, 0, 0, 0, PROTOCOL_VERSION, 0, 0];
        frame.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        let length = (frame.len() - LENGTH_PREFIX_BYTES) as u32;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        assert!(matches!(
            decode_frame(&frame),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn another_protocol_version_is_refused() {
        let mut frame = encode(&Message::Ping {
            nonce: 1,
            payload: vec![],
        })
        .expect("encodes");
        frame[LENGTH_PREFIX_BYTES] = 9;
        assert_eq!(
            decode_frame(&frame).map(|_| ()),
            Err(CodecError::UnsupportedVersion { found: 9 })
        );
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut frame = encode(&Message::Ping {
            nonce: 1,
            payload: vec![],
        })
        .expect("encodes");
        frame.push(0);
        let length = (frame.len() - LENGTH_PREFIX_BYTES) as u32;
        frame[..4].copy_from_slice(&length.to_be_bytes());
        assert_eq!(
            decode_frame(&frame).map(|_| ()),
            Err(CodecError::TrailingBytes { extra_bytes: 1 })
        );
    }

    #[test]
    fn a_message_larger_than_the_limit_is_not_encoded() {
        let message = Message::Ping {
            nonce: 0,
            payload: vec![0; MAX_FRAME_BYTES],
        };
        assert!(matches!(encode(&message), Err(CodecError::TooLarge { .. })));
    }
}
