//! `flotilla-node --log-format json` (SPEC §11): every log line on stderr is one JSON object
//! with a timestamp, a level, a target and the event's fields.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::NODE_BIN;

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::UdpSocket::bind("127.0.0.11:0")
        .and_then(|socket| socket.local_addr())
        .expect("udp probe")
        .port();
    let stderr_path = dir.path().join("stderr");
    let mut node = Command::new(NODE_BIN)
        .args(["--log-format", "json", "init", "--runtime", "sim"])
        .args([
            "--listen",
            &format!("127.0.0.11:{port}"),
            "--metrics-listen",
            "off",
        ])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("RUST_LOG", "flotilla=info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("run flotilla-node");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        if text.contains("\"is_leader\":true") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = node.kill();
    let _ = node.wait();
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert!(lines.len() >= 2, "some log lines: {text}");
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
        for field in ["timestamp", "level", "target", "fields"] {
            assert!(value.get(field).is_some(), "{line} lacks {field}");
        }
    }
    assert!(
        lines.iter().any(|line| line.contains("\"is_leader\":true")),
        "the leadership line with its fields: {text}"
    );
}
