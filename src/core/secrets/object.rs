//! Secrets and configs as the store keeps them (SPEC §9): a name, labels and the versions
//! `secret rotate` added, each version's data sealed (secrets) or plain (configs).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::seal::Sealed;
use crate::core::model::Meta;

/// Which of the two kinds an object is. They share every rule but encryption and what
/// `inspect` shows, and have separate name spaces (as in Docker).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretKind {
    /// Encrypted at rest, never shown.
    Secret,
    /// Plain, shown by `config inspect`.
    Config,
}

impl SecretKind {
    /// `secret` or `config`, as messages and the CLI say it.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::Secret => "secret",
            SecretKind::Config => "config",
        }
    }
}

impl fmt::Display for SecretKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One version's data.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub enum SecretData {
    /// A secret's data, sealed with the cluster's data key (see [`seal_context`]).
    Sealed(Sealed),
    /// A config's data.
    Plain(#[serde(with = "serde_bytes")] Vec<u8>),
}

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretData::Sealed(sealed) => write!(f, "{sealed:?}"),
            SecretData::Plain(data) => write!(f, "Plain({} bytes)", data.len()),
        }
    }
}

/// One version of a secret or config.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretVersion {
    /// 1 for the data given at `create`, then one more per `rotate`.
    pub version: u64,
    /// The data.
    pub data: SecretData,
    /// Bytes of plaintext (`ls` and `inspect` show it; the data itself they never show for
    /// a secret).
    pub size: u64,
    /// When it was stored (Unix ms, the leader's clock).
    pub created_at_ms: u64,
}

/// A secret or config.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SecretObject {
    /// Its ID.
    pub id: String,
    /// Secret or config.
    pub kind: SecretKind,
    /// Its name, unique among objects of its kind.
    pub name: String,
    /// Labels given at create.
    pub labels: BTreeMap<String, String>,
    /// Every version, oldest first; never empty.
    pub versions: Vec<SecretVersion>,
    /// Store bookkeeping (the store sets it on apply).
    pub meta: Meta,
}

impl SecretObject {
    /// The newest version.
    pub fn latest(&self) -> Option<&SecretVersion> {
        self.versions.last()
    }

    /// Version `version`, if the object has it.
    pub fn version(&self, version: u64) -> Option<&SecretVersion> {
        self.versions.iter().find(|v| v.version == version)
    }
}

/// The associated data a secret version is sealed with: the ciphertext of one secret's
/// version does not open as another's.
pub fn seal_context(secret_id: &str, version: u64) -> Vec<u8> {
    format!("flotilla secret {secret_id} v{version}").into_bytes()
}

/// Secret bytes on their way between the CLI and a manager (`secret create`, `rotate`, the
/// unlock key), over mutual TLS: its `Debug` shows only the size, so no log line carries it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Default)]
pub struct Plaintext(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext({} bytes)", self.0.len())
    }
}
