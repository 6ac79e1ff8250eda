//! An autolocked manager (SPEC §9): it found its data key wrapped by the unlock key, so it
//! serves nothing (no Raft, no orchestration, no worker duties) until `swarm unlock` brings
//! that key.
//!
//! The node's own endpoint is bound at once, with a [`Gate`] as its inbound handler: while
//! locked the gate answers every request itself (the locked error, or the unlock); once the
//! node's actors exist, [`crate::node::compose`] opens the gate and every message goes to the
//! node actor as on any other start. The endpoint is the same, so the address never has to be
//! released and bound again.

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use tokio::sync::{oneshot, watch};

use crate::core::secrets::{DataKey, UnlockKey, WrappedKey};
use crate::net::admin::{AdminReply, AdminRequest};
use crate::net::control_proof::ProofVerifier;
use crate::net::message::{ErrorKind, Message as WireMessage, WireError};
use crate::net::tls::Credentials;
use crate::net::transport::{
    DeliveryError, DeliveryFuture, Inbound, InboundHandler, Transport, TransportConfig,
};
use crate::node::daemon::DaemonError;
use crate::node::keys;
use crate::node::state::NodeSettings;

/// The answer of a locked manager to every request but `swarm unlock` (SPEC §9, as Docker
/// words it).
pub const SWARM_LOCKED: &str = "Swarm is encrypted and needs to be unlocked before it can be used. Please use \"flotilla swarm unlock\" to unlock it.";
/// The answer to `swarm unlock` with a key that does not open this manager's data key.
pub const INVALID_UNLOCK_KEY: &str = "invalid unlock key";

/// What the gate needs while the manager is locked.
struct Locked {
    proofs: ProofVerifier,
    wrapped: WrappedKey,
    unlocked: Option<oneshot::Sender<DataKey>>,
}

impl Locked {
    /// The reply to `inbound`, and the data key when it was the right unlock key.
    fn answer(&self, inbound: Inbound) -> (Option<WireMessage>, Option<DataKey>) {
        let refusal = |kind, text: &str| Some(WireMessage::Error(WireError::new(kind, text)));
        match inbound.message {
            WireMessage::Ping { nonce, payload } => {
                (Some(WireMessage::Pong { nonce, payload }), None)
            }
            // Only the admin's own command unlocks: never one forwarded by another manager
            // (the key would have crossed a second hop for nothing).
            WireMessage::Control(signed) => {
                let now_ms = crate::actors::environment::system_now_ms();
                match self.proofs.verify(&signed, now_ms) {
                    Ok(AdminRequest::SwarmUnlock { key }) => self.unlock(&key.0),
                    Ok(_) => (refusal(ErrorKind::Conflict, SWARM_LOCKED), None),
                    Err(error) => (refusal(ErrorKind::Forbidden, &error.to_string()), None),
                }
            }
            _ if !inbound.expects_reply => (None, None),
            _ => (refusal(ErrorKind::Conflict, SWARM_LOCKED), None),
        }
    }

    fn unlock(&self, typed: &[u8]) -> (Option<WireMessage>, Option<DataKey>) {
        let refused = |text: String| {
            (
                Some(WireMessage::Error(WireError::new(
                    ErrorKind::BadRequest,
                    text,
                ))),
                None,
            )
        };
        let Ok(text) = std::str::from_utf8(typed) else {
            return refused(INVALID_UNLOCK_KEY.to_string());
        };
        let unlock = match UnlockKey::parse(text) {
            Ok(unlock) => unlock,
            Err(error) => return refused(error.to_string()),
        };
        match keys::open_locked(&self.wrapped, &unlock) {
            Some(key) => (
                Some(WireMessage::AdminReply(AdminReply::Done(vec![]))),
                Some(key),
            ),
            None => {
                tracing::warn!("swarm unlock with a wrong key refused");
                refused(INVALID_UNLOCK_KEY.to_string())
            }
        }
    }
}

struct GateInner {
    /// `Some` while the manager is locked.
    locked: Mutex<Option<Locked>>,
    /// The node actor, once it exists.
    open: watch::Sender<Option<Recipient<Inbound>>>,
}

/// The inbound handler of a manager's endpoint that starts locked. See the module docs.
#[derive(Clone)]
pub struct Gate(Arc<GateInner>);

impl Gate {
    /// From now on every message goes to `node` (also those that waited since the unlock).
    pub fn open(&self, node: Recipient<Inbound>) {
        self.0.open.send_replace(Some(node));
    }
}

impl InboundHandler for Gate {
    fn deliver(&self, inbound: Inbound) -> DeliveryFuture {
        {
            let mut locked = self
                .0
                .locked
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(state) = locked.as_mut() {
                let (reply, key) = state.answer(inbound);
                if let Some(key) = key {
                    if let Some(unlocked) = state.unlocked.take() {
                        // The receiver is `wait_for_unlock`, alive until it got a key.
                        let _ = unlocked.send(key);
                    }
                    *locked = None;
                }
                return Box::pin(async move { Ok(reply) });
            }
        }
        // Unlocked: the node is starting; what arrives waits for its actor.
        let mut open = self.0.open.subscribe();
        Box::pin(async move {
            let node = open
                .wait_for(Option::is_some)
                .await
                .map_err(|_| DeliveryError("the node stopped while starting".into()))?
                .clone();
            match node {
                Some(node) => node.deliver(inbound).await,
                None => Err(DeliveryError("the node is not running".into())),
            }
        })
    }
}

/// The endpoint of a manager that was unlocked: [`crate::node::compose::run`] takes it over
/// instead of binding its own.
pub struct UnlockedEndpoint {
    /// The bound endpoint.
    pub transport: Transport,
    /// Its inbound handler, to be opened to the node actor.
    pub gate: Gate,
    /// The credentials it was bound with.
    pub credentials: Credentials,
}

/// Binds this manager's endpoint and answers as a locked manager until `swarm unlock` brings
/// the key that opens `wrapped`; returns the data key and the endpoint.
pub async fn wait_for_unlock(
    settings: &NodeSettings,
    credentials: &Credentials,
    wrapped: WrappedKey,
) -> Result<(DataKey, UnlockedEndpoint), DaemonError> {
    let listen = settings.listen.parse().map_err(|_| {
        DaemonError::StateDir(format!(
            "listen address {:?} is not host:port",
            settings.listen
        ))
    })?;
    let (unlocked, key) = oneshot::channel();
    let gate = Gate(Arc::new(GateInner {
        locked: Mutex::new(Some(Locked {
            proofs: ProofVerifier::new(&credentials.ca_pem)?,
            wrapped,
            unlocked: Some(unlocked),
        })),
        open: watch::channel(None).0,
    }));
    let transport = Transport::bind(
        TransportConfig {
            listen,
            credentials: credentials.clone(),
        },
        gate.clone(),
    )?;
    tracing::warn!(
        "this manager is autolocked: it serves nothing until `flotilla swarm unlock` gives it the unlock key"
    );
    let key = key
        .await
        .map_err(|_| DaemonError::Keys("the locked endpoint stopped".into()))?;
    tracing::info!("unlocked; starting");
    Ok((
        key,
        UnlockedEndpoint {
            transport,
            gate,
            credentials: credentials.clone(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::secrets::Plaintext;
    use crate::net::control_proof;
    use crate::net::message::RaftEnvelope;
    use crate::net::tls::{ClusterCa, Role};

    struct Fixture {
        locked: Locked,
        admin: Credentials,
        key: DataKey,
        unlock: UnlockKey,
        _unlocked: oneshot::Receiver<DataKey>,
    }

    fn fixture() -> Fixture {
        let ca = ClusterCa::create("c1").expect("ca");
        let admin = ca.issue("admin", Role::Admin, 0).expect("admin");
        let key = DataKey::generate().expect("key");
        let unlock = UnlockKey::generate().expect("unlock key");
        let wrapped = unlock.key_encryption_key().wrap(&key, true).expect("wrap");
        let (sender, receiver) = oneshot::channel();
        Fixture {
            locked: Locked {
                proofs: ProofVerifier::new(ca.cert_pem()).expect("verifier"),
                wrapped,
                unlocked: Some(sender),
            },
            admin,
            key,
            unlock,
            _unlocked: receiver,
        }
    }

    fn inbound(message: WireMessage) -> Inbound {
        Inbound {
            from: None,
            remote: "127.0.0.1:4240".parse().expect("addr"),
            message,
            expects_reply: true,
        }
    }

    fn control(fixture: &Fixture, request: AdminRequest) -> Inbound {
        let now_ms = crate::actors::environment::system_now_ms();
        let signed = control_proof::sign(&fixture.admin, request, now_ms).expect("signed");
        inbound(WireMessage::Control(signed))
    }

    fn refusal(reply: Option<WireMessage>) -> String {
        match reply {
            Some(WireMessage::Error(error)) => error.message,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn a_locked_manager_refuses_everything_but_the_right_unlock_key() {
        let fixture = fixture();
        let (reply, key) = fixture
            .locked
            .answer(control(&fixture, AdminRequest::NodeList));
        assert_eq!(refusal(reply), SWARM_LOCKED);
        assert!(key.is_none());
        let raft = inbound(WireMessage::Raft(RaftEnvelope {
            from: 1,
            to: 2,
            bytes: vec![],
        }));
        let (reply, _) = fixture.locked.answer(raft);
        assert_eq!(refusal(reply), SWARM_LOCKED);
        let mut one_way = inbound(WireMessage::Gossip(vec![1, 2]));
        one_way.expects_reply = false;
        assert!(matches!(fixture.locked.answer(one_way), (None, None)));

        let wrong = UnlockKey::generate().expect("unlock key").display_secret();
        let (reply, key) = fixture.locked.answer(control(
            &fixture,
            AdminRequest::SwarmUnlock {
                key: Plaintext(wrong.into_bytes()),
            },
        ));
        assert_eq!(refusal(reply), INVALID_UNLOCK_KEY);
        assert!(key.is_none());
        let (reply, _) = fixture.locked.answer(control(
            &fixture,
            AdminRequest::SwarmUnlock {
                key: Plaintext(b"not a key".to_vec()),
            },
        ));
        assert!(refusal(reply).starts_with(INVALID_UNLOCK_KEY));

        // The unlock must come from the admin itself, not be forwarded by another manager.
        let now_ms = crate::actors::environment::system_now_ms();
        let typed = Plaintext(fixture.unlock.display_secret().into_bytes());
        let signed = control_proof::sign(
            &fixture.admin,
            AdminRequest::SwarmUnlock { key: typed.clone() },
            now_ms,
        )
        .expect("signed");
        let (reply, key) = fixture
            .locked
            .answer(inbound(WireMessage::Forwarded(signed)));
        assert_eq!(refusal(reply), SWARM_LOCKED);
        assert!(key.is_none());

        let (reply, key) = fixture
            .locked
            .answer(control(&fixture, AdminRequest::SwarmUnlock { key: typed }));
        assert!(matches!(
            reply,
            Some(WireMessage::AdminReply(AdminReply::Done(_)))
        ));
        assert_eq!(key, Some(fixture.key.clone()));
    }
}
