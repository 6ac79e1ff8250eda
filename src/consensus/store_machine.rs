//! The cluster store as Raft's state machine, shared read-only with the actors that watch it.
//!
//! The Raft actor owns the only writer: entries are applied inside its handler. Readers take a
//! read lock for the length of one query (after a linearizable read barrier where they need
//! one). Events of every applied entry, whoever proposed it, are buffered here and published
//! by the Raft actor after each Ready, so watchers on any manager see every change.

use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};

use crate::consensus::StateMachine;
use crate::core::store::{Command, Event, Store};
use crate::core::CoreError;

/// What a log entry holds: the command and the proposer's clock, so that every manager
/// applies the same times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Unix milliseconds at the proposer when it proposed.
    pub now_ms: u64,
    /// The change.
    pub command: Command,
}

/// A handle on the applied store, cheap to clone.
#[derive(Clone, Default)]
pub struct SharedStore {
    inner: Arc<RwLock<Store>>,
}

impl SharedStore {
    /// A read view of the store for work that may take a while (a reconcile, a schedule): it
    /// queues behind a waiting writer, so the Raft actor is never starved. Hold it briefly
    /// anyway: the Raft actor waits for it to apply.
    pub fn read(&self) -> RwLockReadGuard<'_, Store> {
        self.inner.read()
    }

    /// A read view for short reads on a latency-critical path (heartbeats): it shares the lock
    /// with readers already inside even when a writer waits, so a heartbeat is not held up by
    /// a long reconcile and the apply waiting behind it. Never hold it long: a stream of such
    /// reads would keep the writer out.
    pub fn read_now(&self) -> RwLockReadGuard<'_, Store> {
        self.inner.read_recursive()
    }

    fn write(&self) -> RwLockWriteGuard<'_, Store> {
        self.inner.write()
    }
}

/// The state machine the Raft replica applies entries to.
pub struct StoreMachine {
    store: SharedStore,
    events: EventQueue,
}

/// Events applied but not yet published; the Raft actor drains it after each Ready.
#[derive(Clone, Default)]
pub struct EventQueue {
    inner: Arc<std::sync::Mutex<Vec<Event>>>,
}

impl EventQueue {
    /// The events applied since the last call.
    pub fn take(&self) -> Vec<Event> {
        match self.inner.lock() {
            Ok(mut events) => std::mem::take(&mut *events),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    fn push(&self, events: &[Event]) {
        let mut queue = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if queue.len() < MAX_BUFFERED_EVENTS {
            queue.extend(events.iter().cloned());
        } else {
            tracing::warn!("store event queue full; watchers will reconcile");
        }
    }
}

/// Events buffered by apply beyond this are dropped with a warning; watchers reconcile fully
/// when they see [`Event`]s were lost (they also reconcile on leadership changes).
pub const MAX_BUFFERED_EVENTS: usize = 1_000_000;

impl StoreMachine {
    /// A state machine writing into `store` and queueing its events on `events`.
    pub fn new(store: SharedStore, events: EventQueue) -> Self {
        Self { store, events }
    }
}

impl StateMachine for StoreMachine {
    type Command = Proposal;
    type Output = Result<Vec<Event>, CoreError>;
    type RestoreError = CoreError;

    fn apply(&mut self, index: u64, proposal: Proposal) -> Self::Output {
        let events = self
            .store
            .write()
            .apply(index, proposal.now_ms, proposal.command)?;
        self.events.push(&events);
        Ok(events)
    }

    fn snapshot(&self) -> Vec<u8> {
        self.store.read().snapshot()
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), CoreError> {
        let restored = Store::restore(data)?;
        *self.store.write() = restored;
        Ok(())
    }
}

/// The Raft ID of a manager, derived from its node ID so that no separate table is needed:
/// the first 8 bytes of SHA-256(node ID), never 0 (raft-rs reserves 0).
pub fn raft_id_of(node_id: &str) -> u64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, node_id.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(bytes).max(1)
}
