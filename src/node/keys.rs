//! The cluster's data key in a manager's state directory (SPEC §9, `docs/secrets.md` "Keys").
//!
//! ```text
//! <state-dir>/data-key.json       the data key, wrapped (a `WrappedKey`, JSON; mode 0600)
//! <state-dir>/key-encryption.key  the key-encryption key that wraps it (32 bytes; mode 0600),
//!                                 absent under autolock: then the unlock key wraps it
//! ```
//!
//! Neither file holds the data key's bytes: a copy of the data-key file alone opens nothing,
//! and under autolock the whole state directory opens nothing without the operator's key.
//! Both are written through a temporary file and a rename, so a crash leaves the old file or
//! the new one, never half of either.

use std::path::{Path, PathBuf};

use crate::core::secrets::{DataKey, KeyEncryptionKey, SealError, UnlockKey, WrappedKey};
use crate::node::daemon::DaemonError;
use crate::node::state::{self, StateError};

/// The wrapped data key.
pub const DATA_KEY_FILE: &str = "data-key.json";
/// The key-encryption key of [`DATA_KEY_FILE`] (not under autolock).
pub const KEK_FILE: &str = "key-encryption.key";

/// What a manager's state directory holds of the data key.
#[derive(Debug)]
pub enum StoredKey {
    /// No data-key file: a state directory older than secrets (or a worker's).
    Missing,
    /// The data key, opened with the key-encryption key beside it.
    Open(DataKey),
    /// Autolocked: only the operator's unlock key opens it.
    Locked(WrappedKey),
}

fn corrupt(path: &Path, reason: impl Into<String>) -> DaemonError {
    DaemonError::State(StateError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    })
}

fn random_failed(error: SealError) -> DaemonError {
    DaemonError::Keys(error.to_string())
}

fn read_file(path: &Path) -> Result<Vec<u8>, DaemonError> {
    std::fs::read(path).map_err(|source| {
        DaemonError::State(StateError::Io {
            path: path.to_path_buf(),
            source,
        })
    })
}

fn write_wrapped(state_dir: &Path, wrapped: &WrappedKey) -> Result<(), DaemonError> {
    let path = state_dir.join(DATA_KEY_FILE);
    let bytes = serde_json::to_vec_pretty(wrapped).map_err(|e| corrupt(&path, e.to_string()))?;
    Ok(state::write_private(&path, &bytes)?)
}

fn read_wrapped(path: &Path) -> Result<WrappedKey, DaemonError> {
    let bytes = read_file(path)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| corrupt(path, format!("not a wrapped data key: {e}")))
}

fn read_kek(path: &Path) -> Result<KeyEncryptionKey, DaemonError> {
    let bytes = read_file(path)?;
    let bytes: [u8; crate::core::secrets::seal::KEY_BYTES] =
        bytes.as_slice().try_into().map_err(|_| {
            corrupt(
                path,
                format!(
                    "holds {} bytes, not a {}-byte key",
                    bytes.len(),
                    crate::core::secrets::seal::KEY_BYTES
                ),
            )
        })?;
    Ok(KeyEncryptionKey::from_bytes(bytes))
}

/// Keeps `key` in `state_dir` wrapped by a new key-encryption key (written first: a crash
/// between the two writes leaves the old, still consistent, pair or an unused new key).
pub fn save(state_dir: &Path, key: &DataKey) -> Result<(), DaemonError> {
    let kek = KeyEncryptionKey::generate().map_err(random_failed)?;
    let wrapped = kek.wrap(key, false).map_err(random_failed)?;
    state::write_private(&state_dir.join(KEK_FILE), kek.expose_bytes())?;
    write_wrapped(state_dir, &wrapped)
}

/// Keeps `key` in `state_dir` wrapped by `unlock` (autolock), and deletes the key-encryption
/// key file: from now on only the unlock key opens it.
pub fn save_locked(state_dir: &Path, key: &DataKey, unlock: &UnlockKey) -> Result<(), DaemonError> {
    let wrapped = unlock
        .key_encryption_key()
        .wrap(key, true)
        .map_err(random_failed)?;
    write_wrapped(state_dir, &wrapped)?;
    remove_if_present(&state_dir.join(KEK_FILE))?;
    sync_dir(state_dir)
}

/// Reads what `state_dir` holds of the data key. A file that is altered, truncated or from
/// another node is an error naming it, never a key that silently differs.
pub fn load(state_dir: &Path) -> Result<StoredKey, DaemonError> {
    let path = state_dir.join(DATA_KEY_FILE);
    if !path.exists() {
        return Ok(StoredKey::Missing);
    }
    let wrapped = read_wrapped(&path)?;
    if wrapped.by_unlock_key {
        return Ok(StoredKey::Locked(wrapped));
    }
    let kek_path = state_dir.join(KEK_FILE);
    if !kek_path.exists() {
        return Err(corrupt(
            &kek_path,
            format!("missing: {} cannot be opened without it", path.display()),
        ));
    }
    let kek = read_kek(&kek_path)?;
    kek.unwrap_key(&wrapped).map(StoredKey::Open).map_err(|_| {
        corrupt(
            &path,
            format!(
                "does not open with {}: one of the two was altered or comes from another node",
                kek_path.display()
            ),
        )
    })
}

/// The data key of an autolocked state directory, if `unlock` is its unlock key.
pub fn open_locked(wrapped: &WrappedKey, unlock: &UnlockKey) -> Option<DataKey> {
    unlock.key_encryption_key().unwrap_key(wrapped).ok()
}

/// Whether `state_dir`'s data key is wrapped by `unlock` now (so a rewrap can be skipped).
pub fn locked_by(state_dir: &Path, unlock: &UnlockKey) -> bool {
    match read_wrapped(&state_dir.join(DATA_KEY_FILE)) {
        Ok(wrapped) => wrapped.by_unlock_key && open_locked(&wrapped, unlock).is_some(),
        Err(_) => false,
    }
}

/// Whether `state_dir` holds an unlocked pair (data-key file wrapped by the file beside it).
pub fn unlocked_pair(state_dir: &Path) -> bool {
    matches!(load(state_dir), Ok(StoredKey::Open(_)))
}

/// Deletes both key files (a demoted manager keeps no data key). Returns the files deleted.
pub fn wipe(state_dir: &Path) -> Result<Vec<PathBuf>, DaemonError> {
    let mut deleted = Vec::new();
    for name in [DATA_KEY_FILE, KEK_FILE] {
        let path = state_dir.join(name);
        if remove_if_present(&path)? {
            deleted.push(path);
        }
    }
    if !deleted.is_empty() {
        sync_dir(state_dir)?;
    }
    Ok(deleted)
}

fn remove_if_present(path: &Path) -> Result<bool, DaemonError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(DaemonError::State(StateError::Io {
            path: path.to_path_buf(),
            source,
        })),
    }
}

fn sync_dir(dir: &Path) -> Result<(), DaemonError> {
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| {
            DaemonError::State(StateError::Io {
                path: dir.to_path_buf(),
                source,
            })
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn open(dir: &Path) -> DataKey {
        match load(dir).expect("load") {
            StoredKey::Open(key) => key,
            other => panic!("expected an open key, got {other:?}"),
        }
    }

    /// No file in `dir` holds `key`'s bytes, raw or base64.
    fn assert_no_file_holds(dir: &Path, key: &DataKey) {
        use base64::Engine;
        let raw = key.expose_bytes();
        let encoded = [
            base64::engine::general_purpose::STANDARD.encode(raw),
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(raw),
        ];
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("read");
            assert!(
                !bytes.windows(raw.len()).any(|window| window == raw),
                "{} holds the data key's bytes",
                path.display()
            );
            let text = String::from_utf8_lossy(&bytes);
            for encoded in &encoded {
                assert!(!text.contains(encoded.as_str()), "{}", path.display());
            }
        }
    }

    #[test]
    fn a_saved_key_loads_back_from_0600_files_that_do_not_hold_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            load(dir.path()).expect("load"),
            StoredKey::Missing
        ));
        let key = DataKey::generate().expect("key");
        save(dir.path(), &key).expect("save");
        assert_eq!(open(dir.path()), key);
        for name in [DATA_KEY_FILE, KEK_FILE] {
            let mode = std::fs::metadata(dir.path().join(name))
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        assert_no_file_holds(dir.path(), &key);
        assert!(unlocked_pair(dir.path()));
    }

    #[test]
    fn a_tampered_or_mismatched_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = DataKey::generate().expect("key");
        save(dir.path(), &key).expect("save");
        let path = dir.path().join(DATA_KEY_FILE);
        let mut wrapped = read_wrapped(&path).expect("read");
        wrapped.sealed.ciphertext[3] ^= 0x40;
        write_wrapped(dir.path(), &wrapped).expect("write");
        let error = load(dir.path()).expect_err("tampered").to_string();
        assert!(
            error.contains(DATA_KEY_FILE) && error.contains("altered"),
            "{error}"
        );

        // Another node's key-encryption key: refused alike.
        save(dir.path(), &key).expect("save");
        let other = tempfile::tempdir().expect("tempdir");
        save(other.path(), &key).expect("save");
        std::fs::copy(other.path().join(KEK_FILE), dir.path().join(KEK_FILE)).expect("copy");
        assert!(load(dir.path()).is_err());

        // Garbage and a short key file: errors, not panics.
        std::fs::write(&path, b"{not json").expect("write");
        let error = load(dir.path()).expect_err("garbage").to_string();
        assert!(error.contains("not a wrapped data key"), "{error}");
        save(dir.path(), &key).expect("save");
        std::fs::write(dir.path().join(KEK_FILE), b"short").expect("write");
        let error = load(dir.path()).expect_err("short").to_string();
        assert!(error.contains("not a 32-byte key"), "{error}");
        std::fs::remove_file(dir.path().join(KEK_FILE)).expect("remove");
        let error = load(dir.path()).expect_err("missing").to_string();
        assert!(error.contains("missing"), "{error}");
    }

    #[test]
    fn under_autolock_only_the_unlock_key_opens_it_and_unlocking_writes_a_new_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = DataKey::generate().expect("key");
        save(dir.path(), &key).expect("save");
        let unlock = UnlockKey::generate().expect("unlock key");
        save_locked(dir.path(), &key, &unlock).expect("lock");
        assert!(!dir.path().join(KEK_FILE).exists(), "the KEK file goes");
        assert!(locked_by(dir.path(), &unlock));
        let StoredKey::Locked(wrapped) = load(dir.path()).expect("load") else {
            panic!("expected a locked key");
        };
        assert_eq!(open_locked(&wrapped, &unlock), Some(key.clone()));
        let wrong = UnlockKey::generate().expect("unlock key");
        assert_eq!(open_locked(&wrapped, &wrong), None);
        assert!(!locked_by(dir.path(), &wrong));
        assert_no_file_holds(dir.path(), &key);

        save(dir.path(), &key).expect("unlock");
        assert_eq!(open(dir.path()), key);
        assert_eq!(wipe(dir.path()).expect("wipe").len(), 2);
        assert!(matches!(
            load(dir.path()).expect("load"),
            StoredKey::Missing
        ));
    }
}
