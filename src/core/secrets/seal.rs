//! Sealing secret data (SPEC §9): AES-256-GCM from `ring`, one random 96-bit nonce per seal,
//! and associated data that binds each ciphertext to what it is (a secret's ID and version, or
//! "the data key"), so a sealed value cannot be moved to another place and still open.
//!
//! Keys: the cluster's [`DataKey`] seals every secret's data; a [`KeyEncryptionKey`] wraps the
//! data key for the state directory ([`WrappedKey`]). Without autolock the key-encryption key is
//! a random file beside it; under autolock it is derived from nothing but the [`UnlockKey`] the
//! operator holds, so a copied state directory opens nothing. No key type prints its bytes.

use std::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// Key length of every key here (AES-256).
pub const KEY_BYTES: usize = 32;
/// The unlock key's printed form starts with this (then base64 of the key's bytes).
pub const UNLOCK_KEY_PREFIX: &str = "FLTKEY-1-";
const DATA_KEY_CONTEXT: &[u8] = b"flotilla data key v1";

/// Why sealing or opening failed. Opening fails the same way whatever was wrong (a wrong key,
/// tampered bytes, another value's associated data): AEAD tells no more.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The system's random generator failed.
    #[error("no randomness available for a key or nonce")]
    Random,
    /// The value does not open with this key and context.
    #[error("sealed data does not open: wrong key, or the data was altered")]
    Open,
    /// An unlock key that is not one.
    #[error("invalid unlock key: {0}")]
    BadUnlockKey(String),
}

/// A sealed value: the nonce and the ciphertext with its tag.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The nonce it was sealed with.
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
    /// Ciphertext followed by the 16-byte tag.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.ciphertext.len())
    }
}

fn random_bytes<const N: usize>(random: &dyn SecureRandom) -> Result<[u8; N], SealError> {
    let mut bytes = [0u8; N];
    random.fill(&mut bytes).map_err(|_| SealError::Random)?;
    Ok(bytes)
}

fn aead_key(bytes: &[u8; KEY_BYTES]) -> LessSafeKey {
    LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, bytes).expect("invariant: AES-256 keys are 32 bytes"),
    )
}

fn seal_with(
    bytes: &[u8; KEY_BYTES],
    plaintext: &[u8],
    context: &[u8],
    random: &dyn SecureRandom,
) -> Result<Sealed, SealError> {
    let nonce: [u8; NONCE_LEN] = random_bytes(random)?;
    let mut ciphertext = plaintext.to_vec();
    aead_key(bytes)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context),
            &mut ciphertext,
        )
        .map_err(|_| SealError::Open)?;
    Ok(Sealed {
        nonce: nonce.to_vec(),
        ciphertext,
    })
}

fn open_with(
    bytes: &[u8; KEY_BYTES],
    sealed: &Sealed,
    context: &[u8],
) -> Result<Vec<u8>, SealError> {
    let nonce: [u8; NONCE_LEN] = sealed
        .nonce
        .as_slice()
        .try_into()
        .map_err(|_| SealError::Open)?;
    let mut buffer = sealed.ciphertext.clone();
    let plaintext = aead_key(bytes)
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context),
            &mut buffer,
        )
        .map_err(|_| SealError::Open)?;
    Ok(plaintext.to_vec())
}

macro_rules! key_type {
    ($name:ident, $what:literal) => {
        #[doc = concat!("The ", $what, " (32 random bytes; its `Debug` hides them).")]
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name([u8; KEY_BYTES]);

        impl $name {
            #[doc = concat!("A new random ", $what, ".")]
            pub fn generate() -> Result<Self, SealError> {
                random_bytes(&SystemRandom::new()).map(Self)
            }

            /// The key from its bytes (read from where it is kept).
            pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
                Self(bytes)
            }

            /// Its bytes, to be kept where only this node reads them.
            pub fn expose_bytes(&self) -> &[u8; KEY_BYTES] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                // Best effort: the bytes do not linger in freed memory.
                for byte in self.0.iter_mut() {
                    // SAFETY: a valid, aligned, exclusively borrowed byte.
                    unsafe { std::ptr::write_volatile(byte, 0) };
                }
            }
        }
    };
}

key_type!(
    DataKey,
    "cluster's data key, which seals every secret's data"
);
key_type!(
    KeyEncryptionKey,
    "key-encryption key, which wraps the data key at rest"
);
key_type!(
    UnlockKey,
    "unlock key of an autolocked cluster, held by the operator"
);

impl DataKey {
    /// Seals `plaintext`, bound to `context` (e.g. the secret's ID and version).
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Sealed, SealError> {
        seal_with(&self.0, plaintext, context, &SystemRandom::new())
    }

    /// Opens what [`DataKey::seal`] sealed with the same `context`.
    pub fn open(&self, sealed: &Sealed, context: &[u8]) -> Result<Vec<u8>, SealError> {
        open_with(&self.0, sealed, context)
    }
}

/// The data key as kept at rest: sealed by a key-encryption key.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct WrappedKey {
    /// The data key's bytes, sealed.
    pub sealed: Sealed,
    /// Whether the key-encryption key is the unlock key (autolock) or the state file's.
    pub by_unlock_key: bool,
}

impl KeyEncryptionKey {
    /// Wraps `key` for keeping at rest.
    pub fn wrap(&self, key: &DataKey, by_unlock_key: bool) -> Result<WrappedKey, SealError> {
        Ok(WrappedKey {
            sealed: seal_with(&self.0, &key.0, DATA_KEY_CONTEXT, &SystemRandom::new())?,
            by_unlock_key,
        })
    }

    /// The data key `wrapped` holds; [`SealError::Open`] with the wrong key.
    pub fn unwrap_key(&self, wrapped: &WrappedKey) -> Result<DataKey, SealError> {
        let bytes = open_with(&self.0, &wrapped.sealed, DATA_KEY_CONTEXT)?;
        let bytes: [u8; KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| SealError::Open)?;
        Ok(DataKey(bytes))
    }
}

impl UnlockKey {
    /// The key-encryption key it stands for under autolock.
    pub fn key_encryption_key(&self) -> KeyEncryptionKey {
        KeyEncryptionKey(self.0)
    }

    /// Its printed form, shown once to the operator: `FLTKEY-1-<base64>`.
    pub fn display_secret(&self) -> String {
        use base64::Engine;
        format!(
            "{UNLOCK_KEY_PREFIX}{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.0)
        )
    }

    /// Parses [`UnlockKey::display_secret`]'s form (surrounding white space ignored).
    pub fn parse(text: &str) -> Result<UnlockKey, SealError> {
        use base64::Engine;
        let text = text.trim();
        let Some(encoded) = text.strip_prefix(UNLOCK_KEY_PREFIX) else {
            return Err(SealError::BadUnlockKey(format!(
                "it must start with {UNLOCK_KEY_PREFIX}"
            )));
        };
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(encoded)
            .map_err(|error| SealError::BadUnlockKey(error.to_string()))?;
        let bytes: [u8; KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| {
            SealError::BadUnlockKey(format!("it holds {} bytes, not {KEY_BYTES}", bytes.len()))
        })?;
        Ok(UnlockKey(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_its_key_and_context() {
        let key = DataKey::generate().expect("key");
        let sealed = key.seal(b"hunter2", b"secret s1 v1").expect("seal");
        assert!(!sealed
            .ciphertext
            .windows(7)
            .any(|window| window == b"hunter2"));
        assert_eq!(
            key.open(&sealed, b"secret s1 v1").expect("open"),
            b"hunter2"
        );
        // Another secret's place, another key, a flipped bit: all refused alike.
        assert_eq!(key.open(&sealed, b"secret s2 v1"), Err(SealError::Open));
        let other = DataKey::generate().expect("key");
        assert_eq!(other.open(&sealed, b"secret s1 v1"), Err(SealError::Open));
        let mut altered = sealed.clone();
        altered.ciphertext[0] ^= 1;
        assert_eq!(key.open(&altered, b"secret s1 v1"), Err(SealError::Open));
        let mut short_nonce = sealed;
        short_nonce.nonce.pop();
        assert_eq!(
            key.open(&short_nonce, b"secret s1 v1"),
            Err(SealError::Open)
        );
    }

    #[test]
    fn each_seal_takes_a_fresh_nonce() {
        let key = DataKey::generate().expect("key");
        let (a, b) = (
            key.seal(b"same", b"c").expect("seal"),
            key.seal(b"same", b"c").expect("seal"),
        );
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn the_data_key_unwraps_only_with_its_key_encryption_key() {
        let data = DataKey::generate().expect("key");
        let kek = KeyEncryptionKey::generate().expect("kek");
        let wrapped = kek.wrap(&data, false).expect("wrap");
        assert_eq!(kek.unwrap_key(&wrapped).expect("unwrap"), data);
        let wrong = KeyEncryptionKey::generate().expect("kek");
        assert_eq!(wrong.unwrap_key(&wrapped), Err(SealError::Open));
    }

    #[test]
    fn an_unlock_key_prints_and_parses_back_and_bad_ones_are_refused() {
        let unlock = UnlockKey::generate().expect("unlock key");
        let printed = unlock.display_secret();
        assert!(printed.starts_with("FLTKEY-1-"), "{printed}");
        assert_eq!(
            UnlockKey::parse(&format!("  {printed}\n")).expect("parse"),
            unlock
        );
        let data = DataKey::generate().expect("key");
        let wrapped = unlock.key_encryption_key().wrap(&data, true).expect("wrap");
        let again = UnlockKey::parse(&printed).expect("parse");
        assert_eq!(
            again
                .key_encryption_key()
                .unwrap_key(&wrapped)
                .expect("unwrap"),
            data
        );

        for bad in ["", "SWMKEY-1-abc", "FLTKEY-1-!!!", "FLTKEY-1-AAAA"] {
            let error = UnlockKey::parse(bad).expect_err(bad).to_string();
            assert!(error.starts_with("invalid unlock key"), "{bad}: {error}");
        }
    }

    #[test]
    fn no_key_prints_its_bytes() {
        let key = DataKey::from_bytes([0xAB; KEY_BYTES]);
        assert_eq!(format!("{key:?}"), "DataKey(..)");
        let unlock = UnlockKey::from_bytes([0xAB; KEY_BYTES]);
        assert_eq!(format!("{unlock:?}"), "UnlockKey(..)");
    }
}
