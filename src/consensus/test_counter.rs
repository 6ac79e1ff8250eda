//! The state machine the consensus unit tests replicate: it sums the numbers it applies.

use super::StateMachine;

/// Sums the numbers it applies.
#[derive(Default)]
pub(crate) struct Counter {
    pub(crate) total: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("bad counter snapshot")]
pub(crate) struct BadCounter;

impl StateMachine for Counter {
    type Command = u64;
    type Output = u64;
    type RestoreError = BadCounter;

    fn apply(&mut self, _index: u64, command: u64) -> u64 {
        self.total += command;
        self.total
    }

    fn snapshot(&self) -> Vec<u8> {
        self.total.to_le_bytes().to_vec()
    }

    fn restore(&mut self, _index: u64, data: &[u8]) -> Result<(), BadCounter> {
        self.total = u64::from_le_bytes(data.try_into().map_err(|_| BadCounter)?);
        Ok(())
    }
}

/// A new group of `disks.len()` members (IDs 1, 2, ...), each bootstrapped on its own disk with
/// every member as a voter; nobody leads yet.
pub(crate) fn bootstrapped_group(
    disks: &[crate::consensus::SimDisk],
) -> Vec<crate::consensus::RaftMember<Counter>> {
    let voters: Vec<u64> = (1..=disks.len() as u64).collect();
    disks
        .iter()
        .zip(1u64..)
        .map(|(disk, id)| {
            let storage =
                crate::consensus::RedbStorage::open_with_backend(disk.backend()).expect("open");
            crate::consensus::RaftMember::bootstrap(
                crate::consensus::MemberConfig::new(id),
                storage,
                Counter::default(),
                &voters,
            )
            .expect("bootstrap")
        })
        .collect()
}
