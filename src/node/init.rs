//! `flotilla-node init`: a new cluster, with this node as its first manager.

use std::time::Duration;

use actix::prelude::*;

use crate::actors::raft::{GetStatus, Propose, RaftActor};
use crate::core::ids;
use crate::core::model::{Availability, ClusterInfo, Node, NodeRole, NodeStatus, Resources};
use crate::core::secrets::{DataKey, Keyring};
use crate::core::store::Command;
use crate::net::tls::{ClusterCa, Role};
use crate::net::token::{self, JoinToken};
use crate::node::compose::run;
use crate::node::daemon::{DaemonError, NodeOptions, RunningNode};
use crate::node::keys;
use crate::node::raft_start::{start_replica, RaftStart};
use crate::node::settings::{create_state_dir, refuse_existing, settings_from};
use crate::node::state::{self, ClientConfig, CLIENT_FILE, CREDENTIALS_FILE, NODE_FILE};

/// What `init` prints.
#[derive(Debug)]
pub struct InitSummary {
    /// This node's ID.
    pub node_id: String,
    /// The worker join token.
    pub worker_token: String,
    /// Where workers join.
    pub advertise_addr: String,
}

/// Creates a new cluster in `options.state_dir` and starts its first manager. Returns what
/// `init` prints; the node runs until [`wait_for_shutdown`] returns.
pub async fn init(options: NodeOptions) -> Result<(InitSummary, RunningNode), DaemonError> {
    refuse_existing(&options.state_dir)?;
    crate::node::metrics::check_explicit(options.metrics_listen)?;
    crate::node::compose::configure_cert_validity();
    let mut rng = rand::rng();
    let cluster_id = ids::new_id(&mut rng);
    let node_id = ids::new_id(&mut rng);
    let ca = ClusterCa::create(&cluster_id)?;
    // Index 0: nothing is applied yet.
    let credentials = ca.issue(&node_id, Role::Manager, 0)?;
    let admin = ca.issue("admin", Role::Admin, 0)?;
    let settings = settings_from(&options, node_id.clone(), Role::Manager, vec![]);
    let cluster = ClusterInfo {
        id: cluster_id,
        ca_cert_pem: ca.cert_pem().to_string(),
        ca_key_pem: ca.key_pem().to_string(),
        worker_join_secret: token::generate_secret()?,
        manager_join_secret: token::generate_secret()?,
        created_at_ms: crate::actors::raft::system_now_ms(),
    };
    let worker_token = JoinToken::new(ca.digest(), cluster.worker_join_secret.clone()).to_string();
    // The cluster's data key (SPEC §9): every secret is sealed with it; it is kept wrapped.
    let data_key = DataKey::generate().map_err(|e| DaemonError::Keys(e.to_string()))?;
    create_state_dir(&options.state_dir)?;
    keys::save(&options.state_dir, &data_key)?;
    state::write_toml(&options.state_dir.join(CREDENTIALS_FILE), &credentials)?;
    state::write_toml(
        &options.state_dir.join(CLIENT_FILE),
        &ClientConfig {
            managers: vec![settings.advertise_addr.clone()],
            credentials: admin,
        },
    )?;
    let manager = start_replica(&options.state_dir, &settings.node_id, RaftStart::Bootstrap)?;
    // node.toml last: its presence means "initialized".
    state::write_toml(&options.state_dir.join(NODE_FILE), &settings)?;
    let running = run(
        settings.clone(),
        &options.state_dir,
        credentials,
        Some(manager),
        Keyring::with_key(data_key),
        options.enable_chaos,
        None,
    )
    .await?;
    let manager = running
        .raft
        .clone()
        .ok_or_else(|| DaemonError::Raft("no raft actor".into()))?;
    wait_for_leadership(&manager).await?;
    let self_node = Node {
        id: node_id.clone(),
        hostname: settings.hostname.clone(),
        role: NodeRole::Manager,
        status: NodeStatus::Unknown,
        availability: Availability::Active,
        labels: settings.labels.iter().cloned().collect(),
        addr: settings.advertise_addr.clone(),
        engine_version: String::new(),
        resources: Resources::default(),
        meta: Default::default(),
    };
    for command in [
        Command::InitCluster(cluster),
        Command::UpsertNode(self_node),
    ] {
        manager
            .send(Propose { command })
            .await
            .map_err(|e| DaemonError::Raft(e.to_string()))?
            .map_err(|e| DaemonError::Raft(e.to_string()))?;
    }
    Ok((
        InitSummary {
            node_id,
            worker_token,
            advertise_addr: settings.advertise_addr,
        },
        running,
    ))
}

async fn wait_for_leadership(raft: &Addr<RaftActor>) -> Result<(), DaemonError> {
    for _ in 0..200 {
        let status = raft
            .send(GetStatus)
            .await
            .map_err(|e| DaemonError::Raft(e.to_string()))?;
        if status.leadership.is_leader {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(DaemonError::Raft(
        "this manager did not become leader within 10 s".into(),
    ))
}
