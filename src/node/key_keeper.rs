//! Every manager's data-key file follows autolock (SPEC §9): when the store says autolock is
//! on (its unlock key sealed with the data key), the file is rewrapped by the unlock key and
//! the key-encryption-key file deleted; when it goes off, a fresh key-encryption key wraps it
//! again. Driven by the `AutolockChanged` store event (and lossy batches, after which the
//! store is read whole); idempotent, so the replay of the log at a restart changes nothing.

use std::path::PathBuf;

use actix::prelude::*;

use crate::actors::control::open_unlock_key;
use crate::actors::raft::{RaftActor, StoreEvents, Subscribe};
use crate::consensus::store_machine::SharedStore;
use crate::core::secrets::Keyring;
use crate::core::store::Event;
use crate::node::daemon::DaemonError;
use crate::node::keys;

/// Keeps this manager's data-key file wrapped as autolock says. See the module docs.
pub struct KeyKeeper {
    state_dir: PathBuf,
    store: SharedStore,
    keyring: Keyring,
    raft: Addr<RaftActor>,
}

impl KeyKeeper {
    /// A keeper of `state_dir`'s key files, reading `store` (fed by `raft`) and `keyring`.
    pub fn new(
        state_dir: PathBuf,
        store: SharedStore,
        keyring: Keyring,
        raft: Addr<RaftActor>,
    ) -> Self {
        Self {
            state_dir,
            store,
            keyring,
            raft,
        }
    }

    fn reconcile(&self) -> Result<(), DaemonError> {
        let sealed = {
            let store = self.store.read();
            if store.cluster().is_none() {
                // Nothing applied yet: an empty store says nothing about autolock.
                return Ok(());
            }
            store.autolock().cloned()
        };
        let Some(key) = self.keyring.data_key() else {
            tracing::warn!(
                "autolock changed, but this manager holds no data key (its state directory predates secrets): nothing to rewrap"
            );
            return Ok(());
        };
        match sealed {
            Some(sealed) => {
                let unlock = open_unlock_key(&key, &sealed)
                    .map_err(|e| DaemonError::Keys(format!("the store's unlock key: {e}")))?;
                if !keys::locked_by(&self.state_dir, &unlock) {
                    keys::save_locked(&self.state_dir, &key, &unlock)?;
                    tracing::info!("autolock: the data key is now wrapped by the unlock key");
                }
            }
            None => {
                if !keys::unlocked_pair(&self.state_dir) {
                    keys::save(&self.state_dir, &key)?;
                    tracing::info!("autolock off: the data key is wrapped by a key file again");
                }
            }
        }
        Ok(())
    }
}

impl Actor for KeyKeeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.raft.do_send(Subscribe {
            events: Some(ctx.address().recipient()),
            leadership: None,
        });
    }
}

impl Handler<StoreEvents> for KeyKeeper {
    type Result = ();

    fn handle(&mut self, StoreEvents(batch): StoreEvents, _: &mut Context<Self>) {
        let changed = batch.lossy
            || batch
                .events
                .iter()
                .any(|indexed| matches!(indexed.event, Event::AutolockChanged));
        if !changed {
            return;
        }
        if let Err(error) = self.reconcile() {
            tracing::error!(%error, "cannot rewrap the data key for the new autolock setting");
        }
    }
}
