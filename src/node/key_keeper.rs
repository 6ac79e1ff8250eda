//! Every manager's data-key file follows autolock (SPEC §9): when the store says autolock is
//! on (its unlock key sealed with the data key), the file is rewrapped by the unlock key and
//! the key-encryption-key file deleted; when it goes off, a fresh key-encryption key wraps it
//! again. Driven by the `AutolockChanged` store event (and lossy batches, after which the
//! store is read whole); idempotent, so the replay of the log at a restart changes nothing.
//!
//! A manager that starts without the data key (a worker just promoted: `node promote` hands
//! it a manager certificate, not the key) fetches it from another manager over their mutual
//! TLS ([`WireMessage::DataKeyFetch`]), keeps it wrapped like any other manager and follows
//! autolock from then on. A state directory older than secrets finds no manager with a key:
//! the fetch gives up after [`FETCH_ATTEMPTS_MAX`] rounds, and the manager runs without one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use actix::prelude::*;

use crate::actors::control::open_unlock_key;
use crate::actors::raft::{RaftActor, StoreEvents, Subscribe};
use crate::actors::transport::Request;
use crate::consensus::store_machine::SharedStore;
use crate::core::model::NodeRole;
use crate::core::secrets::seal::KEY_BYTES;
use crate::core::secrets::{DataKey, Keyring, Plaintext};
use crate::core::store::Event;
use crate::net::message::Message as WireMessage;
use crate::net::tls::Role;
use crate::net::transport::Expect;
use crate::node::daemon::DaemonError;
use crate::node::keys;

/// Rounds of asking every known manager for the data key before giving up.
pub const FETCH_ATTEMPTS_MAX: u32 = 8;
/// The wait before the first round (the store and the peers come up meanwhile), doubled
/// after every round that found no key, up to [`FETCH_BACKOFF_MAX_MS`].
pub const FETCH_BACKOFF_MS: u64 = 500;
/// The longest wait between two rounds.
pub const FETCH_BACKOFF_MAX_MS: u64 = 16_000;
/// How long the files wait for a store that is ahead of the batch that changed autolock.
pub const SETTLE_WAIT_MS: u64 = 500;
/// How long one manager may take to answer.
pub const FETCH_TIMEOUT_MS: u64 = 3_000;

/// Where a manager without the data key asks for it.
pub struct KeyFetch {
    /// This node's endpoint, for requests.
    pub requests: Recipient<Request>,
    /// This manager's own address (not asked).
    pub own_addr: String,
    /// Managers known from the state directory (the store's come on top).
    pub manager_addrs: Vec<String>,
}

/// Keeps this manager's data-key file wrapped as autolock says. See the module docs.
pub struct KeyKeeper {
    state_dir: PathBuf,
    store: SharedStore,
    keyring: Keyring,
    raft: Addr<RaftActor>,
    fetch: KeyFetch,
    /// Autolock changed and the files have not followed yet.
    pending: bool,
}

impl KeyKeeper {
    /// A keeper of `state_dir`'s key files, reading `store` (fed by `raft`) and `keyring`;
    /// it fetches the key as `fetch` says when the keyring starts empty.
    pub fn new(
        state_dir: PathBuf,
        store: SharedStore,
        keyring: Keyring,
        raft: Addr<RaftActor>,
        fetch: KeyFetch,
    ) -> Self {
        Self {
            state_dir,
            store,
            keyring,
            raft,
            fetch,
            pending: false,
        }
    }

    /// The managers to ask: the store's and the state directory's, never this one.
    fn fetch_candidates(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<String> = self
            .store
            .read()
            .nodes()
            .values()
            .filter(|node| node.role == NodeRole::Manager)
            .map(|node| node.addr.clone())
            .collect();
        addrs.extend(self.fetch.manager_addrs.iter().cloned());
        addrs.sort();
        addrs.dedup();
        addrs
            .iter()
            .filter(|addr| **addr != self.fetch.own_addr)
            .filter_map(|addr| addr.parse().ok())
            .collect()
    }

    fn fetch_later(&self, ctx: &mut Context<Self>, attempt: u32) {
        let backoff_ms = FETCH_BACKOFF_MS
            .saturating_mul(1 << attempt.min(16))
            .min(FETCH_BACKOFF_MAX_MS);
        ctx.run_later(Duration::from_millis(backoff_ms), move |keeper, ctx| {
            keeper.fetch_round(ctx, attempt)
        });
    }

    /// Asks each manager in turn for the data key; another round later if none had it.
    fn fetch_round(&mut self, ctx: &mut Context<Self>, attempt: u32) {
        if self.keyring.data_key().is_some() {
            return;
        }
        let candidates = self.fetch_candidates();
        let requests = self.fetch.requests.clone();
        let round = async move {
            for addr in candidates {
                let reply = requests
                    .send(Request {
                        to: addr,
                        expect: Expect::Role(Role::Manager),
                        message: WireMessage::DataKeyFetch,
                        timeout: Duration::from_millis(FETCH_TIMEOUT_MS),
                    })
                    .await;
                match reply {
                    Ok(Ok(WireMessage::DataKey(Plaintext(bytes)))) => {
                        match <[u8; KEY_BYTES]>::try_from(bytes.as_slice()) {
                            Ok(bytes) => return Some((addr, DataKey::from_bytes(bytes))),
                            Err(_) => {
                                tracing::warn!(%addr, "a data key of the wrong size; ignored")
                            }
                        }
                    }
                    Ok(Ok(other)) => {
                        tracing::debug!(%addr, reply = other.kind_name(), "no data key there")
                    }
                    Ok(Err(error)) => tracing::debug!(%addr, %error, "no data key there"),
                    Err(error) => tracing::debug!(%error, "the endpoint is gone"),
                }
            }
            None
        };
        ctx.spawn(round.into_actor(self).map(move |found, keeper, ctx| {
            match found {
                Some((addr, key)) => keeper.adopt(addr, key),
                None if attempt + 1 < FETCH_ATTEMPTS_MAX => keeper.fetch_later(ctx, attempt + 1),
                None => tracing::warn!(
                    "no manager gave this manager the data key (state directories older than secrets hold none): it cannot create or deliver secrets"
                ),
            }
        }));
    }

    /// Keeps a fetched key: on disk first (wrapped, and by the unlock key under autolock),
    /// then in the keyring.
    fn adopt(&mut self, from: SocketAddr, key: DataKey) {
        if let Err(error) = keys::save(&self.state_dir, &key) {
            tracing::error!(%error, "cannot keep the data key fetched from another manager");
            return;
        }
        self.keyring.set(key);
        tracing::info!(%from, "received the data key from another manager");
        if let Err(error) = self.reconcile() {
            tracing::error!(%error, "cannot wrap the fetched data key for autolock");
        }
    }

    fn settle(&mut self) {
        if !self.pending {
            return;
        }
        self.pending = false;
        if let Err(error) = self.reconcile() {
            tracing::error!(%error, "cannot rewrap the data key for the new autolock setting");
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
        if self.keyring.data_key().is_none() {
            self.fetch_later(ctx, 0);
        }
    }
}

impl Handler<StoreEvents> for KeyKeeper {
    type Result = ();

    fn handle(&mut self, StoreEvents(batch): StoreEvents, ctx: &mut Context<Self>) {
        let changed = batch.lossy
            || batch
                .events
                .iter()
                .any(|indexed| matches!(indexed.event, Event::AutolockChanged));
        self.pending |= changed;
        if !self.pending {
            return;
        }
        // The store may be ahead of this batch (the replay of the log at a restart): a
        // setting it has already left behind (autolock off, then on again) must not be
        // written, not even briefly; the batch that catches up, or a short wait, settles it.
        if self.store.read().applied_index() <= batch.through_index {
            self.settle();
        } else if changed {
            ctx.run_later(Duration::from_millis(SETTLE_WAIT_MS), |keeper, _| {
                keeper.settle()
            });
        }
    }
}
