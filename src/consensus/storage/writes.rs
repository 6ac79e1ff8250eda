//! The durable writes of [`RedbStorage`]: each is one redb transaction committed with
//! immediate durability, and the in-memory cache moves only after the commit returned.

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};

use super::records::{begin_durable_write, db_error, encode_pair};
use super::{
    RedbStorage, StorageError, KEY_BOOT_EPOCH, KEY_COMPACTED, KEY_CONF_STATE, KEY_HARD_STATE,
    KEY_SNAPSHOT_DATA, KEY_SNAPSHOT_METADATA, LOG_TABLE, META_TABLE,
};

impl RedbStorage {
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
}

/// What [`RedbStorage::force_new_cluster`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForcedCluster {
    /// The Raft IDs of the members removed from the configuration.
    pub removed: Vec<u64>,
    /// The index of the last entry appended (the new commit index).
    pub commit_index: u64,
}

impl RedbStorage {
    /// `flotilla-node start --force-new-cluster`: makes `self_id` the only member. The whole
    /// log is kept and counted as committed (the cluster that could have decided otherwise is
    /// gone, and everything the survivor accepted is kept); after it come one `RemoveNode`
    /// conf change per other member, committed too, so a restart applies them in order after
    /// everything else and comes up as a one-member group that elects itself. Members that
    /// entries of the uncommitted tail add or remove are counted in.
    pub fn force_new_cluster(&mut self, self_id: u64) -> Result<ForcedCluster, StorageError> {
        use raft::prelude::{ConfChange, ConfChangeType, ConfChangeV2, EntryType};
        let mut members: std::collections::BTreeSet<u64> = self
            .conf_state
            .voters
            .iter()
            .chain(&self.conf_state.learners)
            .chain(&self.conf_state.voters_outgoing)
            .chain(&self.conf_state.learners_next)
            .copied()
            .collect();
        let tail_start = self.hard_state.commit.max(self.compacted_index) + 1;
        let tail = if tail_start <= self.last_index {
            self.read_entries(tail_start..self.last_index + 1, None)?
        } else {
            Vec::new()
        };
        let mut note = |change_type: ConfChangeType, node_id: u64| match change_type {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                members.insert(node_id);
            }
            ConfChangeType::RemoveNode => {
                members.remove(&node_id);
            }
        };
        for entry in &tail {
            let corrupt = |e: protobuf::ProtobufError| super::records::corrupt("log", e);
            match entry.get_entry_type() {
                EntryType::EntryNormal => {}
                EntryType::EntryConfChange => {
                    let change = ConfChange::parse_from_bytes(entry.get_data()).map_err(corrupt)?;
                    note(change.get_change_type(), change.node_id);
                }
                EntryType::EntryConfChangeV2 => {
                    let change =
                        ConfChangeV2::parse_from_bytes(entry.get_data()).map_err(corrupt)?;
                    for single in change.get_changes() {
                        note(single.get_change_type(), single.node_id);
                    }
                }
            }
        }
        let removed: Vec<u64> = members.into_iter().filter(|id| *id != self_id).collect();
        let last_term = if self.last_index > self.compacted_index {
            self.term_of(self.last_index)?
        } else {
            self.compacted_term
        };
        let term = self.hard_state.term.max(last_term);
        let mut entries = Vec::with_capacity(removed.len());
        for (offset, id) in removed.iter().enumerate() {
            let mut change = ConfChange::default();
            change.set_change_type(ConfChangeType::RemoveNode);
            change.node_id = *id;
            let mut entry = Entry::default();
            entry.set_entry_type(EntryType::EntryConfChange);
            entry.term = term;
            entry.index = self.last_index + 1 + offset as u64;
            entry.data = change.write_to_bytes()?.into();
            entries.push(entry);
        }
        let commit_index = self.last_index + entries.len() as u64;
        let mut hard_state = self.hard_state.clone();
        hard_state.term = term;
        hard_state.commit = commit_index;
        self.persist(&entries, Some(&hard_state))?;
        Ok(ForcedCluster {
            removed,
            commit_index,
        })
    }
}
