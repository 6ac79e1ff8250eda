//! Multi-process test harness: real `flotilla-node` processes on loopback addresses
//! (127.0.0.1, .2, ...) with temporary state directories, driven through the real `flotilla`
//! CLI. Every process is killed when the cluster is dropped (and, through PR_SET_PDEATHSIG,
//! if the test process dies); a failing test prints the tail of every node's log.

#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const NODE_BIN: &str = env!("CARGO_BIN_EXE_flotilla-node");
pub const CLI_BIN: &str = env!("CARGO_BIN_EXE_flotilla");

/// One node process.
pub struct NodeProcess {
    pub ip: String,
    pub state_dir: PathBuf,
    pub log: PathBuf,
    pub child: Option<Child>,
}

/// A cluster of node processes sharing one UDP port on different loopback addresses.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub nodes: Vec<NodeProcess>,
    pub extra_args: Vec<String>,
    /// `--runtime` for every init/join; `process` unless [`Cluster::with_runtime`] says otherwise.
    pub runtime: String,
    /// Environment variables for every node process (e.g. `FLOTILLA_CERT_VALIDITY_SECS`).
    pub env: Vec<(String, String)>,
}

fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a probe socket");
    socket.local_addr().expect("probe address").port()
}

fn kill_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe; it only sets a flag on the child.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

impl Cluster {
    /// An empty cluster; `extra_args` go to every init/join (e.g. faster heartbeats).
    pub fn new(extra_args: &[&str]) -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            port: free_udp_port(),
            nodes: Vec::new(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            runtime: "process".to_string(),
            env: Vec::new(),
        }
    }

    /// The same cluster with `name=value` in every node's environment.
    pub fn with_env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// The same cluster with nodes started with `--runtime runtime` (`docker`, `process`).
    pub fn with_runtime(mut self, runtime: &str) -> Self {
        self.runtime = runtime.to_string();
        self
    }

    pub fn addr(&self, index: usize) -> String {
        format!("{}:{}", self.nodes[index].ip, self.port)
    }

    pub fn config(&self) -> PathBuf {
        self.nodes[0].state_dir.join("client.toml")
    }

    fn add_node(&mut self) -> usize {
        let index = self.nodes.len();
        let ip = format!("127.0.0.{}", index + 1);
        let state_dir = self.dir.path().join(format!("node{}", index + 1));
        let log = self.dir.path().join(format!("node{}.log", index + 1));
        self.nodes.push(NodeProcess {
            ip,
            state_dir,
            log,
            child: None,
        });
        index
    }

    fn spawn(&mut self, index: usize, args: Vec<String>) {
        let node = &mut self.nodes[index];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("log file");
        let mut command = Command::new(NODE_BIN);
        command
            .args(&args)
            .env("RUST_LOG", "flotilla=info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        kill_with_parent(&mut command);
        node.child = Some(command.spawn().expect("spawn flotilla-node"));
    }

    fn node_args(&self, index: usize) -> Vec<String> {
        let mut args = vec![
            "--listen".to_string(),
            self.addr(index),
            "--state-dir".to_string(),
            self.nodes[index].state_dir.display().to_string(),
            "--hostname".to_string(),
            format!("node{}", index + 1),
            "--runtime".to_string(),
            self.runtime.clone(),
        ];
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Starts the first manager and waits until the CLI can list nodes.
    pub fn init(&mut self) -> usize {
        let index = self.add_node();
        let mut args = vec!["init".to_string()];
        args.extend(self.node_args(index));
        self.spawn(index, args);
        let config = self.nodes[index].state_dir.join("client.toml");
        self.wait_until("the first manager answers", Duration::from_secs(20), || {
            config.exists() && self.cli(Some(index), &["node", "ls"]).status.success()
        });
        // Ready too, so that a later join cannot mistake this node for the one it waits for.
        self.wait_until(
            "the first manager is ready",
            Duration::from_secs(20),
            || self.ready_count() == 1,
        );
        index
    }

    /// A cluster of three managers, all reachable from the first.
    pub fn three_managers() -> Self {
        let mut cluster = Cluster::new(&[]);
        cluster.init();
        cluster.join("manager");
        cluster.join("manager");
        cluster.wait_for_reachable_managers(2);
        cluster
    }

    /// `service inspect SERVICE` through `host`: the service record, or `None` if the command
    /// fails (no leader yet, no such service).
    pub fn service_inspect(&self, host: Option<usize>, service: &str) -> Option<Value> {
        let output = self.cli(host, &["service", "inspect", service]);
        if !output.status.success() {
            return None;
        }
        let services: Vec<Value> = serde_json::from_slice(&output.stdout).ok()?;
        services.into_iter().next()
    }

    /// The join token for `role` ("worker" or "manager").
    pub fn token(&self, role: &str) -> String {
        self.cli_ok(None, &["swarm", "join-token", "-q", role])
            .trim()
            .to_string()
    }

    /// Runs `flotilla-node join` for a new node and returns its index without waiting.
    pub fn spawn_join(&mut self, token: &str, manager: usize) -> usize {
        let index = self.add_node();
        let mut args = vec!["join".to_string(), "--token".to_string(), token.to_string()];
        args.extend(self.node_args(index));
        args.push(self.addr(manager));
        self.spawn(index, args);
        index
    }

    /// Starts `flotilla-node sim` with `workers` hollow workers on 127.0.0.200 (one port each
    /// from the cluster's port + 1000) and waits until they are all ready.
    pub fn spawn_hollow(&mut self, workers: usize) -> usize {
        let token = self.token("worker");
        let before = self.ready_count();
        let index = self.add_node();
        let state_dir = self.nodes[index].state_dir.display().to_string();
        let listen = format!("127.0.0.200:{}", self.port.saturating_add(1000));
        let args = vec![
            "sim".to_string(),
            "--token".to_string(),
            token,
            "--workers".to_string(),
            workers.to_string(),
            "--listen".to_string(),
            listen,
            "--state-dir".to_string(),
            state_dir,
            self.addr(0),
        ];
        self.spawn(index, args);
        self.wait_until(
            "the hollow workers are ready",
            Duration::from_secs(60),
            || self.ready_count() >= before + workers,
        );
        index
    }

    /// Joins a node with `role` and waits until the cluster lists it as ready.
    pub fn join(&mut self, role: &str) -> usize {
        let token = self.token(role);
        let before = self.ready_count();
        let index = self.spawn_join(&token, 0);
        self.wait_until("the joined node is ready", Duration::from_secs(20), || {
            self.ready_count() > before
        });
        index
    }

    /// Runs `flotilla-node join` to completion expecting it to fail; returns its output.
    pub fn join_expecting_failure(&self, token: &str, ip_index: usize) -> Output {
        let state_dir = self.dir.path().join(format!("refused{ip_index}"));
        let mut command = Command::new(NODE_BIN);
        command.args([
            "join",
            "--token",
            token,
            "--listen",
            &format!("127.0.0.{}:{}", ip_index + 1, self.port),
            "--state-dir",
            &state_dir.display().to_string(),
            &self.addr(0),
        ]);
        kill_with_parent(&mut command);
        let output = command.output().expect("run join");
        assert!(!output.status.success(), "join should have been refused");
        assert!(
            !state_dir.join("node.toml").exists(),
            "a refused join must not leave a node behind"
        );
        output
    }

    /// Runs the CLI against node `host` (default: the config's first manager).
    pub fn cli(&self, host: Option<usize>, args: &[&str]) -> Output {
        self.cli_command(host, args).output().expect("run flotilla")
    }

    /// The CLI with the cluster's config, against `host`, none of the caller's settings.
    fn cli_command(&self, host: Option<usize>, args: &[&str]) -> Command {
        let mut command = Command::new(CLI_BIN);
        command.arg("--config").arg(self.config());
        if let Some(host) = host {
            command.arg("--host").arg(self.addr(host));
        }
        command
            .args(args)
            .env_remove("FLOTILLA_HOST")
            .env_remove("FLOTILLA_CONFIG");
        command
    }

    /// Runs the CLI with `input` on its stdin (`secret create NAME -`, `swarm unlock`).
    pub fn cli_stdin(&self, host: Option<usize>, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .cli_command(host, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run flotilla");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input).expect("write the CLI's stdin");
        }
        child.wait_with_output().expect("flotilla output")
    }

    /// Runs the CLI and returns stdout, failing the test with stderr if it fails.
    pub fn cli_ok(&self, host: Option<usize>, args: &[&str]) -> String {
        let output = self.cli(host, args);
        assert!(
            output.status.success(),
            "flotilla {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `node ls --format json` as seen from `host`, or `None` if it fails.
    pub fn nodes_json(&self, host: Option<usize>) -> Option<Vec<Value>> {
        let output = self.cli(host, &["node", "ls", "--format", "json"]);
        if !output.status.success() {
            return None;
        }
        serde_json::from_slice(&output.stdout).ok()
    }

    pub fn ready_count(&self) -> usize {
        self.nodes_json(None)
            .map(|nodes| nodes.iter().filter(|n| n["status"] == "ready").count())
            .unwrap_or(0)
    }

    /// Index of the node whose advertised address is the leader's, as seen from any node.
    pub fn leader(&self) -> Option<usize> {
        for host in 0..self.nodes.len() {
            if self.nodes[host].child.is_none() {
                continue;
            }
            if let Some(nodes) = self.nodes_json(Some(host)) {
                let addr = nodes
                    .iter()
                    .find(|n| n["manager_status"] == "leader")
                    .and_then(|n| n["addr"].as_str().map(str::to_string))?;
                return (0..self.nodes.len()).find(|i| self.addr(*i) == addr);
            }
        }
        None
    }

    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `flotilla-node start` on an existing state directory.
    pub fn restart(&mut self, index: usize) {
        let args = vec![
            "start".to_string(),
            "--state-dir".to_string(),
            self.nodes[index].state_dir.display().to_string(),
        ];
        self.spawn(index, args);
    }

    /// `flotilla-node start` on an existing state directory with extra options
    /// (e.g. `--enable-chaos`).
    pub fn restart_with(&mut self, index: usize, extra: &[&str]) {
        let mut args = vec![
            "start".to_string(),
            "--state-dir".to_string(),
            self.nodes[index].state_dir.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        self.spawn(index, args);
    }

    /// `service ps --format json SERVICE` (every task, history included), or `None` if it fails.
    pub fn tasks_json(&self, service: &str) -> Option<Vec<Value>> {
        let output = self.cli(None, &["service", "ps", "--format", "json", service]);
        if !output.status.success() {
            return None;
        }
        serde_json::from_slice(&output.stdout).ok()
    }

    /// The tasks of `service` whose current state is `running` (empty if the CLI fails).
    pub fn running_tasks(&self, service: &str) -> Vec<Value> {
        self.tasks_json(service)
            .unwrap_or_default()
            .into_iter()
            .filter(|task| task["current_state"] == "running")
            .collect()
    }

    /// Waits until `service` has exactly `count` running tasks and returns them.
    pub fn wait_for_running(&self, service: &str, count: usize, timeout: Duration) -> Vec<Value> {
        let mut running = Vec::new();
        self.wait_until(
            &format!("{service} has {count} running tasks"),
            timeout,
            || {
                running = self.running_tasks(service);
                running.len() == count
            },
        );
        running
    }

    /// Whether node `index`'s log contains `text` (e.g. a supervisor restart message).
    pub fn log_contains(&self, index: usize, text: &str) -> bool {
        std::fs::read_to_string(&self.nodes[index].log)
            .map(|log| log.contains(text))
            .unwrap_or(false)
    }

    /// [`Cluster::node_id`] once the node has written `node.toml`: a joining node is listed as
    /// ready by the managers slightly before it writes its state directory.
    pub fn wait_node_id(&self, index: usize) -> String {
        let settings = self.nodes[index].state_dir.join("node.toml");
        self.wait_until("the node wrote node.toml", Duration::from_secs(20), || {
            std::fs::read_to_string(&settings)
                .ok()
                .and_then(|text| toml::from_str::<toml::Value>(&text).ok())
                .is_some_and(|value| value.get("node_id").is_some())
        });
        self.node_id(index)
    }

    /// Index of the node whose ID is `node_id`.
    pub fn index_of(&self, node_id: &str) -> Option<usize> {
        (0..self.nodes.len()).find(|i| {
            self.nodes[*i].state_dir.join("node.toml").exists() && self.node_id(*i) == node_id
        })
    }

    pub fn wait_until(&self, what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if condition() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out after {timeout:?} waiting until {what}");
    }

    pub fn node_id(&self, index: usize) -> String {
        let text = std::fs::read_to_string(self.nodes[index].state_dir.join("node.toml"))
            .expect("node.toml");
        let settings: toml::Value = toml::from_str(&text).expect("node.toml parses");
        settings["node_id"].as_str().expect("node_id").to_string()
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Kills the process group of every task process the process runtime recorded under
/// `state_dir`: a node killed with SIGKILL leaves its tasks running, as a real host would.
fn kill_recorded_tasks(state_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(state_dir.join("processes")) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let Ok(record) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if let Some(pid) = record["pid"].as_i64().filter(|pid| *pid > 1) {
            // SAFETY: sending a signal has no memory effects.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
        for node in &self.nodes {
            kill_recorded_tasks(&node.state_dir);
        }
        if std::thread::panicking() {
            for node in &self.nodes {
                eprintln!("----- {} ({}) -----", node.log.display(), node.ip);
                eprintln!("{}", tail(&node.log, 40));
            }
        }
    }
}

/// Copies `from` (a directory tree) to `to`, with the modes a node gives its state: 0700
/// directories and 0600 files (git keeps neither).
pub fn copy_state_dir(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).expect("create state dir");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).expect("chmod dir");
    for entry in std::fs::read_dir(from).expect("read fixture dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_state_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy fixture file");
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))
                .expect("chmod file");
        }
    }
}

impl Cluster {
    /// A cluster made of existing state directories (e.g. a fixture written by an earlier
    /// release): each is copied into this cluster's temporary directory and listed with the
    /// loopback IP its `node.toml` listens on; all must share `port`. Nothing is started
    /// (`restart` starts a node); node 0 must hold `client.toml`.
    pub fn from_state_dirs(port: u16, dirs: &[(&str, &Path)]) -> Self {
        let mut cluster = Self::new(&[]);
        cluster.port = port;
        for (index, (ip, from)) in dirs.iter().enumerate() {
            let state_dir = cluster.dir.path().join(format!("node{}", index + 1));
            copy_state_dir(from, &state_dir);
            cluster.nodes.push(NodeProcess {
                ip: ip.to_string(),
                state_dir,
                log: cluster.dir.path().join(format!("node{}.log", index + 1)),
                child: None,
            });
        }
        cluster
    }
}

impl Cluster {
    /// The certificate, key and CA node `index` keeps in its state directory.
    pub fn node_credentials(&self, index: usize) -> flotilla::net::tls::Credentials {
        let path = self.nodes[index]
            .state_dir
            .join(flotilla::node::state::CREDENTIALS_FILE);
        flotilla::node::state::read_toml(&path).expect("node credentials")
    }

    /// The admin's `client.toml`, as `init` wrote it.
    pub fn admin_config(&self) -> flotilla::net::admin::ClientConfig {
        flotilla::net::admin::ClientConfig::load(&self.config()).expect("client.toml")
    }

    /// Runs the CLI with the configuration file `config` (no `--host`).
    pub fn cli_with_config(&self, config: &Path, args: &[&str]) -> Output {
        let mut command = Command::new(CLI_BIN);
        command.arg("--config").arg(config);
        command
            .args(args)
            .env_remove("FLOTILLA_HOST")
            .env_remove("FLOTILLA_CONFIG");
        command.output().expect("run flotilla")
    }

    /// `service ls --format json` names, as the first manager sees them.
    pub fn service_names(&self) -> Vec<String> {
        let output = self.cli_ok(None, &["service", "ls", "--format", "json"]);
        let rows: Vec<Value> = serde_json::from_str(&output).expect("service ls json");
        rows.iter()
            .filter_map(|row| row["name"].as_str().map(str::to_string))
            .collect()
    }
}

impl Cluster {
    /// Waits until `node ls` shows `count` managers reachable besides the leader.
    pub fn wait_for_reachable_managers(&self, count: usize) {
        self.wait_until(
            &format!("{count} more managers, all reachable"),
            Duration::from_secs(20),
            || {
                self.nodes_json(None).is_some_and(|nodes| {
                    nodes
                        .iter()
                        .filter(|n| n["manager_status"] == "reachable")
                        .count()
                        == count
                })
            },
        );
    }
}
