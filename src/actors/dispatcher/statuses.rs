//! Task status reports, group-committed: while one batch is being committed the reports that
//! arrive wait and then go as one proposal, so a thousand workers reporting at once cost a few
//! Raft entries, not a thousand. Each reporter is answered when its updates commit.

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{DispatcherActor, NodeTaskStatuses, STATUS_BATCH_MAX};
use crate::actors::raft::Propose;
use crate::core::assignment::own_updates;
use crate::core::store::Command;
use crate::net::message::{ErrorKind, WireError};

impl Handler<NodeTaskStatuses> for DispatcherActor {
    type Result = ResponseFuture<Result<(), WireError>>;

    fn handle(&mut self, report: NodeTaskStatuses, ctx: &mut Context<Self>) -> Self::Result {
        // A node may only report on tasks placed on it; the rest of the batch still counts.
        let (updates, refused) = {
            let store = self.store.read_now();
            own_updates(&store, &report.node_id, report.updates)
        };
        if let Some(first) = refused.first() {
            // Also normal for a moment after a task is removed, so not a warning.
            tracing::info!(
                node = %report.node_id,
                refused = refused.len(),
                first = %first,
                "status updates for tasks not assigned to the reporting node dropped"
            );
        }
        if updates.is_empty() {
            return Box::pin(async { Ok(()) });
        }
        let (done, committed) = oneshot::channel();
        self.statuses.push_back((updates, done));
        self.flush_statuses(ctx);
        Box::pin(async move {
            committed.await.unwrap_or_else(|_| {
                Err(WireError::new(
                    ErrorKind::Internal,
                    "the dispatcher stopped before the report was committed",
                ))
            })
        })
    }
}

impl DispatcherActor {
    /// Group commit: while one batch of status reports is being committed, the reports that
    /// arrive wait and then go as one proposal, so a thousand workers reporting at once cost a
    /// few Raft entries, not a thousand. Each reporter is answered when its updates commit.
    fn flush_statuses(&mut self, ctx: &mut Context<Self>) {
        if self.statuses_in_flight || self.statuses.is_empty() {
            return;
        }
        let mut updates = Vec::new();
        let mut waiters = Vec::new();
        while let Some((batch, _)) = self.statuses.front() {
            if !updates.is_empty() && updates.len() + batch.len() > STATUS_BATCH_MAX {
                break;
            }
            let Some((batch, done)) = self.statuses.pop_front() else {
                break;
            };
            updates.extend(batch);
            waiters.push(done);
        }
        self.statuses_in_flight = true;
        self.raft
            .send(Propose {
                command: Command::UpdateTaskStatuses(updates),
            })
            .into_actor(self)
            .map(move |result, actor, ctx| {
                actor.statuses_in_flight = false;
                let outcome = match result {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(error)) => Err(crate::actors::control::wire_error(error)),
                    Err(error) => Err(WireError::new(ErrorKind::Internal, error.to_string())),
                };
                for done in waiters {
                    // A reporter that gave up waiting resends; nothing to do here.
                    let _ = done.send(outcome.clone());
                }
                actor.flush_statuses(ctx);
            })
            .spawn(ctx);
    }
}
