//! Durable Raft storage on redb: the log, the hard state, the conf state and the last snapshot.
//!
//! Every write method is one redb write transaction committed with
//! [`redb::Durability::Immediate`], so when it returns the data has been fsynced (on a file) or
//! synced (on the [`SimDisk`](super::SimDisk)). The replica driver relies on that to send
//! messages that depend on persisted state only after the write returned.
//!
//! The small metadata (hard state, conf state, snapshot metadata, log bounds) is cached in
//! memory and loaded, checked, at open; log entries are read from redb on demand. Bytes from disk
//! are decoded with checks: corrupt data gives [`StorageError::Corrupt`], never a panic.

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::core::format;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, StorageBackend,
    TableDefinition,
};

mod raft_storage;
mod records;
mod writes;
pub use writes::ForcedCluster;

use records::{begin_durable_write, corrupt, db_error, decode, decode_pair};

/// Log entries: index -> protobuf-encoded `Entry`.
const LOG_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Single values under fixed keys, see the `KEY_*` constants.
const META_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const KEY_HARD_STATE: &str = "hard_state";
const KEY_CONF_STATE: &str = "conf_state";
const KEY_SNAPSHOT_METADATA: &str = "snapshot_metadata";
const KEY_SNAPSHOT_DATA: &str = "snapshot_data";
/// 16 bytes: index and term (little endian) of the last entry removed by compaction.
const KEY_COMPACTED: &str = "compacted";
/// 8 bytes: how many times this replica was started from this storage.
const KEY_BOOT_EPOCH: &str = "boot_epoch";
/// The table layout's version ([`format::RAFT_DATABASE`]); a database of the first release has
/// none (version 1, the same layout) and gets the key the first time this build opens it.
const KEY_FORMAT_VERSION: &str = "format_version";

/// Errors of the durable Raft storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// redb failed: I/O error, a database it cannot read, or a failed commit.
    #[error("raft storage database error: {0}")]
    Database(#[from] redb::Error),
    /// Bytes read from disk do not decode to what was written there.
    #[error("raft storage is corrupt: {what}: {detail}")]
    Corrupt {
        /// Which record failed to decode.
        what: &'static str,
        /// The decoder's complaint.
        detail: String,
    },
    /// Appended entries would leave a gap in the log or overwrite compacted entries.
    #[error("cannot append entries starting at {first} to log [{first_index}, {last_index}]")]
    NonContiguousAppend {
        /// Index of the first entry offered.
        first: u64,
        /// First index still in the log.
        first_index: u64,
        /// Last index in the log.
        last_index: u64,
    },
    /// A requested log index is not (or no longer) in the log.
    #[error("log index {index} is not in log [{first_index}, {last_index}]")]
    IndexUnavailable {
        /// The index asked for.
        index: u64,
        /// First index still in the log.
        first_index: u64,
        /// Last index in the log.
        last_index: u64,
    },
    /// Compaction would drop entries that no stored snapshot covers.
    #[error(
        "cannot compact log up to {upto}: the stored snapshot only covers up to {snapshot_index}"
    )]
    CompactBeyondSnapshot {
        /// The index compaction was asked to reach.
        upto: u64,
        /// The index the stored snapshot covers.
        snapshot_index: u64,
    },
    /// A snapshot older than the one already stored was offered.
    #[error("snapshot at index {index} is older than the stored snapshot at {stored}")]
    SnapshotOutOfDate {
        /// Index of the offered snapshot.
        index: u64,
        /// Index of the stored snapshot.
        stored: u64,
    },
    /// The database was written by a newer release (its format version is unknown here).
    #[error(transparent)]
    Format(#[from] crate::core::format::FormatError),
    /// A protobuf record could not be encoded (should not happen for well-formed values).
    #[error("cannot encode raft record: {0}")]
    Encode(#[from] protobuf::ProtobufError),
}

/// Durable Raft storage on a redb database. See the module documentation.
pub struct RedbStorage {
    database: Database,
    hard_state: HardState,
    conf_state: ConfState,
    snapshot_metadata: SnapshotMetadata,
    /// Index and term of the last compacted entry: the log holds `compacted_index + 1 ..`.
    compacted_index: u64,
    compacted_term: u64,
    last_index: u64,
    boot_epoch: u64,
    /// Set when raft asked for a snapshot the stored one cannot serve (too old, or made before
    /// the recipient joined); the replica then makes a fresh one.
    snapshot_wanted: AtomicBool,
}

impl std::fmt::Debug for RedbStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStorage")
            .field("hard_state", &self.hard_state)
            .field("conf_state", &self.conf_state)
            .field("snapshot_index", &self.snapshot_metadata.index)
            .field("first_index", &(self.compacted_index + 1))
            .field("last_index", &self.last_index)
            .finish()
    }
}

impl RedbStorage {
    /// Opens (or creates) the Raft storage in the redb file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StorageError> {
        let database = Database::create(path).map_err(db_error)?;
        Self::load(database)
    }

    /// Opens (or creates) the Raft storage on any redb backend, such as a
    /// [`SimDiskBackend`](super::SimDiskBackend) in the simulation.
    pub fn open_with_backend(backend: impl StorageBackend) -> Result<Self, StorageError> {
        let database = redb::Builder::new()
            .create_with_backend(backend)
            .map_err(db_error)?;
        Self::load(database)
    }

    fn load(database: Database) -> Result<Self, StorageError> {
        // Creating the tables up front lets every read transaction assume they exist.
        let transaction = begin_durable_write(&database)?;
        transaction.open_table(LOG_TABLE).map_err(db_error)?;
        {
            let mut meta = transaction.open_table(META_TABLE).map_err(db_error)?;
            let found = match meta.get(KEY_FORMAT_VERSION).map_err(db_error)? {
                Some(value) => match value.value() {
                    [version] => Some(*version),
                    other => {
                        return Err(corrupt(
                            "format version",
                            format!("expected 1 byte, found {}", other.len()),
                        ))
                    }
                },
                None => None,
            };
            match found {
                Some(version) => {
                    format::RAFT_DATABASE.check(version)?;
                }
                None => {
                    let current = [format::RAFT_DATABASE.current];
                    meta.insert(KEY_FORMAT_VERSION, current.as_slice())
                        .map_err(db_error)?;
                }
            }
        }
        transaction.commit().map_err(db_error)?;

        let read = database.begin_read().map_err(db_error)?;
        let meta = read.open_table(META_TABLE).map_err(db_error)?;
        let get = |key: &str| -> Result<Option<Vec<u8>>, StorageError> {
            Ok(meta
                .get(key)
                .map_err(db_error)?
                .map(|value| value.value().to_vec()))
        };
        let hard_state = match get(KEY_HARD_STATE)? {
            Some(bytes) => decode("hard state", &bytes)?,
            None => HardState::default(),
        };
        let conf_state = match get(KEY_CONF_STATE)? {
            Some(bytes) => decode("conf state", &bytes)?,
            None => ConfState::default(),
        };
        let snapshot_metadata = match get(KEY_SNAPSHOT_METADATA)? {
            Some(bytes) => decode("snapshot metadata", &bytes)?,
            None => SnapshotMetadata::default(),
        };
        let (compacted_index, compacted_term) = match get(KEY_COMPACTED)? {
            Some(bytes) => decode_pair("compaction point", &bytes)?,
            None => (0, 0),
        };
        let boot_epoch = match get(KEY_BOOT_EPOCH)? {
            Some(bytes) => {
                let array: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                    corrupt(
                        "boot epoch",
                        format!("expected 8 bytes, found {}", bytes.len()),
                    )
                })?;
                u64::from_le_bytes(array)
            }
            None => 0,
        };
        let log = read.open_table(LOG_TABLE).map_err(db_error)?;
        let first_key = log.first().map_err(db_error)?.map(|(key, _)| key.value());
        let last_key = log.last().map_err(db_error)?.map(|(key, _)| key.value());
        let last_index = match (first_key, last_key) {
            (Some(first), Some(last)) => {
                if first != compacted_index + 1 {
                    return Err(corrupt(
                        "log bounds",
                        format!("log starts at {first}, compaction point is {compacted_index}"),
                    ));
                }
                let count = log.len().map_err(db_error)?;
                if count != last - first + 1 {
                    return Err(corrupt(
                        "log bounds",
                        format!("{count} entries between {first} and {last}"),
                    ));
                }
                last
            }
            _ => compacted_index,
        };
        drop(log);
        drop(meta);
        drop(read);
        Ok(Self {
            database,
            hard_state,
            conf_state,
            snapshot_metadata,
            compacted_index,
            compacted_term,
            last_index,
            boot_epoch,
            snapshot_wanted: AtomicBool::new(false),
        })
    }

    /// True when nothing was ever stored: no log, no vote, no configuration, no snapshot.
    pub fn is_empty(&self) -> bool {
        self.last_index == 0
            && self.hard_state == HardState::default()
            && self.conf_state == ConfState::default()
            && self.snapshot_metadata.index == 0
    }

    /// The persisted hard state (term, vote, commit).
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The persisted configuration (voters and learners).
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Metadata of the stored snapshot (index 0 when there is none).
    pub fn snapshot_metadata(&self) -> &SnapshotMetadata {
        &self.snapshot_metadata
    }

    /// How many times a replica started from this storage (see [`Self::next_boot_epoch`]).
    pub fn boot_epoch(&self) -> u64 {
        self.boot_epoch
    }

    /// Whether raft asked for a newer snapshot than the stored one since the last call.
    pub fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.swap(false, Ordering::Relaxed)
    }

    /// Reads the stored snapshot, data included.
    pub fn read_snapshot(&self) -> Result<Snapshot, StorageError> {
        let read = self.database.begin_read().map_err(db_error)?;
        let meta = read.open_table(META_TABLE).map_err(db_error)?;
        let mut snapshot = Snapshot::default();
        snapshot.set_metadata(self.snapshot_metadata.clone());
        if let Some(data) = meta.get(KEY_SNAPSHOT_DATA).map_err(db_error)? {
            snapshot.data = data.value().to_vec().into();
        }
        Ok(snapshot)
    }

    fn first_log_index(&self) -> u64 {
        self.compacted_index + 1
    }

    fn unavailable(&self, index: u64) -> StorageError {
        StorageError::IndexUnavailable {
            index,
            first_index: self.first_log_index(),
            last_index: self.last_index,
        }
    }

    /// The term of the entry at `index`, including the last compacted one.
    pub fn term_of(&self, index: u64) -> Result<u64, StorageError> {
        if index == self.compacted_index {
            return Ok(self.compacted_term);
        }
        if index < self.compacted_index || index > self.last_index {
            return Err(self.unavailable(index));
        }
        let entries = self.read_entries(index..index + 1, None)?;
        entries
            .first()
            .map(|entry| entry.term)
            .ok_or_else(|| corrupt("log", format!("entry {index} missing")))
    }

    /// Reads entries `range` (which must lie inside the log), stopping once their encoded size
    /// passes `max_size_bytes`; the first entry is always returned.
    pub fn read_entries(
        &self,
        range: Range<u64>,
        max_size_bytes: Option<u64>,
    ) -> Result<Vec<Entry>, StorageError> {
        if range.start <= self.compacted_index {
            return Err(self.unavailable(range.start));
        }
        if range.end > self.last_index + 1 {
            return Err(self.unavailable(range.end - 1));
        }
        let read = self.database.begin_read().map_err(db_error)?;
        let log = read.open_table(LOG_TABLE).map_err(db_error)?;
        let mut entries = Vec::with_capacity((range.end - range.start) as usize);
        let mut size_bytes = 0u64;
        for (expected, item) in (range.start..).zip(log.range(range.clone()).map_err(db_error)?) {
            let (key, value) = item.map_err(db_error)?;
            let bytes = value.value();
            let entry: Entry = decode("log entry", bytes)?;
            if key.value() != expected || entry.index != expected {
                return Err(corrupt(
                    "log",
                    format!(
                        "expected entry {expected}, found key {} holding entry {}",
                        key.value(),
                        entry.index
                    ),
                ));
            }
            size_bytes += bytes.len() as u64;
            if let Some(max) = max_size_bytes {
                if !entries.is_empty() && size_bytes > max {
                    break;
                }
            }
            entries.push(entry);
        }
        if entries.is_empty() && !range.is_empty() {
            return Err(corrupt("log", format!("entries {range:?} missing")));
        }
        Ok(entries)
    }
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
