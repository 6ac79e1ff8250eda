//! A manager's handle on the cluster's data key: filled at start-up (from the state
//! directory, the join answer or `swarm unlock`), read by whatever seals or opens a secret
//! (the control actor at `secret create`, the dispatcher when it delivers). Workers hold an
//! empty one.

use std::sync::{Arc, RwLock};

use super::seal::DataKey;

/// Shared, cheap to clone; every clone sees the same key.
#[derive(Clone, Default)]
pub struct Keyring(Arc<RwLock<Option<Arc<DataKey>>>>);

impl Keyring {
    /// A keyring holding no key yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A keyring holding `key`.
    pub fn with_key(key: DataKey) -> Self {
        let keyring = Self::new();
        keyring.set(key);
        keyring
    }

    /// Holds `key` from now on.
    pub fn set(&self, key: DataKey) {
        let mut held = self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *held = Some(Arc::new(key));
    }

    /// The data key, if this node holds it.
    pub fn data_key(&self) -> Option<Arc<DataKey>> {
        self.0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.data_key().is_some();
        f.debug_struct("Keyring").field("holds_key", &held).finish()
    }
}
