//! Unit tests of [`RedbStorage`](super::RedbStorage).

// rust-protobuf structs have private bookkeeping fields, so struct literals are not an option.
#![allow(clippy::field_reassign_with_default)]

use super::*;
use crate::consensus::SimDisk;
use raft::GetEntriesContext;
use raft::Storage as _;

fn entry(index: u64, term: u64) -> Entry {
    let mut entry = Entry::default();
    entry.index = index;
    entry.term = term;
    entry.data = format!("entry {index} of term {term}").into_bytes().into();
    entry
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|index| entry(index, term)).collect()
}

fn all_entries(storage: &RedbStorage) -> Vec<Entry> {
    let first = storage.first_index().expect("first index");
    let last = storage.last_index().expect("last index");
    storage
        .entries(first, last + 1, None, GetEntriesContext::empty(false))
        .expect("entries")
}

fn reopen(disk: &SimDisk, storage: RedbStorage) -> RedbStorage {
    drop(storage);
    RedbStorage::open_with_backend(disk.backend()).expect("reopen")
}

#[test]
fn round_trip_survives_reopen() {
    let disk = SimDisk::new();
    let mut storage = RedbStorage::open_with_backend(disk.backend()).expect("open");
    assert!(storage.is_empty());
    let mut hard_state = HardState::default();
    hard_state.term = 3;
    hard_state.vote = 2;
    hard_state.commit = 4;
    storage
        .persist(&entries(1..=5, 3), Some(&hard_state))
        .expect("persist");
    let mut conf_state = ConfState::default();
    conf_state.voters = vec![1, 2, 3];
    storage.set_conf_state(&conf_state).expect("conf state");

    let storage = reopen(&disk, storage);
    assert!(!storage.is_empty());
    assert_eq!(storage.hard_state(), &hard_state);
    assert_eq!(storage.conf_state(), &conf_state);
    let state = storage.initial_state().expect("initial state");
    assert_eq!(state.hard_state, hard_state);
    assert_eq!(all_entries(&storage), entries(1..=5, 3));
    assert_eq!(storage.term(4).expect("term"), 3);
    assert_eq!(
        storage.term(6),
        Err(raft::Error::Store(raft::StorageError::Unavailable))
    );
}

#[test]
fn append_truncates_the_conflicting_suffix() {
    let disk = SimDisk::new();
    let mut storage = RedbStorage::open_with_backend(disk.backend()).expect("open");
    storage.append(&entries(1..=5, 1)).expect("append");
    storage.append(&entries(3..=4, 2)).expect("append");
    let mut expected = entries(1..=2, 1);
    expected.extend(entries(3..=4, 2));
    assert_eq!(all_entries(&storage), expected);
    let storage = reopen(&disk, storage);
    assert_eq!(storage.last_index().expect("last"), 4);
    assert_eq!(all_entries(&storage), expected);
}

#[test]
fn append_refuses_gaps() {
    let disk = SimDisk::new();
    let mut storage = RedbStorage::open_with_backend(disk.backend()).expect("open");
    storage.append(&entries(1..=2, 1)).expect("append");
    assert!(matches!(
        storage.append(&entries(4..=5, 1)),
        Err(StorageError::NonContiguousAppend { first: 4, .. })
    ));
}

#[test]
fn entries_respect_max_size_but_return_at_least_one() {
    let disk = SimDisk::new();
    let mut storage = RedbStorage::open_with_backend(disk.backend()).expect("open");
    storage.append(&entries(1..=10, 1)).expect("append");
    let context = || GetEntriesContext::empty(false);
    let one = storage.entries(1, 11, 0, context()).expect("entries");
    assert_eq!(one.len(), 1);
    let size = u64::from(protobuf::Message::compute_size(&entry(1, 1)));
    let three = storage
        .entries(1, 11, size * 3, context())
        .expect("entries");
    assert_eq!(three.len(), 3);
}

#[test]
fn snapshot_then_compaction_drops_the_covered_log() {
    let disk = SimDisk::new();
    let mut storage = RedbStorage::open_with_backend(disk.backend()).expect("open");
    storage.append(&entries(1..=3, 1)).expect("append");
    storage.append(&entries(4..=6, 2)).expect("append");
    let mut conf_state = ConfState::default();
    conf_state.voters = vec![1];
    assert!(matches!(
        storage.compact(4),
        Err(StorageError::CompactBeyondSnapshot { .. })
    ));
    storage
        .store_snapshot(4, &conf_state, b"state at 4".to_vec())
        .expect("snapshot");
    storage.compact(4).expect("compact");

    let storage = reopen(&disk, storage);
    assert_eq!(storage.first_index().expect("first"), 5);
    assert_eq!(storage.last_index().expect("last"), 6);
    assert_eq!(storage.term(4).expect("term of compaction point"), 2);
    assert_eq!(
        storage.term(3),
        Err(raft::Error::Store(raft::StorageError::Compacted))
    );
    assert_eq!(
        storage
            .entries(3, 6, None, GetEntriesContext::empty(false))
            .map(|_| ()),
        Err(raft::Error::Store(raft::StorageError::Compacted))
    );
    // A recipient the snapshot's configuration does not know would refuse it: ask for a
    // fresh one instead.
    assert_eq!(
        storage.snapshot(0, 2).map(|_| ()),
        Err(raft::Error::Store(
            raft::StorageError::SnapshotTemporarilyUnavailable
        ))
    );
    assert!(storage.take_snapshot_wanted());
    assert!(!storage.take_snapshot_wanted());
    let snapshot = storage.snapshot(0, 1).expect("snapshot");
    assert_eq!(snapshot.get_metadata().index, 4);
    assert_eq!(snapshot.get_metadata().term, 2);
    assert_eq!(snapshot.get_metadata().get_conf_state(), &conf_state);
    assert_eq!(&snapshot.data[..], b"state at 4");
    assert_eq!(all_entries(&storage), entries(5..=6, 2));
}

#[test]
fn applying_a_snapshot_replaces_the_log() {
    let disk = SimDisk::new();
    let mut storage = RedbStorage::open_with_backend(disk.backend()).expect("open");
    storage.append(&entries(1..=3, 1)).expect("append");
    let mut snapshot = Snapshot::default();
    snapshot.data = b"leader state".to_vec().into();
    snapshot.mut_metadata().index = 10;
    snapshot.mut_metadata().term = 4;
    snapshot.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
    storage.apply_snapshot(&snapshot).expect("apply snapshot");

    let mut storage = reopen(&disk, storage);
    assert_eq!(storage.first_index().expect("first"), 11);
    assert_eq!(storage.last_index().expect("last"), 10);
    assert_eq!(storage.hard_state().commit, 10);
    assert_eq!(storage.hard_state().term, 4);
    assert_eq!(storage.conf_state().voters, vec![1, 2, 3]);
    assert_eq!(storage.read_snapshot().expect("read").data, snapshot.data);
    storage.append(&entries(11..=12, 4)).expect("append after");
    assert_eq!(all_entries(&storage), entries(11..=12, 4));
    snapshot.mut_metadata().index = 5;
    assert!(matches!(
        storage.apply_snapshot(&snapshot),
        Err(StorageError::SnapshotOutOfDate { .. })
    ));
}

#[test]
fn every_write_is_synced_and_survives_a_crash() {
    let disk = SimDisk::new();
    let mut storage = RedbStorage::open_with_backend(disk.backend()).expect("open");
    let syncs_before = disk.sync_count();
    storage.append(&entries(1..=3, 1)).expect("append");
    assert!(disk.sync_count() > syncs_before, "append must sync");
    disk.crash();
    drop(storage);
    let storage = RedbStorage::open_with_backend(disk.backend()).expect("reopen");
    assert_eq!(all_entries(&storage), entries(1..=3, 1));
}

#[test]
fn boot_epoch_increases_across_reopens() {
    let disk = SimDisk::new();
    let mut storage = RedbStorage::open_with_backend(disk.backend()).expect("open");
    assert_eq!(storage.next_boot_epoch().expect("epoch"), 1);
    let mut storage = reopen(&disk, storage);
    assert_eq!(storage.boot_epoch(), 1);
    assert_eq!(storage.next_boot_epoch().expect("epoch"), 2);
}

#[test]
fn real_file_reopens_and_corrupt_entries_are_errors() {
    let directory = tempfile::tempdir().expect("tempdir");
    let path = directory.path().join("raft.redb");
    let mut storage = RedbStorage::open(&path).expect("open");
    storage.append(&entries(1..=3, 1)).expect("append");
    drop(storage);

    let storage = RedbStorage::open(&path).expect("reopen");
    assert_eq!(all_entries(&storage), entries(1..=3, 1));
    drop(storage);

    let database = Database::create(&path).expect("raw open");
    let transaction = database.begin_write().expect("write");
    {
        let mut log = transaction.open_table(LOG_TABLE).expect("table");
        log.insert(2, [0xff_u8, 0xff, 0xff].as_slice())
            .expect("insert garbage");
        let mut meta = transaction.open_table(META_TABLE).expect("table");
        meta.insert(KEY_CONF_STATE, [0xff_u8; 3].as_slice())
            .expect("insert garbage");
    }
    transaction.commit().expect("commit");
    drop(database);
    assert!(matches!(
        RedbStorage::open(&path),
        Err(StorageError::Corrupt { .. })
    ));

    let database = Database::create(&path).expect("raw open");
    let transaction = database.begin_write().expect("write");
    {
        let mut meta = transaction.open_table(META_TABLE).expect("table");
        meta.remove(KEY_CONF_STATE).expect("remove");
    }
    transaction.commit().expect("commit");
    drop(database);
    let storage = RedbStorage::open(&path).expect("reopen");
    let error = storage
        .entries(1, 4, None, GetEntriesContext::empty(false))
        .expect_err("corrupt entry");
    assert!(error.to_string().contains("corrupt"), "{error}");
}

#[test]
fn a_database_of_a_newer_format_is_refused_and_one_of_the_first_release_is_upgraded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("raft.redb");
    {
        let storage = RedbStorage::open(&path).expect("new database");
        let read = storage.database.begin_read().expect("read");
        let meta = read.open_table(META_TABLE).expect("meta");
        let version = meta
            .get(KEY_FORMAT_VERSION)
            .expect("get")
            .map(|v| v.value().to_vec());
        assert_eq!(version, Some(vec![format::RAFT_DATABASE.current]));
    }
    let set_version = |version: Option<u8>| {
        let database = redb::Database::create(&path).expect("reopen");
        let transaction = database.begin_write().expect("write");
        {
            let mut meta = transaction.open_table(META_TABLE).expect("meta");
            match version {
                Some(version) => {
                    meta.insert(KEY_FORMAT_VERSION, [version].as_slice())
                        .expect("insert");
                }
                None => {
                    meta.remove(KEY_FORMAT_VERSION).expect("remove");
                }
            }
        }
        transaction.commit().expect("commit");
    };
    // The first release wrote no version: read as version 1 and marked with this one.
    set_version(None);
    assert!(RedbStorage::open(&path).is_ok());
    set_version(Some(format::RAFT_DATABASE.current + 1));
    let error = RedbStorage::open(&path).expect_err("newer format");
    assert!(
        error
            .to_string()
            .contains("Raft database has format version 3"),
        "{error}"
    );
}
