//! `service update` and `service rollback` from the command line, on a real one-node swarm
//! (process runtime): what they record (spec, previous spec, update status), that a change
//! made from a stale read is refused, that bad flags change nothing, and that a rollback
//! needs something to roll back to. The rollout itself is the updater's (tests/cluster_update.rs).

mod common;

use std::time::Duration;

use common::Cluster;
use flotilla::client::Client;
use flotilla::core::spec::ServiceSpec;
use flotilla::net::admin::AdminRequest;
use serde_json::Value;

fn inspect(cluster: &Cluster, service: &str) -> Value {
    cluster
        .service_inspect(None, service)
        .expect("service inspect answers")
}

fn stderr_of(cluster: &Cluster, args: &[&str]) -> String {
    let output = cluster.cli(None, args);
    assert_eq!(output.status.code(), Some(1), "{args:?} must fail with 1");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn update_records_the_change_refuses_stale_and_bad_ones_and_rollback_swaps_back() {
    let mut cluster = Cluster::new(&["--heartbeat-ms", "500"]);
    cluster.init();
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "2",
            "--update-monitor",
            "1s",
            "--rollback-parallelism",
            "2",
            "busybox",
            "sleep",
            "1000",
        ],
    );
    cluster.wait_for_running("web", 2, Duration::from_secs(30));
    let created = inspect(&cluster, "web");
    assert_eq!(created["spec"]["update"]["monitor_ms"], 1000);
    assert_eq!(created["spec"]["rollback"]["parallelism"], 2);
    assert!(created["previous_spec"].is_null());
    assert!(created["update_status"].is_null());

    // A service never updated has nothing to roll back to.
    let error = stderr_of(&cluster, &["service", "rollback", "-d", "web"]);
    assert!(
        error.contains("Error: service web does not have a previous spec to roll back to"),
        "{error}"
    );

    // Bad values are refused before anything is sent, naming the flag; nothing changes.
    for (args, flag) in [
        (
            vec!["--update-delay", "5x"],
            "invalid --update-delay \"5x\"",
        ),
        (
            vec!["--update-max-failure-ratio", "1.5"],
            "--update-max-failure-ratio",
        ),
        (
            vec!["--rollback-failure-action", "rollback"],
            "--rollback-failure-action",
        ),
        (vec!["--update-order", "first"], "--update-order"),
        (vec!["--replicas", "-1"], "--replicas"),
        (vec!["--args", "sh -c 'unterminated"], "--args"),
    ] {
        let mut command = vec!["service", "update", "-d"];
        command.extend(args);
        command.push("web");
        let error = stderr_of(&cluster, &command);
        assert!(error.contains(flag), "{command:?}: {error}");
    }
    assert_eq!(
        inspect(&cluster, "web"),
        created,
        "bad flags changed the service"
    );

    // No change and no --force: the name is printed, nothing is sent.
    assert_eq!(
        cluster.cli_ok(None, &["service", "update", "-d", "web"]),
        "web\n"
    );
    assert_eq!(
        inspect(&cluster, "web")["meta"]["version"],
        created["meta"]["version"]
    );

    // An update records the new spec, the old one as previous, and a rollout in progress.
    let printed = cluster.cli_ok(
        None,
        &[
            "service",
            "update",
            "-d",
            "--image",
            "busybox:2",
            "--env-add",
            "V=2",
            "web",
        ],
    );
    assert_eq!(printed, "web\n");
    let updated = inspect(&cluster, "web");
    assert_eq!(updated["spec"]["image"], "busybox:2");
    assert_eq!(updated["spec"]["env"]["V"], "2");
    assert_eq!(updated["previous_spec"]["spec"]["image"], "busybox");
    assert_eq!(updated["previous_spec"]["version"], created["spec_version"]);
    assert_ne!(updated["spec_version"], created["spec_version"]);
    assert_eq!(updated["update_status"]["state"], "updating");
    let listed: Vec<Value> =
        serde_json::from_str(&cluster.cli_ok(None, &["service", "ls", "--format", "json"]))
            .expect("ls json");
    let status = &listed[0]["update_status"];
    assert_eq!(status["state"], "updating", "{listed:?}");
    assert!(
        status["started_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{status}"
    );
    assert!(status.get("completed_at").is_some(), "{status}");

    // A spec made from the version read before that update is refused, not applied over it.
    let stale_spec: ServiceSpec =
        serde_json::from_value(created["spec"].clone()).expect("spec json");
    let stale_version = created["meta"]["version"].as_u64().expect("version");
    let client = Client::load(&cluster.config(), None).expect("client");
    let refused = actix::System::new().block_on(async move {
        client
            .control(AdminRequest::ServiceUpdate {
                service: "web".into(),
                spec: stale_spec,
                expected_version: stale_version,
            })
            .await
    });
    let error = refused
        .expect_err("a stale update must be refused")
        .to_string();
    assert!(error.starts_with("update out of sequence"), "{error}");
    assert_eq!(inspect(&cluster, "web")["spec"]["image"], "busybox:2");

    // Rollback swaps spec and previous spec.
    assert_eq!(
        cluster.cli_ok(None, &["service", "rollback", "-d", "web"]),
        "web\n"
    );
    let rolled_back = inspect(&cluster, "web");
    assert_eq!(rolled_back["spec"]["image"], "busybox");
    assert_eq!(rolled_back["previous_spec"]["spec"]["image"], "busybox:2");
    assert_eq!(rolled_back["spec_version"], created["spec_version"]);
    assert_eq!(rolled_back["update_status"]["state"], "rollback_started");
    assert_eq!(
        rolled_back["update_status"]["message"],
        "manually requested rollback"
    );
    // --rollback on update is the same request; with another flag it is refused.
    let error = stderr_of(
        &cluster,
        &["service", "update", "--rollback", "--force", "web"],
    );
    assert!(error.contains("--rollback"), "{error}");

    // Only --replicas: a scale, followed like `service scale`, with no new spec version.
    let scaled = cluster.cli_ok(None, &["service", "update", "--replicas", "3", "web"]);
    assert!(scaled.starts_with("web\n"), "{scaled}");
    assert!(scaled.contains("verify: Service converged"), "{scaled}");
    let after_scale = inspect(&cluster, "web");
    assert_eq!(after_scale["spec"]["mode"]["replicated"]["replicas"], 3);
    assert_eq!(after_scale["spec_version"], rolled_back["spec_version"]);

    // Followed (no -d): the rollout runs to completed under the updater, as Docker shows it.
    let followed = cluster.cli_ok(
        None,
        &[
            "service",
            "update",
            "--image",
            "busybox:3",
            "--update-parallelism",
            "0",
            "web",
        ],
    );
    for line in [
        "web",
        "overall progress: 3 out of 3 tasks",
        "verify: Waiting 1 seconds to verify that tasks are stable...",
        "verify: Service converged",
    ] {
        assert!(
            followed.lines().any(|l| l == line),
            "{line:?} missing: {followed}"
        );
    }
    assert_eq!(
        inspect(&cluster, "web")["update_status"]["state"],
        "completed"
    );
    let rolled = cluster.cli_ok(None, &["service", "rollback", "web"]);
    for line in [
        "web",
        "rollback: manually requested rollback",
        "overall progress: rolling back update: 3 out of 3 tasks",
        "verify: Service converged",
    ] {
        assert!(
            rolled.lines().any(|l| l == line),
            "{line:?} missing: {rolled}"
        );
    }
    let back = inspect(&cluster, "web");
    assert_eq!(back["spec"]["image"], "busybox");
    assert_eq!(back["update_status"]["state"], "rollback_completed");
}
