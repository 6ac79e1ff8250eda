//! Managers join the Raft group through the dispatcher: a manager that heartbeats with a
//! manager certificate but is not a voter yet becomes a learner, then a voter once caught up.

use actix::prelude::*;

use super::DispatcherActor;
use crate::actors::raft::{ChangeMembership, GetStatus};
use crate::consensus::store_machine::raft_id_of;
use crate::consensus::MembershipChange;
use crate::core::model::Node;

impl DispatcherActor {
    /// A manager that heartbeats with a manager certificate but is not a Raft voter yet (it
    /// just joined, or was promoted) becomes a learner, then a voter once it has caught up.
    pub(super) fn ensure_voter(&mut self, ctx: &mut Context<Self>, node: &Node) {
        let raft_id = raft_id_of(&node.id);
        let Ok(addr) = node.addr.parse() else {
            return;
        };
        if !self.proposing.insert(format!("voter:{}", node.id)) {
            return;
        }
        let raft = self.raft.clone();
        let key = format!("voter:{}", node.id);
        async move {
            let status = raft.send(GetStatus).await.ok()?;
            if status.voters.contains(&raft_id) {
                return Some(());
            }
            // Learner first, voter once caught up (a later heartbeat), so that a manager
            // still receiving its snapshot never counts toward the quorum.
            let (change, what) = if !status.learners.contains(&raft_id) {
                (MembershipChange::AddLearner(raft_id), "as a learner")
            } else if status.caught_up_learners.contains(&raft_id) {
                (MembershipChange::AddVoter(raft_id), "as a voter")
            } else {
                return Some(());
            };
            let change = ChangeMembership {
                change,
                addr: Some(addr),
            };
            match raft.send(change).await {
                Ok(Ok(())) => tracing::info!(raft_id, "manager added {what}"),
                Ok(Err(error)) => tracing::warn!(%error, "cannot add the manager {what}"),
                Err(_) => {}
            }
            Some(())
        }
        .into_actor(self)
        .map(move |_, actor, _| {
            actor.proposing.remove(&key);
        })
        .spawn(ctx);
    }
}
