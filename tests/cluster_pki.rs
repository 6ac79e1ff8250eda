//! The cluster PKI over real processes: certificates expire and are renewed, `node rm` and
//! `node demote` revoke, a demoted manager keeps no Raft state or CA key.

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::Cluster;
use flotilla::net::message::{Message, RaftEnvelope};
use flotilla::net::tls::{Credentials, PeerIdentity};
use flotilla::net::transport::{self, TransportError};

const FAST: &[&str] = &["--heartbeat-ms", "200"];

fn credentials(state_dir: &Path) -> Credentials {
    let text = std::fs::read_to_string(state_dir.join("credentials.toml")).expect("credentials");
    toml::from_str(&text).expect("credentials parse")
}

fn identity(state_dir: &Path) -> PeerIdentity {
    credentials(state_dir).identity().expect("identity")
}

fn unix_now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn status_of(cluster: &Cluster, node_id: &str) -> Option<(String, String)> {
    let nodes = cluster.nodes_json(None)?;
    let node = nodes.into_iter().find(|n| n["id"] == node_id)?;
    Some((
        node["role"].as_str()?.to_string(),
        node["status"].as_str()?.to_string(),
    ))
}

#[test]
fn certificates_are_renewed_and_the_cluster_outlives_their_expiry() {
    let mut cluster = Cluster::new(FAST).with_env("FLOTILLA_CERT_VALIDITY_SECS", "8");
    cluster.init();
    let worker = cluster.join("worker");
    let first_worker = identity(&cluster.nodes[worker].state_dir);
    let first_manager = identity(&cluster.nodes[0].state_dir);
    assert!(
        first_worker.not_after_unix_s - unix_now_s() <= 9,
        "short validity in force"
    );
    // Well past the first certificates' expiry, both nodes hold newer ones.
    cluster.wait_until(
        "both nodes renewed their certificates past the first expiry",
        Duration::from_secs(40),
        || {
            let (worker_now, manager_now) = (
                identity(&cluster.nodes[worker].state_dir),
                identity(&cluster.nodes[0].state_dir),
            );
            unix_now_s()
                > first_worker
                    .not_after_unix_s
                    .max(first_manager.not_after_unix_s)
                    + 2
                && worker_now.serial != first_worker.serial
                && manager_now.serial != first_manager.serial
                && worker_now.not_after_unix_s > unix_now_s()
        },
    );
    let renewed = identity(&cluster.nodes[worker].state_dir);
    assert_eq!(renewed.node_id, first_worker.node_id);
    assert_eq!(renewed.cluster_id, first_worker.cluster_id);
    // A fresh handshake after the first certificate expired: the worker comes back with the
    // renewed one, and the manager serves with its own renewed one.
    cluster.kill(worker);
    cluster.restart(worker);
    let worker_id = cluster.node_id(worker);
    cluster.wait_until(
        "the restarted worker is ready again",
        Duration::from_secs(20),
        || status_of(&cluster, &worker_id).is_some_and(|(_, status)| status == "ready"),
    );
    assert!(cluster.log_contains(worker, "certificate renewed"));
}

#[test]
fn a_removed_worker_is_refused_with_its_old_certificate() {
    let mut cluster = Cluster::new(&["--heartbeat-ms", "300"]);
    cluster.init();
    let worker = cluster.join("worker");
    let worker_id = cluster.node_id(worker);
    cluster.kill(worker);
    cluster.wait_until("the worker is down", Duration::from_secs(20), || {
        status_of(&cluster, &worker_id).is_some_and(|(_, status)| status == "down")
    });
    cluster.cli_ok(None, &["node", "rm", &worker_id]);
    // Same state directory, same certificate.
    cluster.restart(worker);
    cluster.wait_until(
        "the restarted node learns that its certificate is revoked",
        Duration::from_secs(20),
        || cluster.log_contains(worker, "certificate is revoked"),
    );
    assert!(cluster.log_contains(0, "refused a revoked certificate"));
    // Its heartbeats keep being refused: it never comes back into the node list.
    for _ in 0..5 {
        let nodes = cluster.nodes_json(None).expect("node ls");
        assert!(
            nodes.iter().all(|n| n["id"] != worker_id.as_str()),
            "{nodes:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_live_worker_removed_by_force_is_cut_off_at_once() {
    let mut cluster = Cluster::new(&["--heartbeat-ms", "300"]);
    cluster.init();
    let worker = cluster.join("worker");
    let worker_id = cluster.node_id(worker);
    cluster.cli_ok(None, &["node", "rm", "--force", &worker_id]);
    cluster.wait_until(
        "the removed worker's connections are closed and it is told why",
        Duration::from_secs(20),
        || cluster.log_contains(worker, "certificate is revoked"),
    );
    assert!(cluster.log_contains(0, "closing the connection of a revoked certificate"));
    let nodes = cluster.nodes_json(None).expect("node ls");
    assert!(
        nodes.iter().all(|n| n["id"] != worker_id.as_str()),
        "{nodes:?}"
    );
}

/// The CA private key (PEM body) as stored in a manager's Raft database.
fn ca_key_body(raft_file: &Path) -> Vec<u8> {
    let bytes = std::fs::read(raft_file).expect("raft.redb");
    let begin = b"-----BEGIN PRIVATE KEY-----";
    let start = bytes
        .windows(begin.len())
        .position(|w| w == begin)
        .expect("the CA key is in the Raft database");
    // The second line of the base64 body: the first is the ASN.1 header every P-256 key
    // shares; the second is key material only this key has.
    let body = &bytes[start + begin.len()..];
    let line = body
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .nth(1)
        .expect("a second line");
    assert_eq!(line.len(), 64, "a full PEM line");
    line.to_vec()
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in walk(dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        if bytes.windows(needle.len()).any(|w| w == needle) {
            found.push(entry.display().to_string());
        }
    }
    found
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_demoted_manager_wipes_the_ca_key_and_its_old_certificate_is_refused() {
    let mut cluster = Cluster::new(&["--heartbeat-ms", "300"]);
    cluster.init();
    let node = cluster.join("worker");
    let node_id = cluster.node_id(node);
    let state_dir = cluster.nodes[node].state_dir.clone();
    cluster.cli_ok(None, &["node", "promote", &node_id]);
    cluster.wait_until("the node is a manager", Duration::from_secs(30), || {
        cluster.cli(Some(node), &["node", "ls"]).status.success()
    });
    let old_manager = credentials(&state_dir);
    assert_eq!(
        old_manager.identity().expect("identity").role,
        flotilla::net::tls::Role::Manager
    );
    let key_body = ca_key_body(&cluster.nodes[0].state_dir.join("raft.redb"));
    cluster.wait_until(
        "the new manager holds the replicated CA key",
        Duration::from_secs(20),
        || !files_containing(&state_dir, &key_body).is_empty(),
    );

    cluster.cli_ok(None, &["node", "demote", &node_id]);
    cluster.wait_until(
        "the node is a worker again",
        Duration::from_secs(30),
        || {
            status_of(&cluster, &node_id) == Some(("worker".into(), "ready".into()))
                && identity(&state_dir).role == flotilla::net::tls::Role::Worker
        },
    );
    assert_eq!(
        files_containing(&state_dir, &key_body),
        Vec::<String>::new()
    );
    assert!(walk(&state_dir)
        .iter()
        .all(|path| !path.display().to_string().contains("raft.redb")));

    // The old manager certificate may not send Raft traffic any more.
    let leader_addr = cluster.addr(0).parse().expect("addr");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let outcome = runtime.block_on(transport::request_with(
        "127.0.0.1:0".parse().expect("bind"),
        old_manager.client_config().expect("client config"),
        leader_addr,
        Message::Raft(RaftEnvelope {
            from: 2,
            to: 1,
            bytes: vec![],
        }),
        Duration::from_secs(5),
    ));
    match outcome {
        Err(TransportError::Remote(error)) => {
            assert!(error.message.contains("may not send raft"), "{error}")
        }
        other => panic!("the old manager certificate was not refused: {other:?}"),
    }

    // Promoted again, it gets a new manager certificate, which is good.
    cluster.cli_ok(None, &["node", "promote", &node_id]);
    cluster.wait_until(
        "the re-promoted node serves control commands",
        Duration::from_secs(30),
        || cluster.cli(Some(node), &["node", "ls"]).status.success(),
    );
}
