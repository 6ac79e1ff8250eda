//! The replicated model: a few integer registers, with a journal the simulation inspects.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use flotilla::consensus::StateMachine;
use serde::{Deserialize, Serialize};

pub type Key = u8;
pub type Value = u64;

impl flotilla::consensus::EntryCommand for KvCommand {}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    Put {
        key: Key,
        value: Value,
    },
    Cas {
        key: Key,
        expected: Option<Value>,
        new: Value,
    },
    /// A read that goes through the log.
    Get {
        key: Key,
    },
}

impl KvCommand {
    pub fn key(&self) -> Key {
        match self {
            KvCommand::Put { key, .. } | KvCommand::Cas { key, .. } | KvCommand::Get { key } => {
                *key
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOutput {
    Done,
    Swapped(bool),
    Value(Option<Value>),
}

/// Applies a command to a register map; shared by the state machine and the reference model.
pub fn apply_to(values: &mut BTreeMap<Key, Value>, command: &KvCommand) -> KvOutput {
    match command {
        KvCommand::Put { key, value } => {
            values.insert(*key, *value);
            KvOutput::Done
        }
        KvCommand::Cas { key, expected, new } => {
            if values.get(key).copied() == *expected {
                values.insert(*key, *new);
                KvOutput::Swapped(true)
            } else {
                KvOutput::Swapped(false)
            }
        }
        KvCommand::Get { key } => KvOutput::Value(values.get(key).copied()),
    }
}

/// What a node's state machine did, in order, for the invariant checks.
#[derive(Clone, Debug)]
pub enum JournalEvent {
    Applied {
        index: u64,
        command: KvCommand,
    },
    Restored {
        applied_through: u64,
        values: BTreeMap<Key, Value>,
    },
}

pub type Journal = Rc<RefCell<Vec<JournalEvent>>>;

pub struct KvStore {
    pub values: BTreeMap<Key, Value>,
    /// Index of the last command applied (or covered by the restored snapshot).
    pub applied_through: u64,
    journal: Journal,
}

impl KvStore {
    pub fn new(journal: Journal) -> Self {
        Self {
            values: BTreeMap::new(),
            applied_through: 0,
            journal,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("bad kv snapshot: {0}")]
pub struct BadSnapshot(String);

type SnapshotData = (u64, BTreeMap<Key, Value>);

impl StateMachine for KvStore {
    type Command = KvCommand;
    type Output = KvOutput;
    type RestoreError = BadSnapshot;

    fn apply(&mut self, index: u64, command: KvCommand) -> KvOutput {
        let output = apply_to(&mut self.values, &command);
        self.applied_through = index;
        self.journal
            .borrow_mut()
            .push(JournalEvent::Applied { index, command });
        output
    }

    fn snapshot(&self) -> Vec<u8> {
        let data: SnapshotData = (self.applied_through, self.values.clone());
        bincode::serde::encode_to_vec(&data, bincode::config::standard())
            .expect("a map of integers always encodes")
    }

    fn restore(&mut self, _index: u64, data: &[u8]) -> Result<(), BadSnapshot> {
        let ((applied_through, values), _): (SnapshotData, usize) =
            bincode::serde::decode_from_slice(data, bincode::config::standard())
                .map_err(|error| BadSnapshot(error.to_string()))?;
        self.applied_through = applied_through;
        self.values = values.clone();
        self.journal.borrow_mut().push(JournalEvent::Restored {
            applied_through,
            values,
        });
        Ok(())
    }
}
