//! In-process cluster tests: three nodes inside one test process (one actix System), real QUIC
//! on loopback, the simulated runtime, and transport fault injection instead of real outages.
//! Fast and deterministic enough to check the orchestrator's reactions to failures.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use flotilla::client::Client;
use flotilla::core::model::{Task, TaskState};
use flotilla::net::admin::{AdminReply, AdminRequest};
use flotilla::net::fault::FaultRule;
use flotilla::node::daemon::{self, NodeOptions, RunningNode};

struct InProcessCluster {
    _dir: tempfile::TempDir,
    nodes: Vec<RunningNode>,
    client: Client,
}

fn options(dir: &std::path::Path, index: usize, port: u16) -> NodeOptions {
    let listen: SocketAddr = format!("127.0.0.{}:{port}", index + 1)
        .parse()
        .expect("address");
    NodeOptions {
        listen,
        advertise_addr: None,
        state_dir: dir.join(format!("node{}", index + 1)),
        hostname: Some(format!("node{}", index + 1)),
        runtime: "sim".to_string(),
        labels: vec![],
        enable_chaos: true,
        raft_tick_ms: 50,
        heartbeat_ms: 200,
        sim_task_start_ms: 10,
        metrics_listen: flotilla::node::metrics::MetricsListen::Off,
    }
}

fn free_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe");
    socket.local_addr().expect("addr").port()
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {timeout:?} waiting until {what}");
}

impl InProcessCluster {
    async fn start(workers: usize) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let (_, manager) = daemon::init(options(dir.path(), 0, port))
            .await
            .expect("init");
        let client = Client::load(&dir.path().join("node1/client.toml"), None).expect("client");
        let mut cluster = Self {
            _dir: dir,
            nodes: vec![manager],
            client,
        };
        let token = match cluster
            .control(AdminRequest::JoinToken {
                role: flotilla::core::model::NodeRole::Worker,
                rotate: false,
            })
            .await
        {
            AdminReply::Token(token) => token,
            other => panic!("unexpected {other:?}"),
        };
        let manager_addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        for index in 1..=workers {
            let node = daemon::join(
                options(cluster._dir.path(), index, port),
                &token,
                manager_addr,
            )
            .await
            .expect("join");
            cluster.nodes.push(node);
        }
        let expected = workers + 1;
        wait_until("every node is ready", Duration::from_secs(10), || async {
            let store = cluster.store();
            store.nodes().len() == expected
                && store
                    .nodes()
                    .values()
                    .all(|n| n.status == flotilla::core::model::NodeStatus::Ready)
        })
        .await;
        cluster
    }

    fn store(&self) -> parking_lot::RwLockReadGuard<'_, flotilla::core::store::Store> {
        self.nodes[0].store.as_ref().expect("manager store").read()
    }

    async fn control(&self, request: AdminRequest) -> AdminReply {
        self.client.control(request).await.expect("control command")
    }

    fn node_index(&self, node_id: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.settings.node_id == node_id)
            .expect("known node")
    }

    fn tasks(&self, service: &str) -> Vec<Task> {
        let store = self.store();
        let service = store.service_by_name(service).expect("service").id.clone();
        store
            .tasks_of_service(&service)
            .into_iter()
            .cloned()
            .collect()
    }

    fn running(&self, service: &str) -> Vec<Task> {
        self.tasks(service)
            .into_iter()
            .filter(|t| {
                t.status.state == TaskState::Running && t.desired_state == TaskState::Running
            })
            .collect()
    }

    /// Simulated containers running on each node (what the "hosts" really run).
    fn sim_running(&self) -> Vec<usize> {
        self.nodes
            .iter()
            .map(|n| n.sim.as_ref().expect("sim runtime").running_count())
            .collect()
    }

    async fn create(&self, name: &str, replicas: u64) {
        let mut spec = flotilla::core::spec::ServiceSpec::new(name, "busybox");
        spec.mode = flotilla::core::spec::ServiceMode::Replicated { replicas };
        self.control(AdminRequest::ServiceCreate { spec }).await;
        wait_until("the service converges", Duration::from_secs(10), || async {
            self.running(name).len() as u64 == replicas
        })
        .await;
    }

    fn partition(&self, index: usize, on: bool) {
        let manager = self.nodes[0].settings.node_id.clone();
        let rule = on.then_some(FaultRule::Partition);
        self.nodes[index].transport.faults().set(&manager, rule);
    }
}

#[actix_rt::test]
async fn a_failed_task_is_replaced_in_its_slot_with_history_kept() {
    let cluster = InProcessCluster::start(2).await;
    cluster.create("web", 3).await;
    let victim = cluster.running("web")[0].clone();
    let node = cluster.node_index(victim.node_id.as_deref().expect("placed"));
    let runtime_id = victim.runtime_id.clone().expect("runtime id");
    assert!(cluster.nodes[node]
        .sim
        .as_ref()
        .expect("sim")
        .exit_task(&runtime_id, 3));
    wait_until(
        "the slot runs a replacement",
        Duration::from_secs(5),
        || async {
            cluster
                .running("web")
                .iter()
                .any(|t| t.slot == victim.slot && t.id != victim.id)
        },
    )
    .await;
    let old = cluster
        .tasks("web")
        .into_iter()
        .find(|t| t.id == victim.id)
        .expect("history kept");
    assert_eq!(old.status.state, TaskState::Failed);
    assert_eq!(old.status.exit_code, Some(3));
    assert_eq!(cluster.running("web").len(), 3);
}

#[actix_rt::test]
async fn a_node_going_down_has_its_tasks_replaced_and_on_return_its_copies_stop() {
    let cluster = InProcessCluster::start(2).await;
    cluster.create("web", 6).await;
    let lost = 1;
    let lost_id = cluster.nodes[lost].settings.node_id.clone();
    let had = cluster
        .running("web")
        .iter()
        .filter(|t| t.node_id.as_deref() == Some(lost_id.as_str()))
        .count();
    assert!(had > 0);
    cluster.partition(lost, true);
    wait_until(
        "the node is down and 6 run elsewhere",
        Duration::from_secs(10),
        || async {
            let up = cluster.running("web");
            up.len() == 6
                && up
                    .iter()
                    .all(|t| t.node_id.as_deref() != Some(lost_id.as_str()))
        },
    )
    .await;
    // Cut off, the node still runs its stale copies.
    assert_eq!(cluster.sim_running()[lost], had);
    cluster.partition(lost, false);
    wait_until(
        "the returning node stops its replaced copies",
        Duration::from_secs(10),
        || async { cluster.sim_running()[lost] == 0 },
    )
    .await;
    let total: usize = cluster.sim_running().iter().sum();
    assert_eq!(
        total, 6,
        "never more running than desired after convergence"
    );
}

#[actix_rt::test]
async fn drain_empties_a_node_and_scale_down_leaves_exactly_the_desired_count() {
    let cluster = InProcessCluster::start(2).await;
    cluster.create("web", 6).await;
    let drained_id = cluster.nodes[2].settings.node_id.clone();
    cluster
        .control(AdminRequest::NodeUpdate {
            node: drained_id.clone(),
            availability: Some(flotilla::core::model::Availability::Drain),
            labels_add: BTreeMap::new(),
            labels_rm: vec![],
        })
        .await;
    wait_until(
        "the drained node runs nothing",
        Duration::from_secs(10),
        || async { cluster.sim_running()[2] == 0 && cluster.running("web").len() == 6 },
    )
    .await;
    cluster
        .control(AdminRequest::ServiceScale {
            targets: vec![("web".into(), 2)],
        })
        .await;
    wait_until(
        "two run, on the two active nodes",
        Duration::from_secs(10),
        || async {
            cluster.running("web").len() == 2 && cluster.sim_running().iter().sum::<usize>() == 2
        },
    )
    .await;
    let slots: Vec<u64> = cluster
        .running("web")
        .iter()
        .filter_map(|t| t.slot)
        .collect();
    assert!(
        slots.iter().all(|slot| *slot <= 2),
        "the highest slots go first: {slots:?}"
    );
}

/// A store watcher that falls behind: its mailbox holds one batch and its first batch takes
/// long to handle, so the batches published meanwhile are dropped for it.
struct SlowWatcher {
    store: flotilla::consensus::store_machine::SharedStore,
    cursor: flotilla::core::events::EventCursor,
    first: bool,
    view: std::sync::Arc<parking_lot::Mutex<WatcherView>>,
}

#[derive(Default)]
struct WatcherView {
    services: std::collections::BTreeSet<String>,
    reconciles: usize,
}

impl actix::Actor for SlowWatcher {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1);
    }
}

impl actix::Handler<flotilla::actors::raft::StoreEvents> for SlowWatcher {
    type Result = ();

    fn handle(
        &mut self,
        flotilla::actors::raft::StoreEvents(batch): flotilla::actors::raft::StoreEvents,
        _: &mut Self::Context,
    ) {
        use flotilla::core::events::Delivery;
        use flotilla::core::store::Event;
        if std::mem::take(&mut self.first) {
            std::thread::sleep(Duration::from_millis(500));
        }
        let mut view = self.view.lock();
        match self.cursor.accept(&batch) {
            Delivery::Events(events) => {
                for event in events {
                    match event {
                        Event::ServiceCreated { service_id } => {
                            view.services.insert(service_id.clone());
                        }
                        Event::ServiceRemoved { service_id } => {
                            view.services.remove(service_id);
                        }
                        _ => {}
                    }
                }
            }
            Delivery::Reconcile { .. } => {
                let store = self.store.read();
                view.services = store.services().keys().cloned().collect();
                view.reconciles += 1;
            }
            Delivery::Nothing => {}
        }
    }
}

#[actix_rt::test]
async fn a_watcher_that_misses_events_is_told_and_heals_by_reconciling() {
    use actix::Actor;
    let cluster = InProcessCluster::start(1).await;
    let store = cluster.nodes[0].store.clone().expect("manager store");
    let raft = cluster.nodes[0].raft.clone().expect("manager raft");
    let view = std::sync::Arc::new(parking_lot::Mutex::new(WatcherView::default()));
    let thread = actix::Arbiter::new();
    let watcher = {
        let (store, view) = (store.clone(), view.clone());
        let cursor = flotilla::core::events::EventCursor::at(store.read().applied_index());
        SlowWatcher::start_in_arbiter(&thread.handle(), move |_| SlowWatcher {
            store,
            cursor,
            first: true,
            view,
        })
    };
    raft.do_send(flotilla::actors::raft::Subscribe {
        events: Some(watcher.recipient()),
        leadership: None,
    });
    for index in 0..8 {
        let mut spec = flotilla::core::spec::ServiceSpec::new(&format!("svc{index}"), "busybox");
        spec.mode = flotilla::core::spec::ServiceMode::Replicated { replicas: 2 };
        cluster.control(AdminRequest::ServiceCreate { spec }).await;
    }
    let expected: std::collections::BTreeSet<String> =
        cluster.store().services().keys().cloned().collect();
    assert_eq!(expected.len(), 8);
    // Batches keep coming (tasks start); the view heals as soon as one arrives after the gap.
    wait_until(
        "the watcher's view matches the store",
        Duration::from_secs(10),
        || async { view.lock().services == expected },
    )
    .await;
    assert!(
        view.lock().reconciles >= 1,
        "the watcher never learned that it missed events"
    );
    thread.stop();
}

/// SPEC §4: state directories 0700, every file in them 0600 (keys, tokens, the Raft log
/// holding the CA key, the saved assignment set).
fn assert_owner_only(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir)
        .expect("state dir")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "{} has mode {mode:o}", dir.display());
    for entry in std::fs::read_dir(dir).expect("read state dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        if path.is_dir() {
            assert_owner_only(&path);
            continue;
        }
        let mode = entry.metadata().expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", path.display());
    }
}

#[actix_rt::test]
async fn state_directories_and_their_files_are_owner_only() {
    let cluster = InProcessCluster::start(1).await;
    cluster.create("web", 2).await;
    for index in 0..cluster.nodes.len() {
        assert_owner_only(&cluster._dir.path().join(format!("node{}", index + 1)));
    }
}

/// A Raft envelope whose `from` is not its certificate's node, or whose certified sender is
/// not a member, is dropped before raft-rs sees it. The bait is a heartbeat at a much higher
/// term: the peer-message validator alone would let raft-rs step it (a leader it does not know
/// yet, at a newer term), and the leader would step down to that term.
#[actix_rt::test]
async fn a_raft_envelope_with_a_forged_sender_is_dropped_never_stepped() {
    use flotilla::actors::raft::{GetStatus, StepRaft};
    use flotilla::consensus::store_machine::raft_id_of;
    use flotilla::net::message::RaftEnvelope;
    use protobuf::Message as _;
    let cluster = InProcessCluster::start(1).await;
    let raft = cluster.nodes[0].raft.clone().expect("manager raft");
    let before = raft.send(GetStatus).await.expect("status");
    assert!(before.leadership.is_leader);
    let own = before.raft_id;
    let term = before.leadership.term;
    let heartbeat = |from: u64| {
        let mut message = raft::eraftpb::Message::default();
        message.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
        message.set_from(from);
        message.set_to(own);
        message.set_term(term + 100);
        message.write_to_bytes().expect("encodes")
    };
    let remote: SocketAddr = "127.0.0.9:1".parse().expect("address");
    let worker_id = cluster.nodes[1].settings.node_id.clone();
    // (certificate node, envelope from, protobuf from): a forged envelope sender; a certified
    // sender that is not a member (the worker's ID); a non-member whose message inside claims
    // another sender. (A member's mismatching message inside: `RaftMember::step_from`'s test.)
    let forged = [
        (
            "intruder".to_string(),
            raft_id_of(&worker_id),
            raft_id_of(&worker_id),
        ),
        (
            worker_id.clone(),
            raft_id_of(&worker_id),
            raft_id_of(&worker_id),
        ),
        (
            "intruder".to_string(),
            raft_id_of("intruder"),
            raft_id_of(&worker_id),
        ),
    ];
    for (sender_node_id, from, inner_from) in forged {
        raft.send(StepRaft {
            envelope: RaftEnvelope {
                from,
                to: own,
                bytes: heartbeat(inner_from),
            },
            remote,
            sender_node_id,
        })
        .await
        .expect("raft actor answers");
    }
    // Ticks and Readies run between: give the actor a few rounds, then look.
    for _ in 0..5 {
        let status = raft.send(GetStatus).await.expect("status");
        assert!(
            status.leadership.is_leader,
            "still leads: nothing was stepped"
        );
        assert_eq!(
            status.leadership.term, term,
            "no term change: nothing was stepped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A heartbeat names the node it is for; the leader refuses one whose node is not the
/// certificate's (a worker cannot keep another node alive or change its description).
#[actix_rt::test]
async fn a_heartbeat_for_another_node_is_refused() {
    use flotilla::net::message::{ErrorKind, Heartbeat, Message as WireMessage};
    use flotilla::net::tls::Role;
    use flotilla::net::transport::{Expect, TransportError};
    let cluster = InProcessCluster::start(2).await;
    let leader_addr = cluster.nodes[0].transport.local_addr().expect("addr");
    let (victim, liar) = (&cluster.nodes[1], &cluster.nodes[2]);
    let victim_node = cluster
        .store()
        .node(&victim.settings.node_id)
        .cloned()
        .expect("node");
    let forged = WireMessage::Heartbeat(Heartbeat {
        description: flotilla::net::message::NodeDescription {
            hostname: "hijacked".into(),
            addr: liar.settings.advertise_addr.clone(),
            engine_version: victim_node.engine_version.clone(),
            resources: victim_node.resources,
            labels: victim_node.labels.clone(),
        },
        assignments_version: 0,
        renewal_csr_der: None,
        node_id: victim.settings.node_id.clone(),
    });
    let outcome = liar
        .transport
        .request_expecting(
            leader_addr,
            Expect::Role(Role::Manager),
            forged,
            Duration::from_secs(5),
        )
        .await;
    match outcome {
        Err(TransportError::Remote(error)) => assert_eq!(error.kind, ErrorKind::Forbidden),
        other => panic!("expected Forbidden, got {other:?}"),
    }
    let after = cluster
        .store()
        .node(&victim.settings.node_id)
        .cloned()
        .expect("node");
    assert_eq!(after.hostname, victim_node.hostname);
    assert_eq!(after.addr, victim_node.addr);
}
