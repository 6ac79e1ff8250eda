//! Fault injection for tests: drop, delay or cut traffic between this node and named peers,
//! without root and without touching the network. Rules are keyed by the peer's node ID and
//! apply in both directions at this node (outgoing before sending, incoming before handling).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// What happens to traffic with one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultRule {
    /// Nothing gets through, either way.
    Partition,
    /// Each message is dropped with this probability.
    Drop {
        /// Percent chance (0 to 100) of dropping one message.
        percent: u8,
    },
    /// Each message is held back this long before it is handled or sent.
    Delay {
        /// The added latency in milliseconds.
        delay_ms: u64,
    },
}

/// The decision for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through now.
    Deliver,
    /// Let it through after a delay.
    DelayBy(Duration),
    /// Drop it.
    Drop,
}

/// The rules in force at one node; cheap to consult when empty.
#[derive(Debug)]
pub struct FaultInjector {
    rules: Mutex<HashMap<String, FaultRule>>,
    rng: Mutex<StdRng>,
}

impl Default for FaultInjector {
    fn default() -> Self {
        Self::with_seed(0)
    }
}

impl FaultInjector {
    /// An injector with no rules whose random drops follow `seed`.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            rules: Mutex::new(HashMap::new()),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
        }
    }

    /// Sets (or with `None` clears) the rule for traffic with `peer_node_id`.
    pub fn set(&self, peer_node_id: &str, rule: Option<FaultRule>) {
        if let Ok(mut rules) = self.rules.lock() {
            match rule {
                Some(rule) => rules.insert(peer_node_id.to_string(), rule),
                None => rules.remove(peer_node_id),
            };
        }
    }

    /// Removes every rule.
    pub fn clear(&self) {
        if let Ok(mut rules) = self.rules.lock() {
            rules.clear();
        }
    }

    /// The decision for one message to or from `peer_node_id` (`None`: peer not yet known).
    pub fn verdict(&self, peer_node_id: Option<&str>) -> Verdict {
        let Some(peer) = peer_node_id else {
            return Verdict::Deliver;
        };
        let rule = match self.rules.lock() {
            Ok(rules) if rules.is_empty() => return Verdict::Deliver,
            Ok(rules) => rules.get(peer).copied(),
            Err(_) => None,
        };
        match rule {
            None => Verdict::Deliver,
            Some(FaultRule::Partition) => Verdict::Drop,
            Some(FaultRule::Delay { delay_ms }) => {
                Verdict::DelayBy(Duration::from_millis(delay_ms))
            }
            Some(FaultRule::Drop { percent }) => {
                let roll: u8 = match self.rng.lock() {
                    Ok(mut rng) => rng.random_range(0..100),
                    Err(_) => 100,
                };
                if roll < percent {
                    Verdict::Drop
                } else {
                    Verdict::Deliver
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_apply_to_the_named_peer_only() {
        let faults = FaultInjector::with_seed(1);
        faults.set("a", Some(FaultRule::Partition));
        faults.set("b", Some(FaultRule::Delay { delay_ms: 5 }));
        assert_eq!(faults.verdict(Some("a")), Verdict::Drop);
        assert_eq!(
            faults.verdict(Some("b")),
            Verdict::DelayBy(Duration::from_millis(5))
        );
        assert_eq!(faults.verdict(Some("c")), Verdict::Deliver);
        assert_eq!(faults.verdict(None), Verdict::Deliver);
        faults.set("a", None);
        assert_eq!(faults.verdict(Some("a")), Verdict::Deliver);
    }

    #[test]
    fn drop_probability_is_roughly_honoured_and_seeded() {
        let count = |seed| {
            let faults = FaultInjector::with_seed(seed);
            faults.set("a", Some(FaultRule::Drop { percent: 25 }));
            (0..4000)
                .filter(|_| faults.verdict(Some("a")) == Verdict::Drop)
                .count()
        };
        let dropped = count(9);
        assert_eq!(dropped, count(9), "same seed, same drops");
        assert!((800..1200).contains(&dropped), "dropped {dropped} of 4000");
    }
}
