//! Where a request runs: on the leader, or forwarded to it (and abandoned for the new leader
//! as soon as leadership moves).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;
use rand::rngs::StdRng;

use super::errors::{mailbox, no_leader};
use crate::actors::raft::{LeadershipChanged, RaftActor};
use crate::actors::transport::Request;
use crate::consensus::store_machine::SharedStore;
use crate::net::admin::AdminReply;
use crate::net::control_proof::SignedControl;
use crate::net::message::{ErrorKind, Message as WireMessage, WireError};

/// How long a forwarded request may take at the leader.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// What one request needs, detached from the actor so it can wait without blocking it.
pub(super) struct RequestContext {
    pub node_id: String,
    pub store: SharedStore,
    pub raft: Addr<RaftActor>,
    pub transport: Recipient<Request>,
    pub leadership: tokio::sync::watch::Receiver<Option<LeadershipChanged>>,
    /// This request's ID generator.
    pub ids: RefCell<StdRng>,
    /// The cluster's data key, which seals secrets (empty while the manager is locked).
    pub keyring: crate::core::secrets::Keyring,
}

/// Where a request must go now.
enum Route {
    Local,
    Leader(SocketAddr),
    Nowhere,
}

impl RequestContext {
    /// The route as of the current leadership, marking it seen on `watch` so that
    /// `watch.changed()` waits for the next change.
    fn route(watch: &mut tokio::sync::watch::Receiver<Option<LeadershipChanged>>) -> Route {
        match &*watch.borrow_and_update() {
            Some(leadership) if leadership.is_leader => Route::Local,
            Some(leadership) => match leadership.leader_addr.as_deref().map(str::parse) {
                Some(Ok(addr)) => Route::Leader(addr),
                _ => Route::Nowhere,
            },
            None => Route::Nowhere,
        }
    }

    /// Runs `local` on the leader, or forwards with `forward` to it. A forward is abandoned
    /// as soon as leadership moves (the old leader may be dead), and the request goes to the
    /// new leader; without any leader it waits up to the quorum timeout.
    pub async fn on_leader<T, L, F>(self, local: L, forward: F) -> Result<T, WireError>
    where
        L: AsyncFnOnce(&RequestContext) -> Result<T, WireError>,
        F: AsyncFn(&RequestContext, SocketAddr) -> Result<T, WireError>,
    {
        let deadline = tokio::time::Instant::now() + crate::actors::raft::QUORUM_TIMEOUT;
        loop {
            let mut watch = self.leadership.clone();
            match Self::route(&mut watch) {
                Route::Local => return local(&self).await,
                Route::Leader(addr) => {
                    tokio::select! {
                        reply = forward(&self, addr) => return reply,
                        changed = watch.changed() => {
                            if changed.is_err() {
                                return Err(no_leader());
                            }
                        }
                    }
                }
                Route::Nowhere => {
                    if tokio::time::timeout_at(deadline, watch.changed())
                        .await
                        .is_err()
                    {
                        return Err(no_leader());
                    }
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(no_leader());
            }
        }
    }
}

/// Forwards the admin's signed command, exactly as it arrived, to the leader (which checks
/// the proof itself, and takes "the node addressed" of `node ps` from this manager's
/// certificate).
pub(super) async fn forward(
    context: &RequestContext,
    leader: SocketAddr,
    signed: SignedControl,
) -> Result<AdminReply, WireError> {
    let (transport, own_id) = (&context.transport, &context.node_id);
    let reply = transport
        .send(Request {
            to: leader,
            expect: crate::net::transport::Expect::Role(crate::net::tls::Role::Manager),
            message: WireMessage::Forwarded(signed),
            timeout: FORWARD_TIMEOUT,
        })
        .await
        .map_err(mailbox)?;
    match reply {
        Ok(WireMessage::AdminReply(AdminReply::Nodes(mut nodes))) => {
            for node in &mut nodes {
                node.is_self = node.id == *own_id;
            }
            Ok(AdminReply::Nodes(nodes))
        }
        Ok(WireMessage::AdminReply(reply)) => Ok(reply),
        Ok(other) => Err(WireError::new(
            ErrorKind::Internal,
            format!("unexpected {} from the leader", other.kind_name()),
        )),
        Err(crate::net::transport::TransportError::Remote(error)) => Err(error),
        Err(error) => Err(WireError::new(
            ErrorKind::NoQuorum,
            format!("no quorum: cannot reach the leader: {error}"),
        )),
    }
}
