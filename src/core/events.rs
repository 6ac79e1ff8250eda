//! The one road store changes take to their watchers: batches of applied events, each event
//! with the Raft index of the entry that made it, and a cursor that tells a watcher when it
//! missed something.
//!
//! The applier numbers batches by the applied index they continue from (`after_index`) and
//! reach (`through_index`). A watcher keeps an [`EventCursor`] at the index its view of the
//! store is current to; a batch that does not continue from there (its mailbox was full, it
//! subscribed late, the store was replaced by a snapshot, the applier's buffer overflowed)
//! makes it reconcile fully instead of acting on a partial picture (SPEC §12).

use crate::core::store::Event;

/// A store change with the index of the entry that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedEvent {
    /// The Raft index of the entry whose apply produced the event.
    pub index: u64,
    /// The change.
    pub event: Event,
}

/// Events applied since the previous batch, in log order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventBatch {
    /// The applied index the previous batch ended at.
    pub after_index: u64,
    /// The applied index this batch brings a watcher to.
    pub through_index: u64,
    /// The events of the entries in `after_index + 1 ..= through_index`.
    pub events: Vec<IndexedEvent>,
    /// Events of this range were lost on the way (the store was restored from a snapshot, or
    /// the applier's buffer overflowed): watchers must reconcile fully.
    pub lossy: bool,
}

/// What a watcher must do with a batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery<'a> {
    /// Act on these events (those the watcher has not seen yet), in order.
    Events(Vec<&'a Event>),
    /// Something was missed: read the whole store again.
    Reconcile {
        /// The first index the watcher had not seen.
        missed_from: u64,
    },
    /// Nothing new (a batch the watcher's view already covers).
    Nothing,
}

/// Where a watcher's view of the store stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventCursor {
    seen_through: u64,
}

impl EventCursor {
    /// A watcher whose view is current to `applied_index` (it just read the whole store).
    pub fn at(applied_index: u64) -> Self {
        Self {
            seen_through: applied_index,
        }
    }

    /// The last index the watcher's view covers.
    pub fn seen_through(&self) -> u64 {
        self.seen_through
    }

    /// Takes in `batch` and says what to do. Batches that overlap the view (a watcher that read
    /// the store while a batch was being applied) deliver only the events past it.
    pub fn accept<'a>(&mut self, batch: &'a EventBatch) -> Delivery<'a> {
        if batch.through_index <= self.seen_through && !batch.lossy {
            return Delivery::Nothing;
        }
        let missed_from = self.seen_through + 1;
        let continuous = batch.after_index <= self.seen_through;
        let seen_through = self.seen_through;
        self.seen_through = self.seen_through.max(batch.through_index);
        if batch.lossy || !continuous {
            return Delivery::Reconcile { missed_from };
        }
        Delivery::Events(
            batch
                .events
                .iter()
                .filter(|indexed| indexed.index > seen_through)
                .map(|indexed| &indexed.event)
                .collect(),
        )
    }
}

/// Most events the applier buffers between two publications; beyond it the batch is lossy and
/// watchers reconcile.
pub const MAX_BUFFERED_EVENTS: usize = 1_000_000;

/// The applier's side: collects events as entries apply and hands them out as batches.
#[derive(Debug)]
pub struct EventLog {
    max_events: usize,
    events: Vec<IndexedEvent>,
    applied_through: u64,
    published_through: u64,
    lossy: bool,
}

impl EventLog {
    /// An event log whose watchers are current to `applied_index` (the store as opened).
    pub fn at(applied_index: u64) -> Self {
        Self::with_limit(applied_index, MAX_BUFFERED_EVENTS)
    }

    /// An event log that buffers at most `max_events` between publications.
    pub fn with_limit(applied_index: u64, max_events: usize) -> Self {
        Self {
            max_events,
            events: Vec::new(),
            applied_through: applied_index,
            published_through: applied_index,
            lossy: false,
        }
    }

    /// The entry at `index` applied and produced `events`.
    pub fn applied(&mut self, index: u64, events: &[Event]) {
        if self.events.len() + events.len() > self.max_events {
            self.lossy = true;
            self.events.clear();
        } else if !self.lossy {
            self.events.extend(events.iter().map(|event| IndexedEvent {
                index,
                event: event.clone(),
            }));
        }
        // An entry applied again (a restarted replica replaying its log) does not move back.
        self.applied_through = self.applied_through.max(index);
    }

    /// The whole store was replaced by a snapshot taken at `index`.
    pub fn restored(&mut self, index: u64) {
        self.events.clear();
        self.lossy = true;
        self.applied_through = index;
    }

    /// The batch since the last call, if anything was applied meanwhile.
    pub fn take(&mut self) -> Option<EventBatch> {
        if self.applied_through == self.published_through && !self.lossy {
            return None;
        }
        let batch = EventBatch {
            after_index: self.published_through,
            through_index: self.applied_through,
            events: std::mem::take(&mut self.events),
            lossy: std::mem::take(&mut self.lossy),
        };
        self.published_through = self.applied_through;
        Some(batch)
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
