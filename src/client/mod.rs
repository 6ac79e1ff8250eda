//! The admin client: connecting to a manager, sending control commands, printing results.
//!
//! `flotilla` (in `src/bin/`) parses arguments and calls into here; rendering is pure (see
//! [`render`] and [`format`]) so output is tested without a cluster.

pub mod format;
pub mod progress;
pub mod render;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::net::admin::ClientConfig;
use crate::net::admin::{AdminReply, AdminRequest, TaskView, TASK_PAGE_MAX};
use crate::net::message::Message as WireMessage;
use crate::net::transport::{self, TransportError};

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

/// A loaded configuration and the node to talk to.
pub struct Client {
    config: ClientConfig,
    host: SocketAddr,
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
        let host = match host {
            Some(host) => host.to_string(),
            None => config
                .managers
                .first()
                .cloned()
                .ok_or(ClientError::NoHost)?,
        };
        let host = host
            .parse()
            .map_err(|_| ClientError::BadHost(host.clone()))?;
        Ok(Self { config, host })
    }

    /// Sends any message with the admin certificate and returns the answer.
    pub async fn exchange(&self, message: WireMessage) -> Result<WireMessage, ClientError> {
        let tls = self
            .config
            .credentials
            .client_config()
            .map_err(|e| ClientError::Config {
                path: PathBuf::from("client.toml"),
                reason: e.to_string(),
            })?;
        let bind = match self.host {
            SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
            SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
        };
        match transport::request_with(bind, tls, self.host, message, REQUEST_TIMEOUT).await {
            Ok(reply) => Ok(reply),
            Err(TransportError::Remote(error)) => Err(ClientError::Remote(error.message)),
            Err(error) => Err(ClientError::Transport(error)),
        }
    }

    /// Sends a control command.
    pub async fn control(&self, request: AdminRequest) -> Result<AdminReply, ClientError> {
        match self.exchange(WireMessage::Control(request)).await? {
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
