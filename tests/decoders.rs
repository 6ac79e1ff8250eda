//! Property tests for the decoders that read bytes a peer chose (see `docs/wire.md`,
//! "Decoders and their property tests"): any input gives `Ok` or `Err`, never a panic, and
//! the frame decoder never makes an allocation past the frame limit. The frame codec's own
//! round-trip tests are in `src/net/codec.rs`, the Raft validator's in
//! `src/consensus/validate_tests.rs`; these use only the public API.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::LazyLock;

use flotilla::net::codec::{self, MAX_FRAME_BYTES, PROTOCOL_VERSION};
use flotilla::net::message::{JoinRequest, Message, RaftEnvelope};
use flotilla::net::tls::{self, ClusterCa, Role};
use flotilla::net::token::{self, JoinToken};
use proptest::prelude::*;

/// Records the largest single allocation made on the current thread, so a test can say what a
/// decoder asked for.
struct Measuring;

thread_local! {
    static LARGEST_ALLOCATION_BYTES: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Measuring {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn note(size: usize) {
    // try_with: the thread-local may be gone while a thread exits.
    let _ = LARGEST_ALLOCATION_BYTES.try_with(|largest| {
        if size > largest.get() {
            largest.set(size);
        }
    });
}

#[global_allocator]
static ALLOCATOR: Measuring = Measuring;

/// The largest single allocation `f` makes on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST_ALLOCATION_BYTES.with(|largest| largest.set(0));
    let value = f();
    (value, LARGEST_ALLOCATION_BYTES.with(Cell::get))
}

static CA: LazyLock<ClusterCa> = LazyLock::new(|| ClusterCa::create("decoders").expect("ca"));
static CERT_DER: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let credentials = CA.issue("node-1", Role::Worker, 0).expect("cert");
    pem::parse(credentials.cert_pem.as_bytes())
        .expect("our own PEM")
        .contents()
        .to_vec()
});
static CSR_DER: LazyLock<Vec<u8>> = LazyLock::new(|| tls::generate_request().expect("csr").1);

fn samples() -> Vec<Message> {
    vec![
        Message::Ping {
            nonce: 7,
            payload: vec![1, 2, 3],
        },
        Message::Join(JoinRequest {
            secret: "s".repeat(25),
            csr_der: CSR_DER.clone(),
            hostname: "host".into(),
            advertise_addr: "127.0.0.1:4240".into(),
        }),
        Message::Raft(RaftEnvelope {
            from: 1,
            to: 2,
            bytes: vec![8, 3, 16, 1],
        }),
        Message::NotLeader {
            leader_addr: Some("127.0.0.1:4241".into()),
        },
        Message::Ack,
    ]
}

/// Flips, overwrites, inserts or cuts bytes of `bytes` at the given positions.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(position, value, how) in edits {
        if bytes.is_empty() {
            bytes.push(value);
            continue;
        }
        let at = position % bytes.len();
        match how % 4 {
            0 => bytes[at] ^= value | 1,
            1 => bytes[at] = value,
            2 => bytes.insert(at, value),
            _ => bytes.truncate(at),
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Frame decode: any bytes, never a panic, never an allocation past the frame limit.
    #[test]
    fn frame_decode_of_any_bytes_stays_within_the_limit(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let (_, largest) = largest_allocation(|| {
            let _ = codec::decode_frame(&bytes);
            let _ = codec::decode_payload(&bytes);
        });
        prop_assert!(largest <= MAX_FRAME_BYTES, "allocated {largest} bytes");
    }

    /// Message bodies: a version byte then bytes that claim huge lengths (bincode varints of
    /// up to u64::MAX) must fail without allocating what they claim.
    #[test]
    fn bodies_claiming_huge_lengths_stay_within_the_limit(
        variant in 0u8..16,
        claims in proptest::collection::vec(prop_oneof![Just(251u8), Just(252), Just(253)], 1..4),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut payload = vec![PROTOCOL_VERSION, variant];
        for marker in claims {
            payload.push(marker);
            payload.extend_from_slice(&[0xff; 8][..match marker { 251 => 2, 252 => 4, _ => 8 }]);
        }
        payload.extend_from_slice(&tail);
        let (_, largest) = largest_allocation(|| codec::decode_payload(&payload));
        prop_assert!(largest <= MAX_FRAME_BYTES, "allocated {largest} bytes");
    }

    /// Message bodies: mutated valid frames decode to some message or an error.
    #[test]
    fn mutated_frames_never_panic(which in 0usize..5, edits in edits()) {
        let message = &samples()[which];
        let frame = codec::encode(message).expect("encodes");
        let mutated = mutate(frame, &edits);
        let (_, largest) = largest_allocation(|| codec::decode_frame(&mutated));
        prop_assert!(largest <= MAX_FRAME_BYTES, "allocated {largest} bytes");
    }

    /// Join token parse: any text gives a token or an error; a token's own text parses back.
    #[test]
    fn join_token_parse_never_panics(text in ".{0,120}", raw in "FLTKN-1-[0-9a-z-]{0,90}") {
        let _ = JoinToken::parse(&text);
        let _ = JoinToken::parse(&raw);
        let _ = token::base36_decode(&text);
    }

    #[test]
    fn join_tokens_round_trip(digest in any::<[u8; 32]>(), secret in any::<[u8; 16]>()) {
        let token = JoinToken::new(digest, token::base36_encode(&secret, 25));
        let parsed = JoinToken::parse(&token.to_string()).expect("a token parses");
        prop_assert_eq!(parsed.ca_digest, digest);
        prop_assert_eq!(parsed.secret, token.secret);
    }

    /// The secret a joining peer presents: compared, never parsed into anything that panics.
    #[test]
    fn any_presented_secret_is_wrong_or_a_role(presented in ".{0,64}") {
        let result = token::role_for_secret(&presented, &"w".repeat(25), &"m".repeat(25));
        prop_assert!(result.is_err() || presented == "w".repeat(25) || presented == "m".repeat(25));
    }

    /// CSR parsing: random bytes are refused with an error.
    #[test]
    fn random_bytes_are_not_a_certificate_request(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        prop_assert!(CA.sign_request(&bytes, "n", Role::Worker, 0).is_err());
    }

    /// CSR parsing: a mutated request is signed or refused, never a panic.
    #[test]
    fn mutated_certificate_requests_never_panic(edits in edits()) {
        let mutated = mutate(CSR_DER.clone(), &edits);
        let _ = CA.sign_request(&mutated, "n", Role::Worker, 0);
    }

    /// Certificate identity parse: random bytes are refused with an error.
    #[test]
    fn random_bytes_have_no_identity(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        prop_assert!(tls::identity_from_der(&bytes).is_err());
    }

    /// Certificate identity parse: a mutated certificate gives an identity or an error.
    #[test]
    fn mutated_certificates_never_panic(edits in edits()) {
        let mutated = mutate(CERT_DER.clone(), &edits);
        let _ = tls::identity_from_der(&mutated);
    }
}

#[test]
fn the_unmutated_inputs_are_accepted() {
    // The mutation tests start from inputs the decoders accept, or they would test nothing.
    let identity = tls::identity_from_der(&CERT_DER).expect("identity");
    assert_eq!(identity.node_id, "node-1");
    assert_eq!(identity.role, Role::Worker);
    assert!(CA.sign_request(&CSR_DER, "n", Role::Worker, 0).is_ok());
    for message in samples() {
        let frame = codec::encode(&message).expect("encodes");
        assert_eq!(codec::decode_frame(&frame).expect("decodes").0, message);
    }
}
