//! `flotilla-node`: the node daemon (argument parsing and start-up only).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use flotilla::core::spec::parse_key_value;
use flotilla::node::daemon::{
    self, NodeOptions, DEFAULT_HEARTBEAT_MS, DEFAULT_LISTEN, DEFAULT_RAFT_TICK_MS,
};
use flotilla::node::metrics::MetricsListen;

#[derive(Parser)]
#[command(
    name = "flotilla-node",
    version,
    about = "The Flotilla node daemon (manager or worker)"
)]
struct Cli {
    /// Log lines on stderr: `text` for people, `json` (one object per line) for log
    /// collectors. The level comes from `RUST_LOG` (default `warn`).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create a new swarm with this node as its first manager.
    Init(NodeArgs),
    /// Join an existing swarm.
    Join {
        /// The join token (`flotilla swarm join-token worker|manager`).
        #[arg(long)]
        token: String,
        #[command(flatten)]
        node: NodeArgs,
        /// A manager's address.
        manager_addr: SocketAddr,
    },
    /// Restart a node that init or join created, with its identity, role and data.
    Start {
        /// The node's state directory.
        #[arg(long, default_value = "./flotilla-state")]
        state_dir: PathBuf,
        /// Allow `flotilla chaos` commands on this node.
        #[arg(long)]
        enable_chaos: bool,
        /// A manager of a cluster that lost its quorum: come up as the only manager, with all
        /// state kept (the other managers are removed from the Raft group; others can join).
        #[arg(long)]
        force_new_cluster: bool,
    },
    /// Hollow workers: N real nodes to the managers, in this one process, running nothing.
    Sim {
        /// A worker join token.
        #[arg(long)]
        token: String,
        /// How many hollow workers.
        #[arg(long)]
        workers: usize,
        /// How long a simulated task takes to start, in milliseconds.
        #[arg(long, default_value_t = 20)]
        task_start_ms: u64,
        /// Address of the first hollow worker; the others use the next ports.
        #[arg(long, default_value = "127.0.0.1:30000")]
        listen: SocketAddr,
        /// Where the hollow workers keep their state (one directory each).
        #[arg(long, default_value = "./flotilla-sim")]
        state_dir: PathBuf,
        /// Worker heartbeat period in milliseconds.
        #[arg(long, default_value_t = DEFAULT_HEARTBEAT_MS)]
        heartbeat_ms: u64,
        /// A manager's address.
        manager_addr: SocketAddr,
    },
    /// A one-node swarm (manager and worker in one process) for trying Flotilla out.
    Dev {
        /// State directory (reused on the next run).
        #[arg(long, default_value = "./flotilla-state")]
        state_dir: PathBuf,
    },
}

#[derive(Args, Clone)]
struct NodeArgs {
    /// UDP address to listen on.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Address other nodes reach this one at (default: the listen address).
    #[arg(long)]
    advertise_addr: Option<SocketAddr>,
    /// State directory.
    #[arg(long, default_value = "./flotilla-state")]
    state_dir: PathBuf,
    /// Hostname to report (default: the machine's).
    #[arg(long)]
    hostname: Option<String>,
    /// Container runtime (`sim` runs nothing: for tests and hollow nodes).
    #[arg(long, default_value = "auto", value_parser = ["auto", "docker", "process", "sim"])]
    runtime: String,
    /// A node label K=V (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Allow `flotilla chaos` commands on this node.
    #[arg(long)]
    enable_chaos: bool,
    /// Raft tick period in milliseconds.
    #[arg(long, default_value_t = DEFAULT_RAFT_TICK_MS, value_parser = clap::value_parser!(u64).range(1..))]
    raft_tick_ms: u64,
    /// Worker heartbeat period in milliseconds.
    #[arg(long, default_value_t = DEFAULT_HEARTBEAT_MS, value_parser = clap::value_parser!(u64).range(10..))]
    heartbeat_ms: u64,
    /// Prometheus metrics: IP:PORT, `off`, or `default` (managers: the advertise IP, port 9323,
    /// if free; workers: off). Kept for `start`.
    #[arg(long, default_value = "default")]
    metrics_listen: MetricsListen,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    parse_key_value(text).map_err(|e| e.to_string())
}

impl NodeArgs {
    fn options(self) -> NodeOptions {
        NodeOptions {
            listen: self.listen,
            advertise_addr: self.advertise_addr,
            state_dir: self.state_dir,
            hostname: self.hostname,
            runtime: self.runtime,
            labels: self.labels,
            enable_chaos: self.enable_chaos,
            raft_tick_ms: self.raft_tick_ms,
            heartbeat_ms: self.heartbeat_ms,
            sim_task_start_ms: 20,
            metrics_listen: self.metrics_listen,
        }
    }
}

fn print_init(summary: &daemon::InitSummary, state_dir: &std::path::Path) {
    println!(
        "Swarm initialized: current node ({}) is now a manager.\n",
        summary.node_id
    );
    println!("To add a worker to this swarm, run the following command:\n");
    println!(
        "    flotilla-node join --token {} {}\n",
        summary.worker_token, summary.advertise_addr
    );
    println!(
        "To add a manager to this swarm, run 'flotilla swarm join-token manager' and follow the instructions.\n"
    );
    println!(
        "The CLI's configuration is in {}; use it with `flotilla --config {}` or copy it to ~/.flotilla/client.toml.",
        state_dir.join("client.toml").display(),
        state_dir.join("client.toml").display()
    );
}

/// Exit status after a panic (EX_SOFTWARE, "internal software error").
const PANIC_EXIT_CODE: i32 = 70;

/// Test drill (docs/operations.md): with `--enable-chaos`, an actor panics this many
/// milliseconds after start, to prove that a panic ends the process.
const PANIC_DRILL_ENV: &str = "FLOTILLA_TEST_PANIC_AFTER_MS";

/// actix runs each arbiter's actors as tokio tasks, and tokio catches a panicking task: the
/// actor would vanish while the process went on half alive (no Raft, say, but still answering
/// heartbeats). Any panic, on any thread, ends the process instead, after logging it; the
/// supervisor (systemd, the test harness) restarts it from disk.
fn exit_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        tracing::error!(%info, "panic: the node exits");
        std::process::exit(PANIC_EXIT_CODE);
    }));
}

/// An actor that panics on a timer: the panic drill of [`PANIC_DRILL_ENV`].
struct PanicDrill(std::time::Duration);

impl actix::Actor for PanicDrill {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        actix::AsyncContext::run_later(ctx, self.0, |_, _| {
            panic!("{PANIC_DRILL_ENV} drill: this actor panics on purpose");
        });
    }
}

/// Starts the panic drill if asked for, only on a node that allows chaos.
fn start_panic_drill(enable_chaos: bool) {
    let Some(after_ms) = std::env::var(PANIC_DRILL_ENV)
        .ok()
        .and_then(|value| value.parse::<u64>().ok())
    else {
        return;
    };
    if !enable_chaos {
        tracing::warn!("{PANIC_DRILL_ENV} ignored: the node was not started with --enable-chaos");
        return;
    }
    tracing::warn!(after_ms, "panic drill: an actor will panic");
    actix::Actor::start(PanicDrill(std::time::Duration::from_millis(after_ms)));
}

fn main() -> anyhow::Result<()> {
    exit_on_panic();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    flotilla::node::allocator::pin_mmap_threshold();
    let enable_chaos = match &cli.command {
        Command::Init(args) | Command::Join { node: args, .. } => args.enable_chaos,
        Command::Start { enable_chaos, .. } => *enable_chaos,
        Command::Dev { .. } => true,
        Command::Sim { .. } => false,
    };
    actix::System::new().block_on(async move {
        start_panic_drill(enable_chaos);
        let node = match cli.command {
            Command::Init(args) => {
                let options = args.options();
                let state_dir = options.state_dir.clone();
                let (summary, node) = daemon::init(options).await.context("init failed")?;
                print_init(&summary, &state_dir);
                node
            }
            Command::Join {
                token,
                node,
                manager_addr,
            } => {
                let running = daemon::join(node.options(), &token, manager_addr)
                    .await
                    .context("join failed")?;
                println!("This node joined a swarm as a {}.", running.settings.role);
                running
            }
            Command::Start {
                state_dir,
                enable_chaos,
                force_new_cluster,
            } => daemon::start(&state_dir, enable_chaos, force_new_cluster)
                .await
                .context("start failed")?,
            Command::Sim {
                token,
                workers,
                task_start_ms,
                listen,
                state_dir,
                heartbeat_ms,
                manager_addr,
            } => {
                let template = NodeOptions {
                    listen,
                    advertise_addr: None,
                    state_dir,
                    hostname: None,
                    runtime: "sim".to_string(),
                    labels: vec![],
                    enable_chaos: false,
                    raft_tick_ms: DEFAULT_RAFT_TICK_MS,
                    heartbeat_ms,
                    sim_task_start_ms: task_start_ms,
                    metrics_listen: MetricsListen::Off,
                };
                let started = std::time::Instant::now();
                let nodes = daemon::hollow_nodes(template, &token, manager_addr, workers)
                    .await
                    .context("hollow workers failed to join")?;
                println!(
                    "{} hollow workers joined in {:.1} s",
                    nodes.len(),
                    started.elapsed().as_secs_f64()
                );
                daemon::wait_for_signal().await;
                futures::future::join_all(nodes.iter().map(|node| node.transport.shutdown())).await;
                return Ok(());
            }
            Command::Dev { state_dir } => {
                if state_dir.join("node.toml").exists() {
                    println!("Restarting the dev node in {}.", state_dir.display());
                    daemon::start(&state_dir, true, false)
                        .await
                        .context("start failed")?
                } else {
                    let options = NodeOptions {
                        listen: DEFAULT_LISTEN.parse()?,
                        advertise_addr: None,
                        state_dir: state_dir.clone(),
                        hostname: None,
                        runtime: "auto".to_string(),
                        labels: vec![],
                        enable_chaos: true,
                        raft_tick_ms: DEFAULT_RAFT_TICK_MS,
                        heartbeat_ms: DEFAULT_HEARTBEAT_MS,
                        sim_task_start_ms: 20,
                        metrics_listen: MetricsListen::Default,
                    };
                    let (summary, node) = daemon::init(options).await.context("init failed")?;
                    print_init(&summary, &state_dir);
                    node
                }
            }
        };
        daemon::wait_for_shutdown(node).await;
        Ok(())
    })
}
