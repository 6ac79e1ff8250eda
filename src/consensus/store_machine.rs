//! The cluster store as Raft's state machine, shared read-only with the actors that watch it.
//!
//! The Raft actor owns the only writer: entries are applied inside its handler. Readers take a
//! read lock for the length of one query (after a linearizable read barrier where they need
//! one). Events of every applied entry, whoever proposed it, are buffered here with their
//! Raft index and published by the Raft actor after each Ready as one `core::events`
//! batch, so watchers on any manager see every change or learn that they missed some.

use std::sync::Arc;

use parking_lot::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};

use crate::consensus::state_machine::{decode_body, EntryCommand};
use crate::consensus::StateMachine;
use crate::core::events::{EventBatch, EventLog};
use crate::core::store::{Command, CommandV2, CommandV3, Event, Store};
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

/// [`Proposal`] as entries of format versions 1 and 2 encoded it.
#[derive(Deserialize)]
struct ProposalV2 {
    now_ms: u64,
    command: CommandV2,
}

/// [`Proposal`] as entries of format version 3 encoded it.
#[derive(Deserialize)]
struct ProposalV3 {
    now_ms: u64,
    command: CommandV3,
}

impl EntryCommand for Proposal {
    fn decode_older(version: u8, body: &[u8]) -> Result<Self, String> {
        // Versions 1 and 2 differ only in the header; version 3 changed the service and
        // task shapes (spec versions, health, rollout configs); version 4 added published
        // ports, secret and config references and task endpoints; version 5 only appended
        // commands (secrets, configs, autolock), so a version 4 body is today's encoding.
        if version == 4 {
            return decode_body(body);
        }
        if version == 3 {
            let old: ProposalV3 = decode_body(body)?;
            return Ok(Proposal {
                now_ms: old.now_ms,
                command: old.command.into(),
            });
        }
        let old: ProposalV2 = decode_body(body)?;
        Ok(Proposal {
            now_ms: old.now_ms,
            command: old.command.into(),
        })
    }
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

/// Events applied but not yet published, with their indexes; the Raft actor drains it after
/// each Ready and sends the batch to every watcher (the one road events take, SPEC §12).
#[derive(Clone)]
pub struct EventQueue {
    inner: Arc<Mutex<EventLog>>,
}

impl Default for EventQueue {
    fn default() -> Self {
        Self::at(0)
    }
}

impl EventQueue {
    /// A queue whose watchers are current to `applied_index` (the store as it was opened).
    pub fn at(applied_index: u64) -> Self {
        Self {
            inner: Arc::new(Mutex::new(EventLog::at(applied_index))),
        }
    }

    /// The batch applied since the last call, if any.
    pub fn take(&self) -> Option<EventBatch> {
        self.inner.lock().take()
    }

    fn applied(&self, index: u64, events: &[Event]) {
        self.inner.lock().applied(index, events);
    }

    fn restored(&self, index: u64) {
        self.inner.lock().restored(index);
    }
}

impl StoreMachine {
    /// A state machine writing into `store` and queueing its events on `events`.
    pub fn new(store: SharedStore, events: EventQueue) -> Self {
        Self { store, events }
    }
}

impl StateMachine for StoreMachine {
    type Command = Proposal;
    /// The index the command applied at, or why the store refused it.
    type Output = Result<u64, CoreError>;
    type RestoreError = CoreError;

    fn apply(&mut self, index: u64, proposal: Proposal) -> Self::Output {
        let mut store = self.store.write();
        let result = store.apply(index, proposal.now_ms, proposal.command);
        store.set_applied_index(index);
        // Queued under the store's write lock: a watcher that reads the store and then takes
        // a batch never sees an event its read already covered as new, nor misses one.
        match result {
            Ok(events) => {
                self.events.applied(index, &events);
                Ok(index)
            }
            Err(refused) => {
                self.events.applied(index, &[]);
                Err(refused)
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        self.store.read().snapshot()
    }

    fn restore(&mut self, index: u64, data: &[u8]) -> Result<(), CoreError> {
        let mut restored = Store::restore(data)?;
        restored.set_applied_index(index);
        let mut store = self.store.write();
        *store = restored;
        self.events.restored(index);
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
