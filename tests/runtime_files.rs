//! Secrets and configs (SPEC §9) in the two real runtimes: a process reads them from its
//! tmpfs directory through `FLOTILLA_SECRETS_DIR` / `FLOTILLA_CONFIGS_DIR`, a container from
//! read-only bind mounts; the directory goes when the task ends or is removed, or its start
//! fails. Each test has its own files root in `/dev/shm`, passed to the runtime explicitly.
//! The Docker tests need `busybox:latest` (made by `scripts/make-busybox-image.sh`) and skip
//! without an answering engine, or fail when `FLOTILLA_REQUIRE_DOCKER=1`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use flotilla::runtime::docker::DockerRuntime;
use flotilla::runtime::files::{TaskFile, TaskFileKind};
use flotilla::runtime::process::ProcessRuntime;
use flotilla::runtime::{
    ContainerRuntime, ContainerSpec, RuntimeError, LABEL_NODE_ID, LABEL_SERVICE_ID,
    LABEL_SERVICE_NAME, LABEL_TASK_ID, LABEL_TASK_SLOT,
};

/// A state directory and a files root for one test; kills every process group recorded in
/// the state directory when dropped, so a failing test leaves nothing running. The files
/// root (a tempdir in `/dev/shm`) goes with it.
struct ProcessGuard {
    state_dir: tempfile::TempDir,
    files_root: tempfile::TempDir,
}

impl ProcessGuard {
    fn new() -> Self {
        Self {
            state_dir: tempfile::tempdir().expect("temporary state dir"),
            files_root: shm_tempdir(),
        }
    }

    fn runtime(&self, node_id: &str) -> ProcessRuntime {
        ProcessRuntime::new(node_id, self.state_dir.path())
            .expect("runtime")
            .with_files_root(self.files_root.path())
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.state_dir.path().join("processes")) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(bytes) = std::fs::read(entry.path()) else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            let pid = record["pid"]
                .as_i64()
                .and_then(|pid| i32::try_from(pid).ok());
            let start = record["start_time_ticks"].as_u64();
            if let (Some(pid), Some(start)) = (pid, start) {
                if pid > 1 && start_time_ticks(pid) == Some(start) {
                    // SAFETY: plain syscall on integers; the group is one this test created.
                    unsafe { libc::killpg(pid, libc::SIGKILL) };
                }
            }
        }
    }
}

/// Removes every container labelled with its node ID when dropped, even when the test panics;
/// owns the test's files root.
struct ContainerGuard {
    node_id: String,
    files_root: tempfile::TempDir,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let listed = Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label={LABEL_NODE_ID}={}", self.node_id))
            .output();
        let Ok(listed) = listed else { return };
        let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

fn shm_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("flotilla-files-test-")
        .tempdir_in("/dev/shm")
        .expect("a files root in /dev/shm")
}

fn start_time_ticks(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    after.split_ascii_whitespace().nth(19)?.parse().ok()
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn spec(node_id: &str, task_id: &str, command: &[&str], files: Vec<TaskFile>) -> ContainerSpec {
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_SERVICE_ID.to_string(), "svc-1".to_string());
    labels.insert(LABEL_SERVICE_NAME.to_string(), "web".to_string());
    labels.insert(LABEL_TASK_ID.to_string(), task_id.to_string());
    labels.insert(LABEL_TASK_SLOT.to_string(), "1".to_string());
    labels.insert(LABEL_NODE_ID.to_string(), node_id.to_string());
    ContainerSpec {
        name: format!("web.1.{task_id}"),
        image: "busybox:latest".to_string(),
        command: command.iter().map(|part| part.to_string()).collect(),
        env: Vec::new(),
        labels,
        node_id: node_id.to_string(),
        task_id: task_id.to_string(),
        memory_limit_bytes: None,
        nano_cpus_limit: None,
        stop_grace_ms: 1_000,
        health: Default::default(),
        ports: Vec::new(),
        files,
    }
}

fn task_file(kind: TaskFileKind, target: &str, mode: u32, data: &str) -> TaskFile {
    TaskFile {
        kind,
        target: target.to_string(),
        uid: String::new(),
        gid: String::new(),
        mode,
        data: Arc::new(data.as_bytes().to_vec()),
    }
}

/// The secret `db_pass` (mode 0400) and the config `/etc/app.conf` most tests use.
fn db_pass_and_app_conf() -> Vec<TaskFile> {
    vec![
        task_file(TaskFileKind::Secret, "db_pass", 0o400, "s3cret"),
        task_file(TaskFileKind::Config, "/etc/app.conf", 0o444, "port=8080\n"),
    ]
}

/// True when `path` is on a tmpfs (or ramfs), by `statfs`.
fn is_on_tmpfs(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `statfs` writes only into the zeroed struct we own; the path is NUL-terminated.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stats) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)] // `f_type`'s width differs between architectures.
    let fs_type = stats.f_type as i64;
    fs_type == 0x0102_1994 || fs_type == 0x8584_58f6
}

#[tokio::test]
async fn a_process_reads_its_files_from_tmpfs_and_they_go_when_it_ends() {
    let guard = ProcessGuard::new();
    let node_id = unique("node");
    let runtime = guard.runtime(&node_id);
    let task_id = unique("task");
    let work = tempfile::tempdir().expect("work dir");
    let out = work.path().join("out");
    let script = format!(
        "cat \"$FLOTILLA_SECRETS_DIR/db_pass\" > {out}; echo >> {out}; \
         stat -c %a \"$FLOTILLA_SECRETS_DIR/db_pass\" >> {out}; \
         cat \"$FLOTILLA_CONFIGS_DIR/app.conf\" >> {out}; \
         echo \"$FLOTILLA_SECRETS_DIR\" >> {out}",
        out = out.display()
    );
    let handle = runtime
        .start(&spec(
            &node_id,
            &task_id,
            &["sh", "-c", &script],
            db_pass_and_app_conf(),
        ))
        .await
        .expect("starts");
    let status = tokio::time::timeout(Duration::from_secs(10), runtime.wait(&handle.runtime_id))
        .await
        .expect("ends within 10 s")
        .expect("wait");
    let written = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(status.is_success(), "{status:?}; out: {written:?}");

    let files_dir = runtime.files_dir(&task_id).expect("files dir");
    let expected = format!(
        "s3cret\n400\nport=8080\n{}\n",
        files_dir.secrets_dir.display()
    );
    assert_eq!(written, expected);
    assert!(files_dir.dir.starts_with(guard.files_root.path()));
    assert!(is_on_tmpfs(guard.files_root.path()), "the root is a tmpfs");
    assert!(
        !files_dir.dir.exists(),
        "the files go when the task's exit is seen"
    );

    runtime.remove(&handle.runtime_id).await.expect("remove");
    assert!(!files_dir.dir.exists());
}

#[tokio::test]
async fn a_running_process_keeps_its_files_across_a_restart_until_removed() {
    let guard = ProcessGuard::new();
    let node_id = unique("node");
    let before_restart = guard.runtime(&node_id);
    let task_id = unique("task");
    let handle = before_restart
        .start(&spec(
            &node_id,
            &task_id,
            &["sleep", "30"],
            db_pass_and_app_conf(),
        ))
        .await
        .expect("starts");
    let files_dir = before_restart.files_dir(&task_id).expect("files dir");
    let secret = files_dir.secrets_dir.join("db_pass");
    assert!(is_on_tmpfs(&secret), "{} is on a tmpfs", secret.display());
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .map(|meta| meta.permissions().mode() & 0o7777)
            .ok()
    };
    assert_eq!(mode(&secret), Some(0o400));
    assert_eq!(mode(&files_dir.dir), Some(0o700));
    assert_eq!(mode(&files_dir.configs_dir), Some(0o700));
    assert_eq!(
        std::fs::read_to_string(files_dir.configs_dir.join("app.conf")).ok(),
        Some("port=8080\n".to_string())
    );
    drop(before_restart);

    let after_restart = guard.runtime(&node_id);
    let found = after_restart
        .find(&task_id)
        .await
        .expect("find")
        .expect("adopted");
    assert!(found.running);
    assert_eq!(
        std::fs::read_to_string(&secret).ok().as_deref(),
        Some("s3cret"),
        "adoption leaves the files as they were"
    );

    after_restart
        .remove(&handle.runtime_id)
        .await
        .expect("remove");
    assert!(!files_dir.dir.exists(), "remove takes the files too");
}

#[tokio::test]
async fn a_bad_target_is_refused_before_anything_starts() {
    let guard = ProcessGuard::new();
    let node_id = unique("node");
    let runtime = guard.runtime(&node_id);
    let work = tempfile::tempdir().expect("work dir");
    let marker = work.path().join("ran");
    let touch = format!("touch {}", marker.display());
    for (kind, target) in [
        (TaskFileKind::Secret, "../escape"),
        (TaskFileKind::Secret, "a/b"),
        (TaskFileKind::Config, "etc/app.conf"),
        (TaskFileKind::Config, "/etc/../escape"),
    ] {
        let task_id = unique("task");
        let mut files = db_pass_and_app_conf();
        files.push(task_file(kind, target, 0o444, "x"));
        let started = runtime
            .start(&spec(&node_id, &task_id, &["sh", "-c", &touch], files))
            .await;
        match started {
            Err(RuntimeError::InvalidSpec { reason }) => {
                assert!(reason.contains(target), "{reason:?} names {target:?}")
            }
            other => panic!("{kind:?} target {target:?} was not refused: {other:?}"),
        }
        assert!(runtime.find(&task_id).await.expect("find").is_none());
        assert!(!runtime.files_dir(&task_id).expect("files dir").dir.exists());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!marker.exists(), "no refused task ran");
}

#[tokio::test]
async fn a_failed_process_start_leaves_no_files() {
    let guard = ProcessGuard::new();
    let node_id = unique("node");
    let runtime = guard.runtime(&node_id);
    let task_id = unique("task");
    let started = runtime
        .start(&spec(
            &node_id,
            &task_id,
            &["/nonexistent/flotilla-no-such-command"],
            db_pass_and_app_conf(),
        ))
        .await;
    assert!(
        matches!(started, Err(RuntimeError::Spawn { .. })),
        "{started:?}"
    );
    assert!(!runtime.files_dir(&task_id).expect("files dir").dir.exists());
}

#[tokio::test]
async fn a_files_root_off_tmpfs_is_refused() {
    let guard = ProcessGuard::new();
    let disk_root = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).expect("dir on disk");
    if is_on_tmpfs(disk_root.path()) {
        eprintln!("note: skipping, the source tree is on a tmpfs here");
        return;
    }
    let node_id = unique("node");
    let runtime = guard.runtime(&node_id).with_files_root(disk_root.path());
    let task_id = unique("task");
    let started = runtime
        .start(&spec(&node_id, &task_id, &["true"], db_pass_and_app_conf()))
        .await;
    let message = started.err().map(|error| error.to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|text| text.contains("not a tmpfs")),
        "{message:?}"
    );
    assert!(runtime.find(&task_id).await.expect("find").is_none());
    assert!(!disk_root.path().join(&node_id).exists(), "nothing written");
}

fn make_busybox_image() {
    static MADE: OnceLock<()> = OnceLock::new();
    MADE.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/make-busybox-image.sh");
        let status = Command::new(script)
            .status()
            .expect("run make-busybox-image.sh");
        assert!(status.success(), "make-busybox-image.sh failed: {status}");
    });
}

/// A runtime for a fresh node ID with its own files root, and its clean-up guard; `None`
/// (skip) without Docker.
async fn docker_node() -> Option<(DockerRuntime, ContainerGuard)> {
    let node_id = unique("node");
    match DockerRuntime::connect(&node_id, Duration::from_secs(1)).await {
        Ok(runtime) => {
            make_busybox_image();
            let files_root = shm_tempdir();
            let runtime = runtime.with_files_root(files_root.path());
            Some((
                runtime,
                ContainerGuard {
                    node_id,
                    files_root,
                },
            ))
        }
        Err(error) => {
            assert!(
                std::env::var("FLOTILLA_REQUIRE_DOCKER").as_deref() != Ok("1"),
                "FLOTILLA_REQUIRE_DOCKER=1 but Docker does not answer: {error}"
            );
            eprintln!("note: skipping Docker test, Docker does not answer: {error}");
            None
        }
    }
}

fn docker_logs(runtime_id: &str) -> String {
    Command::new("docker")
        .args(["logs", runtime_id])
        .output()
        .map(|output| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_container_reads_its_files_from_read_only_mounts() {
    let Some((runtime, guard)) = docker_node().await else {
        return;
    };
    let task_id = unique("task");
    let mut files = db_pass_and_app_conf();
    files.push(task_file(
        TaskFileKind::Config,
        "plain.conf",
        0o444,
        "plain",
    ));
    // Owned as given, whatever user the node runs as: the chown needs root.
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    if as_root {
        files[0].uid = "1000".to_string();
        files[0].gid = "1001".to_string();
    }
    let owner_check = if as_root {
        "test \"$(stat -c %u:%g /run/secrets/db_pass)\" = 1000:1001 || { echo owner; exit 1; }; "
    } else {
        ""
    };
    let script = format!(
        "test \"$(cat /run/secrets/db_pass)\" = s3cret || {{ echo secret; exit 1; }}; \
         test \"$(cat /etc/app.conf)\" = port=8080 || {{ echo config; exit 1; }}; \
         test \"$(cat /plain.conf)\" = plain || {{ echo plain config; exit 1; }}; \
         test \"$(stat -c %a /run/secrets/db_pass)\" = 400 || {{ echo mode; exit 1; }}; \
         {owner_check}\
         ! touch /run/secrets/db_pass 2>/dev/null || {{ echo secret writable; exit 1; }}; \
         ! touch /etc/app.conf 2>/dev/null || {{ echo config writable; exit 1; }}"
    );
    let handle = runtime
        .start(&spec(
            &guard.node_id,
            &task_id,
            &["sh", "-c", &script],
            files,
        ))
        .await
        .expect("starts");
    let files_dir = runtime.files_dir(&task_id).expect("files dir");
    assert!(files_dir.dir.starts_with(guard.files_root.path()));
    let status = tokio::time::timeout(Duration::from_secs(20), runtime.wait(&handle.runtime_id))
        .await
        .expect("ends within 20 s")
        .expect("wait");
    assert!(
        status.is_success(),
        "{status:?}; logs: {}",
        docker_logs(&handle.runtime_id)
    );
    assert!(
        files_dir.secrets_dir.join("db_pass").exists(),
        "the files stay while the container exists"
    );

    runtime.remove(&handle.runtime_id).await.expect("remove");
    assert!(!files_dir.dir.exists(), "remove takes the host files too");
}

#[tokio::test]
async fn a_failed_container_start_leaves_no_files() {
    let Some((runtime, guard)) = docker_node().await else {
        return;
    };
    let task_id = unique("task");
    let mut missing_image = spec(&guard.node_id, &task_id, &["true"], db_pass_and_app_conf());
    missing_image.image = "flotilla-test-no-such-image:latest".to_string();
    let started = runtime.start(&missing_image).await;
    assert!(
        matches!(started, Err(RuntimeError::ImageNotFound { .. })),
        "{started:?}"
    );
    assert!(!runtime.files_dir(&task_id).expect("files dir").dir.exists());

    let bad_target = spec(
        &guard.node_id,
        &task_id,
        &["true"],
        vec![task_file(TaskFileKind::Secret, "../db_pass", 0o400, "x")],
    );
    assert!(matches!(
        runtime.start(&bad_target).await,
        Err(RuntimeError::InvalidSpec { .. })
    ));
    assert!(runtime.list().await.expect("list").is_empty());
}

#[tokio::test]
async fn a_container_removed_by_hand_takes_its_files_with_it() {
    let Some((runtime, guard)) = docker_node().await else {
        return;
    };
    let task_id = unique("task");
    let handle = runtime
        .start(&spec(
            &guard.node_id,
            &task_id,
            &["sh", "-c", "exec sleep 1000"],
            db_pass_and_app_conf(),
        ))
        .await
        .expect("starts");
    let files_dir = runtime.files_dir(&task_id).expect("files dir");
    assert!(files_dir.secrets_dir.join("db_pass").exists());
    let removed = Command::new("docker")
        .args(["rm", "-f", &handle.runtime_id])
        .output()
        .expect("docker rm");
    assert!(removed.status.success());
    // The destroy event reaches the runtime's events task, which removes the directory.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while files_dir.dir.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !files_dir.dir.exists(),
        "a container destroyed outside the runtime leaves no secrets behind"
    );
}
