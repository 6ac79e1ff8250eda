//! What a service spec names of the cluster's secrets and configs (SPEC §9): the file each
//! task gets, its owner and mode. The objects themselves (their data, encrypted for secrets)
//! live in the store; a reference names one version of one object.

use serde::{Deserialize, Serialize};

/// Default file mode of a secret or config (`0444`).
pub const MOUNT_MODE_DEFAULT: u32 = 0o444;

/// One `--secret` of a service: which secret (and version) and where the task sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretReference {
    /// The secret's name (`source=`).
    pub name: String,
    /// The secret's ID, resolved when the spec is accepted.
    pub secret_id: String,
    /// The version the tasks see (`secret rotate` adds versions).
    pub version: u64,
    /// File name under `/run/secrets` (Docker) or `FLOTILLA_SECRETS_DIR` (process); default
    /// the name.
    pub target: String,
    /// Owner user ID (Docker runtime); empty is root.
    pub uid: String,
    /// Owner group ID (Docker runtime); empty is root.
    pub gid: String,
    /// File mode (default `0444`).
    pub mode: u32,
}

/// One `--config` of a service: as a secret reference, but the target may be an absolute path.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConfigReference {
    /// The config's name (`source=`).
    pub name: String,
    /// The config's ID, resolved when the spec is accepted.
    pub config_id: String,
    /// The version the tasks see.
    pub version: u64,
    /// `/<target>` in the container unless absolute; the file name under
    /// `FLOTILLA_CONFIGS_DIR` for processes.
    pub target: String,
    /// Owner user ID (Docker runtime); empty is root.
    pub uid: String,
    /// Owner group ID (Docker runtime); empty is root.
    pub gid: String,
    /// File mode (default `0444`).
    pub mode: u32,
}
