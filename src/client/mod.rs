//! The admin client: connecting to a manager, sending control commands, printing results.
//!
//! `flotilla` (in `src/bin/`) parses arguments and calls into here; rendering is pure (see
//! [`render`] and [`format`]) so output is tested without a cluster.

pub mod format;
pub mod node_inspect;
pub mod progress;
pub mod render;
pub mod rollout_progress;
pub mod update;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::net::admin::ClientConfig;
use crate::net::admin::{AdminReply, AdminRequest, TaskView, NOT_A_MANAGER, TASK_PAGE_MAX};
use crate::net::control_proof;
use crate::net::message::Message as WireMessage;
use crate::net::tls::Role;
use crate::net::transport::{self, TransportError};

/// The servers control commands go to: managers only.
pub const MANAGERS: &[Role] = &[Role::Manager];
/// The servers chaos commands go to: any node of the cluster.
pub const ANY_NODE: &[Role] = &[Role::Manager, Role::Worker];

/// How long one command may take (the managers answer within 5 s even without quorum).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);

/// Failures the CLI reports as `Error: ...`.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration file is missing or unreadable.
    #[error("cannot read the client configuration {path}: {reason} (create a swarm with `flotilla-node init`, then pass --config <state-dir>/client.toml)")]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No manager address is configured or given.
    #[error("no manager address: pass --host ADDR or set managers in the client configuration")]
    NoHost,
    /// A host is not `host:port`.
    #[error("{0:?} is not an address (host:port)")]
    BadHost(String),
    /// The node refused or failed (its message is shown as is).
    #[error("{0}")]
    Remote(String),
    /// The node could not be reached.
    #[error("{0}")]
    Transport(TransportError),
    /// The node answered with something this CLI does not expect.
    #[error("unexpected answer from the node: {0}")]
    Unexpected(String),
}

impl ClientError {
    /// The node answered a control request with a reply of the wrong kind (shown abridged).
    pub fn unexpected(reply: AdminReply) -> Self {
        Self::Unexpected(format!("{reply:?}").chars().take(80).collect())
    }
}

/// How long the CLI waits for a manager's handshake before it tries the next one in
/// `client.toml` (the request is not sent until the handshake finishes, so a write is never
/// sent twice). The last manager tried gets the whole [`REQUEST_TIMEOUT`].
pub const MANAGER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A loaded configuration and the nodes to talk to.
pub struct Client {
    config: ClientConfig,
    /// `--host` alone, or every manager of `client.toml` in order (SPEC §12: the CLI tries each
    /// in turn when one does not answer).
    hosts: Vec<SocketAddr>,
    /// The host that answered last: later requests of this command go there first.
    current: AtomicUsize,
}

/// The default configuration path: `$HOME/.flotilla/client.toml`.
pub fn default_config_path() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".flotilla")
        .join("client.toml")
}

impl Client {
    /// Loads `config_path` and picks `host` (default: the first manager in the file).
    pub fn load(config_path: &Path, host: Option<&str>) -> Result<Self, ClientError> {
        let config = ClientConfig::load(config_path).map_err(|reason| ClientError::Config {
            path: config_path.to_path_buf(),
            reason,
        })?;
        let named: Vec<String> = match host {
            Some(host) => vec![host.to_string()],
            None => config.managers.clone(),
        };
        if named.is_empty() {
            return Err(ClientError::NoHost);
        }
        let hosts = named
            .iter()
            .map(|host| host.parse().map_err(|_| ClientError::BadHost(host.clone())))
            .collect::<Result<Vec<SocketAddr>, _>>()?;
        Ok(Self {
            config,
            hosts,
            current: AtomicUsize::new(0),
        })
    }

    /// The node requests go to first.
    pub fn host(&self) -> SocketAddr {
        self.hosts[self.current.load(Ordering::Relaxed) % self.hosts.len()]
    }

    /// Sends any message with the admin certificate to a server whose certificate names one
    /// of `servers` (a server that shows another role is skipped for the next host, or
    /// refused if it is the last) and returns the answer.
    pub async fn exchange(
        &self,
        message: WireMessage,
        servers: &[Role],
    ) -> Result<WireMessage, ClientError> {
        let tls = self
            .config
            .credentials
            .client_config()
            .map_err(|e| ClientError::Config {
                path: PathBuf::from("client.toml"),
                reason: e.to_string(),
            })?;
        let first = self.current.load(Ordering::Relaxed);
        let count = self.hosts.len();
        let mut unreachable = Vec::new();
        for attempt in 0..count {
            let index = (first + attempt) % count;
            let host = self.hosts[index];
            let last = attempt + 1 == count;
            let connect_timeout = if last {
                REQUEST_TIMEOUT
            } else {
                MANAGER_CONNECT_TIMEOUT
            };
            let bind = match host {
                SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
                SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
            };
            let outcome = transport::request_within(
                bind,
                tls.clone(),
                host,
                servers,
                message.clone(),
                connect_timeout,
                REQUEST_TIMEOUT,
            )
            .await;
            match outcome {
                Ok(reply) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(reply);
                }
                Err(TransportError::Remote(error)) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Err(ClientError::Remote(error.message));
                }
                // Never sent: the next manager may take it.
                Err(
                    error @ (TransportError::Unreachable { .. }
                    | TransportError::WrongServerRole { .. }),
                ) if !last => {
                    unreachable.push(error.to_string());
                }
                // The exact refusal of SPEC §2, as a worker itself would answer.
                Err(TransportError::WrongServerRole {
                    found: Some(Role::Worker),
                    ..
                }) if servers == MANAGERS => {
                    if !unreachable.is_empty() {
                        tracing::debug!(tried = ?unreachable, "managers that did not answer");
                    }
                    return Err(ClientError::Remote(NOT_A_MANAGER.to_string()));
                }
                Err(error) => {
                    if !unreachable.is_empty() {
                        tracing::debug!(tried = ?unreachable, "managers that did not answer");
                    }
                    return Err(ClientError::Transport(error));
                }
            }
        }
        Err(ClientError::NoHost)
    }

    /// Sends a control command, signed with the admin key (the managers check the proof).
    pub async fn control(&self, request: AdminRequest) -> Result<AdminReply, ClientError> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        let signed =
            control_proof::sign(&self.config.credentials, request, now_ms).map_err(|error| {
                ClientError::Config {
                    path: PathBuf::from("client.toml"),
                    reason: error.to_string(),
                }
            })?;
        match self
            .exchange(WireMessage::Control(signed), MANAGERS)
            .await?
        {
            WireMessage::AdminReply(reply) => Ok(reply),
            other => Err(ClientError::Unexpected(other.kind_name().to_string())),
        }
    }

    /// Every task of `services` (`service ps`), fetched page by page.
    pub async fn service_tasks(&self, services: &[String]) -> Result<Vec<TaskView>, ClientError> {
        let mut rows = Vec::new();
        loop {
            let request = AdminRequest::ServiceTasks {
                services: services.to_vec(),
                offset: rows.len() as u64,
                limit: TASK_PAGE_MAX,
            };
            match self.control(request).await? {
                AdminReply::TaskPage { tasks, total } => {
                    let last = tasks.is_empty() || rows.len() + tasks.len() >= total as usize;
                    rows.extend(tasks);
                    if last {
                        return Ok(rows);
                    }
                }
                other => return Err(ClientError::unexpected(other)),
            }
        }
    }
}
