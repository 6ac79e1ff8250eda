//! Secrets and configs on a real swarm (SPEC §9, process runtime): two managers and a worker;
//! a service on the worker reads its secret and config from the files the runtime wrote; only
//! the worker's files root holds them; `rm` of a secret in use is refused; `rotate` moves the
//! service to the new version by a rolling update; and no file any node wrote (its state
//! directory, redb files included, and its log) holds a secret's bytes.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Cluster;
use serde_json::Value;

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(path),
                Ok(kind) if kind.is_file() => files.push(path),
                _ => {}
            }
        }
    }
    files
}

/// Every file of every state directory and every node log that contains `needle`.
fn files_holding(cluster: &Cluster, needle: &[u8]) -> Vec<PathBuf> {
    let mut holding = Vec::new();
    let mut scanned = 0;
    for node in &cluster.nodes {
        let mut files = files_under(&node.state_dir);
        files.push(node.log.clone());
        for file in files {
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            scanned += 1;
            if bytes.windows(needle.len()).any(|window| window == needle) {
                holding.push(file);
            }
        }
    }
    assert!(
        scanned > 10,
        "the scan must see the state directories ({scanned} files)"
    );
    holding
}

/// The copies the service's tasks made of their secret and config, by file name.
fn copies(out: &Path) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = files_under(out)
        .into_iter()
        .filter_map(|path| {
            let name = path.file_name()?.to_string_lossy().into_owned();
            Some((name, std::fs::read_to_string(&path).ok()?))
        })
        .collect();
    found.sort();
    found
}

fn spec_secret_version(cluster: &Cluster) -> Value {
    cluster
        .service_inspect(None, "app")
        .map(|service| service["spec"]["secrets"][0]["version"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn secrets_reach_only_their_tasks_rotate_by_rolling_update_and_never_touch_disk() {
    let files_root = tempfile::Builder::new()
        .prefix("flotilla-secrets-test")
        .tempdir_in("/dev/shm")
        .expect("a tmpfs directory in /dev/shm");
    let mut cluster = Cluster::new(&["--heartbeat-ms", "500"]).with_env(
        "FLOTILLA_FILES_ROOT",
        &files_root.path().display().to_string(),
    );
    cluster.init();
    cluster.join("manager");
    let worker = cluster.join("worker");
    cluster.wait_until("3 nodes are ready", Duration::from_secs(30), || {
        cluster.ready_count() == 3
    });
    let worker_id = cluster.wait_node_id(worker);

    let first = format!("first-{:032x}", rand::random::<u128>());
    let second = format!("second-{:032x}", rand::random::<u128>());
    let created = cluster.cli_stdin(None, &["secret", "create", "db", "-"], first.as_bytes());
    assert!(
        created.status.success(),
        "secret create: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let secret_id = String::from_utf8_lossy(&created.stdout).trim().to_string();
    assert_eq!(
        secret_id.len(),
        25,
        "secret create prints the ID: {secret_id:?}"
    );
    let config_file = cluster.dir.path().join("site.conf");
    std::fs::write(&config_file, "listen 8080\n").expect("config file");
    cluster.cli_ok(
        None,
        &[
            "config",
            "create",
            "site",
            &config_file.display().to_string(),
        ],
    );

    // Bad references are refused before anything changes.
    let refused = cluster.cli(
        None,
        &[
            "service", "create", "-d", "--name", "bad", "--secret", "nope", "busybox", "true",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr).trim(),
        "Error: no such secret: nope"
    );
    let refused = cluster.cli(
        None,
        &[
            "service",
            "create",
            "-d",
            "--secret",
            "source=db,mode=0999",
            "busybox",
            "true",
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--secret"));

    let out = cluster.dir.path().join("out");
    std::fs::create_dir(&out).expect("out dir");
    let script = "cp \"$FLOTILLA_SECRETS_DIR/password\" \"$OUT/secret-$$\" && \
                  cp \"$FLOTILLA_CONFIGS_DIR/site\" \"$OUT/config-$$\" && \
                  stat -c %a \"$FLOTILLA_SECRETS_DIR/password\" > \"$OUT/mode-$$\" && exec sleep 1000";
    cluster.cli_ok(
        None,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "app",
            "--constraint",
            "node.role==worker",
            "--secret",
            "source=db,target=password,mode=0400",
            "--config",
            "site",
            "--update-order",
            "start-first",
            "-e",
            &format!("OUT={}", out.display()),
            "busybox",
            "sh",
            "-c",
            script,
        ],
    );
    let running = cluster.wait_for_running("app", 1, Duration::from_secs(30));
    assert_eq!(running[0]["node_id"], worker_id.as_str());
    cluster.wait_until("the task copied its files", Duration::from_secs(20), || {
        copies(&out).len() == 3
    });
    let seen = copies(&out);
    let values: Vec<&str> = seen.iter().map(|(_, v)| v.as_str()).collect();
    assert!(values.contains(&first.as_str()), "{seen:?}");
    assert!(values.contains(&"listen 8080\n"), "{seen:?}");
    assert!(
        values.contains(&"400\n"),
        "the secret's mode is as given: {seen:?}"
    );

    // Only the worker's part of the files root holds anything.
    let holders: Vec<String> = std::fs::read_dir(files_root.path())
        .expect("files root")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|node| !files_under(&files_root.path().join(node)).is_empty())
        .collect();
    assert_eq!(
        holders,
        vec![worker_id.clone()],
        "only the worker got files"
    );
    for file in files_under(files_root.path()) {
        let mode = std::fs::metadata(&file).expect("file").permissions().mode() & 0o777;
        assert!(mode == 0o400 || mode == 0o444, "{file:?} has mode {mode:o}");
    }

    // ls and inspect describe it and never show the data.
    let listed: Vec<Value> =
        serde_json::from_str(&cluster.cli_ok(None, &["secret", "ls", "--format", "json"]))
            .expect("secret ls json");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["version"], 1);
    assert_eq!(listed[0]["size"], first.len());
    let inspected = cluster.cli_ok(None, &["secret", "inspect", "db"]);
    assert!(
        !inspected.contains(&first),
        "inspect must not show the data"
    );
    let inspected: Vec<Value> = serde_json::from_str(&inspected).expect("inspect json");
    assert!(inspected[0]["data"].is_null());
    assert_eq!(inspected[0]["services"], serde_json::json!(["app"]));

    let in_use = cluster.cli(None, &["secret", "rm", "db"]);
    assert_eq!(
        String::from_utf8_lossy(&in_use.stderr).trim(),
        "Error: secret db is in use by the following service: app"
    );

    // Rotation: version 2, and the service rolls to it.
    let rotated = cluster.cli_stdin(None, &["secret", "rotate", "db", "-"], second.as_bytes());
    assert!(
        rotated.status.success(),
        "secret rotate: {}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    cluster.wait_until(
        "the service moved to version 2",
        Duration::from_secs(20),
        || spec_secret_version(&cluster) == 2,
    );
    cluster.wait_until("a task sees version 2", Duration::from_secs(30), || {
        copies(&out).iter().any(|(_, value)| *value == second)
    });
    cluster.wait_for_running("app", 1, Duration::from_secs(30));
    let listed: Vec<Value> =
        serde_json::from_str(&cluster.cli_ok(None, &["secret", "ls", "--format", "json"]))
            .expect("secret ls json");
    assert_eq!(listed[0]["version"], 2);

    // A restarted manager (log and snapshot read back from disk) still holds nothing plain.
    cluster.kill(1);
    cluster.restart(1);
    cluster.wait_until(
        "the restarted manager answers",
        Duration::from_secs(30),
        || cluster.cli(Some(1), &["secret", "ls"]).status.success(),
    );
    for secret in [&first, &second] {
        let holding = files_holding(&cluster, secret.as_bytes());
        assert!(holding.is_empty(), "plaintext secret found in {holding:?}");
    }

    // When the service goes, so do its files; then the secret may go.
    cluster.cli_ok(None, &["service", "rm", "app"]);
    cluster.wait_until(
        "the task's files are removed",
        Duration::from_secs(30),
        || files_under(files_root.path()).is_empty(),
    );
    cluster.cli_ok(None, &["secret", "rm", "db"]);
    cluster.cli_ok(None, &["config", "rm", "site"]);
    let listed = cluster.cli_ok(None, &["secret", "ls", "-q"]);
    assert!(listed.trim().is_empty(), "{listed}");
}
