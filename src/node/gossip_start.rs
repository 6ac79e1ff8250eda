//! Starting a node's gossip actor: its identity, timings and seeds.

use std::net::SocketAddr;

use actix::prelude::*;
use rand::RngCore;

use crate::actors::environment::{system_now_ms, NodeEnvironment};
use crate::actors::gossip::{GossipActor, GossipWiring, TableLearned};
use crate::actors::transport::TransportActor;
use crate::core::gossip::{GossipConfig, GossipId};
use crate::node::state::NodeSettings;

/// `FLOTILLA_GOSSIP_FASTER=N`: gossip timings divided by `N` (multi-process tests notice a
/// death sooner); `FLOTILLA_GOSSIP=off` starts no gossip actor, `on` starts one even on a
/// node of the sim runtime (hollow nodes have none by default).
pub const GOSSIP_FASTER_ENV: &str = "FLOTILLA_GOSSIP_FASTER";
/// See [`GOSSIP_FASTER_ENV`].
pub const GOSSIP_ENV: &str = "FLOTILLA_GOSSIP";

/// Starts the gossip actor of the node `settings` describes, joining through `managers`
/// (manager addresses; its own is skipped). `None` when gossip is switched off.
pub(crate) fn start_gossip(
    settings: &NodeSettings,
    environment: &NodeEnvironment,
    managers: &[SocketAddr],
    transport: &Addr<TransportActor>,
    learned: Option<Recipient<TableLearned>>,
) -> Option<Addr<GossipActor>> {
    let wanted = std::env::var(GOSSIP_ENV).ok();
    match wanted.as_deref().map(str::trim) {
        Some("off") => {
            tracing::info!("{GOSSIP_ENV}=off: no gossip on this node");
            return None;
        }
        // Hollow nodes (the sim runtime) host nothing the mesh could reach, and a thousand of
        // them in one process gossiping would measure gossip, not the control plane they are
        // there to load: none unless asked for (the gossip simulation covers 1,000 nodes).
        Some("on") => {}
        _ if settings.runtime == "sim" => return None,
        _ => {}
    }
    let Ok(advertise) = settings.advertise_addr.parse::<SocketAddr>() else {
        tracing::warn!(addr = %settings.advertise_addr, "advertise address is not host:port: no gossip");
        return None;
    };
    let faster = std::env::var(GOSSIP_FASTER_ENV)
        .ok()
        .and_then(|value| value.trim().parse::<u32>().ok())
        .unwrap_or(1);
    // A later start of the same node wins over what the others remember of the earlier one.
    let identity = GossipId::new(&settings.node_id, advertise, system_now_ms());
    let seed = environment.rng("gossip").next_u64();
    let wiring = GossipWiring {
        sender: transport.clone().recipient(),
        requests: transport.clone().recipient(),
        learned,
    };
    let actor = GossipActor::new(
        identity,
        GossipConfig::default().faster(faster),
        seed,
        managers.to_vec(),
        wiring,
    );
    Some(actor.start())
}
