//! The settings a new node writes to its state directory, from its options and the machine
//! it runs on.

use std::path::Path;

use crate::core::model::Resources;
use crate::net::tls::Role;
use crate::node::daemon::{DaemonError, NodeOptions};
use crate::node::state::{NodeSettings, NODE_FILE};

/// This machine's hostname (what `node ls` shows unless `--hostname` says otherwise).
pub(crate) fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The capacity this machine offers the scheduler: every CPU and all memory.
pub(crate) fn machine_resources() -> Resources {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u64;
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("MemTotal:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .unwrap_or(0);
    Resources {
        nano_cpus: cpus * 1_000_000_000,
        memory_bytes: memory_kib * 1024,
    }
}

/// The settings of a node created with `options`.
pub(crate) fn settings_from(
    options: &NodeOptions,
    node_id: String,
    role: Role,
    managers: Vec<String>,
) -> NodeSettings {
    let advertise = options.advertise_addr.unwrap_or(options.listen);
    NodeSettings {
        node_id,
        role,
        listen: options.listen.to_string(),
        advertise_addr: advertise.to_string(),
        hostname: options.hostname.clone().unwrap_or_else(machine_hostname),
        runtime: options.runtime.clone(),
        labels: options.labels.clone(),
        manager_addrs: managers,
        raft_tick_ms: options.raft_tick_ms,
        heartbeat_ms: options.heartbeat_ms,
        sim_task_start_ms: options.sim_task_start_ms,
        metrics_listen: options.metrics_listen.to_string(),
    }
}

/// Refuses a state directory that already holds a node: `init` and `join` create one.
pub(crate) fn refuse_existing(state_dir: &Path) -> Result<(), DaemonError> {
    if state_dir.join(NODE_FILE).exists() {
        return Err(DaemonError::StateDir(format!(
            "{} already holds a node; use `flotilla-node start --state-dir {}`",
            state_dir.display(),
            state_dir.display()
        )));
    }
    Ok(())
}

/// Creates the state directory, owner-only (0700, SPEC §4): it holds keys, tokens and logs.
pub(crate) fn create_state_dir(state_dir: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let fail = |e: std::io::Error| {
        DaemonError::StateDir(format!("cannot create {}: {e}", state_dir.display()))
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(fail)?;
    // An existing directory keeps its mode through `create`: restrict it as well.
    std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)
}
