//! Three managers over real QUIC: the leader is killed with SIGKILL, a new one is elected and
//! acknowledges a write, and the old leader comes back from disk with everything.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;

fn service_names(cluster: &Cluster, host: usize) -> Option<Vec<String>> {
    let output = cluster.cli(Some(host), &["service", "ls", "--format", "json"]);
    if !output.status.success() {
        return None;
    }
    let services: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).ok()?;
    let mut names: Vec<String> = services
        .iter()
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    Some(names)
}

#[test]
fn leader_killed_new_leader_acknowledges_writes_and_old_leader_rejoins_with_all_data() {
    let mut cluster = Cluster::three_managers();
    let before_kill = [
        "service", "create", "-d", "--name", "before", "busybox", "sleep", "1",
    ];
    cluster.cli_ok(None, &before_kill);
    let leader = cluster.leader().expect("a leader");
    cluster.kill(leader);
    let killed = Instant::now();
    let survivor = (0..3).find(|i| *i != leader).expect("a survivor");
    let after_kill = [
        "service", "create", "-d", "--name", "after", "busybox", "sleep", "1",
    ];
    cluster.wait_until("a write is acknowledged", Duration::from_secs(15), || {
        cluster.cli(Some(survivor), &after_kill).status.success()
    });
    eprintln!(
        "leader SIGKILL -> acknowledged write: {:?}",
        killed.elapsed()
    );
    let new_leader = cluster.leader().expect("a new leader");
    assert_ne!(new_leader, leader);

    cluster.restart(leader);
    cluster.wait_until(
        "the old leader serves all data",
        Duration::from_secs(20),
        || {
            service_names(&cluster, leader).as_deref()
                == Some(&["after".to_string(), "before".to_string()][..])
        },
    );
    let nodes = cluster.nodes_json(Some(leader)).expect("node ls");
    let me = nodes.iter().find(|n| n["self"] == true).expect("self row");
    assert_eq!(
        me["manager_status"], "reachable",
        "the old leader is a follower: {me}"
    );
    assert_eq!(
        nodes
            .iter()
            .filter(|n| n["manager_status"] == "leader")
            .count(),
        1
    );
}

#[test]
fn without_quorum_commands_fail_within_five_seconds_and_the_cluster_recovers() {
    let mut cluster = Cluster::new(&[]);
    cluster.init();
    cluster.join("manager");
    cluster.join("manager");
    cluster.cli_ok(
        None,
        &[
            "service", "create", "-d", "--name", "kept", "busybox", "sleep", "1",
        ],
    );
    cluster.kill(1);
    cluster.kill(2);
    let started = Instant::now();
    let output = cluster.cli(
        Some(0),
        &[
            "service", "create", "-d", "--name", "lost", "busybox", "true",
        ],
    );
    let elapsed = started.elapsed();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no quorum"), "{stderr}");
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
    cluster.restart(1);
    cluster.restart(2);
    cluster.wait_until(
        "the cluster recovers with its data",
        Duration::from_secs(20),
        || service_names(&cluster, 0).is_some_and(|names| names.contains(&"kept".to_string())),
    );
}

/// SPEC §12: without `--host`, the CLI tries each manager of `client.toml` in turn.
#[test]
fn the_cli_tries_each_manager_of_its_config_in_turn() {
    let mut cluster = Cluster::three_managers();
    let mut config =
        flotilla::net::admin::ClientConfig::load(&cluster.config()).expect("client.toml");
    config.managers = (0..3).map(|i| cluster.addr(i)).collect();
    let all_managers = cluster.config().with_file_name("client-all.toml");
    std::fs::write(
        &all_managers,
        toml::to_string(&config).expect("client.toml encodes"),
    )
    .expect("write client-all.toml");
    cluster.kill(0);
    let cli = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .arg("--config")
            .arg(&all_managers)
            .args(args)
            .env_remove("FLOTILLA_HOST")
            .env_remove("FLOTILLA_CONFIG")
            .output()
            .expect("run flotilla")
    };
    // The first manager is dead: the next one answers (after a new leader, if it was leader).
    let started = Instant::now();
    cluster.wait_until("a manager answers", Duration::from_secs(15), || {
        cli(&["node", "ls"]).status.success()
    });
    eprintln!(
        "first manager dead -> node ls answered: {:?}",
        started.elapsed()
    );
    let create = cli(&[
        "service", "create", "-d", "--name", "failover", "busybox", "sleep", "1",
    ]);
    assert!(
        create.status.success(),
        "create through the config's managers: {}",
        String::from_utf8_lossy(&create.stderr)
    );
    let listing = cli(&["service", "ls", "--format", "json"]);
    let services: Vec<serde_json::Value> =
        serde_json::from_slice(&listing.stdout).expect("service ls json");
    assert_eq!(
        services.iter().filter(|s| s["name"] == "failover").count(),
        1,
        "the write went to one manager once"
    );
}

/// SPEC §12: `start --force-new-cluster` turns the survivor of a cluster that lost its quorum
/// (two of three managers gone with their state) into a one-manager cluster with all state
/// kept; the dead managers can be demoted and removed, and new managers join.
#[test]
fn a_survivor_forced_into_a_new_cluster_keeps_its_state_and_takes_new_managers() {
    let mut cluster = Cluster::new(&[]);
    cluster.runtime = "sim".to_string();
    cluster.init();
    cluster.join("manager");
    cluster.join("manager");
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "kept",
            "--replicas",
            "3",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    let dead: Vec<String> = (1..3).map(|i| cluster.node_id(i)).collect();
    for index in [1, 2] {
        cluster.kill(index);
        std::fs::remove_dir_all(&cluster.nodes[index].state_dir).expect("state dir deleted");
    }
    let refused = cluster.cli(Some(0), &["service", "scale", "-d", "kept=4"]);
    assert!(!refused.status.success(), "no quorum without the flag");

    cluster.kill(0);
    cluster.restart_with(0, &["--force-new-cluster"]);
    cluster.wait_until("the survivor leads alone", Duration::from_secs(20), || {
        cluster.nodes_json(Some(0)).is_some_and(|nodes| {
            nodes
                .iter()
                .any(|n| n["hostname"] == "node1" && n["manager_status"] == "leader")
        })
    });
    assert_eq!(
        service_names(&cluster, 0),
        Some(vec!["kept".to_string()]),
        "the services are kept"
    );
    cluster.cli_ok(Some(0), &["service", "scale", "-d", "kept=4"]);
    cluster.wait_for_running("kept", 4, Duration::from_secs(20));

    // The dead managers leave for good; a new manager joins the one-manager cluster.
    for id in &dead {
        cluster.cli_ok(Some(0), &["node", "demote", id]);
        cluster.cli_ok(Some(0), &["node", "rm", "--force", id]);
    }
    let joined = cluster.join("manager");
    let joined_id = cluster.wait_node_id(joined);
    cluster.wait_until(
        "the new manager is reachable",
        Duration::from_secs(20),
        || {
            cluster.nodes_json(Some(0)).is_some_and(|nodes| {
                nodes.len() == 2
                    && nodes.iter().any(|n| {
                        n["id"] == joined_id.as_str() && n["manager_status"] == "reachable"
                    })
            })
        },
    );
    cluster.cli_ok(Some(joined), &["service", "scale", "-d", "kept=2"]);
    cluster.wait_for_running("kept", 2, Duration::from_secs(20));
}
