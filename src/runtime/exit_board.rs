//! Exit statuses published by one runtime's watchers and awaited by any number of waiters.
//!
//! One `tokio::sync::watch` channel per runtime ID: it holds at most one value, so the board is
//! bounded by the number of containers a node watches, and a dropped waiter leaves nothing
//! behind (which is what makes every runtime's `wait` cancel-safe).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

use super::ExitStatus;

type Slot = watch::Sender<Option<ExitStatus>>;

/// Runtime ID -> its exit status once known.
#[derive(Default)]
pub(crate) struct ExitBoard {
    slots: Mutex<HashMap<String, Slot>>,
}

impl ExitBoard {
    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        // A panic while holding this lock cannot leave the map half-updated (every operation
        // is a single insert, remove or send), so a poisoned lock is safe to keep using.
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Start tracking `runtime_id`; returns false if it was already tracked.
    pub(crate) fn track(&self, runtime_id: &str) -> bool {
        let mut slots = self.slots();
        if slots.contains_key(runtime_id) {
            return false;
        }
        slots.insert(runtime_id.to_string(), watch::channel(None).0);
        true
    }

    /// A receiver for `runtime_id`, tracking it first if needed; the bool says whether this
    /// call started tracking it.
    pub(crate) fn subscribe(
        &self,
        runtime_id: &str,
    ) -> (watch::Receiver<Option<ExitStatus>>, bool) {
        let mut slots = self.slots();
        if let Some(slot) = slots.get(runtime_id) {
            return (slot.subscribe(), false);
        }
        let (sender, receiver) = watch::channel(None);
        slots.insert(runtime_id.to_string(), sender);
        (receiver, true)
    }

    /// A receiver for `runtime_id` if it is tracked.
    pub(crate) fn subscribe_existing(
        &self,
        runtime_id: &str,
    ) -> Option<watch::Receiver<Option<ExitStatus>>> {
        self.slots().get(runtime_id).map(|slot| slot.subscribe())
    }

    /// Record how `runtime_id` ended; the first status wins. Returns false if it is not tracked.
    pub(crate) fn publish(&self, runtime_id: &str, status: ExitStatus) -> bool {
        match self.slots().get(runtime_id) {
            Some(slot) => {
                slot.send_if_modified(|current| {
                    if current.is_some() {
                        return false;
                    }
                    *current = Some(status);
                    true
                });
                true
            }
            None => false,
        }
    }

    /// `None` if untracked, `Some(None)` while running, `Some(Some(status))` once ended.
    pub(crate) fn status(&self, runtime_id: &str) -> Option<Option<ExitStatus>> {
        self.slots()
            .get(runtime_id)
            .map(|slot| slot.borrow().clone())
    }

    /// Stop tracking `runtime_id`; its waiters see the channel close.
    pub(crate) fn forget(&self, runtime_id: &str) {
        self.slots().remove(runtime_id);
    }

    /// Stop tracking `runtime_id` if nobody waits on it any more.
    pub(crate) fn forget_if_unwatched(&self, runtime_id: &str) {
        let mut slots = self.slots();
        if slots
            .get(runtime_id)
            .is_some_and(|slot| slot.receiver_count() == 0)
        {
            slots.remove(runtime_id);
        }
    }

    /// Every tracked runtime ID that has not ended yet.
    pub(crate) fn pending_ids(&self) -> Vec<String> {
        self.slots()
            .iter()
            .filter(|(_, slot)| slot.borrow().is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// Wait until `receiver` carries a status; `None` if the runtime ID was forgotten first.
pub(crate) async fn next_status(
    receiver: &mut watch::Receiver<Option<ExitStatus>>,
) -> Option<ExitStatus> {
    match receiver.wait_for(|status| status.is_some()).await {
        Ok(status) => status.clone(),
        Err(_closed) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_status_wins_and_late_waiters_see_it() {
        let board = ExitBoard::default();
        assert!(board.track("a"));
        assert!(!board.track("a"));
        let (mut early, created) = board.subscribe("a");
        assert!(!created);
        assert!(board.publish("a", ExitStatus::from_code(3)));
        assert!(board.publish("a", ExitStatus::from_code(4)));
        assert_eq!(
            next_status(&mut early).await,
            Some(ExitStatus::from_code(3))
        );
        let mut late = board.subscribe_existing("a").expect("tracked");
        assert_eq!(next_status(&mut late).await, Some(ExitStatus::from_code(3)));
        assert!(!board.publish("b", ExitStatus::from_code(0)));
        assert!(board.pending_ids().is_empty());
    }

    #[tokio::test]
    async fn forgetting_wakes_waiters_with_none() {
        let board = ExitBoard::default();
        let (mut receiver, _) = board.subscribe("a");
        board.forget_if_unwatched("a");
        assert_eq!(board.status("a"), Some(None), "a receiver is alive");
        board.forget("a");
        assert_eq!(next_status(&mut receiver).await, None);
    }
}
