//! The identity a leaf certificate carries, and how it is read back.
//!
//! Every leaf names its holder in a SAN URI `flotilla://<cluster-id>/<role>/<node-id>` (the
//! admin certificate's node ID is `admin`). The serial number says when, in Raft terms, the
//! certificate was issued: a leading `0x01` byte (so the integer is positive and never
//! shortened), the store's applied index at signing (8 bytes, big-endian), then 8 random bytes.
//! Revocation compares that index ("manager certificates of node X issued before index I"),
//! so no clock is involved and a later re-promotion's certificate is never caught.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Role, TlsError};

/// The URI scheme of identity SANs.
pub const IDENTITY_SCHEME: &str = "flotilla://";

/// First byte of every serial this build issues (keeps the DER integer positive).
const SERIAL_TAG: u8 = 0x01;
/// Bytes of a serial: tag, issue index, random.
pub(super) const SERIAL_BYTES: usize = 1 + 8 + 8;

/// Who is on the other end of a verified connection, as its certificate says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    /// The node ID (for the admin certificate: `admin`).
    pub node_id: String,
    /// The role.
    pub role: Role,
    /// The cluster the certificate belongs to.
    pub cluster_id: String,
    /// The certificate's serial number, lowercase hex.
    pub serial: String,
    /// The store's applied Raft index when the certificate was signed (from the serial).
    pub issued_index: u64,
    /// Start of validity, Unix seconds.
    pub not_before_unix_s: i64,
    /// End of validity, Unix seconds.
    pub not_after_unix_s: i64,
}

impl PeerIdentity {
    /// The identity URI for `cluster_id`, `role`, `node_id`.
    pub fn uri(cluster_id: &str, role: Role, node_id: &str) -> String {
        format!("{IDENTITY_SCHEME}{cluster_id}/{}/{node_id}", role.as_str())
    }

    /// Refuses an identity from another cluster.
    pub fn ensure_cluster(&self, cluster_id: &str) -> Result<(), TlsError> {
        if self.cluster_id == cluster_id {
            return Ok(());
        }
        Err(TlsError::NoIdentity(format!(
            "certificate of cluster {:?}, this node is in cluster {cluster_id:?}",
            self.cluster_id
        )))
    }

    /// The moment two thirds of the certificate's lifetime have passed: when it is renewed.
    pub fn renew_at(&self) -> SystemTime {
        let lifetime_s = (self.not_after_unix_s - self.not_before_unix_s).max(0) as u64;
        let offset_s = self.not_before_unix_s.max(0) as u64;
        UNIX_EPOCH + Duration::from_secs(offset_s) + Duration::from_secs(lifetime_s) * 2 / 3
    }

    /// Whether the certificate is past two thirds of its lifetime at `now`.
    pub fn renewal_due(&self, now: SystemTime) -> bool {
        now >= self.renew_at()
    }
}

fn parse_uri(uri: &str) -> Result<(String, Role, String), TlsError> {
    let rest = uri
        .strip_prefix(IDENTITY_SCHEME)
        .ok_or_else(|| TlsError::NoIdentity(format!("not a flotilla URI: {uri:?}")))?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [cluster_id, role_text, node_id] = parts.as_slice() else {
        return Err(TlsError::NoIdentity(format!(
            "identity URI {uri:?} is not flotilla://<cluster>/<role>/<node>"
        )));
    };
    let role = Role::parse(role_text)
        .ok_or_else(|| TlsError::NoIdentity(format!("unknown role {role_text:?}")))?;
    let valid_id = |text: &str| {
        !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !valid_id(cluster_id) || !valid_id(node_id) {
        return Err(TlsError::NoIdentity(format!(
            "identity URI {uri:?} has an empty or malformed ID"
        )));
    }
    Ok((cluster_id.to_string(), role, node_id.to_string()))
}

/// The issue index encoded in a serial this build wrote; `0` for any other serial.
fn issued_index(serial: &[u8]) -> u64 {
    match serial {
        [SERIAL_TAG, index @ ..] if serial.len() == SERIAL_BYTES => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&index[..8]);
            u64::from_be_bytes(bytes)
        }
        _ => 0,
    }
}

/// A fresh serial for a certificate signed at store index `issued_index`.
pub(super) fn new_serial(issued_index: u64) -> Result<Vec<u8>, TlsError> {
    use ring::rand::SecureRandom;
    let mut random = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| TlsError::Config("no randomness for a serial number".into()))?;
    let mut serial = Vec::with_capacity(SERIAL_BYTES);
    serial.push(SERIAL_TAG);
    serial.extend_from_slice(&issued_index.to_be_bytes());
    serial.extend_from_slice(&random);
    Ok(serial)
}

/// Reads the Flotilla identity from a DER certificate: exactly one identity URI, whose role
/// and IDs parse. A certificate without one (a previous release's, naming the node only in its
/// subject) is refused.
pub fn identity_from_der(der: &[u8]) -> Result<PeerIdentity, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError::bad_input("certificate", e))?;
    let names = cert
        .subject_alternative_name()
        .map_err(|e| TlsError::bad_input("certificate", e))?;
    let uris: Vec<&str> = names
        .iter()
        .flat_map(|extension| extension.value.general_names.iter())
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .filter(|uri| uri.starts_with(IDENTITY_SCHEME))
        .collect();
    let uri = match uris.as_slice() {
        [uri] => *uri,
        [] => {
            return Err(TlsError::NoIdentity(
                "no flotilla:// identity URI (a certificate of an older release?)".into(),
            ))
        }
        _ => return Err(TlsError::NoIdentity("more than one identity URI".into())),
    };
    let (cluster_id, role, node_id) = parse_uri(uri)?;
    let serial = cert.raw_serial();
    let validity = cert.validity();
    Ok(PeerIdentity {
        node_id,
        role,
        cluster_id,
        serial: serial.iter().map(|b| format!("{b:02x}")).collect(),
        issued_index: issued_index(serial),
        not_before_unix_s: validity.not_before.timestamp(),
        not_after_unix_s: validity.not_after.timestamp(),
    })
}

/// [`identity_from_der`], refusing a certificate of another cluster than `cluster_id`.
pub fn identity_in_cluster(der: &[u8], cluster_id: &str) -> Result<PeerIdentity, TlsError> {
    let identity = identity_from_der(der)?;
    identity.ensure_cluster(cluster_id)?;
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_uris_parse_only_when_whole() {
        assert_eq!(
            parse_uri("flotilla://c1/worker/n1").ok(),
            Some(("c1".to_string(), Role::Worker, "n1".to_string()))
        );
        for bad in [
            "flotilla://c1/worker",
            "flotilla://c1/boss/n1",
            "flotilla:///worker/n1",
            "flotilla://c1/worker/n1/extra",
            "flotilla://c1/worker/n 1",
            "https://c1/worker/n1",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn the_issue_index_comes_back_from_the_serial() {
        let serial = new_serial(4242).expect("serial");
        assert_eq!(serial.len(), SERIAL_BYTES);
        assert_eq!(issued_index(&serial), 4242);
        assert_eq!(issued_index(&[0x55, 1, 2]), 0);
    }
}
