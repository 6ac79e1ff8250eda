//! The admin's proof on a control command: the CLI signs every request with the admin key, and
//! every manager that acts on it (the one the CLI reached, and the leader it forwards to)
//! checks the signature, the admin certificate behind it, its freshness and that it was not
//! seen before. A manager certificate alone can therefore never issue a control command.
//!
//! The signed bytes are the bincode of [`ControlStatement`] (request, issue time, nonce),
//! prefixed with [`SIGNING_CONTEXT`]; they travel as bytes, so a forwarding follower passes
//! them on untouched and nothing is ever re-encoded before it is verified.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use serde::{Deserialize, Serialize};

use crate::net::admin::AdminRequest;
use crate::net::tls::{self, Credentials, Role};

/// Prefixed to the statement before signing, so that no other signature by the admin key (a
/// TLS handshake, say) can ever be taken for a control command.
pub const SIGNING_CONTEXT: &[u8] = b"flotilla control command v1\0";

/// How far a command's issue time may be from the verifier's clock, either way.
pub const FRESHNESS: Duration = Duration::from_secs(5 * 60);

/// Most nonces a manager remembers (each for [`FRESHNESS`] past its issue time). Only
/// verified commands enter, so only the admin can fill it; a full cache refuses new commands
/// rather than forget a nonce that could then be replayed.
pub const REPLAY_CACHE_MAX: usize = 100_000;

/// Bytes in a nonce.
pub const NONCE_BYTES: usize = 16;

/// What the admin signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlStatement {
    /// The command.
    pub request: AdminRequest,
    /// When the CLI signed it (Unix milliseconds).
    pub issued_at_ms: u64,
    /// Random, unique per command: a second arrival within the freshness window is a replay.
    pub nonce: [u8; NONCE_BYTES],
}

/// A control command with the admin's proof, as it travels in `Message::Control` and (passed
/// on unchanged) in `Message::Forwarded`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedControl {
    /// The bincode of a [`ControlStatement`]: exactly the bytes signed (after the context).
    #[serde(with = "serde_bytes")]
    pub statement: Vec<u8>,
    /// The admin certificate (DER) whose key signed.
    #[serde(with = "serde_bytes")]
    pub admin_cert_der: Vec<u8>,
    /// ECDSA P-256 SHA-256 signature (ASN.1 DER) over `SIGNING_CONTEXT || statement`.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl std::fmt::Debug for SignedControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedControl")
            .field("statement_bytes", &self.statement.len())
            .finish_non_exhaustive()
    }
}

impl SignedControl {
    /// A command with no signature and no certificate: what a peer without the admin key
    /// can produce (tests and benchmarks; every verifier refuses it).
    pub fn without_signature(
        request: AdminRequest,
        issued_at_ms: u64,
        nonce: [u8; NONCE_BYTES],
    ) -> Self {
        let statement = ControlStatement {
            request,
            issued_at_ms,
            nonce,
        };
        Self {
            // Encoding a plain enum into a Vec cannot fail; an empty statement is refused too.
            statement: bincode::serde::encode_to_vec(&statement, bincode::config::standard())
                .unwrap_or_default(),
            admin_cert_der: Vec::new(),
            signature: Vec::new(),
        }
    }
}

/// Why a control command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The admin's credentials cannot sign (the CLI side).
    #[error("cannot sign the control command: {0}")]
    Sign(String),
    /// The statement bytes do not decode.
    #[error("the control command does not decode: {0}")]
    Malformed(String),
    /// The certificate is not signed by the cluster CA, has expired or does not parse.
    #[error("the control command's certificate is not valid for this cluster: {0}")]
    Certificate(String),
    /// The certificate is valid but not the admin's.
    #[error("control commands need the admin's proof; a {0} certificate cannot issue them")]
    NotAdmin(Role),
    /// The signature does not match the statement and the certificate's key.
    #[error("the control command's signature does not verify")]
    Signature,
    /// Issued too long ago or too far ahead (clocks more than five minutes apart?).
    #[error("the control command was issued {skew_s} s away from this manager's clock (at most {} s allowed; check the clocks)", FRESHNESS.as_secs())]
    Stale {
        /// Distance between the issue time and the verifier's clock, in seconds.
        skew_s: u64,
    },
    /// The same command arrived before.
    #[error("the control command was already received once (a replay)")]
    Replay,
    /// The replay cache is full of live nonces.
    #[error("too many control commands in the last five minutes; try again shortly")]
    Busy,
}

fn now_unix() -> UnixTime {
    UnixTime::now()
}

fn private_key_pkcs8(pem: &str) -> Result<Vec<u8>, ProofError> {
    match PrivateKeyDer::from_pem_slice(pem.as_bytes()) {
        Ok(PrivateKeyDer::Pkcs8(key)) => Ok(key.secret_pkcs8_der().to_vec()),
        Ok(_) => Err(ProofError::Sign("the admin key is not PKCS#8".into())),
        Err(e) => Err(ProofError::Sign(format!("cannot read the admin key: {e}"))),
    }
}

/// Signs `request` with the admin credentials, issued at `issued_at_ms` with a fresh random
/// nonce.
pub fn sign(
    credentials: &Credentials,
    request: AdminRequest,
    issued_at_ms: u64,
) -> Result<SignedControl, ProofError> {
    let rng = SystemRandom::new();
    let mut nonce = [0u8; NONCE_BYTES];
    rng.fill(&mut nonce)
        .map_err(|_| ProofError::Sign("no randomness".into()))?;
    sign_statement(
        credentials,
        &ControlStatement {
            request,
            issued_at_ms,
            nonce,
        },
    )
}

/// Signs a given statement (tests build stale or repeated ones with it).
pub fn sign_statement(
    credentials: &Credentials,
    statement: &ControlStatement,
) -> Result<SignedControl, ProofError> {
    let rng = SystemRandom::new();
    let pkcs8 = private_key_pkcs8(&credentials.key_pem)?;
    let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng)
        .map_err(|e| ProofError::Sign(format!("the admin key is not ECDSA P-256: {e}")))?;
    let statement = bincode::serde::encode_to_vec(statement, bincode::config::standard())
        .map_err(|e| ProofError::Sign(e.to_string()))?;
    let signature = key
        .sign(&rng, &signed_bytes(&statement))
        .map_err(|_| ProofError::Sign("signing failed".into()))?;
    let admin_cert_der = CertificateDer::from_pem_slice(credentials.cert_pem.as_bytes())
        .map_err(|e| ProofError::Sign(format!("cannot read the admin certificate: {e}")))?;
    // The key must belong to the certificate, or every manager would refuse the command.
    let public = key.public_key().as_ref().to_vec();
    if certificate_public_key(&admin_cert_der)? != public {
        return Err(ProofError::Sign(
            "the admin key does not belong to the admin certificate".into(),
        ));
    }
    Ok(SignedControl {
        statement,
        admin_cert_der: admin_cert_der.to_vec(),
        signature: signature.as_ref().to_vec(),
    })
}

fn signed_bytes(statement: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(SIGNING_CONTEXT.len() + statement.len());
    bytes.extend_from_slice(SIGNING_CONTEXT);
    bytes.extend_from_slice(statement);
    bytes
}

fn certificate_public_key(der: &[u8]) -> Result<Vec<u8>, ProofError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| ProofError::Certificate(e.to_string()))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

/// Checks control commands for one manager: the cluster CA it trusts and the nonces it has
/// seen. Clones share the nonce cache.
#[derive(Clone)]
pub struct ProofVerifier {
    certificates: Arc<dyn ClientCertVerifier>,
    seen: Arc<std::sync::Mutex<ReplayCache>>,
}

impl std::fmt::Debug for ProofVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofVerifier").finish_non_exhaustive()
    }
}

impl ProofVerifier {
    /// A verifier trusting the cluster CA `ca_pem`.
    pub fn new(ca_pem: &str) -> Result<Self, tls::TlsError> {
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).map_err(|e| {
            tls::TlsError::BadInput {
                what: "CA certificate",
                reason: e.to_string(),
            }
        })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca).map_err(|e| tls::TlsError::BadInput {
            what: "CA certificate",
            reason: e.to_string(),
        })?;
        let certificates = WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| tls::TlsError::Config(e.to_string()))?;
        Ok(Self {
            certificates,
            seen: Arc::new(std::sync::Mutex::new(ReplayCache::new(REPLAY_CACHE_MAX))),
        })
    }

    /// The request, if `signed` carries a valid admin proof at `now_ms` and was not seen
    /// before (its nonce is then remembered).
    pub fn verify(&self, signed: &SignedControl, now_ms: u64) -> Result<AdminRequest, ProofError> {
        let cert = CertificateDer::from(signed.admin_cert_der.as_slice());
        self.certificates
            .verify_client_cert(&cert, &[], now_unix())
            .map_err(|e| ProofError::Certificate(e.to_string()))?;
        let identity = tls::identity_from_der(&signed.admin_cert_der)
            .map_err(|e| ProofError::Certificate(e.to_string()))?;
        if identity.role != Role::Admin {
            return Err(ProofError::NotAdmin(identity.role));
        }
        let public = certificate_public_key(&signed.admin_cert_der)?;
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, public)
            .verify(&signed_bytes(&signed.statement), &signed.signature)
            .map_err(|_| ProofError::Signature)?;
        let (statement, used) = bincode::serde::decode_from_slice::<ControlStatement, _>(
            &signed.statement,
            bincode::config::standard().with_limit::<{ crate::net::codec::MAX_FRAME_BYTES }>(),
        )
        .map_err(|e| ProofError::Malformed(e.to_string()))?;
        if used != signed.statement.len() {
            return Err(ProofError::Malformed("trailing bytes".into()));
        }
        let skew_ms = now_ms.abs_diff(statement.issued_at_ms);
        if u128::from(skew_ms) > FRESHNESS.as_millis() {
            return Err(ProofError::Stale {
                skew_s: skew_ms / 1000,
            });
        }
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| ProofError::Sign("replay cache poisoned".into()))?;
        seen.insert(statement.nonce, statement.issued_at_ms, now_ms)?;
        Ok(statement.request)
    }
}

/// Nonces seen, each kept until its command can no longer be fresh.
#[derive(Debug)]
pub struct ReplayCache {
    max: usize,
    seen: HashMap<[u8; NONCE_BYTES], u64>,
    /// `(expires_at_ms, nonce)` in insertion order; pruned from the front.
    order: VecDeque<(u64, [u8; NONCE_BYTES])>,
}

impl ReplayCache {
    /// An empty cache holding at most `max` live nonces.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Nonces remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Remembers `nonce` (issued at `issued_at_ms`), refusing one already remembered.
    pub fn insert(
        &mut self,
        nonce: [u8; NONCE_BYTES],
        issued_at_ms: u64,
        now_ms: u64,
    ) -> Result<(), ProofError> {
        self.prune(now_ms);
        if self.seen.contains_key(&nonce) {
            return Err(ProofError::Replay);
        }
        if self.seen.len() >= self.max {
            self.sweep(now_ms);
            if self.seen.len() >= self.max {
                return Err(ProofError::Busy);
            }
        }
        // Kept until no clock within the window could still call it fresh.
        let expires = issued_at_ms.saturating_add(FRESHNESS.as_millis() as u64);
        self.seen.insert(nonce, expires);
        self.order.push_back((expires, nonce));
        Ok(())
    }

    /// Drops expired nonces from the front of the insertion order (cheap, every insert).
    fn prune(&mut self, now_ms: u64) {
        while let Some(&(expires, nonce)) = self.order.front() {
            if expires >= now_ms {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&nonce);
        }
    }

    /// Drops every expired nonce (expiries are not in insertion order when issue times vary,
    /// so a live front entry can hide expired ones behind it).
    fn sweep(&mut self, now_ms: u64) {
        self.seen.retain(|_, expires| *expires >= now_ms);
        let seen = &self.seen;
        self.order.retain(|(_, nonce)| seen.contains_key(nonce));
    }
}

#[cfg(test)]
#[path = "control_proof_tests.rs"]
mod tests;
