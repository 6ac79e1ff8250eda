use super::*;
use crate::net::tls::ClusterCa;

const NOW: u64 = 1_764_169_580_000;

fn scale(n: u64) -> AdminRequest {
    AdminRequest::ServiceScale {
        targets: vec![("web".into(), n)],
    }
}

fn setup() -> (ClusterCa, Credentials, ProofVerifier) {
    let ca = ClusterCa::create("test").expect("ca");
    let admin = ca.issue("admin", Role::Admin, 0).expect("admin cert");
    let verifier = ProofVerifier::new(ca.cert_pem()).expect("verifier");
    (ca, admin, verifier)
}

#[test]
fn a_signed_request_verifies_once() {
    let (_ca, admin, verifier) = setup();
    let signed = sign(&admin, scale(3), NOW).expect("sign");
    assert_eq!(verifier.verify(&signed, NOW + 1_000), Ok(scale(3)));
    assert_eq!(
        verifier.verify(&signed, NOW + 2_000),
        Err(ProofError::Replay),
        "the same command twice is a replay"
    );
    let again = sign(&admin, scale(3), NOW).expect("sign");
    assert_eq!(
        verifier.verify(&again, NOW + 2_000),
        Ok(scale(3)),
        "a new nonce is a new command"
    );
}

#[test]
fn clones_share_the_replay_cache() {
    let (_ca, admin, verifier) = setup();
    let signed = sign(&admin, scale(1), NOW).expect("sign");
    let other = verifier.clone();
    assert!(verifier.verify(&signed, NOW).is_ok());
    assert_eq!(other.verify(&signed, NOW), Err(ProofError::Replay));
}

#[test]
fn a_tampered_statement_is_refused() {
    let (_ca, admin, verifier) = setup();
    let signed = sign(&admin, scale(3), NOW).expect("sign");
    // Swap in another request under the same signature.
    let mut swapped = signed.clone();
    let other = sign(&admin, scale(300), NOW).expect("sign");
    swapped.statement = other.statement;
    assert_eq!(verifier.verify(&swapped, NOW), Err(ProofError::Signature));
    // Flip one byte of the statement.
    let mut flipped = signed.clone();
    if let Some(byte) = flipped.statement.first_mut() {
        *byte ^= 1;
    }
    assert_eq!(verifier.verify(&flipped, NOW), Err(ProofError::Signature));
    // Nothing refused was remembered: the original still goes through.
    assert_eq!(verifier.verify(&signed, NOW), Ok(scale(3)));
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let (ca, admin, verifier) = setup();
    let second_admin = ca
        .issue("admin", Role::Admin, 0)
        .expect("another admin cert");
    let mut signed = sign(&second_admin, scale(3), NOW).expect("sign");
    // The first admin's certificate, the second one's signature.
    signed.admin_cert_der = sign(&admin, scale(3), NOW).expect("sign").admin_cert_der;
    assert_eq!(verifier.verify(&signed, NOW), Err(ProofError::Signature));
    // An empty signature, as a manager without the admin key would send.
    let mut empty = sign(&admin, scale(3), NOW).expect("sign");
    empty.signature.clear();
    assert_eq!(verifier.verify(&empty, NOW), Err(ProofError::Signature));
}

#[test]
fn a_certificate_from_another_cluster_is_refused() {
    let (_ca, _admin, verifier) = setup();
    let stranger = ClusterCa::create("other").expect("ca");
    let rogue_admin = stranger.issue("admin", Role::Admin, 0).expect("cert");
    let signed = sign(&rogue_admin, scale(3), NOW).expect("sign");
    assert!(matches!(
        verifier.verify(&signed, NOW),
        Err(ProofError::Certificate(_))
    ));
    let mut garbage = signed;
    garbage.admin_cert_der = vec![0x30, 0x03, 0x01, 0x01, 0xff];
    assert!(matches!(
        verifier.verify(&garbage, NOW),
        Err(ProofError::Certificate(_))
    ));
}

#[test]
fn a_manager_or_worker_key_cannot_sign_a_command() {
    let (ca, _admin, verifier) = setup();
    for role in [Role::Manager, Role::Worker] {
        let node = ca.issue("node-1", role, 0).expect("cert");
        let signed = sign(&node, scale(3), NOW).expect("sign");
        assert_eq!(
            verifier.verify(&signed, NOW),
            Err(ProofError::NotAdmin(role))
        );
    }
}

#[test]
fn stale_and_future_commands_are_refused() {
    let (_ca, admin, verifier) = setup();
    let window = FRESHNESS.as_millis() as u64;
    let old = sign(&admin, scale(1), NOW - window - 1_000).expect("sign");
    assert_eq!(
        verifier.verify(&old, NOW),
        Err(ProofError::Stale {
            skew_s: window / 1000 + 1
        })
    );
    let ahead = sign(&admin, scale(1), NOW + window + 1_000).expect("sign");
    assert!(matches!(
        verifier.verify(&ahead, NOW),
        Err(ProofError::Stale { .. })
    ));
    let edge = sign(&admin, scale(1), NOW - window).expect("sign");
    assert!(
        verifier.verify(&edge, NOW).is_ok(),
        "the window is inclusive"
    );
}

#[test]
fn trailing_bytes_after_a_signed_statement_are_refused() {
    let (_ca, admin, verifier) = setup();
    let statement = ControlStatement {
        request: scale(1),
        issued_at_ms: NOW,
        nonce: [7; NONCE_BYTES],
    };
    let mut bytes =
        bincode::serde::encode_to_vec(&statement, bincode::config::standard()).expect("encode");
    bytes.push(0);
    // Signed by the real key, so only the decoding can refuse it.
    let pkcs8 = private_key_pkcs8(&admin.key_pem).expect("key");
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng)
        .expect("key pair");
    let signature = key.sign(&rng, &signed_bytes(&bytes)).expect("sign");
    let signed = SignedControl {
        statement: bytes,
        admin_cert_der: sign(&admin, scale(1), NOW).expect("sign").admin_cert_der,
        signature: signature.as_ref().to_vec(),
    };
    assert!(matches!(
        verifier.verify(&signed, NOW),
        Err(ProofError::Malformed(_))
    ));
}

#[test]
fn a_key_that_is_not_the_certificates_is_caught_when_signing() {
    let (ca, admin, _verifier) = setup();
    let other = ca.issue("admin", Role::Admin, 0).expect("cert");
    let mixed = Credentials {
        key_pem: other.key_pem,
        ..admin
    };
    assert!(matches!(
        sign(&mixed, scale(1), NOW),
        Err(ProofError::Sign(_))
    ));
}

#[test]
fn the_replay_cache_forgets_expired_nonces_and_stays_bounded() {
    let window = FRESHNESS.as_millis() as u64;
    let mut cache = ReplayCache::new(3);
    for n in 0..3u8 {
        cache.insert([n; NONCE_BYTES], NOW, NOW).expect("room");
    }
    assert_eq!(
        cache.insert([9; NONCE_BYTES], NOW, NOW),
        Err(ProofError::Busy),
        "full of live nonces"
    );
    assert_eq!(
        cache.insert([1; NONCE_BYTES], NOW, NOW),
        Err(ProofError::Replay)
    );
    // Once the window has passed, the old nonces are gone and room is back.
    let later = NOW + window + 1;
    cache
        .insert([9; NONCE_BYTES], later, later)
        .expect("room again");
    assert_eq!(cache.len(), 1);
}

#[test]
fn the_sweep_finds_expired_nonces_behind_a_live_one() {
    let window = FRESHNESS.as_millis() as u64;
    let mut cache = ReplayCache::new(2);
    // Inserted first but issued late: lives longest and sits at the front.
    cache
        .insert([1; NONCE_BYTES], NOW + window, NOW)
        .expect("room");
    cache.insert([2; NONCE_BYTES], NOW, NOW).expect("room");
    let later = NOW + window + 1;
    // [2] has expired behind the live [1]: the sweep makes room for [3].
    cache.insert([3; NONCE_BYTES], later, later).expect("room");
    assert_eq!(cache.len(), 2);
    assert_eq!(
        cache.insert([1; NONCE_BYTES], later, later),
        Err(ProofError::Replay),
        "the live nonce is still remembered"
    );
}

#[test]
fn debug_prints_no_signature_or_certificate() {
    let (_ca, admin, _verifier) = setup();
    let signed = sign(&admin, scale(1), NOW).expect("sign");
    let text = format!("{signed:?}");
    assert!(text.starts_with("SignedControl"), "{text}");
    assert!(!text.contains("signature:"), "{text}");
}
