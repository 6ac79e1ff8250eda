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
