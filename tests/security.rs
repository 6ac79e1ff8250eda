//! Refusals of SPEC §4 against real node processes: only the admin certificate issues
//! control commands, a manager forwards them only with the admin's proof, and the CLI never
//! takes a worker for a manager. Every refused attempt is followed by a check that nothing
//! changed.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Cluster;
use flotilla::core::spec::ServiceSpec;
use flotilla::net::admin::{AdminReply, AdminRequest, ClientConfig, NOT_A_MANAGER};
use flotilla::net::control_proof::{self, ControlStatement, SignedControl};
use flotilla::net::message::{AssignmentSet, ChaosKind, ChaosRequest, ErrorKind, Message};
use flotilla::net::tls::{Credentials, Role};
use flotilla::net::transport::{self, TransportError};

const TIMEOUT: Duration = Duration::from_secs(8);

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// Sends `message` to `addr` presenting `credentials`, as any holder of them could.
fn send_as(
    credentials: &Credentials,
    addr: &str,
    message: Message,
) -> Result<Message, TransportError> {
    let tls = credentials.client_config().expect("client TLS config");
    let addr: SocketAddr = addr.parse().expect("address");
    let bind = SocketAddr::from(([127, 0, 0, 1], 0));
    actix::System::new().block_on(async move {
        transport::request_within(bind, tls, addr, &[Role::Manager], message, TIMEOUT, TIMEOUT)
            .await
    })
}

fn create(name: &str) -> AdminRequest {
    AdminRequest::ServiceCreate {
        spec: ServiceSpec::new(name, "busybox"),
    }
}

fn assert_forbidden(outcome: Result<Message, TransportError>, what: &str, says: &str) {
    match outcome {
        Err(TransportError::Remote(error)) => {
            assert_eq!(error.kind, ErrorKind::Forbidden, "{what}: {error:?}");
            assert!(
                error.message.contains(says),
                "{what}: the refusal should say {says:?}: {}",
                error.message
            );
        }
        other => panic!("{what}: expected a Forbidden refusal, got {other:?}"),
    }
}

#[test]
fn worker_and_manager_certificates_cannot_send_control_commands() {
    let mut cluster = Cluster::new(&[]);
    cluster.init();
    let worker = cluster.join("worker");
    let admin = cluster.admin_config().credentials;
    let manager_addr = cluster.addr(0);

    // (a) A worker's own certificate, with a "proof" signed by its own key.
    let worker_credentials = cluster.node_credentials(worker);
    let signed = control_proof::sign(&worker_credentials, create("by-worker"), now_ms())
        .expect("the worker's key signs");
    assert_forbidden(
        send_as(&worker_credentials, &manager_addr, Message::Control(signed)),
        "a worker certificate sending Control",
        "worker certificate may not send control",
    );
    // Even a genuine admin proof does not help on a worker's connection.
    let admin_signed = control_proof::sign(&admin, create("relayed-by-worker"), now_ms())
        .expect("the admin signs");
    assert_forbidden(
        send_as(
            &worker_credentials,
            &manager_addr,
            Message::Control(admin_signed),
        ),
        "a worker relaying an admin proof",
        "worker certificate may not send control",
    );

    // (b) A manager's certificate sending Control directly.
    let manager_credentials = cluster.node_credentials(0);
    let signed = control_proof::sign(&manager_credentials, create("by-manager"), now_ms())
        .expect("the manager's key signs");
    assert_forbidden(
        send_as(
            &manager_credentials,
            &manager_addr,
            Message::Control(signed),
        ),
        "a manager certificate sending Control",
        "manager certificate may not send control",
    );

    // Chaos commands need the admin certificate too.
    for credentials in [&worker_credentials, &manager_credentials] {
        let chaos = Message::Chaos(ChaosRequest::KillActor {
            kind: ChaosKind::Scheduler,
            id: None,
        });
        assert_forbidden(
            send_as(credentials, &manager_addr, chaos),
            "a node certificate sending Chaos",
            "may not send chaos",
        );
    }

    assert!(
        cluster.service_names().is_empty(),
        "no refused command changed anything"
    );
    // The node keeps serving the admin.
    cluster.cli_ok(
        None,
        &[
            "service", "create", "-d", "--name", "web", "busybox", "sleep", "600",
        ],
    );
    assert_eq!(cluster.service_names(), vec!["web".to_string()]);
}

#[test]
fn a_forwarded_command_needs_the_admins_proof() {
    let mut cluster = Cluster::new(&[]);
    cluster.init();
    let follower = cluster.join("manager");
    let leader = cluster.leader().expect("a leader");
    let follower = if leader == follower { 0 } else { follower };
    let leader_addr = cluster.addr(leader);
    let manager = cluster.node_credentials(follower);
    let admin = cluster.admin_config().credentials;

    // (c) No proof at all.
    let unsigned = SignedControl::without_signature(create("unsigned"), now_ms(), [1; 16]);
    assert_forbidden(
        send_as(&manager, &leader_addr, Message::Forwarded(unsigned)),
        "Forwarded without a proof",
        "not valid for this cluster",
    );
    // A proof signed by the manager's own key.
    let own = control_proof::sign(&manager, create("self-signed"), now_ms()).expect("sign");
    assert_forbidden(
        send_as(&manager, &leader_addr, Message::Forwarded(own)),
        "Forwarded with the manager's own signature",
        "a manager certificate cannot issue them",
    );
    // A genuine admin proof with the request swapped under it.
    let genuine = control_proof::sign(&admin, create("genuine"), now_ms()).expect("sign");
    let mut forged = genuine.clone();
    forged.statement =
        SignedControl::without_signature(create("forged"), now_ms(), [2; 16]).statement;
    assert_forbidden(
        send_as(&manager, &leader_addr, Message::Forwarded(forged)),
        "Forwarded with a tampered request",
        "signature does not verify",
    );
    // An admin proof issued an hour ago.
    let stale = control_proof::sign_statement(
        &admin,
        &ControlStatement {
            request: create("stale"),
            issued_at_ms: now_ms() - 3_600_000,
            nonce: [3; 16],
        },
    )
    .expect("sign");
    assert_forbidden(
        send_as(&manager, &leader_addr, Message::Forwarded(stale)),
        "Forwarded with a stale proof",
        "check the clocks",
    );
    assert!(
        cluster.service_names().is_empty(),
        "no refused command changed anything"
    );

    // The genuine proof is what a forwarding manager carries: accepted once...
    let reply = send_as(&manager, &leader_addr, Message::Forwarded(genuine.clone()));
    assert!(
        matches!(reply, Ok(Message::AdminReply(AdminReply::Done(_)))),
        "{reply:?}"
    );
    assert_eq!(cluster.service_names(), vec!["genuine".to_string()]);
    // ...and refused when replayed.
    assert_forbidden(
        send_as(&manager, &leader_addr, Message::Forwarded(genuine)),
        "a replayed proof",
        "replay",
    );

    // The CLI through the follower: the follower verifies, forwards the signed bytes, and the
    // leader verifies again.
    cluster.cli_ok(
        Some(follower),
        &[
            "service",
            "create",
            "-d",
            "--name",
            "via-follower",
            "busybox",
            "sleep",
            "600",
        ],
    );
    let mut names = cluster.service_names();
    names.sort();
    assert_eq!(
        names,
        vec!["genuine".to_string(), "via-follower".to_string()]
    );

    // `node ps` without a node, through the follower, lists the follower's tasks: the leader
    // takes "the node addressed" from the forwarder's certificate, not from the signed request.
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "-d",
            "--mode",
            "global",
            "--name",
            "everywhere",
            "busybox",
            "sleep",
            "600",
        ],
    );
    let follower_id = cluster.node_id(follower);
    cluster.wait_until(
        "node ps through the follower lists its global task",
        Duration::from_secs(20),
        || {
            let output = cluster.cli(Some(follower), &["node", "ps", "--format", "json"]);
            let Ok(rows) = serde_json::from_slice::<Vec<serde_json::Value>>(&output.stdout) else {
                return false;
            };
            assert!(
                rows.iter()
                    .all(|row| row["node_id"] == follower_id.as_str()),
                "only the follower's tasks: {rows:?}"
            );
            rows.iter().any(|row| row["service_name"] == "everywhere")
        },
    );
}

#[test]
fn the_cli_refuses_a_worker_posing_as_a_manager() {
    let mut cluster = Cluster::new(&[]);
    cluster.init();
    let worker = cluster.join("worker");

    // (d) Only the worker's address: refused before the command is sent, with SPEC §2's text.
    let output = cluster.cli(
        Some(worker),
        &["service", "create", "-d", "--name", "x", "busybox", "true"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!("Error: {NOT_A_MANAGER}\n")
    );

    // The transport names what the server is.
    let admin = cluster.admin_config().credentials;
    let signed = control_proof::sign(&admin, AdminRequest::NodeList, now_ms()).expect("sign");
    match send_as(&admin, &cluster.addr(worker), Message::Control(signed)) {
        Err(error @ TransportError::WrongServerRole { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains("is a worker, not a manager"),
                "the error names the role found: {text}"
            );
        }
        other => panic!("expected the worker to be refused as a server, got {other:?}"),
    }

    // A client.toml listing the worker first: the CLI skips it for the next manager.
    let mut config: ClientConfig = cluster.admin_config();
    config.managers = vec![cluster.addr(worker), cluster.addr(0)];
    let path = cluster.dir.path().join("worker-first.toml");
    std::fs::write(&path, toml::to_string(&config).expect("toml")).expect("write config");
    let output = cluster.cli_with_config(
        &path,
        &[
            "service", "create", "-d", "--name", "y", "busybox", "sleep", "600",
        ],
    );
    assert!(
        output.status.success(),
        "the manager after the worker takes the command: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(cluster.service_names(), vec!["y".to_string()]);
}

/// A node process refuses a worker's certificate where it needs a manager: a would-be manager
/// (and a worker) told to join at a worker's address stops before sending its join secret.
#[test]
fn a_joining_node_refuses_a_worker_posing_as_the_manager() {
    let mut cluster = Cluster::new(&[]);
    cluster.init();
    let worker = cluster.join("worker");
    for role in ["manager", "worker"] {
        let token = cluster.token(role);
        let state_dir = cluster.dir.path().join(format!("refused-{role}"));
        let mut command = std::process::Command::new(common::NODE_BIN);
        command.args([
            "join",
            "--token",
            &token,
            "--listen",
            &format!("127.0.0.9:{}", cluster.port),
            "--state-dir",
            &state_dir.display().to_string(),
            &cluster.addr(worker),
        ]);
        let output = command.output().expect("run join");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "joined through a worker: {stderr}"
        );
        assert!(
            stderr.contains("is a worker, not a manager"),
            "the refusal names the server's role: {stderr}"
        );
        assert!(!state_dir.join("node.toml").exists());
    }
    // Nothing joined.
    assert_eq!(cluster.nodes_json(None).map(|nodes| nodes.len()), Some(2));
}

/// Assignments for node A are never applied by node B (real processes, real certificates):
/// a manager's certificate pushing A's empty set to B, and B's own set pushed by a worker's
/// certificate, leave B's task running.
#[test]
fn assignments_for_one_node_are_never_applied_by_another() {
    let mut cluster = Cluster::new(&["--heartbeat-ms", "300"]);
    cluster.runtime = "sim".to_string();
    cluster.init();
    let a = cluster.join("worker");
    let b = cluster.join("worker");
    let (a_id, b_id) = (cluster.node_id(a), cluster.node_id(b));
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "3",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    let running = cluster.wait_for_running("web", 3, Duration::from_secs(20));
    let on_b: Vec<String> = running
        .iter()
        .filter(|task| task["node_id"] == b_id.as_str())
        .map(|task| task["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(on_b.len(), 1, "spread puts one task on B: {running:?}");

    let push = |credentials: &Credentials, set: AssignmentSet| {
        let tls = credentials.client_config().expect("client TLS config");
        let addr: SocketAddr = cluster.addr(b).parse().expect("address");
        let bind = SocketAddr::from(([127, 0, 0, 1], 0));
        actix::System::new().block_on(async move {
            transport::request_within(
                bind,
                tls,
                addr,
                &[Role::Worker],
                Message::Assignments(set),
                TIMEOUT,
                TIMEOUT,
            )
            .await
        })
    };
    // A set naming A, empty and far newer than anything B holds, from a manager certificate.
    let for_a = AssignmentSet {
        version: 1,
        tasks: Vec::new(),
        node_id: a_id.clone(),
        sequence: u64::MAX / 2,
        files: Vec::new(),
    };
    let _ = push(&cluster.node_credentials(0), for_a);
    // B's own name on it, but from a worker's certificate: refused by the transport.
    let from_worker = AssignmentSet {
        version: 1,
        tasks: Vec::new(),
        node_id: b_id.clone(),
        sequence: u64::MAX / 2,
        files: Vec::new(),
    };
    assert_forbidden(
        push(&cluster.node_credentials(a), from_worker),
        "assignments from a worker certificate",
        "may not send assignments",
    );
    cluster.wait_until(
        "B logs the set for another node",
        Duration::from_secs(10),
        || cluster.log_contains(b, "assignment set for another node refused"),
    );
    // B keeps running its own task through several heartbeats.
    for _ in 0..10 {
        let still: Vec<String> = cluster
            .running_tasks("web")
            .iter()
            .filter(|task| task["node_id"] == b_id.as_str())
            .map(|task| task["id"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(still, on_b, "B's task keeps running");
        std::thread::sleep(Duration::from_millis(300));
    }
}
