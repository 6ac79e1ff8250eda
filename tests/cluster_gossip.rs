//! Gossip over real processes and QUIC (issue 17): three nodes (a manager and two workers)
//! see each other alive in `node inspect`; a worker killed with SIGKILL becomes suspect or
//! down in the others' views and its own view unavailable; an impostor's packet and a
//! malformed one are refused with a log line while the node keeps serving.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::Cluster;
use flotilla::core::gossip::{Gossip, GossipConfig, GossipId};
use flotilla::net::message::Message;
use flotilla::net::tls::{Credentials, Role};
use flotilla::net::transport;
use serde_json::Value;

/// Gossip four times faster than the defaults: probes every 250 ms, suspicion 1 s.
const GOSSIP_FASTER: &str = "4";
/// How long three fresh nodes may take to see each other.
const CONVERGENCE_MAX: Duration = Duration::from_secs(15);
/// How long a killed worker may stay alive in the others' views.
const DETECTION_MAX: Duration = Duration::from_secs(10);

fn cluster_of_three() -> (Cluster, [String; 3]) {
    let mut cluster =
        Cluster::new(&["--heartbeat-ms", "500"]).with_env("FLOTILLA_GOSSIP_FASTER", GOSSIP_FASTER);
    cluster.init();
    cluster.join("worker");
    cluster.join("worker");
    let ids = [
        cluster.wait_node_id(0),
        cluster.wait_node_id(1),
        cluster.wait_node_id(2),
    ];
    (cluster, ids)
}

/// `node inspect` of every node in `ids`, through the manager.
fn inspect(cluster: &Cluster, ids: &[String]) -> Vec<Value> {
    let mut args = vec!["node", "inspect"];
    args.extend(ids.iter().map(String::as_str));
    let output = cluster.cli_ok(Some(0), &args);
    serde_json::from_str(&output).expect("node inspect prints JSON")
}

fn state_of(record: &Value, member: &str) -> Option<String> {
    record["gossip"]["members"]
        .as_array()?
        .iter()
        .find(|m| m["node_id"] == member)
        .and_then(|m| m["state"].as_str().map(str::to_string))
}

fn sees_others_alive(records: &[Value], ids: &[String]) -> bool {
    records.iter().zip(ids).all(|(record, own)| {
        ids.iter()
            .filter(|id| *id != own)
            .all(|other| state_of(record, other).as_deref() == Some("alive"))
    })
}

#[test]
fn three_nodes_see_each_other_alive_and_a_killed_worker_suspect_or_down() {
    let (mut cluster, ids) = cluster_of_three();
    let started = Instant::now();
    cluster.wait_until(
        "every node's gossip view lists the other two as alive",
        CONVERGENCE_MAX,
        || sees_others_alive(&inspect(&cluster, &ids), &ids),
    );
    eprintln!(
        "gossip views converged {:?} after the last join",
        started.elapsed()
    );
    let records = inspect(&cluster, &ids);
    for (record, own) in records.iter().zip(&ids) {
        assert_eq!(record["gossip"]["node_id"], own.as_str(), "{record}");
        assert_eq!(
            record["gossip"]["suspected"],
            Value::Array(vec![]),
            "{record}"
        );
    }
    let pretty = cluster.cli_ok(Some(0), &["node", "inspect", "--pretty", &ids[1]]);
    assert!(pretty.contains("Gossip:"), "{pretty}");
    assert!(pretty.contains(&format!("{}\t", ids[0])), "{pretty}");

    let killed = Instant::now();
    cluster.kill(2);
    let victim = ids[2].clone();
    cluster.wait_until(
        "the survivors see the killed worker suspect or down",
        DETECTION_MAX,
        || {
            inspect(&cluster, &ids[..2]).iter().all(|record| {
                matches!(
                    state_of(record, &victim).as_deref(),
                    Some("suspect" | "down") | None
                )
            })
        },
    );
    eprintln!(
        "the killed worker was suspected {:?} after SIGKILL",
        killed.elapsed()
    );
    let records = inspect(&cluster, &ids);
    assert_eq!(records[2]["gossip"], "unavailable", "{}", records[2]);
    // The survivors still see each other.
    assert_eq!(state_of(&records[0], &ids[1]).as_deref(), Some("alive"));
    assert_eq!(state_of(&records[1], &ids[0]).as_deref(), Some("alive"));

    // `node rm` of the dead worker: the manager removes it from gossip, and it stays down.
    cluster.cli_ok(Some(0), &["node", "rm", "--force", &victim]);
    cluster.wait_until(
        "the manager removes it from gossip",
        Duration::from_secs(5),
        || cluster.log_contains(0, "removed from gossip"),
    );
    let records = inspect(&cluster, &ids[..2]);
    assert!(
        matches!(
            state_of(&records[0], &victim).as_deref(),
            Some("down") | None
        ),
        "{}",
        records[0]
    );
}

/// Sends `message` to `addr` as the holder of `credentials` (a request: the node answers
/// one-way messages sent as requests with an error, which is beside the point here).
fn send_as(credentials: &Credentials, addr: &str, message: Message) {
    let tls = credentials.client_config().expect("client TLS config");
    let addr: SocketAddr = addr.parse().expect("address");
    let bind = SocketAddr::from(([127, 0, 0, 1], 0));
    let timeout = Duration::from_secs(5);
    let _ = actix::System::new().block_on(async move {
        transport::request_within(bind, tls, addr, &[Role::Manager], message, timeout, timeout)
            .await
    });
}

#[test]
fn an_impostor_packet_and_a_malformed_one_are_refused_and_the_node_keeps_serving() {
    let (cluster, ids) = cluster_of_three();
    cluster.wait_until("gossip converges", CONVERGENCE_MAX, || {
        sees_others_alive(&inspect(&cluster, &ids), &ids)
    });
    // Worker 1 (its own certificate) sends a packet that claims to come from worker 2.
    let manager_addr: SocketAddr = cluster.addr(0).parse().expect("address");
    let claimed = GossipId::new(&ids[2], cluster.addr(2).parse().expect("address"), u64::MAX);
    let mut forger = Gossip::new(claimed, GossipConfig::default(), 7);
    forger
        .announce_to(GossipId::new(&ids[0], manager_addr, 0))
        .expect("announce");
    let (_, packet) = forger.take_effects().packets.pop().expect("a packet");
    let worker = cluster.node_credentials(1);
    send_as(&worker, &cluster.addr(0), Message::Gossip(packet));
    send_as(&worker, &cluster.addr(0), Message::Gossip(vec![0xFF; 5]));
    cluster.wait_until(
        "the manager logs both refusals",
        Duration::from_secs(5),
        || {
            cluster.log_contains(0, &format!("claims to be from {}", ids[2]))
                && cluster.log_contains(0, "malformed gossip packet")
        },
    );
    // Nothing changed, and the manager still gossips and answers.
    let records = inspect(&cluster, &ids);
    assert!(sees_others_alive(&records, &ids), "{records:?}");
}
