//! Secrets and configs (SPEC §9): the rules their names and data follow, and the sealing that
//! keeps a secret's data encrypted wherever the cluster stores it.
//!
//! - [`names`]: Docker's name rules and the 500 KiB data limit, checked before anything
//!   changes.
//! - [`object`]: secrets and configs as the store keeps them.
//! - [`keyring`]: where a manager's processes find the cluster's data key.
//! - [`seal`]: authenticated encryption (AES-256-GCM, `ring`) of secret data with the
//!   cluster's data key, and the wrapping of that key by a key-encryption key (a file in the
//!   state directory, or the unlock key under autolock). The key hierarchy is in
//!   `docs/secrets.md`.

pub mod keyring;
pub mod names;
pub mod object;
pub mod seal;

pub use keyring::Keyring;
pub use names::{validate_data, validate_name, DATA_BYTES_MAX, NAME_CHARS_MAX};
pub use object::{seal_context, Plaintext, SecretData, SecretKind, SecretObject, SecretVersion};
pub use seal::{DataKey, KeyEncryptionKey, SealError, Sealed, UnlockKey, WrappedKey};
