//! Data written by release beee5bb (format version 3) reads with this build (SPEC §12): its
//! store snapshot and its log entries, from `tests/fixtures/release-beee5bb` (see its README).

use crate::consensus::state_machine::decode_command;
use crate::consensus::store_machine::Proposal;
use crate::core::model::TaskState;
use crate::core::rollout::{HealthTest, UpdateState};
use crate::core::store::{Command, Store};

const SNAPSHOT: &[u8] = include_bytes!("../../tests/fixtures/release-beee5bb/store.snapshot");
const ENTRIES: &[u8] = include_bytes!("../../tests/fixtures/release-beee5bb/entries.bin");

fn entries() -> Vec<&'static [u8]> {
    let mut rest = ENTRIES;
    let mut entries = Vec::new();
    while rest.len() >= 4 {
        let length = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        entries.push(&rest[4..4 + length]);
        rest = &rest[4 + length..];
    }
    entries
}

#[test]
fn a_version_3_snapshot_restores_with_its_specs_and_rollout() {
    assert_eq!(&SNAPSHOT[..3], &[0xFF, b'F', 3], "the fixture is version 3");
    let store = Store::restore(SNAPSHOT).expect("version 3 snapshot reads");
    let web = store.service("s1").expect("web");
    assert_eq!(web.spec.image, "busybox:2");
    assert_eq!(web.spec.env.get("MODE").map(String::as_str), Some("v3"));
    assert_eq!(
        web.spec.health.test,
        HealthTest::Shell("test -f /tmp/ready".into())
    );
    assert_eq!(web.spec.health.retries, Some(2));
    assert_eq!(web.spec.stop_grace_ms, Some(3_000));
    assert_eq!(web.spec.update.parallelism, 2);
    assert!(web.spec.ports.is_empty() && web.spec.secrets.is_empty());
    let previous = web.previous_spec.as_ref().expect("previous spec");
    assert_eq!(previous.spec.image, "busybox");
    assert_eq!(
        web.update_status.as_ref().map(|status| status.state),
        Some(UpdateState::Paused)
    );
    let t1 = store.task("t1").expect("t1");
    assert_eq!(t1.status.state, TaskState::Running);
    assert_eq!(t1.spec_version, previous.version);
    assert_eq!(t1.spec.stop_grace_ms, 3_000);
    assert!(t1.endpoints.is_empty());
    // Written again, it is this build's format and reads back the same.
    let again = store.snapshot();
    assert_eq!(
        again[2],
        crate::core::format::STORE_SNAPSHOT.current,
        "rewritten in the current format"
    );
    assert_eq!(
        Store::restore(&again).expect("current snapshot reads"),
        store
    );
}

#[test]
fn version_3_log_entries_decode_and_replay_to_the_same_store() {
    let entries = entries();
    assert_eq!(entries.len(), 8);
    let mut store = Store::new();
    for (index, bytes) in entries.iter().enumerate() {
        assert_eq!(&bytes[..3], &[0xFF, b'F', 3]);
        let proposal: Proposal = decode_command(bytes).expect("version 3 entry decodes");
        assert_eq!(proposal.now_ms, 1_000 * (index as u64 + 1));
        let index = index as u64 + 1;
        store
            .apply(index, index * 1000, proposal.command)
            .expect("applies");
    }
    let snapshot = Store::restore(SNAPSHOT).expect("snapshot");
    assert_eq!(store.service("s1"), snapshot.service("s1"));
    assert_eq!(store.task("t2"), snapshot.task("t2"));
    let decoded: Proposal = decode_command(entries[6]).expect("update entry");
    assert!(
        matches!(decoded.command, Command::UpdateService { ref spec, .. } if spec.image == "busybox:2")
    );
}

const V4_SNAPSHOT: &[u8] = include_bytes!("../../tests/fixtures/release-12d4736/store.snapshot");
const V4_ENTRIES: &[u8] = include_bytes!("../../tests/fixtures/release-12d4736/entries.bin");

#[test]
fn version_4_snapshot_and_entries_read_and_replay_to_the_same_store() {
    assert_eq!(
        &V4_SNAPSHOT[..3],
        &[0xFF, b'F', 4],
        "the fixture is version 4"
    );
    let snapshot = Store::restore(V4_SNAPSHOT).expect("version 4 snapshot reads");
    let web = snapshot.service("s1").expect("web");
    assert_eq!(web.spec.ports.len(), 1);
    assert_eq!(web.spec.env.get("MODE").map(String::as_str), Some("v4"));
    assert!(snapshot
        .secrets(crate::core::secrets::SecretKind::Secret)
        .is_empty());
    assert!(snapshot.autolock().is_none());
    let mut rest = V4_ENTRIES;
    let mut store = Store::new();
    let mut index = 0;
    while rest.len() >= 4 {
        let length = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let bytes = &rest[4..4 + length];
        rest = &rest[4 + length..];
        assert_eq!(&bytes[..3], &[0xFF, b'F', 4]);
        let proposal: Proposal = decode_command(bytes).expect("version 4 entry decodes");
        index += 1;
        store
            .apply(index, proposal.now_ms, proposal.command)
            .expect("applies");
    }
    assert_eq!(index, 7);
    assert_eq!(store, snapshot);
    let again = store.snapshot();
    assert_eq!(again[2], crate::core::format::STORE_SNAPSHOT.current);
    assert_eq!(Store::restore(&again).expect("current reads"), store);
}
