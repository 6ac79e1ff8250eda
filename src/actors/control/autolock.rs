//! Autolock on the leader (SPEC §9): `swarm update --autolock`, `swarm unlock-key
//! [--rotate]`. The unlock key lives in the store sealed with the data key (so every manager
//! can rewrap its data-key file with it, and the leader can show it again); each manager's
//! `node::key_keeper` rewraps on the `AutolockChanged` event. `swarm unlock` is never handled
//! here: a locked manager answers it itself (`node::locked`), and an unlocked one refuses it.

use std::sync::Arc;

use super::errors::{mailbox, wire_error};
use super::routing::RequestContext;
use crate::actors::raft::{LinearizableRead, Propose};
use crate::core::secrets::seal::KEY_BYTES;
use crate::core::secrets::{DataKey, Plaintext, SealError, Sealed, UnlockKey};
use crate::core::store::Command;
use crate::net::admin::{AdminReply, AdminRequest};
use crate::net::message::{ErrorKind, WireError};

/// The associated data the unlock key is sealed with in the store: it opens nowhere else.
pub const UNLOCK_KEY_CONTEXT: &[u8] = b"flotilla unlock key v1";
/// `swarm unlock-key` without autolock.
pub const NOT_ENABLED: &str = "autolock is not enabled";
/// `swarm unlock` sent to a manager that is not locked.
pub const NOT_LOCKED: &str = "this manager is not locked";

/// Whether the leader answers `request` here.
pub(super) fn handles(request: &AdminRequest) -> bool {
    matches!(
        request,
        AdminRequest::SwarmAutolock { .. } | AdminRequest::SwarmUnlockKey { .. }
    )
}

/// The refusal of `swarm unlock` by a manager that is running (it is never forwarded).
pub(super) fn not_locked() -> WireError {
    WireError::new(ErrorKind::BadRequest, NOT_LOCKED)
}

/// The unlock key sealed for the store.
pub fn seal_unlock_key(data_key: &DataKey, unlock: &UnlockKey) -> Result<Sealed, SealError> {
    data_key.seal(unlock.expose_bytes(), UNLOCK_KEY_CONTEXT)
}

/// The unlock key the store holds sealed.
pub fn open_unlock_key(data_key: &DataKey, sealed: &Sealed) -> Result<UnlockKey, SealError> {
    let bytes = data_key.open(sealed, UNLOCK_KEY_CONTEXT)?;
    let bytes: [u8; KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| SealError::Open)?;
    Ok(UnlockKey::from_bytes(bytes))
}

fn internal(error: impl ToString) -> WireError {
    WireError::new(ErrorKind::Internal, error.to_string())
}

fn printed(unlock: &UnlockKey) -> AdminReply {
    AdminReply::UnlockKey(Some(Plaintext(unlock.display_secret().into_bytes())))
}

fn data_key(context: &RequestContext) -> Result<Arc<DataKey>, WireError> {
    context.keyring.data_key().ok_or_else(|| {
        WireError::new(
            ErrorKind::Conflict,
            "the leader holds no data key (its state directory predates secrets), so it cannot seal an unlock key",
        )
    })
}

async fn propose(context: &RequestContext, sealed: Option<Sealed>) -> Result<(), WireError> {
    context
        .raft
        .send(Propose {
            command: Command::SetAutolock(sealed),
        })
        .await
        .map_err(mailbox)?
        .map_err(wire_error)?;
    Ok(())
}

/// Carries out an autolock request on this manager, the leader.
pub(super) async fn on_leader(
    context: &RequestContext,
    request: &AdminRequest,
) -> Result<AdminReply, WireError> {
    context
        .raft
        .send(LinearizableRead)
        .await
        .map_err(mailbox)?
        .map_err(wire_error)?;
    let current = context.store.read().autolock().cloned();
    match request {
        AdminRequest::SwarmAutolock { enabled: false } => {
            if current.is_some() {
                propose(context, None).await?;
            }
            Ok(AdminReply::UnlockKey(None))
        }
        AdminRequest::SwarmAutolock { enabled: true } => {
            // Already on: the key stays what the operator was given and is not printed again
            // (as in Docker; `unlock-key` shows it, `unlock-key --rotate` replaces it).
            if current.is_some() {
                return Ok(AdminReply::UnlockKey(None));
            }
            let key = data_key(context)?;
            let unlock = UnlockKey::generate().map_err(internal)?;
            propose(
                context,
                Some(seal_unlock_key(&key, &unlock).map_err(internal)?),
            )
            .await?;
            Ok(printed(&unlock))
        }
        AdminRequest::SwarmUnlockKey { rotate } => {
            let key = data_key(context)?;
            let Some(sealed) = current else {
                return Err(WireError::new(ErrorKind::BadRequest, NOT_ENABLED));
            };
            if !rotate {
                return Ok(printed(&open_unlock_key(&key, &sealed).map_err(internal)?));
            }
            let unlock = UnlockKey::generate().map_err(internal)?;
            propose(
                context,
                Some(seal_unlock_key(&key, &unlock).map_err(internal)?),
            )
            .await?;
            Ok(printed(&unlock))
        }
        _ => Err(WireError::new(
            ErrorKind::Internal,
            "not an autolock request",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sealed_unlock_key_opens_with_the_data_key_only() {
        let data = DataKey::generate().expect("key");
        let unlock = UnlockKey::generate().expect("unlock key");
        let sealed = seal_unlock_key(&data, &unlock).expect("seal");
        assert!(!sealed
            .ciphertext
            .windows(KEY_BYTES)
            .any(|window| window == unlock.expose_bytes()));
        assert_eq!(open_unlock_key(&data, &sealed).expect("open"), unlock);
        let other = DataKey::generate().expect("key");
        assert_eq!(open_unlock_key(&other, &sealed), Err(SealError::Open));
        // A secret sealed under another context is not an unlock key.
        let secret = data
            .seal(unlock.expose_bytes(), b"secret s1 v1")
            .expect("seal");
        assert_eq!(open_unlock_key(&data, &secret), Err(SealError::Open));
    }
}
