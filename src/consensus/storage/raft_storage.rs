//! [`RedbStorage`] as raft-rs sees it: the `raft::Storage` trait over the cached metadata and
//! the on-disk log.

use std::sync::atomic::Ordering;

use raft::prelude::{Entry, Snapshot};
use raft::{GetEntriesContext, RaftState};

use super::{RedbStorage, StorageError};

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
