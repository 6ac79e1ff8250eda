//! Join tokens: `FLTKN-1-<SHA-256 of the CA certificate, base36, 50 chars>-<secret, base36, 25
//! chars>`, as in Docker Swarm's `SWMTKN-1-...`.
//!
//! The digest lets a joining node pin the CA before it trusts anything a manager says; the
//! secret decides the role the node gets. Secrets are compared in constant time.

use subtle::ConstantTimeEq;

use crate::net::tls::Role;

/// The token prefix and format version.
pub const TOKEN_PREFIX: &str = "FLTKN-1-";
/// Length of the base36 CA digest.
pub const DIGEST_CHARS: usize = 50;
/// Length of the base36 secret.
pub const SECRET_CHARS: usize = 25;
/// Random bytes behind a secret (25 base36 characters hold 129 bits).
const SECRET_BYTES: usize = 16;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The text is not a join token at all.
    #[error("malformed join token: {0}")]
    Malformed(String),
    /// The token is well formed but its secret matches neither the worker nor the manager
    /// secret (wrong, or rotated away).
    #[error(
        "invalid join token: the secret is not valid for this swarm (it may have been rotated)"
    )]
    WrongSecret,
    /// The manager presented a CA whose digest differs from the token's.
    #[error(
        "the manager's CA certificate does not match the join token's digest: refusing to trust it"
    )]
    CaMismatch,
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the cluster CA certificate (DER).
    pub ca_digest: [u8; 32],
    /// The secret, in its base36 text form.
    pub secret: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is never printed.
        f.debug_struct("JoinToken").finish_non_exhaustive()
    }
}

impl JoinToken {
    /// The token for a CA digest and a secret.
    pub fn new(ca_digest: [u8; 32], secret: String) -> Self {
        Self { ca_digest, secret }
    }

    /// Parses and checks the form of a token; the secret is checked by the manager.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        let rest = text
            .strip_prefix(TOKEN_PREFIX)
            .ok_or_else(|| TokenError::Malformed(format!("it must start with {TOKEN_PREFIX}")))?;
        let (digest, secret) = rest.split_once('-').ok_or_else(|| {
            TokenError::Malformed("expected FLTKN-1-<digest>-<secret>".to_string())
        })?;
        if digest.len() != DIGEST_CHARS || secret.len() != SECRET_CHARS {
            return Err(TokenError::Malformed(format!(
                "expected a {DIGEST_CHARS}-character digest and a {SECRET_CHARS}-character secret"
            )));
        }
        let digest_bytes = base36_decode(digest)
            .ok_or_else(|| TokenError::Malformed("the digest is not base36".to_string()))?;
        if base36_decode(secret).is_none() {
            return Err(TokenError::Malformed(
                "the secret is not base36".to_string(),
            ));
        }
        let ca_digest = fixed_width(&digest_bytes).ok_or_else(|| {
            TokenError::Malformed("the digest is not a SHA-256 value".to_string())
        })?;
        Ok(Self {
            ca_digest,
            secret: secret.to_string(),
        })
    }

    /// Checks that a CA seen on the wire is the one the token pins.
    pub fn check_ca_digest(&self, seen: &[u8; 32]) -> Result<(), TokenError> {
        if bool::from(self.ca_digest.ct_eq(seen)) {
            Ok(())
        } else {
            Err(TokenError::CaMismatch)
        }
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{TOKEN_PREFIX}{}-{}",
            base36_encode(&self.ca_digest, DIGEST_CHARS),
            self.secret
        )
    }
}

/// A new random secret (25 base36 characters) from the operating system's generator.
pub fn generate_secret() -> Result<String, TokenError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; SECRET_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TokenError::Malformed("the system random generator failed".to_string()))?;
    Ok(base36_encode(&bytes, SECRET_CHARS))
}

/// The role a presented secret grants, comparing against both secrets in constant time.
pub fn role_for_secret(
    presented: &str,
    worker_secret: &str,
    manager_secret: &str,
) -> Result<Role, TokenError> {
    let is_worker = constant_time_equal(presented, worker_secret);
    let is_manager = constant_time_equal(presented, manager_secret);
    if is_manager {
        Ok(Role::Manager)
    } else if is_worker {
        Ok(Role::Worker)
    } else {
        Err(TokenError::WrongSecret)
    }
}

fn constant_time_equal(a: &str, b: &str) -> bool {
    // Lengths are public (fixed by the format); contents are compared in constant time.
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Big-endian bytes to base36 (0-9a-z), left-padded with '0' to `width` characters.
pub fn base36_encode(bytes: &[u8], width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut number: Vec<u8> = bytes.to_vec();
    let mut out = Vec::new();
    while number.iter().any(|&b| b != 0) {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 36) as u8;
            remainder = value % 36;
        }
        out.push(DIGITS[remainder as usize]);
    }
    while out.len() < width {
        out.push(b'0');
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// Base36 text to big-endian bytes (no leading zero bytes), or `None` if not base36.
pub fn base36_decode(text: &str) -> Option<Vec<u8>> {
    let mut number: Vec<u8> = Vec::new();
    for c in text.chars() {
        let digit = c.to_digit(36)?;
        if c.is_ascii_uppercase() {
            return None;
        }
        let mut carry = digit;
        for byte in number.iter_mut().rev() {
            let value = u32::from(*byte) * 36 + carry;
            *byte = (value & 0xff) as u8;
            carry = value >> 8;
        }
        while carry > 0 {
            number.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    Some(number)
}

fn fixed_width(bytes: &[u8]) -> Option<[u8; 32]> {
    if bytes.len() > 32 {
        return None;
    }
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(bytes);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JoinToken {
        JoinToken::new([7u8; 32], generate_secret().expect("secret"))
    }

    #[test]
    fn a_token_has_the_documented_shape_and_round_trips() {
        let token = sample();
        let text = token.to_string();
        assert!(text.starts_with("FLTKN-1-"));
        let parts: Vec<&str> = text.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[2].len(), DIGEST_CHARS);
        assert_eq!(parts[3].len(), SECRET_CHARS);
        assert_eq!(JoinToken::parse(&text), Ok(token));
    }

    #[test]
    fn base36_round_trips_extremes() {
        for bytes in [[0u8; 32], [255u8; 32]] {
            let text = base36_encode(&bytes, DIGEST_CHARS);
            assert_eq!(text.len(), DIGEST_CHARS);
            assert_eq!(
                fixed_width(&base36_decode(&text).expect("decodes")),
                Some(bytes)
            );
        }
    }

    #[test]
    fn malformed_tokens_are_refused_as_malformed() {
        let good = sample().to_string();
        let cases = [
            String::new(),
            "SWMTKN-1-abc-def".to_string(),
            "FLTKN-1-".to_string(),
            good.replace("FLTKN-1-", "FLTKN-2-"),
            format!("{good}x"),
            good.to_uppercase(),
            good.replacen('-', "_", 3),
            format!(
                "FLTKN-1-{}-{}",
                "z".repeat(DIGEST_CHARS),
                "a".repeat(SECRET_CHARS)
            ),
        ];
        for case in cases {
            assert!(
                matches!(JoinToken::parse(&case), Err(TokenError::Malformed(_))),
                "{case:?} should be malformed"
            );
        }
    }

    #[test]
    fn secrets_decide_the_role_and_a_wrong_one_is_refused() {
        let worker = generate_secret().expect("secret");
        let manager = generate_secret().expect("secret");
        assert_eq!(
            role_for_secret(&worker, &worker, &manager),
            Ok(Role::Worker)
        );
        assert_eq!(
            role_for_secret(&manager, &worker, &manager),
            Ok(Role::Manager)
        );
        let wrong = generate_secret().expect("secret");
        assert_eq!(
            role_for_secret(&wrong, &worker, &manager),
            Err(TokenError::WrongSecret)
        );
        assert_eq!(
            role_for_secret("short", &worker, &manager),
            Err(TokenError::WrongSecret)
        );
    }

    #[test]
    fn a_different_ca_digest_is_a_mismatch() {
        let token = sample();
        assert_eq!(token.check_ca_digest(&[7u8; 32]), Ok(()));
        assert_eq!(
            token.check_ca_digest(&[8u8; 32]),
            Err(TokenError::CaMismatch)
        );
    }

    #[test]
    fn the_three_refusals_read_differently() {
        let texts = [
            TokenError::Malformed("x".into()).to_string(),
            TokenError::WrongSecret.to_string(),
            TokenError::CaMismatch.to_string(),
        ];
        assert_ne!(texts[0], texts[1]);
        assert_ne!(texts[1], texts[2]);
        assert_ne!(texts[0], texts[2]);
    }
}
