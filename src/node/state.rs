//! What a node keeps in its state directory, and how it is written.
//!
//! ```text
//! <state-dir>/node.toml        identity and settings (node ID, role, addresses, runtime, labels)
//! <state-dir>/credentials.toml certificate, key and CA of this node (mode 0600)
//! <state-dir>/client.toml      admin credentials and manager addresses for the CLI (0600)
//! <state-dir>/raft.redb        the Raft log, hard state and snapshots (managers)
//! <state-dir>/data-key.json    the cluster's data key, wrapped (managers, 0600; see `keys`)
//! <state-dir>/key-encryption.key  what wraps it, unless autolocked (managers, 0600)
//! ```
//!
//! Secrets are written with mode 0600 through a temporary file and a rename, so a crash never
//! leaves half a file.

use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::net::tls::Role;

/// File names inside the state directory.
pub const NODE_FILE: &str = "node.toml";
/// This node's certificate, key and CA.
pub const CREDENTIALS_FILE: &str = "credentials.toml";
/// The CLI's configuration.
pub const CLIENT_FILE: &str = "client.toml";
/// The Raft database (managers only).
pub const RAFT_FILE: &str = "raft.redb";

/// Failures reading or writing the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file's contents are not what this version writes.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A node's identity and settings, as `init` or `join` wrote them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSettings {
    /// The cluster-assigned node ID.
    pub node_id: String,
    /// The role the node's certificate grants.
    pub role: Role,
    /// The UDP address the node listens on.
    pub listen: String,
    /// The address other nodes reach it at.
    pub advertise_addr: String,
    /// The hostname shown by `node ls`.
    pub hostname: String,
    /// `auto`, `docker` or `process`.
    pub runtime: String,
    /// Node labels given at init/join.
    pub labels: Vec<(String, String)>,
    /// Managers known at join time (the node learns more from the cluster).
    pub manager_addrs: Vec<String>,
    /// Raft tick period.
    pub raft_tick_ms: u64,
    /// Worker heartbeat period.
    pub heartbeat_ms: u64,
    /// With `--runtime sim`: how long a simulated task takes to start.
    #[serde(default = "default_sim_task_start_ms")]
    pub sim_task_start_ms: u64,
    /// `--metrics-listen`: `default`, `off` or `IP:PORT` (see `node::metrics`).
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: String,
}

fn default_metrics_listen() -> String {
    "default".to_string()
}

fn default_sim_task_start_ms() -> u64 {
    20
}

pub use crate::net::admin::ClientConfig;

/// Reads a TOML file written by [`write_toml`].
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T, StateError> {
    let text = std::fs::read_to_string(path).map_err(|source| StateError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    crate::core::format::from_toml(crate::core::format::NODE_FILE, &text).map_err(|reason| {
        StateError::Corrupt {
            path: path.to_path_buf(),
            reason,
        }
    })
}

/// Writes `value` as TOML atomically, with mode 0600 (some of these files hold keys).
pub fn write_toml<T: Serialize>(path: &Path, value: &T) -> Result<(), StateError> {
    let text =
        crate::core::format::to_toml(crate::core::format::NODE_FILE, value).map_err(|reason| {
            StateError::Corrupt {
                path: path.to_path_buf(),
                reason,
            }
        })?;
    write_private(path, text.as_bytes())
}

/// Writes bytes atomically with mode 0600 (see `actors::worker::persist::write_atomically`).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    crate::actors::worker::persist::write_atomically(path, bytes).map_err(|source| StateError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::net::tls::Credentials;

    #[test]
    fn secrets_are_written_0600_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join(CLIENT_FILE);
        let config = ClientConfig {
            managers: vec!["127.0.0.1:4240".into()],
            credentials: Credentials {
                cert_pem: "c".into(),
                key_pem: "SECRET-KEY".into(),
                ca_pem: "a".into(),
            },
        };
        write_toml(&path, &config).expect("written");
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let back: ClientConfig = read_toml(&path).expect("read");
        assert_eq!(back, config);
        assert!(
            !format!("{back:?}").contains("SECRET-KEY"),
            "Debug must not print the key"
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(NODE_FILE);
        std::fs::write(&path, "node_id = [").expect("write");
        assert!(matches!(
            read_toml::<NodeSettings>(&path),
            Err(StateError::Corrupt { .. })
        ));
    }
}
