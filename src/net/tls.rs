//! The cluster PKI: a root CA per cluster, certificates that name a node's ID and role, and the
//! rustls configurations that make every QUIC connection mutually authenticated.
//!
//! A certificate's SAN URI `flotilla://<cluster-id>/<role>/<node-id>` carries the identity
//! (see [`identity`]); the subject repeats it (common name = node ID, organizational unit =
//! role) for people reading certificates, but nothing reads it back. Every leaf also names the
//! DNS SAN [`SERVER_NAME`], which is what clients verify, because nodes are dialled by address
//! and the caller does not always know which node answers there. Who may send what is decided
//! from the identity after the handshake (see `message::Access`), not by the TLS layer.
//!
//! Node certificates are valid [`NODE_CERT_VALIDITY`] (configurable for tests, see
//! [`set_node_cert_validity`]) and renewed at two thirds of it; the admin certificate is valid
//! [`ADMIN_CERT_VALIDITY`] and may only act as a TLS client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub mod identity;

pub use identity::{identity_from_der, identity_in_cluster, PeerIdentity};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateSigningRequestDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use serde::{Deserialize, Serialize};

/// The DNS name every node certificate carries and every client verifies.
pub const SERVER_NAME: &str = "flotilla.cluster";

/// The ALPN protocol both sides must offer.
pub const ALPN: &[u8] = b"flotilla/1";

/// What a certificate allows its holder to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A manager: holds the Raft log, may send Raft traffic and forward control commands.
    Manager,
    /// A worker: runs tasks, talks to the dispatcher.
    Worker,
    /// The admin client (the `flotilla` CLI): may send control commands.
    Admin,
}

impl Role {
    /// The lowercase name used in certificates and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Manager => "manager",
            Role::Worker => "worker",
            Role::Admin => "admin",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Role> {
        match text {
            "manager" => Some(Role::Manager),
            "worker" => Some(Role::Worker),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Failures of the PKI layer.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Generating a key or certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM or DER input could not be read.
    #[error("cannot read {what}: {reason}")]
    BadInput {
        /// What was being read.
        what: &'static str,
        /// Why it failed.
        reason: String,
    },
    /// A certificate does not carry a usable Flotilla identity (no identity URI, a role or ID
    /// that does not parse, or another cluster's).
    #[error("certificate carries no usable Flotilla identity: {0}")]
    NoIdentity(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

impl TlsError {
    fn bad_input(what: &'static str, reason: impl ToString) -> Self {
        TlsError::BadInput {
            what,
            reason: reason.to_string(),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The SHA-256 digest of a DER certificate, as pinned in join tokens.
pub fn certificate_digest(der: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

fn ca_params(cluster_id: &str) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, format!("flotilla-root-ca-{cluster_id}"));
    name.push(DnType::OrganizationName, "flotilla");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// How long a node (manager or worker) certificate is valid by default.
pub const NODE_CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
/// How long the admin certificate is valid.
pub const ADMIN_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// How far before its signing a certificate becomes valid, at most (clock skew between nodes).
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(60);

/// The node certificate validity in force in this process, in seconds (0: the default).
static NODE_CERT_VALIDITY_S: AtomicU64 = AtomicU64::new(0);

/// Sets the validity of the node certificates this process signs (the composition root reads
/// it from `FLOTILLA_CERT_VALIDITY_SECS`, for tests of expiry and renewal). The admin
/// certificate keeps [`ADMIN_CERT_VALIDITY`].
pub fn set_node_cert_validity(validity: Duration) {
    NODE_CERT_VALIDITY_S.store(validity.as_secs().max(1), Ordering::Relaxed);
}

/// The validity of the node certificates this process signs.
pub fn node_cert_validity() -> Duration {
    match NODE_CERT_VALIDITY_S.load(Ordering::Relaxed) {
        0 => NODE_CERT_VALIDITY,
        seconds => Duration::from_secs(seconds),
    }
}

fn validity_for(role: Role) -> Duration {
    match role {
        Role::Admin => ADMIN_CERT_VALIDITY,
        Role::Manager | Role::Worker => node_cert_validity(),
    }
}

fn offset_date_time(at: SystemTime) -> Result<time::OffsetDateTime, TlsError> {
    let seconds = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| TlsError::Config("the clock is before 1970".into()))?
        .as_secs();
    time::OffsetDateTime::from_unix_timestamp(seconds as i64)
        .map_err(|e| TlsError::Config(format!("time out of range: {e}")))
}

fn leaf_params(
    cluster_id: &str,
    node_id: &str,
    role: Role,
    issued_index: u64,
) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(vec![SERVER_NAME.to_string()])?;
    let uri = PeerIdentity::uri(cluster_id, role, node_id);
    let uri = rcgen::string::Ia5String::try_from(uri.as_str())
        .map_err(|e| TlsError::bad_input("identity URI", e))?;
    params.subject_alt_names.push(SanType::URI(uri));
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, node_id);
    name.push(DnType::OrganizationalUnitName, role.as_str());
    name.push(DnType::OrganizationName, "flotilla");
    params.distinguished_name = name;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // The admin certificate can never act as a server.
    params.extended_key_usages = match role {
        Role::Admin => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Role::Manager | Role::Worker => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    let validity = validity_for(role);
    let now = SystemTime::now();
    params.not_before = offset_date_time(now - CLOCK_SKEW_ALLOWANCE.min(validity / 8))?;
    params.not_after = offset_date_time(now + validity)?;
    params.serial_number = Some(SerialNumber::from_slice(&identity::new_serial(
        issued_index,
    )?));
    Ok(params)
}

/// The cluster ID a CA certificate of [`ca_params`] names in its common name.
fn cluster_id_of_ca(der: &[u8]) -> Result<String, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError::bad_input("CA certificate", e))?;
    let cluster_id = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|attribute| attribute.as_str().ok())
        .and_then(|name| name.strip_prefix("flotilla-root-ca-"))
        .filter(|id| !id.is_empty())
        .map(str::to_string);
    cluster_id.ok_or_else(|| TlsError::bad_input("CA certificate", "names no cluster"))
}

/// The cluster's root certificate authority (held by managers).
pub struct ClusterCa {
    cluster_id: String,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is secret: never printed.
        f.debug_struct("ClusterCa").finish_non_exhaustive()
    }
}

/// A certificate and its private key, both PEM, plus the CA that signed it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The leaf certificate (PEM).
    pub cert_pem: String,
    /// The leaf's private key (PEM, PKCS#8). Secret.
    pub key_pem: String,
    /// The cluster CA certificate (PEM).
    pub ca_pem: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// Creates a new root CA for the cluster `cluster_id`.
    pub fn create(cluster_id: &str) -> Result<Self, TlsError> {
        let key = KeyPair::generate()?;
        let params = ca_params(cluster_id)?;
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        Ok(Self {
            cluster_id: cluster_id.to_string(),
            cert_der: cert.der().clone(),
            cert_pem,
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its certificate and key (as kept in the replicated store).
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| TlsError::bad_input("CA key", e))?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| TlsError::bad_input("CA certificate", e))?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| TlsError::bad_input("CA certificate", e))?;
        Ok(Self {
            cluster_id: cluster_id_of_ca(&cert_der)?,
            cert_der,
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            issuer,
        })
    }

    /// The cluster this CA belongs to.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The CA certificate (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key (PEM). Secret: only for the replicated store.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The SHA-256 digest of the CA certificate, as pinned in join tokens.
    pub fn digest(&self) -> [u8; 32] {
        certificate_digest(&self.cert_der)
    }

    /// Issues a certificate and a fresh key for `node_id` in `role`; `issued_index` is the
    /// store's applied index now (it goes into the serial, see [`identity`]).
    pub fn issue(
        &self,
        node_id: &str,
        role: Role,
        issued_index: u64,
    ) -> Result<Credentials, TlsError> {
        let key = KeyPair::generate()?;
        let cert = leaf_params(&self.cluster_id, node_id, role, issued_index)?
            .signed_by(&key, &self.issuer)?;
        Ok(Credentials {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            ca_pem: self.cert_pem.clone(),
        })
    }

    /// Signs a certificate request (a joining node's, or a renewal), naming `node_id` and
    /// `role`; `issued_index` as for [`ClusterCa::issue`]. Whatever subject or names the
    /// request asked for are ignored: the cluster decides the identity.
    pub fn sign_request(
        &self,
        csr_der: &[u8],
        node_id: &str,
        role: Role,
        issued_index: u64,
    ) -> Result<String, TlsError> {
        let csr = CertificateSigningRequestDer::from(csr_der.to_vec());
        let request = CertificateSigningRequestParams::from_der(&csr)
            .map_err(|e| TlsError::bad_input("certificate signing request", e))?;
        let cert = leaf_params(&self.cluster_id, node_id, role, issued_index)?
            .signed_by(&request.public_key, &self.issuer)?;
        Ok(cert.pem())
    }
}

/// A fresh key and a certificate request for it; the key never leaves the joining node.
pub fn generate_request() -> Result<(String, Vec<u8>), TlsError> {
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec![SERVER_NAME.to_string()])?;
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.der().to_vec()))
}

fn parse_cert(pem: &str, what: &'static str) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::bad_input(what, e))
}

fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::bad_input("private key", e))
}

fn roots(ca: CertificateDer<'static>) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    store
        .add(ca)
        .map_err(|e| TlsError::bad_input("CA certificate", e))?;
    Ok(Arc::new(store))
}

impl Credentials {
    /// This node's identity, read back from its own certificate.
    pub fn identity(&self) -> Result<PeerIdentity, TlsError> {
        identity_from_der(&parse_cert(&self.cert_pem, "certificate")?)
    }

    /// Whether the certificate is for the private key held here (a renewed certificate must
    /// be, or it is refused).
    pub fn certificate_matches_key(&self) -> Result<bool, TlsError> {
        let der = parse_cert(&self.cert_pem, "certificate")?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| TlsError::bad_input("certificate", e))?;
        let key = KeyPair::from_pem(&self.key_pem).map_err(|e| TlsError::bad_input("key", e))?;
        Ok(cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
    }

    /// The server side: TLS 1.3 only; client certificates are verified against the cluster CA
    /// when presented. A client may connect without one, because joining nodes have none yet;
    /// such a peer may only send join requests (the transport enforces it).
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let ca = parse_cert(&self.ca_pem, "CA certificate")?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca.clone())?, provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let chain = vec![parse_cert(&self.cert_pem, "certificate")?, ca];
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, parse_key(&self.key_pem)?)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// The client side: verifies the server against the cluster CA and presents this
    /// certificate.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let ca = parse_cert(&self.ca_pem, "CA certificate")?;
        let chain = vec![parse_cert(&self.cert_pem, "certificate")?];
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots(ca)?)
            .with_client_auth_cert(chain, parse_key(&self.key_pem)?)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
}

/// A client configuration for a node that has no certificate yet: it trusts a server only if
/// the CA at the end of the server's chain has the digest from the join token, and then
/// verifies the chain against that CA. The CA it saw is kept for the caller.
pub fn pinned_client_config(
    ca_digest: [u8; 32],
) -> Result<(ClientConfig, Arc<PinnedCaVerifier>), TlsError> {
    let verifier = Arc::new(PinnedCaVerifier {
        ca_digest,
        seen_ca: Mutex::new(None),
        mismatch: Mutex::new(false),
    });
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok((config, verifier))
}

/// Verifies a server by a CA pinned by digest (see [`pinned_client_config`]).
#[derive(Debug)]
pub struct PinnedCaVerifier {
    ca_digest: [u8; 32],
    seen_ca: Mutex<Option<CertificateDer<'static>>>,
    mismatch: Mutex<bool>,
}

impl PinnedCaVerifier {
    /// The CA certificate (PEM) the server presented, once it matched the pin.
    pub fn verified_ca_pem(&self) -> Option<String> {
        let seen = self.seen_ca.lock().ok()?.clone()?;
        Some(pem_encode_certificate(&seen))
    }

    /// Whether the server presented a CA whose digest differs from the token's.
    pub fn saw_mismatch(&self) -> bool {
        self.mismatch.lock().map(|flag| *flag).unwrap_or(false)
    }
}

fn pem_encode_certificate(der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der.to_vec()), config)
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .last()
            .ok_or(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))?;
        if certificate_digest(ca) != self.ca_digest {
            if let Ok(mut flag) = self.mismatch.lock() {
                *flag = true;
            }
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        let ca = ca.clone().into_owned();
        let mut store = RootCertStore::empty();
        store.add(ca.clone()).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(store),
            provider(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)?;
        if let Ok(mut seen) = self.seen_ca.lock() {
            *seen = Some(ca);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The configuration offers TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_name_cluster_role_and_node_in_their_uri_and_expire() {
        let ca = ClusterCa::create("c1").expect("ca");
        let credentials = ca.issue("n1", Role::Worker, 77).expect("issued");
        let identity = credentials.identity().expect("identity");
        assert_eq!(
            (
                identity.cluster_id.as_str(),
                identity.role,
                identity.node_id.as_str()
            ),
            ("c1", Role::Worker, "n1")
        );
        assert_eq!(identity.issued_index, 77);
        let lifetime_s = identity.not_after_unix_s - identity.not_before_unix_s;
        let expected_s = (NODE_CERT_VALIDITY + CLOCK_SKEW_ALLOWANCE).as_secs() as i64;
        assert!(
            (lifetime_s - expected_s).abs() <= 2,
            "lifetime {lifetime_s} s"
        );
        assert!(!identity.renewal_due(SystemTime::now()));
        assert!(identity.renewal_due(SystemTime::now() + NODE_CERT_VALIDITY * 2 / 3));
        assert!(credentials.certificate_matches_key().expect("parsed"));
        let other = ca.issue("n1", Role::Worker, 78).expect("issued");
        assert_ne!(other.identity().expect("identity").serial, identity.serial);
        let mixed = Credentials {
            key_pem: other.key_pem,
            ..credentials
        };
        assert!(!mixed.certificate_matches_key().expect("parsed"));
    }

    #[test]
    fn the_admin_certificate_is_for_clients_only_and_lasts_a_year() {
        let ca = ClusterCa::create("c1").expect("ca");
        let admin = ca.issue("admin", Role::Admin, 0).expect("issued");
        let der = parse_cert(&admin.cert_pem, "certificate").expect("der");
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("parsed");
        let usage = cert
            .extended_key_usage()
            .expect("extension parses")
            .expect("extension present");
        assert!(usage.value.client_auth && !usage.value.server_auth);
        let identity = admin.identity().expect("identity");
        let lifetime_s = identity.not_after_unix_s - identity.not_before_unix_s;
        assert!(lifetime_s >= ADMIN_CERT_VALIDITY.as_secs() as i64);
    }

    #[test]
    fn another_clusters_certificate_is_refused() {
        let ours = ClusterCa::create("c1").expect("ca");
        let theirs = ClusterCa::create("c2").expect("ca");
        let credentials = theirs.issue("n1", Role::Manager, 0).expect("issued");
        let der = parse_cert(&credentials.cert_pem, "certificate").expect("der");
        assert!(identity_in_cluster(&der, "c2").is_ok());
        assert!(matches!(
            identity_in_cluster(&der, ours.cluster_id()),
            Err(TlsError::NoIdentity(_))
        ));
        let reloaded = ClusterCa::load(ours.cert_pem(), ours.key_pem()).expect("reload");
        assert_eq!(reloaded.cluster_id(), "c1");
    }

    #[test]
    fn a_certificate_without_the_identity_uri_is_refused() {
        // What the previous release issued: identity in the subject only.
        let ca = ClusterCa::create("c1").expect("ca");
        let mut params = CertificateParams::new(vec![SERVER_NAME.to_string()]).expect("params");
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "n1");
        name.push(DnType::OrganizationalUnitName, "manager");
        params.distinguished_name = name;
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca.issuer).expect("signed");
        assert!(matches!(
            identity_from_der(cert.der()),
            Err(TlsError::NoIdentity(_))
        ));
    }
}
