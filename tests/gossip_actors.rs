//! Gossip actors over real loopback QUIC with mutual TLS, in one process: each node is a
//! real node actor (its routing), transport actor and gossip actor, as `node::compose` wires
//! them. Three nodes join through the first; a table announced on it reaches the other two
//! through gossip and fetches, and a newer one replaces it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use flotilla::actors::gossip::{
    AnnounceTable, GetGossipView, GossipActor, GossipWiring, SubscribeTables, TableLearned,
};
use flotilla::actors::node::{AttachGossip, AttachTransport, NodeActor};
use flotilla::actors::transport::TransportActor;
use flotilla::core::gossip::{GossipConfig, GossipId, MemberState};
use flotilla::net::tls::{ClusterCa, Role};
use flotilla::net::transport::{Transport, TransportConfig};
use parking_lot::Mutex;

/// The tables one node learned: `(version, bytes)`, oldest first.
type Learned = Arc<Mutex<Vec<(u64, Arc<[u8]>)>>>;

/// Keeps every table its node learned, as the routing actor would get them.
struct Tables(Learned);

impl Actor for Tables {
    type Context = Context<Self>;
}

impl Handler<TableLearned> for Tables {
    type Result = ();

    fn handle(&mut self, table: TableLearned, _: &mut Context<Self>) {
        self.0.lock().push((table.version, table.bytes));
    }
}

struct TestNode {
    gossip: Addr<GossipActor>,
    tables: Learned,
    addr: SocketAddr,
}

fn start_node(ca: &ClusterCa, name: &str, role: Role, seeds: Vec<SocketAddr>) -> TestNode {
    let credentials = ca.issue(name, role, 0).expect("certificate");
    let node_context = Context::<NodeActor>::new();
    let node = node_context.address();
    let transport = Transport::bind(
        TransportConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            credentials,
        },
        node.clone().recipient(),
    )
    .expect("bind");
    let addr = transport.local_addr().expect("local address");
    let transport_actor = TransportActor::new(transport.clone()).start();
    node_context.run(NodeActor::new(None, Duration::from_secs(1), false));
    node.do_send(AttachTransport {
        transport,
        sender: transport_actor.clone().recipient(),
    });
    let tables = Arc::new(Mutex::new(Vec::new()));
    let gossip = GossipActor::new(
        GossipId::new(name, addr, 1),
        GossipConfig::default().faster(4),
        u64::from(addr.port()),
        seeds,
        GossipWiring {
            sender: transport_actor.clone().recipient(),
            requests: transport_actor.recipient(),
            learned: None,
        },
    )
    .start();
    gossip.do_send(SubscribeTables(Tables(tables.clone()).start().recipient()));
    node.do_send(AttachGossip(gossip.clone()));
    TestNode {
        gossip,
        tables,
        addr,
    }
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> F,
) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {timeout:?} waiting until {what}");
}

#[actix_rt::test]
async fn three_gossip_actors_join_and_spread_a_table_over_quic() {
    let ca = ClusterCa::create("c1").expect("ca");
    let first = start_node(&ca, "m1", Role::Manager, vec![]);
    let others = [
        start_node(&ca, "w1", Role::Worker, vec![first.addr]),
        start_node(&ca, "w2", Role::Worker, vec![first.addr]),
    ];
    let all: Vec<Addr<GossipActor>> = std::iter::once(&first)
        .chain(&others)
        .map(|node| node.gossip.clone())
        .collect();
    wait_until(
        "all three see two alive members",
        Duration::from_secs(10),
        || {
            let all = all.clone();
            async move {
                for gossip in all {
                    let view = gossip.send(GetGossipView).await.expect("view");
                    let alive = view
                        .members
                        .iter()
                        .filter(|member| member.state == MemberState::Alive)
                        .count();
                    if alive != 2 {
                        return false;
                    }
                }
                true
            }
        },
    )
    .await;

    let table: Arc<[u8]> = vec![7u8; 30 * 1024].into();
    first.gossip.do_send(AnnounceTable {
        version: 5,
        bytes: table.clone(),
    });
    let has = |version: u64| {
        let tables: Vec<_> = others.iter().map(|node| node.tables.clone()).collect();
        move || {
            let tables = tables.clone();
            async move {
                tables
                    .iter()
                    .all(|learned| learned.lock().iter().any(|(v, _)| *v == version))
            }
        }
    };
    wait_until(
        "the table reaches w1 and w2",
        Duration::from_secs(5),
        has(5),
    )
    .await;
    for node in &others {
        let learned = node.tables.lock().clone();
        assert_eq!(
            learned.last().map(|(_, bytes)| bytes.clone()),
            Some(table.clone())
        );
    }

    first.gossip.do_send(AnnounceTable {
        version: 6,
        bytes: vec![8u8; 100].into(),
    });
    wait_until(
        "the newer table reaches w1 and w2",
        Duration::from_secs(5),
        has(6),
    )
    .await;
    for node in &others {
        let view = node.gossip.send(GetGossipView).await.expect("view");
        assert_eq!(view.table_version, Some(6));
    }
    // The origin learned its own tables too (the routing actor of every node gets them).
    assert_eq!(
        first
            .tables
            .lock()
            .iter()
            .map(|(v, _)| *v)
            .collect::<Vec<_>>(),
        vec![5, 6]
    );
}
