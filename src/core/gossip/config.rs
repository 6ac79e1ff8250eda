//! Gossip timings and sizes.

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

/// How the gossip of one node behaves. [`GossipConfig::for_cluster`] derives foca's SWIM
/// parameters from the cluster size; the state machine re-derives them as members come and go.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// How often a random member is probed.
    pub probe_period: Duration,
    /// How long a probe waits for its ack before asking others to probe indirectly.
    pub probe_rtt: Duration,
    /// How often this node gossips to `gossip_fanout` random members.
    pub gossip_period: Duration,
    /// Members each gossip round goes to.
    pub gossip_fanout: usize,
    /// Suspicion lasts this long times `max(1, log10(cluster size))` before a member is down.
    pub suspicion_per_decade: Duration,
    /// How long a down member stays in the view (then it is forgotten).
    pub remember_down_for: Duration,
    /// The largest packet foca builds, in bytes.
    pub max_packet_bytes: usize,
    /// Wait before fetching the table again after a failed attempt.
    pub fetch_retry: Duration,
    /// How often to re-announce to a random member (heals partitions).
    pub announce_period: Duration,
}

impl Default for GossipConfig {
    fn default() -> Self {
        Self {
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(500),
            gossip_period: Duration::from_millis(200),
            gossip_fanout: 3,
            suspicion_per_decade: Duration::from_secs(4),
            remember_down_for: Duration::from_secs(3600),
            // Packets travel on QUIC streams, not datagrams, so the MTU does not bound them;
            // an announce's feed of random members then holds ~230 instead of ~40, and 200
            // simulated nodes all know each other after 2.5 s instead of 41 s (~1 KB/s a node).
            max_packet_bytes: 8 * 1024,
            fetch_retry: Duration::from_millis(250),
            // Each periodic announce is answered with a feed of random members, which is how a
            // node learns the members whose join updates it missed: at 30 s, 200 simulated
            // nodes took ~180 s to see everyone, at 5 s ~60 s (`examples/bench_gossip.rs`).
            announce_period: Duration::from_secs(5),
        }
    }
}

const MIN_TRANSMISSIONS: std::num::NonZeroU8 = match std::num::NonZeroU8::new(4) {
    Some(value) => value,
    None => std::num::NonZeroU8::MIN,
};

fn non_zero(value: usize) -> NonZeroUsize {
    NonZeroUsize::new(value.max(1)).unwrap_or(NonZeroUsize::MIN)
}

impl GossipConfig {
    /// foca's configuration for a cluster of `cluster_size` members (itself included).
    pub fn foca_config(&self, cluster_size: usize) -> foca::Config {
        let size = NonZeroU32::new(u32::try_from(cluster_size.max(1)).unwrap_or(u32::MAX))
            .unwrap_or(NonZeroU32::MIN);
        // foca's LAN preset gives the transmissions per update for the size (4 x log10).
        let mut config = foca::Config::new_lan(size);
        let decades = f64::max(1.0, f64::from(size.get()).log10());
        config.probe_period = self.probe_period;
        config.probe_rtt = self.probe_rtt;
        config.suspect_to_down_after = self.suspicion_per_decade.mul_f64(decades);
        config.remove_down_after = Some(self.remember_down_for);
        config.max_packet_size = non_zero(self.max_packet_bytes);
        // At least 4 transmissions per update: foca's formula gives 2 for 3 nodes, where one
        // lost packet would cost an update its reach.
        config.max_transmissions = config.max_transmissions.max(MIN_TRANSMISSIONS);
        config.notify_down_members = true;
        config.periodic_gossip = Some(foca::PeriodicParams {
            frequency: self.gossip_period,
            num_members: non_zero(self.gossip_fanout),
        });
        config.periodic_announce = Some(foca::PeriodicParams {
            frequency: self.announce_period,
            num_members: NonZeroUsize::MIN,
        });
        config.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: self.announce_period.saturating_mul(2),
            num_members: NonZeroUsize::MIN,
        });
        config
    }

    /// Timings scaled down by `factor` (tests on real nodes: a death is noticed sooner).
    pub fn faster(mut self, factor: u32) -> Self {
        let factor = factor.max(1);
        self.probe_period /= factor;
        self.probe_rtt /= factor;
        self.gossip_period /= factor;
        self.suspicion_per_decade /= factor;
        self.fetch_retry /= factor;
        self.announce_period /= factor;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspicion_and_transmissions_grow_with_the_cluster() {
        let config = GossipConfig::default();
        let small = config.foca_config(3);
        let large = config.foca_config(1000);
        assert_eq!(small.suspect_to_down_after, Duration::from_secs(4));
        let large_ms = large.suspect_to_down_after.as_millis();
        assert!((11_999..=12_000).contains(&large_ms), "{large_ms} ms");
        assert_eq!(small.max_transmissions.get(), 4);
        assert!(large.max_transmissions > small.max_transmissions);
        assert_eq!(config.faster(10).probe_period, Duration::from_millis(100));
    }
}
