//! A Wing–Gong style linearizability check of one register's history.
//!
//! Operations whose outcome is unknown (timed out, leadership lost, node crashed) may have
//! taken effect at any point after their invocation, or never; their result is unconstrained.

use std::collections::HashSet;

use crate::kv::{apply_to, KvCommand, KvOutput, Value};

#[derive(Clone, Debug)]
pub struct HistoryOp {
    pub command: KvCommand,
    pub invoke_step: u64,
    /// `None`: the outcome is unknown.
    pub complete: Option<(u64, KvOutput)>,
}

/// Largest number of operations on one key the checker accepts (bitset width).
pub const MAX_OPS_PER_KEY: usize = 128;

/// Checks one key's history; `Err` explains a non-linearizable history.
pub fn check_register(ops: &[HistoryOp]) -> Result<(), String> {
    assert!(
        ops.len() <= MAX_OPS_PER_KEY,
        "history too long for the checker"
    );
    let must_complete: u128 = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| op.complete.is_some())
        .fold(0, |mask, (position, _)| mask | (1 << position));
    let mut visited = HashSet::new();
    if search(ops, 0, None, must_complete, &mut visited) {
        Ok(())
    } else {
        Err(format!(
            "history of {} ops on one key is not linearizable: {ops:#?}",
            ops.len()
        ))
    }
}

fn search(
    ops: &[HistoryOp],
    done: u128,
    value: Option<Value>,
    must_complete: u128,
    visited: &mut HashSet<(u128, Option<Value>)>,
) -> bool {
    if done & must_complete == must_complete {
        return true;
    }
    if !visited.insert((done, value)) {
        return false;
    }
    // An op may come next only if no remaining completed op finished before it was invoked.
    let earliest_completion = ops
        .iter()
        .enumerate()
        .filter(|(position, _)| done & (1 << position) == 0)
        .filter_map(|(_, op)| op.complete.as_ref().map(|(step, _)| *step))
        .min()
        .unwrap_or(u64::MAX);
    for (position, op) in ops.iter().enumerate() {
        if done & (1 << position) != 0 || op.invoke_step > earliest_completion {
            continue;
        }
        let key = op.command.key();
        let mut values = std::collections::BTreeMap::new();
        if let Some(value) = value {
            values.insert(key, value);
        }
        let output = apply_to(&mut values, &op.command);
        if let Some((_, observed)) = &op.complete {
            if *observed != output {
                continue;
            }
        }
        let next_value = values.get(&key).copied();
        if search(
            ops,
            done | (1 << position),
            next_value,
            must_complete,
            visited,
        ) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(command: KvCommand, invoke_step: u64, complete: Option<(u64, KvOutput)>) -> HistoryOp {
        HistoryOp {
            command,
            invoke_step,
            complete,
        }
    }

    #[test]
    fn accepts_and_rejects() {
        let put = |value| KvCommand::Put { key: 0, value };
        let get = KvCommand::Get { key: 0 };
        // put 1 completes, then a read sees nothing: stale read.
        let stale = vec![
            op(put(1), 0, Some((2, KvOutput::Done))),
            op(get.clone(), 3, Some((4, KvOutput::Value(None)))),
        ];
        assert!(check_register(&stale).is_err());
        // Same with the put unknown: it may not have happened.
        let unknown = vec![
            op(put(1), 0, None),
            op(get.clone(), 3, Some((4, KvOutput::Value(None)))),
            op(get.clone(), 5, Some((6, KvOutput::Value(Some(1))))),
        ];
        assert!(check_register(&unknown).is_ok());
        // Concurrent put and read may see either value.
        let concurrent = vec![
            op(put(1), 0, Some((5, KvOutput::Done))),
            op(get, 1, Some((2, KvOutput::Value(Some(1))))),
        ];
        assert!(check_register(&concurrent).is_ok());
    }
}
