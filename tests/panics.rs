//! A panic anywhere ends the node process with a non-zero exit (SPEC §4): an actor that panics
//! must not leave the process half alive. Uses the `FLOTILLA_TEST_PANIC_AFTER_MS` drill
//! (docs/operations.md), honoured only with `--enable-chaos`.

mod common;

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::NODE_BIN;

const DRILL_ENV: &str = "FLOTILLA_TEST_PANIC_AFTER_MS";

/// The exit status `flotilla-node` uses after a panic.
const PANIC_EXIT_CODE: i32 = 70;

fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a probe socket");
    socket.local_addr().expect("probe address").port()
}

/// `flotilla-node init` on a fresh state dir, with the drill set; output goes to `log`.
fn spawn_init(dir: &std::path::Path, extra: &[&str], drill_ms: u64) -> Child {
    let log = std::fs::File::create(dir.join("node.log")).expect("log file");
    let listen = format!("127.0.0.1:{}", free_udp_port());
    let state_dir = dir.join("state");
    Command::new(NODE_BIN)
        .args([
            "init",
            "--listen",
            &listen,
            "--runtime",
            "sim",
            "--state-dir",
        ])
        .arg(&state_dir)
        .args(extra)
        .env(DRILL_ENV, drill_ms.to_string())
        .env("RUST_LOG", "flotilla=info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn flotilla-node")
}

fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn log_of(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
}

#[test]
fn an_actor_panic_ends_the_process_with_a_non_zero_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = spawn_init(dir.path(), &["--enable-chaos"], 1500);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let log = log_of(dir.path());
    let Some(status) = status else {
        let _ = child.kill();
        panic!("the node was still running after its actor panicked:\n{log}");
    };
    assert_eq!(status.code(), Some(PANIC_EXIT_CODE), "log:\n{log}");
    assert!(
        log.contains("drill: this actor panics on purpose"),
        "the panic is logged:\n{log}"
    );
}

#[test]
fn the_panic_drill_needs_enable_chaos() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = spawn_init(dir.path(), &[], 200);
    let client_config = dir.path().join("state").join("client.toml");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client_config.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Well past the drill's time: still serving.
    let status = wait_exit(&mut child, Duration::from_secs(2));
    let _ = child.kill();
    let _ = child.wait();
    let log = log_of(dir.path());
    assert!(client_config.exists(), "init finished:\n{log}");
    assert!(status.is_none(), "the node exited ({status:?}):\n{log}");
    assert!(
        log.contains("ignored"),
        "the drill says why it is off:\n{log}"
    );
}
