//! The control actor (managers): carries out the admin's commands against the store.
//!
//! Every command first passes the admin's proof (`net::control_proof`): signed by the admin
//! key, fresh, never seen before. On the leader it validates, proposes and answers; reads
//! wait for a linearizable read barrier first. On a follower it forwards the signed command,
//! untouched, to the leader (which checks the proof again) and relays the answer.
//! It also admits joining nodes: checks the join secret, signs the node's certificate and,
//! for managers, adds the new Raft voter.
//!
//! The rules (what a write turns into, when a demotion is safe) are `core::control_plan`;
//! the files here only route, wait and answer:
//!
//! - `routing`: leader or forward, and the forward itself;
//! - `reads`: answers from the store after a read barrier;
//! - `writes`: proposes a planned write;
//! - `roles`: `node promote` / `node demote`;
//! - `admission`: joins;
//! - `autolock`: `swarm update --autolock`, `swarm unlock-key`;
//! - `gossip_views`: the nodes' gossip views for `node inspect`;
//! - `errors`: how failures reach the CLI.
//!
//! Each control actor also keeps its manager's history of applied changes for `events`
//! (`core::event_history`), which it answers itself: a follower's history is as good as the
//! leader's, and it survives a leader change.

mod admission;
mod autolock;
mod errors;
mod gossip_views;
mod reads;
mod roles;
mod routing;
mod writes;

use actix::prelude::*;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::actors::raft::{LeadershipChanged, RaftActor, StoreEvents};
use crate::actors::transport::Request;
use crate::consensus::store_machine::SharedStore;
use crate::core::event_history::{EventHistory, HISTORY_RECORDS_MAX};
use crate::core::secrets::Keyring;
use crate::net::admin::{AdminReply, AdminRequest};
use crate::net::control_proof::{ProofVerifier, SignedControl};
use crate::net::message::{ErrorKind, JoinAccepted, JoinRequest, WireError};

pub use autolock::{open_unlock_key, seal_unlock_key, UNLOCK_KEY_CONTEXT};
pub use errors::wire_error;
pub use reads::join_token;
pub use routing::FORWARD_TIMEOUT;

use routing::RequestContext;

/// An admin command (or one forwarded by another manager).
#[derive(Debug, Message)]
#[rtype(result = "Result<AdminReply, WireError>")]
pub struct Control {
    /// The command with the admin's proof, as it arrived.
    pub signed: SignedControl,
    /// The manager that forwarded it, from its certificate (`None`: the admin sent it here).
    /// `node ps` without a node means that manager.
    pub forwarded_by: Option<String>,
}

/// A node asks to join.
#[derive(Debug, Message)]
#[rtype(result = "Result<JoinAccepted, WireError>")]
pub struct Admit {
    /// The request as received.
    pub request: JoinRequest,
}

/// The control actor. See the module documentation.
pub struct ControlActor {
    node_id: String,
    store: SharedStore,
    raft: Addr<RaftActor>,
    transport: Recipient<Request>,
    leadership: tokio::sync::watch::Sender<Option<LeadershipChanged>>,
    /// New IDs (services, nodes) come from here: seeded at start-up, so a run with a given
    /// seed names its objects the same way.
    ids: StdRng,
    /// Checks the admin's proof on every command (and remembers the nonces it saw).
    proofs: ProofVerifier,
    /// The cluster's data key.
    keyring: Keyring,
    /// Recent applied changes, for `events`.
    history: EventHistory,
}

impl ControlActor {
    /// A control actor for the manager `node_id`, drawing new IDs from `ids` and accepting
    /// the commands `proofs` verifies.
    pub fn new(
        node_id: String,
        store: SharedStore,
        raft: Addr<RaftActor>,
        transport: Recipient<Request>,
        ids: StdRng,
        proofs: ProofVerifier,
        keyring: Keyring,
    ) -> Self {
        Self {
            node_id,
            store,
            raft,
            transport,
            leadership: tokio::sync::watch::channel(None).0,
            ids,
            proofs,
            keyring,
            history: EventHistory::at(0, HISTORY_RECORDS_MAX),
        }
    }

    /// What one request needs, with its own ID generator split off this actor's (requests
    /// run concurrently; each draws from its own stream).
    fn context(&mut self) -> RequestContext {
        RequestContext {
            node_id: self.node_id.clone(),
            store: self.store.clone(),
            raft: self.raft.clone(),
            transport: self.transport.clone(),
            leadership: self.leadership.subscribe(),
            ids: std::cell::RefCell::new(StdRng::seed_from_u64(self.ids.next_u64())),
            keyring: self.keyring.clone(),
        }
    }
}

impl Actor for ControlActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Room for the store's event batches (a full mailbox makes the history lossy) and
        // the admin's commands alike.
        ctx.set_mailbox_capacity(4096);
        // Subscribed before reading the index: a batch in between is recorded, not lost.
        self.raft.do_send(crate::actors::raft::Subscribe {
            events: Some(ctx.address().recipient()),
            leadership: Some(ctx.address().recipient()),
        });
        self.history = EventHistory::at(self.store.read().applied_index(), HISTORY_RECORDS_MAX);
    }
}

impl Handler<LeadershipChanged> for ControlActor {
    type Result = ();

    fn handle(&mut self, leadership: LeadershipChanged, _: &mut Context<Self>) {
        self.leadership.send_replace(Some(leadership));
    }
}

impl Handler<StoreEvents> for ControlActor {
    type Result = ();

    fn handle(&mut self, StoreEvents(batch): StoreEvents, _: &mut Context<Self>) {
        let now_ms = crate::actors::environment::system_now_ms();
        self.history.record(&batch, &self.store.read(), now_ms);
    }
}

impl Handler<Control> for ControlActor {
    type Result = ResponseFuture<Result<AdminReply, WireError>>;

    fn handle(&mut self, control: Control, _: &mut Context<Self>) -> Self::Result {
        let Control {
            signed,
            forwarded_by,
        } = control;
        let now_ms = crate::actors::environment::system_now_ms();
        let mut request = match self.proofs.verify(&signed, now_ms) {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(
                    forwarded_by = forwarded_by.as_deref().unwrap_or("-"),
                    %error,
                    "control command refused"
                );
                let refusal = WireError::new(ErrorKind::Forbidden, error.to_string());
                return Box::pin(async move { Err(refusal) });
            }
        };
        if let (AdminRequest::NodeTasks { node: node @ None }, Some(via)) =
            (&mut request, &forwarded_by)
        {
            // "node ps" without a node means the node the admin addressed: the forwarder.
            *node = Some(via.clone());
        }
        if let AdminRequest::Events(query) = &request {
            let page = self.history.page(query);
            return Box::pin(async move { Ok(AdminReply::Events(page)) });
        }
        if let AdminRequest::SwarmUnlock { .. } = request {
            return Box::pin(async move { Err(autolock::not_locked()) });
        }
        let context = self.context();
        Box::pin(async move {
            context
                .on_leader(
                    async |context: &RequestContext| writes::on_leader(context, &request).await,
                    async |context: &RequestContext, leader| {
                        routing::forward(context, leader, signed.clone()).await
                    },
                )
                .await
        })
    }
}

impl Handler<Admit> for ControlActor {
    type Result = ResponseFuture<Result<JoinAccepted, WireError>>;

    fn handle(&mut self, admit: Admit, _: &mut Context<Self>) -> Self::Result {
        let context = self.context();
        let request = admit.request;
        Box::pin(async move {
            context
                .on_leader(
                    async |context: &RequestContext| {
                        admission::admit_on_leader(context, request.clone()).await
                    },
                    async |context: &RequestContext, leader| {
                        admission::forward_join(context, leader, request.clone()).await
                    },
                )
                .await
        })
    }
}
