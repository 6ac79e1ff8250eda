//! The admin's requests (the `flotilla` CLI to a manager) and the views they return; the
//! control actor (`actors::control`) carries them out.
//!
//! Views are the JSON shapes of SPEC §2 (`--format json`): snake_case, every field always
//! present, full IDs. Tables are rendered from the same views by the CLI.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::core::event_history::{EventPage, EventQuery};
use crate::core::model::{Availability, Node, NodeRole, Service, Task};
use crate::core::ports::{display_ports, PublishMode};
use crate::core::rollout::UpdateStatus;
use crate::core::secrets::{Plaintext, SecretData, SecretKind, SecretObject};
use crate::core::spec::ServiceSpec;

/// The exact refusal of SPEC §2 for control commands sent to a worker (the worker answers
/// it, and the CLI says it when the server it reached shows a worker certificate).
pub const NOT_A_MANAGER: &str = "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.";

/// Most rows one [`AdminRequest::ServiceTasks`] page carries (about 3 MiB of frame).
pub const TASK_PAGE_MAX: u64 = 5_000;

/// What an admin asks a manager to do.
// Specs are large and other variants small; values are built and moved one at a time,
// never held in bulk, so boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// `node ls`.
    NodeList,
    /// `node inspect NODE...`.
    NodeInspect {
        /// Names, IDs or unique ID prefixes.
        nodes: Vec<String>,
    },
    /// `node ps [NODE]` (no node: the node addressed).
    NodeTasks {
        /// The node, or `None` for the node that answers.
        node: Option<String>,
    },
    /// `node update`.
    NodeUpdate {
        /// The node.
        node: String,
        /// New availability.
        availability: Option<Availability>,
        /// Labels to add or overwrite.
        labels_add: BTreeMap<String, String>,
        /// Label keys to remove.
        labels_rm: Vec<String>,
    },
    /// `node promote` / `node demote`.
    NodeSetRole {
        /// The nodes.
        nodes: Vec<String>,
        /// The role they get.
        role: NodeRole,
    },
    /// `node rm`.
    NodeRemove {
        /// The nodes.
        nodes: Vec<String>,
        /// Remove even if the node is not down.
        force: bool,
    },
    /// `swarm join-token`.
    JoinToken {
        /// Which token.
        role: NodeRole,
        /// Replace the secret first.
        rotate: bool,
    },
    /// `service create`.
    ServiceCreate {
        /// The validated spec.
        spec: ServiceSpec,
    },
    /// `service ls`.
    ServiceList,
    /// `service inspect`.
    ServiceInspect {
        /// Names, IDs or unique ID prefixes.
        services: Vec<String>,
    },
    /// `service ps`, one page at a time (a service of 30,000 replicas does not fit one
    /// frame): rows `offset..offset + limit` of the listing, `limit` capped at
    /// [`TASK_PAGE_MAX`]. The listing is live: a task created between two pages may shift the
    /// rows of the next one.
    ServiceTasks {
        /// Names, IDs or unique ID prefixes.
        services: Vec<String>,
        /// Rows to skip.
        offset: u64,
        /// Most rows wanted.
        limit: u64,
    },
    /// `service scale SERVICE=N...`.
    ServiceScale {
        /// `(service, replicas)` pairs.
        targets: Vec<(String, u64)>,
    },
    /// `service rm`.
    ServiceRemove {
        /// Names, IDs or unique ID prefixes.
        services: Vec<String>,
    },
    /// `service update`: the whole new spec, which the CLI made from the spec it read and its
    /// flags. Refused with `update out of sequence` when the service is no longer at
    /// `expected_version` (someone else changed it in between), never applied over it.
    ServiceUpdate {
        /// Name, ID or unique ID prefix.
        service: String,
        /// The new spec.
        spec: ServiceSpec,
        /// The `meta.version` of the service the spec was made from.
        expected_version: u64,
    },
    /// `service rollback` / `service update --rollback`: back to the previous spec.
    ServiceRollback {
        /// Name, ID or unique ID prefix.
        service: String,
    },
    /// The gossip view of each node (`node inspect` shows it under `gossip`): the leader asks
    /// each node for it, with a short timeout.
    NodeGossip {
        /// Names, IDs or unique ID prefixes.
        nodes: Vec<String>,
    },
    /// `secret create` / `config create`: the leader seals a secret's data before proposing.
    SecretCreate {
        /// Secret or config.
        kind: SecretKind,
        /// Its name (Docker's rules).
        name: String,
        /// `--label K=V`.
        labels: BTreeMap<String, String>,
        /// The data, at most 500 KiB, not empty.
        data: Plaintext,
    },
    /// `secret ls` / `config ls`.
    SecretList {
        /// Secret or config.
        kind: SecretKind,
    },
    /// `secret inspect` / `config inspect`.
    SecretInspect {
        /// Secret or config.
        kind: SecretKind,
        /// Names, IDs or unique ID prefixes.
        names: Vec<String>,
    },
    /// `secret rm` / `config rm`: refused for one in use by a service.
    SecretRemove {
        /// Secret or config.
        kind: SecretKind,
        /// Names, IDs or unique ID prefixes.
        names: Vec<String>,
    },
    /// `secret rotate NAME FILE|-`: a new version, and a rolling update of every service
    /// using the secret.
    SecretRotate {
        /// Secret or config.
        kind: SecretKind,
        /// Name, ID or unique ID prefix.
        name: String,
        /// The new version's data.
        data: Plaintext,
    },
    /// `swarm update --autolock=true|false`; answered with the new unlock key when it
    /// turns autolock on.
    SwarmAutolock {
        /// Whether managers lock when they restart.
        enabled: bool,
    },
    /// `swarm unlock-key [--rotate]`: the current unlock key (a new one with `rotate`).
    SwarmUnlockKey {
        /// Replace the key first.
        rotate: bool,
    },
    /// `swarm unlock`: the manager addressed (never forwarded) opens its data key with the
    /// unlock key and starts serving.
    SwarmUnlock {
        /// The unlock key as the operator typed it (`FLTKEY-1-...`).
        key: Plaintext,
    },
    /// `events`: one page of the changes the manager addressed has applied (never
    /// forwarded; every manager keeps its own history).
    Events(EventQuery),
}

/// A manager's answer to a [`AdminRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminReply {
    /// Rows for `node ls`.
    Nodes(Vec<NodeView>),
    /// Full node records for `node inspect`.
    NodeDetails(Vec<Node>),
    /// Rows for `service ls`.
    Services(Vec<ServiceView>),
    /// Full service records for `service inspect`.
    ServiceDetails(Vec<Service>),
    /// Rows for `node ps`, history included.
    Tasks(Vec<TaskView>),
    /// One page of rows for `service ps`, history included.
    TaskPage {
        /// The rows asked for.
        tasks: Vec<TaskView>,
        /// Rows in the whole listing.
        total: u64,
    },
    /// A join token.
    Token(String),
    /// The IDs of what was created or changed.
    Done(Vec<String>),
    /// The gossip views for [`AdminRequest::NodeGossip`], in the order asked.
    NodeGossip(Vec<NodeGossip>),
    /// Secrets or configs for `ls` and `inspect`.
    Secrets(Vec<SecretView>),
    /// The unlock key to show (`None`: autolock is off, or was just turned off).
    UnlockKey(Option<Plaintext>),
    /// A page of [`AdminRequest::Events`].
    Events(EventPage),
}

/// A secret or config, as `secret ls --format json` and `secret inspect` print it. A
/// secret's data is never in it; a config's is, base64-encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretView {
    /// Full ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// `secret` or `config`.
    pub kind: String,
    /// The newest version (`secret rotate` adds one; the VERSION column).
    pub version: u64,
    /// Bytes of the newest version's data.
    pub size: u64,
    /// Labels given at create.
    pub labels: BTreeMap<String, String>,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 time of the last change (the newest version).
    pub updated_at: String,
    /// Unix milliseconds behind `created_at` and `updated_at` ("5 minutes ago").
    pub created_at_ms: u64,
    /// See `created_at_ms`.
    pub updated_at_ms: u64,
    /// Every version, oldest first.
    pub versions: Vec<SecretVersionView>,
    /// Names of the services whose spec uses it.
    pub services: Vec<String>,
    /// A config's newest data, base64 (standard, padded); always null for a secret.
    pub data: Option<String>,
}

/// One version of a secret or config in a [`SecretView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretVersionView {
    /// 1, 2, ...
    pub version: u64,
    /// Bytes of its data.
    pub size: u64,
    /// RFC 3339 time it was stored.
    pub created_at: String,
}

impl SecretView {
    /// The view of `object`, used by `services` (a config's newest data included, base64).
    pub fn of(object: &SecretObject, services: Vec<String>) -> Self {
        use base64::Engine;
        let first = object.versions.first();
        let latest = object.latest();
        let created_at_ms = first.map_or(0, |v| v.created_at_ms);
        let updated_at_ms = latest.map_or(created_at_ms, |v| v.created_at_ms);
        let data = match latest.map(|v| &v.data) {
            Some(SecretData::Plain(bytes)) if object.kind == SecretKind::Config => {
                Some(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            _ => None,
        };
        Self {
            id: object.id.clone(),
            name: object.name.clone(),
            kind: object.kind.as_str().to_string(),
            version: latest.map_or(0, |v| v.version),
            size: latest.map_or(0, |v| v.size),
            labels: object.labels.clone(),
            created_at: rfc3339(created_at_ms),
            updated_at: rfc3339(updated_at_ms),
            created_at_ms,
            updated_at_ms,
            versions: object
                .versions
                .iter()
                .map(|v| SecretVersionView {
                    version: v.version,
                    size: v.size,
                    created_at: rfc3339(v.created_at_ms),
                })
                .collect(),
            services,
            data,
        }
    }
}

/// One node's gossip view as its manager could get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeGossip {
    /// The node's full ID.
    pub node_id: String,
    /// Its view, or `None` when it did not answer in time (`node inspect`: "unavailable").
    pub view: Option<crate::core::gossip::GossipView>,
}

/// One node, as `node ls --format json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Full node ID.
    pub id: String,
    /// Hostname.
    pub hostname: String,
    /// `manager` or `worker`.
    pub role: String,
    /// `ready`, `down` or `unknown`.
    pub status: String,
    /// `active`, `pause` or `drain`.
    pub availability: String,
    /// `leader`, `reachable`, `unreachable`, or null for workers.
    pub manager_status: Option<String>,
    /// Advertised address.
    pub addr: String,
    /// Node labels.
    pub labels: BTreeMap<String, String>,
    /// Runtime and version (the ENGINE VERSION column).
    pub engine_version: String,
    /// Whether this is the node that answered.
    #[serde(rename = "self")]
    pub is_self: bool,
}

/// One service, as `service ls --format json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    /// Full service ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// `replicated` or `global`.
    pub mode: String,
    /// Image.
    pub image: String,
    /// Command and arguments.
    pub command: Vec<String>,
    /// Tasks running now.
    pub replicas_running: u64,
    /// Tasks wanted.
    pub replicas_desired: u64,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 time of the last change.
    pub updated_at: String,
    /// The last rollout, or null if the service was never updated.
    pub update_status: Option<UpdateStatusView>,
    /// Ports published through the routing mesh, `*:8080->80/tcp` (the PORTS column).
    pub ports: Vec<String>,
}

/// A service's `update_status` in JSON (SPEC §7), times as RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatusView {
    /// `updating`, `paused`, `completed`, `rollback_started`, `rollback_paused` or
    /// `rollback_completed`.
    pub state: String,
    /// Why it is there.
    pub message: String,
    /// When it started.
    pub started_at: String,
    /// When it completed, paused or was rolled back; null while it runs.
    pub completed_at: Option<String>,
}

impl UpdateStatusView {
    /// The view of `status`.
    pub fn of(status: &UpdateStatus) -> Self {
        Self {
            state: status.state.as_str().to_string(),
            message: status.message.clone(),
            started_at: rfc3339(status.started_at_ms),
            completed_at: status.completed_at_ms.map(rfc3339),
        }
    }
}

/// One task, as `service ps --format json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskView {
    /// Full task ID.
    pub id: String,
    /// `service.slot` or `service.node-id`.
    pub name: String,
    /// Owning service ID.
    pub service_id: String,
    /// Owning service name.
    pub service_name: String,
    /// The image the task runs.
    pub image: String,
    /// Slot, for replicated services.
    pub slot: Option<u64>,
    /// Node the task is on, once assigned.
    pub node_id: Option<String>,
    /// That node's hostname.
    pub node_hostname: Option<String>,
    /// What the managers want (lowercase state).
    pub desired_state: String,
    /// What the worker reported (lowercase state).
    pub current_state: String,
    /// RFC 3339 time since which it is in `current_state`.
    pub state_since: String,
    /// Why it failed or is pending.
    pub error: Option<String>,
    /// `docker`, `process` or `sim` (empty before a worker reported).
    pub runtime: String,
    /// Container ID or OS process ID.
    pub runtime_id: Option<String>,
    /// Exit code, once exited.
    pub exit_code: Option<i64>,
    /// Unix milliseconds behind `state_since` (for "Running 5 seconds ago").
    pub state_since_ms: u64,
    /// Unix milliseconds of the task's creation, placement and first report running: the
    /// scheduling delays (created -> assigned -> running) the benchmarks measure.
    pub created_at_ms: u64,
    /// See `created_at_ms`; `None` until placed.
    pub assigned_at_ms: Option<u64>,
    /// See `created_at_ms`; `None` until it ran.
    pub started_at_ms: Option<u64>,
    /// The service spec version the task runs (SPEC §7); up to date when it is the service's.
    pub spec_version: u64,
    /// Host-mode ports of the task, `*:8080->80/tcp` (the PORTS column).
    pub ports: Vec<String>,
    /// Where the task's published target ports are reached (`host:port`, one per target).
    pub endpoints: Vec<String>,
}

/// Unix milliseconds as RFC 3339 UTC (`2026-11-26T15:06:20.123Z`).
pub fn rfc3339(unix_ms: u64) -> String {
    let nanos = i128::from(unix_ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix_ms.to_string())
}

impl NodeView {
    /// The row for `node`, given its manager status and whether it is the answering node.
    pub fn of(node: &Node, manager_status: Option<&str>, is_self: bool) -> Self {
        Self {
            id: node.id.clone(),
            hostname: node.hostname.clone(),
            role: lowercase(&node.role),
            status: lowercase(&node.status),
            availability: lowercase(&node.availability),
            manager_status: manager_status.map(str::to_string),
            addr: node.addr.clone(),
            labels: node.labels.clone(),
            engine_version: node.engine_version.clone(),
            is_self,
        }
    }
}

impl TaskView {
    /// The row for `task`, with the hostname of its node if known.
    pub fn of(task: &Task, node_hostname: Option<&str>) -> Self {
        Self {
            id: task.id.clone(),
            name: task.display_name(),
            service_id: task.service_id.clone(),
            service_name: task.service_name.clone(),
            image: task.spec.image.clone(),
            slot: task.slot,
            node_id: task.node_id.clone(),
            node_hostname: node_hostname.map(str::to_string),
            desired_state: task.desired_state.as_str().to_string(),
            current_state: task.status.state.as_str().to_string(),
            state_since: rfc3339(task.status.since_ms),
            error: task.status.error.clone(),
            runtime: task.runtime.clone(),
            runtime_id: task.runtime_id.clone(),
            exit_code: task.status.exit_code,
            state_since_ms: task.status.since_ms,
            created_at_ms: task.meta.created_at_ms,
            assigned_at_ms: task.assigned_at_ms,
            started_at_ms: task.started_at_ms,
            spec_version: task.spec_version,
            ports: display_ports(&task.spec.ports, PublishMode::Host),
            endpoints: task
                .endpoints
                .iter()
                .map(|endpoint| {
                    format!(
                        "{}->{}/{}",
                        endpoint.addr, endpoint.target, endpoint.protocol
                    )
                })
                .collect(),
        }
    }
}

/// The lowercase serde name of a unit enum value (`NodeRole::Manager` -> `manager`).
pub fn lowercase<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_764_169_580_123), "2025-11-26T15:06:20.123Z");
    }

    #[test]
    fn node_json_has_the_spec_fields() {
        let node = Node {
            id: "n1".into(),
            hostname: "h".into(),
            role: NodeRole::Manager,
            status: crate::core::model::NodeStatus::Ready,
            availability: Availability::Active,
            labels: BTreeMap::new(),
            addr: "127.0.0.1:4240".into(),
            engine_version: "process".into(),
            resources: Default::default(),
            meta: Default::default(),
        };
        let json = serde_json::to_value(NodeView::of(&node, Some("leader"), true)).expect("json");
        for field in [
            "id",
            "hostname",
            "role",
            "status",
            "availability",
            "manager_status",
            "addr",
            "labels",
            "self",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
        assert_eq!(json["role"], "manager");
        assert_eq!(json["status"], "ready");
        assert_eq!(json["self"], true);
    }
}

/// The CLI's configuration file (`client.toml`): where the managers are and the admin's
/// credentials. Written by `init`, read by the CLI.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientConfig {
    /// Manager addresses; the first is the default `--host`.
    pub managers: Vec<String>,
    /// The admin certificate, its key and the cluster CA.
    pub credentials: crate::net::tls::Credentials,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("managers", &self.managers)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Reads `path`; the error says what is wrong, for the CLI to print with the path.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        crate::core::format::from_toml(crate::core::format::NODE_FILE, &text)
    }
}
