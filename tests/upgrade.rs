//! A node of this build starts from the state the previous release wrote (SPEC §12): the
//! fixture in `tests/fixtures/release-e711e29` (see its README) holds a manager's Raft log
//! and node files and a worker's node files, none of them with a format version.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::Cluster;

const FIXTURE_PORT: u16 = 47777;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/release-e711e29")
        .join(name)
}

#[test]
fn a_cluster_written_by_the_previous_release_starts_and_keeps_its_state() {
    let manager = fixture("manager");
    let worker = fixture("worker");
    let mut cluster = Cluster::from_state_dirs(
        FIXTURE_PORT,
        &[("127.0.0.77", &manager), ("127.0.0.78", &worker)],
    );
    cluster.runtime = "sim".to_string();
    // The manager re-issues its own certificate (the old one names no identity URI); a worker
    // of the previous release must re-join (docs/pki.md), so the old worker stays down.
    cluster.restart(0);

    cluster.wait_until(
        "the old cluster's manager is ready",
        Duration::from_secs(30),
        || cluster.ready_count() == 1,
    );
    let nodes = cluster.nodes_json(None).expect("node ls");
    let by_host = |host: &str| {
        nodes
            .iter()
            .find(|node| node["hostname"] == host)
            .unwrap_or_else(|| panic!("{host} listed: {nodes:?}"))
            .clone()
    };
    let first = by_host("fixture-manager");
    assert_eq!(first["manager_status"], "leader", "{first}");
    let inspect = cluster.cli_ok(None, &["node", "inspect", "fixture-manager"]);
    assert!(inspect.contains("\"disk\": \"ssd\""), "{inspect}");
    assert!(inspect.contains("\"zone\": \"east\""), "{inspect}");
    by_host("fixture-worker");

    // The services the old release created, with their specs (the old worker's tasks move to
    // the manager once the worker is down).
    cluster.wait_for_running("web", 4, Duration::from_secs(30));
    let web = cluster.cli_ok(None, &["service", "inspect", "web"]);
    let web: serde_json::Value = serde_json::from_str(&web).expect("inspect is JSON");
    let spec = &web[0]["spec"];
    assert_eq!(spec["env"]["MODE"], "fixture", "{web}");
    assert_eq!(spec["labels"]["tier"], "front", "{web}");
    assert_eq!(spec["restart"]["condition"], "on-failure", "{web}");

    // And it keeps working: writes commit, and the old join token (the old CA) admits a node.
    cluster.cli_ok(None, &["service", "scale", "web=5", "--detach"]);
    cluster.wait_for_running("web", 5, Duration::from_secs(30));
    let token = cluster.token("worker");
    cluster.spawn_join(&token, 0);
    cluster.wait_until("a new worker joined", Duration::from_secs(30), || {
        cluster.ready_count() == 2
    });
    // The global service (constraint zone==west) was on the old worker only: nothing runs it
    // now, and the manager does not match.
    assert!(cluster.running_tasks("agent").is_empty());
}
