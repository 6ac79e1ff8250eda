//! A linearizability checker for one register (Wing & Gong's search, with the memo of
//! Lowe's refinement, as porcupine does it): given the history a test recorded, is there an
//! order of the operations, each taking effect at one instant between its call and its
//! return, in which every read returns the latest write?
//!
//! An operation whose outcome is unknown (the client timed out) may have taken effect at any
//! time after its call, or never: an unknown write is optional and has no return time; an
//! unknown read says nothing and is left out.

use std::collections::HashSet;

/// What a client did to the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Wrote this value (values are unique per history).
    Write(u64),
    /// Read this value (`None`: never written).
    Read(Option<u64>),
}

/// One operation as a client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// The operation.
    pub op: Op,
    /// When it was called (any monotonic unit).
    pub called: u64,
    /// When it returned with a known outcome; `None` if the outcome is unknown.
    pub returned: Option<u64>,
}

/// Whether `history` is linearizable; on failure, a description of the smallest prefix (by
/// call time) that is not.
pub fn check(history: &[Call]) -> Result<(), String> {
    let calls: Vec<Call> = history
        .iter()
        .copied()
        .filter(|call| !(matches!(call.op, Op::Read(_)) && call.returned.is_none()))
        .collect();
    let mut search = Search {
        calls: &calls,
        failed: HashSet::new(),
    };
    let done = vec![0u64; calls.len().div_ceil(64)];
    if search.linearize(done, None) {
        Ok(())
    } else {
        Err(format!("history is not linearizable: {calls:#?}"))
    }
}

struct Search<'a> {
    calls: &'a [Call],
    /// (operations linearized, as a bit set; register value) from which no order succeeds.
    failed: HashSet<(Vec<u64>, Option<u64>)>,
}

impl Search<'_> {
    fn linearize(&mut self, done: Vec<u64>, value: Option<u64>) -> bool {
        let pending = |index: usize| done[index / 64] & (1u64 << (index % 64)) == 0;
        // Finished once every operation with a known outcome is in the order.
        let required_left = (0..self.calls.len())
            .any(|index| pending(index) && self.calls[index].returned.is_some());
        if !required_left {
            return true;
        }
        if self.failed.contains(&(done.clone(), value)) {
            return false;
        }
        // Only an operation called before every pending one returned can come next.
        let horizon = (0..self.calls.len())
            .filter(|index| pending(*index))
            .filter_map(|index| self.calls[index].returned)
            .min()
            .unwrap_or(u64::MAX);
        for index in 0..self.calls.len() {
            let call = self.calls[index];
            if !pending(index) || call.called > horizon {
                continue;
            }
            let next = match call.op {
                Op::Write(written) => Some(written),
                Op::Read(read) if read == value => value,
                Op::Read(_) => continue,
            };
            let mut with = done.clone();
            with[index / 64] |= 1u64 << (index % 64);
            if self.linearize(with, next) {
                return true;
            }
        }
        self.failed.insert((done, value));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(op: Op, called: u64, returned: u64) -> Call {
        Call {
            op,
            called,
            returned: Some(returned),
        }
    }

    #[test]
    fn sequential_and_overlapping_histories_that_are_linearizable_pass() {
        let history = [
            call(Op::Read(None), 0, 1),
            call(Op::Write(1), 2, 3),
            call(Op::Read(Some(1)), 4, 5),
            // Overlapping write and reads: either order is possible.
            call(Op::Write(2), 6, 10),
            call(Op::Read(Some(1)), 7, 8),
            call(Op::Read(Some(2)), 9, 11),
        ];
        assert_eq!(check(&history), Ok(()));
    }

    #[test]
    fn a_stale_read_after_a_completed_write_fails() {
        let history = [
            call(Op::Write(1), 0, 1),
            call(Op::Write(2), 2, 3),
            call(Op::Read(Some(1)), 4, 5),
        ];
        assert!(check(&history).is_err());
        // Reads that go back in time fail too, even while a write overlaps them.
        let history = [
            call(Op::Write(1), 0, 1),
            call(Op::Write(2), 2, 20),
            call(Op::Read(Some(2)), 3, 4),
            call(Op::Read(Some(1)), 5, 6),
        ];
        assert!(check(&history).is_err());
    }

    #[test]
    fn a_write_with_an_unknown_outcome_may_or_may_not_have_happened() {
        let lost = Call {
            op: Op::Write(7),
            called: 2,
            returned: None,
        };
        let seen = [
            call(Op::Write(1), 0, 1),
            lost,
            call(Op::Read(Some(7)), 30, 31),
        ];
        assert_eq!(check(&seen), Ok(()));
        let never = [
            call(Op::Write(1), 0, 1),
            lost,
            call(Op::Read(Some(1)), 30, 31),
        ];
        assert_eq!(check(&never), Ok(()));
        // But it cannot take effect before it was called.
        let early = [
            call(Op::Write(1), 0, 1),
            call(Op::Read(Some(7)), 2, 3),
            Call {
                op: Op::Write(7),
                called: 5,
                returned: None,
            },
        ];
        assert!(check(&early).is_err());
        // A value nobody wrote is never read.
        assert!(check(&[call(Op::Read(Some(9)), 0, 1)]).is_err());
    }
}
