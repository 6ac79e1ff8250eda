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

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, StorageBackend,
    TableDefinition, WriteTransaction,
};

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
    /// A protobuf record could not be encoded (should not happen for well-formed values).
    #[error("cannot encode raft record: {0}")]
    Encode(#[from] protobuf::ProtobufError),
}

/// Converts every redb error type into [`StorageError::Database`].
fn db_error(error: impl Into<redb::Error>) -> StorageError {
    StorageError::Database(error.into())
}

fn corrupt(what: &'static str, detail: impl ToString) -> StorageError {
    StorageError::Corrupt {
        what,
        detail: detail.to_string(),
    }
}

fn decode<M: protobuf::Message>(what: &'static str, bytes: &[u8]) -> Result<M, StorageError> {
    M::parse_from_bytes(bytes).map_err(|error| corrupt(what, error))
}

fn decode_pair(what: &'static str, bytes: &[u8]) -> Result<(u64, u64), StorageError> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| corrupt(what, format!("expected 16 bytes, found {}", bytes.len())))?;
    let (first, second) = array.split_at(8);
    let first = u64::from_le_bytes(first.try_into().map_err(|_| corrupt(what, "split"))?);
    let second = u64::from_le_bytes(second.try_into().map_err(|_| corrupt(what, "split"))?);
    Ok((first, second))
}

fn encode_pair(first: u64, second: u64) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&first.to_le_bytes());
    bytes[8..].copy_from_slice(&second.to_le_bytes());
    bytes
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
        transaction.open_table(META_TABLE).map_err(db_error)?;
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

    /// Increments and durably stores the boot epoch, returning the new value. Proposal contexts
    /// carry it so results of a previous incarnation's proposals are never confused with ours.
    pub fn next_boot_epoch(&mut self) -> Result<u64, StorageError> {
        let epoch = self.boot_epoch + 1;
        let transaction = begin_durable_write(&self.database)?;
        {
            let mut meta = transaction.open_table(META_TABLE).map_err(db_error)?;
            meta.insert(KEY_BOOT_EPOCH, epoch.to_le_bytes().as_slice())
                .map_err(db_error)?;
        }
        transaction.commit().map_err(db_error)?;
        self.boot_epoch = epoch;
        Ok(epoch)
    }

    /// Appends entries, first removing any existing suffix they conflict with (Raft's log
    /// matching: a new entry at index `i` replaces the old `i..`).
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.persist(entries, None)
    }

    /// Stores the hard state.
    pub fn set_hard_state(&mut self, hard_state: &HardState) -> Result<(), StorageError> {
        self.persist(&[], Some(hard_state))
    }

    /// Appends entries and stores the hard state in one durable transaction (one fsync).
    pub fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<(), StorageError> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let new_last_index = match entries.first() {
            Some(first) => {
                if first.index <= self.compacted_index || first.index > self.last_index + 1 {
                    return Err(StorageError::NonContiguousAppend {
                        first: first.index,
                        first_index: self.compacted_index + 1,
                        last_index: self.last_index,
                    });
                }
                for (offset, entry) in entries.iter().enumerate() {
                    assert_eq!(
                        entry.index,
                        first.index + offset as u64,
                        "invariant: raft hands over entries with consecutive indexes"
                    );
                }
                first.index + entries.len() as u64 - 1
            }
            None => self.last_index,
        };
        let transaction = begin_durable_write(&self.database)?;
        {
            let mut log = transaction.open_table(LOG_TABLE).map_err(db_error)?;
            if let Some(first) = entries.first() {
                if first.index <= self.last_index {
                    log.retain_in(first.index.., |_, _| false)
                        .map_err(db_error)?;
                }
                for entry in entries {
                    let bytes = entry.write_to_bytes()?;
                    log.insert(entry.index, bytes.as_slice())
                        .map_err(db_error)?;
                }
            }
            if let Some(hard_state) = hard_state {
                let mut meta = transaction.open_table(META_TABLE).map_err(db_error)?;
                let bytes = hard_state.write_to_bytes()?;
                meta.insert(KEY_HARD_STATE, bytes.as_slice())
                    .map_err(db_error)?;
            }
        }
        transaction.commit().map_err(db_error)?;
        self.last_index = new_last_index;
        if let Some(hard_state) = hard_state {
            self.hard_state = hard_state.clone();
        }
        Ok(())
    }

    /// Stores the configuration that applying a conf change produced.
    pub fn set_conf_state(&mut self, conf_state: &ConfState) -> Result<(), StorageError> {
        let transaction = begin_durable_write(&self.database)?;
        {
            let mut meta = transaction.open_table(META_TABLE).map_err(db_error)?;
            let bytes = conf_state.write_to_bytes()?;
            meta.insert(KEY_CONF_STATE, bytes.as_slice())
                .map_err(db_error)?;
        }
        transaction.commit().map_err(db_error)?;
        self.conf_state = conf_state.clone();
        Ok(())
    }

    /// Installs a snapshot received from the leader: it replaces the whole log, the
    /// configuration becomes the snapshot's, and the hard state's commit and term move up to it.
    pub fn apply_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let metadata = snapshot.get_metadata();
        if metadata.index < self.snapshot_metadata.index {
            return Err(StorageError::SnapshotOutOfDate {
                index: metadata.index,
                stored: self.snapshot_metadata.index,
            });
        }
        let mut hard_state = self.hard_state.clone();
        hard_state.term = hard_state.term.max(metadata.term);
        hard_state.commit = hard_state.commit.max(metadata.index);
        let conf_state = metadata.get_conf_state().clone();
        let transaction = begin_durable_write(&self.database)?;
        {
            let mut log = transaction.open_table(LOG_TABLE).map_err(db_error)?;
            log.retain_in(0.., |_, _| false).map_err(db_error)?;
            let mut meta = transaction.open_table(META_TABLE).map_err(db_error)?;
            Self::write_snapshot(&mut meta, metadata, &snapshot.data)?;
            meta.insert(
                KEY_COMPACTED,
                encode_pair(metadata.index, metadata.term).as_slice(),
            )
            .map_err(db_error)?;
            meta.insert(KEY_CONF_STATE, conf_state.write_to_bytes()?.as_slice())
                .map_err(db_error)?;
            meta.insert(KEY_HARD_STATE, hard_state.write_to_bytes()?.as_slice())
                .map_err(db_error)?;
        }
        transaction.commit().map_err(db_error)?;
        self.snapshot_metadata = metadata.clone();
        self.compacted_index = metadata.index;
        self.compacted_term = metadata.term;
        self.last_index = metadata.index;
        self.conf_state = conf_state;
        self.hard_state = hard_state;
        Ok(())
    }

    /// Stores a snapshot this replica made of its state machine at applied index `index`
    /// (which must still be in the log), with the configuration in force at that index.
    /// Does not compact; call [`Self::compact`] afterwards.
    pub fn store_snapshot(
        &mut self,
        index: u64,
        conf_state: &ConfState,
        data: Vec<u8>,
    ) -> Result<(), StorageError> {
        if index < self.snapshot_metadata.index {
            return Err(StorageError::SnapshotOutOfDate {
                index,
                stored: self.snapshot_metadata.index,
            });
        }
        let term = self.term_of(index)?;
        let mut metadata = SnapshotMetadata::default();
        metadata.set_index(index);
        metadata.set_term(term);
        metadata.set_conf_state(conf_state.clone());
        let transaction = begin_durable_write(&self.database)?;
        {
            let mut meta = transaction.open_table(META_TABLE).map_err(db_error)?;
            Self::write_snapshot(&mut meta, &metadata, &data)?;
        }
        transaction.commit().map_err(db_error)?;
        self.snapshot_metadata = metadata;
        Ok(())
    }

    /// Removes log entries up to and including `upto`, which the stored snapshot must cover.
    pub fn compact(&mut self, upto: u64) -> Result<(), StorageError> {
        if upto <= self.compacted_index {
            return Ok(());
        }
        if upto > self.snapshot_metadata.index {
            return Err(StorageError::CompactBeyondSnapshot {
                upto,
                snapshot_index: self.snapshot_metadata.index,
            });
        }
        let term = self.term_of(upto)?;
        let transaction = begin_durable_write(&self.database)?;
        {
            let mut log = transaction.open_table(LOG_TABLE).map_err(db_error)?;
            log.retain_in(..=upto, |_, _| false).map_err(db_error)?;
            let mut meta = transaction.open_table(META_TABLE).map_err(db_error)?;
            meta.insert(KEY_COMPACTED, encode_pair(upto, term).as_slice())
                .map_err(db_error)?;
        }
        transaction.commit().map_err(db_error)?;
        self.compacted_index = upto;
        self.compacted_term = term;
        self.last_index = self.last_index.max(upto);
        Ok(())
    }

    fn write_snapshot(
        meta: &mut redb::Table<&str, &[u8]>,
        metadata: &SnapshotMetadata,
        data: &[u8],
    ) -> Result<(), StorageError> {
        meta.insert(KEY_SNAPSHOT_METADATA, metadata.write_to_bytes()?.as_slice())
            .map_err(db_error)?;
        meta.insert(KEY_SNAPSHOT_DATA, data).map_err(db_error)?;
        Ok(())
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

fn begin_durable_write(database: &Database) -> Result<WriteTransaction, StorageError> {
    let mut transaction = database.begin_write().map_err(db_error)?;
    transaction
        .set_durability(Durability::Immediate)
        .map_err(db_error)?;
    Ok(transaction)
}

fn to_raft_error(error: StorageError) -> raft::Error {
    raft::Error::Store(raft::StorageError::Other(Box::new(error)))
}

impl raft::Storage for RedbStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.compacted_index {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.last_index + 1 {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        let max_size = max_size.into().filter(|&max| max != raft::NO_LIMIT);
        self.read_entries(low..high, max_size)
            .map_err(to_raft_error)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index < self.compacted_index {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if index > self.last_index {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        self.term_of(index).map_err(to_raft_error)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_log_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // Snapshots are made as the state machine applies. When the stored one is too old, or
        // predates the configuration that added the recipient (which would refuse it), ask the
        // replica for a fresh one; raft retries on the follower's next heartbeat response.
        let members = self.snapshot_metadata.get_conf_state();
        let includes_recipient = members.voters.contains(&to) || members.learners.contains(&to);
        if self.snapshot_metadata.index < request_index || !includes_recipient {
            self.snapshot_wanted.store(true, Ordering::Relaxed);
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        self.read_snapshot().map_err(to_raft_error)
    }
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
