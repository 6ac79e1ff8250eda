//! The Raft actor's side of the one road store changes take: it hands every watcher each batch
//! of applied events, and tells a watcher that missed one as soon as its mailbox has room.
//!
//! A watcher learns of a gap from the next batch it receives, but a quiet store may send no
//! next batch for a long time; so a watcher whose mailbox was full is sent a lossy, empty batch
//! on the following ticks until one gets through, and reconciles then.

use std::sync::Arc;

use actix::prelude::*;

use crate::core::events::EventBatch;

/// Store events applied on this manager, in log order, with their indexes. A watcher keeps a
/// `core::events::EventCursor`: a batch that does not continue its view (it was dropped on a
/// full mailbox, or the store was restored from a snapshot) tells it to reconcile fully.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct StoreEvents(pub Arc<EventBatch>);

struct Watcher {
    recipient: Recipient<StoreEvents>,
    /// A batch was dropped for it and it has not been told yet.
    behind: bool,
}

/// The watchers of one manager's store.
#[derive(Default)]
pub struct EventPublisher {
    watchers: Vec<Watcher>,
    published_through: u64,
}

impl EventPublisher {
    /// Adds a watcher.
    pub fn subscribe(&mut self, recipient: Recipient<StoreEvents>) {
        self.watchers.push(Watcher {
            recipient,
            behind: false,
        });
    }

    /// Sends `batch` to every watcher. Watchers that stopped (leadership lost, chaos) are
    /// dropped.
    pub fn publish(&mut self, batch: EventBatch) {
        self.published_through = batch.through_index;
        let batch = Arc::new(batch);
        self.watchers.retain_mut(|watcher| {
            match watcher.recipient.try_send(StoreEvents(batch.clone())) {
                Ok(()) => true,
                Err(SendError::Full(_)) => {
                    tracing::debug!(
                        through_index = batch.through_index,
                        "a store watcher is behind; it will reconcile"
                    );
                    watcher.behind = true;
                    true
                }
                Err(SendError::Closed(_)) => false,
            }
        });
    }

    /// Tells watchers that missed a batch (meant to run on every tick).
    pub fn notify_behind(&mut self) {
        let through_index = self.published_through;
        self.watchers.retain_mut(|watcher| {
            if !watcher.behind {
                return true;
            }
            let notice = EventBatch {
                after_index: through_index,
                through_index,
                events: Vec::new(),
                lossy: true,
            };
            match watcher.recipient.try_send(StoreEvents(Arc::new(notice))) {
                Ok(()) => {
                    watcher.behind = false;
                    true
                }
                Err(SendError::Full(_)) => true,
                Err(SendError::Closed(_)) => false,
            }
        });
    }
}
