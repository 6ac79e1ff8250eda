//! `flotilla`: the admin CLI (argument parsing and printing only; the work is in
//! `flotilla::client`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand, ValueEnum};
use flotilla::client::progress::{convergence, Progress};
use flotilla::client::render::{self, OutputFormat};
use flotilla::client::{default_config_path, Client, ClientError};
use flotilla::core::model::{Availability, NodeRole};
use flotilla::core::spec::{
    parse_cpus, parse_duration_ms, parse_key_value, parse_memory, Constraint, RestartCondition,
    ServiceMode, ServiceSpec,
};
use flotilla::net::control::{ControlReply, ControlRequest};
use flotilla::net::message::{ChaosKind, ChaosRequest, Message as WireMessage};

#[derive(Parser)]
#[command(name = "flotilla", version, about = "Manage a Flotilla swarm")]
struct Cli {
    /// The node to talk to (default: the first manager in the configuration).
    #[arg(long, global = true, env = "FLOTILLA_HOST")]
    host: Option<String>,
    /// The client configuration (written by `flotilla-node init`).
    #[arg(long, global = true, env = "FLOTILLA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

impl From<Format> for OutputFormat {
    fn from(format: Format) -> Self {
        match format {
            Format::Table => OutputFormat::Table,
            Format::Json => OutputFormat::Json,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Manage nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Manage the swarm.
    #[command(subcommand)]
    Swarm(SwarmCommand),
    /// Manage services.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Fault injection (nodes started with --enable-chaos only).
    #[command(subcommand)]
    Chaos(ChaosCommand),
}

#[derive(Subcommand)]
enum NodeCommand {
    /// List nodes.
    Ls {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// List tasks on a node (default: the node addressed).
    Ps {
        /// Name, ID or unique ID prefix.
        node: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Show full IDs and errors.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Show nodes in detail.
    Inspect {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Change a node's availability or labels.
    Update {
        /// active, pause (no new tasks) or drain (also move its tasks away).
        #[arg(long, value_parser = parse_availability)]
        availability: Option<Availability>,
        /// Add or change a label K=V (repeatable).
        #[arg(long = "label-add", value_parser = parse_kv)]
        label_add: Vec<(String, String)>,
        /// Remove a label by key (repeatable).
        #[arg(long = "label-rm")]
        label_rm: Vec<String>,
        /// Name, ID or unique ID prefix.
        node: String,
    },
    /// Make workers managers.
    Promote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Make managers workers.
    Demote {
        #[arg(required = true)]
        nodes: Vec<String>,
    },
    /// Remove nodes from the swarm.
    Rm {
        /// Remove a node that is not down.
        #[arg(long, short)]
        force: bool,
        #[arg(required = true)]
        nodes: Vec<String>,
    },
}

#[derive(Subcommand)]
enum SwarmCommand {
    /// Show (or rotate) a join token.
    JoinToken {
        /// Replace the secret; the old token stops working at once.
        #[arg(long)]
        rotate: bool,
        /// Print the token only.
        #[arg(short, long)]
        quiet: bool,
        #[arg(value_parser = ["worker", "manager"])]
        role: String,
    },
}

#[derive(Subcommand)]
enum ServiceCommand {
    /// Create a service.
    Create(Box<CreateArgs>),
    /// List services.
    Ls {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// List the tasks of services.
    Ps {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Show full IDs and errors.
        #[arg(long)]
        no_trunc: bool,
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Show services in detail.
    Inspect {
        #[arg(required = true)]
        services: Vec<String>,
    },
    /// Scale replicated services: SERVICE=N...
    Scale {
        /// Return at once instead of showing progress.
        #[arg(short, long)]
        detach: bool,
        #[arg(required = true, value_parser = parse_scale)]
        targets: Vec<(String, u64)>,
    },
    /// Remove services.
    Rm {
        #[arg(required = true)]
        services: Vec<String>,
    },
}

#[derive(clap::Args)]
struct CreateArgs {
    /// Service name (default: from the image).
    #[arg(long)]
    name: Option<String>,
    /// Number of tasks (replicated mode; default 1).
    #[arg(long)]
    replicas: Option<u64>,
    /// Service mode.
    #[arg(long, value_parser = ["replicated", "global"], default_value = "replicated")]
    mode: String,
    /// Environment variable K=V (repeatable).
    #[arg(long, short = 'e', value_parser = parse_kv)]
    env: Vec<(String, String)>,
    /// Service label K=V (repeatable).
    #[arg(long, value_parser = parse_kv)]
    label: Vec<(String, String)>,
    /// Placement constraint, e.g. node.labels.zone==east or node.role!=manager (repeatable).
    #[arg(long, value_parser = parse_constraint)]
    constraint: Vec<Constraint>,
    /// CPUs to reserve per task, e.g. 0.5.
    #[arg(long, value_parser = parse_cpu_arg)]
    reserve_cpu: Option<u64>,
    /// Memory to reserve per task, e.g. 64m.
    #[arg(long, value_parser = parse_memory_arg)]
    reserve_memory: Option<u64>,
    /// CPU limit per task, e.g. 1.5.
    #[arg(long, value_parser = parse_cpu_arg)]
    limit_cpu: Option<u64>,
    /// Memory limit per task, e.g. 256m.
    #[arg(long, value_parser = parse_memory_arg)]
    limit_memory: Option<u64>,
    /// When to replace a finished task: any, on-failure or none.
    #[arg(long, value_parser = parse_restart_condition)]
    restart_condition: Option<RestartCondition>,
    /// Fixed delay before a replacement, e.g. 5s (default: 0, then 1s, 2s, 4s ... up to 30s).
    #[arg(long, value_parser = parse_duration_arg)]
    restart_delay: Option<u64>,
    /// Replacements per slot before it is left finished.
    #[arg(long)]
    restart_max_attempts: Option<u64>,
    /// Return at once instead of showing progress until the service converges.
    #[arg(short, long)]
    detach: bool,
    /// The image (recorded and shown by the process runtime, run by docker).
    image: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Subcommand)]
enum ChaosCommand {
    /// Stop an actor as if it had crashed.
    KillActor {
        // The possible values check the word first (clap's error names the valid kinds); the
        // parse after it cannot fail, but is a fallible map rather than an unwrap.
        #[arg(value_parser = PossibleValuesParser::new(ChaosKind::NAMES)
            .try_map(|word| word.parse::<ChaosKind>()))]
        kind: ChaosKind,
        id: Option<String>,
    },
}

fn parse_kv(text: &str) -> Result<(String, String), String> {
    parse_key_value(text).map_err(|e| e.to_string())
}
fn parse_constraint(text: &str) -> Result<Constraint, String> {
    Constraint::parse(text).map_err(|e| e.to_string())
}
fn parse_cpu_arg(text: &str) -> Result<u64, String> {
    parse_cpus(text).map_err(|e| e.to_string())
}
fn parse_memory_arg(text: &str) -> Result<u64, String> {
    parse_memory(text).map_err(|e| e.to_string())
}
fn parse_duration_arg(text: &str) -> Result<u64, String> {
    parse_duration_ms(text).map_err(|e| e.to_string())
}
fn parse_restart_condition(text: &str) -> Result<RestartCondition, String> {
    match text {
        "any" => Ok(RestartCondition::Any),
        "on-failure" => Ok(RestartCondition::OnFailure),
        "none" => Ok(RestartCondition::None),
        other => Err(format!("{other:?}: expected any, on-failure or none")),
    }
}
fn parse_availability(text: &str) -> Result<Availability, String> {
    match text {
        "active" => Ok(Availability::Active),
        "pause" => Ok(Availability::Pause),
        "drain" => Ok(Availability::Drain),
        other => Err(format!("{other:?}: expected active, pause or drain")),
    }
}
fn parse_scale(text: &str) -> Result<(String, u64), String> {
    let (service, replicas) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected SERVICE=REPLICAS"))?;
    let replicas = replicas
        .parse::<u64>()
        .map_err(|_| format!("{text:?}: replicas must be a whole number of 0 or more"))?;
    if service.is_empty() {
        return Err(format!("{text:?}: missing service name"));
    }
    Ok((service.to_string(), replicas))
}

fn service_spec(args: &CreateArgs) -> Result<ServiceSpec, String> {
    let name = args.name.clone().unwrap_or_else(|| {
        // Docker picks a random name; ours is derived from the image, then made unique by the
        // manager refusing a duplicate.
        let base = args.image.rsplit('/').next().unwrap_or(&args.image);
        base.split(':').next().unwrap_or(base).to_string()
    });
    let mut spec = ServiceSpec::new(&name, &args.image);
    spec.command = args.command.clone();
    spec.env = args.env.iter().cloned().collect::<BTreeMap<_, _>>();
    spec.labels = args.label.iter().cloned().collect::<BTreeMap<_, _>>();
    spec.mode = match (args.mode.as_str(), args.replicas) {
        ("global", Some(_)) => {
            return Err("--replicas can only be used with replicated mode".into())
        }
        ("global", None) => ServiceMode::Global,
        (_, replicas) => ServiceMode::Replicated {
            replicas: replicas.unwrap_or(1),
        },
    };
    spec.constraints = args.constraint.clone();
    spec.resources.reservations.nano_cpus = args.reserve_cpu.unwrap_or(0);
    spec.resources.reservations.memory_bytes = args.reserve_memory.unwrap_or(0);
    spec.resources.limits.nano_cpus = args.limit_cpu.unwrap_or(0);
    spec.resources.limits.memory_bytes = args.limit_memory.unwrap_or(0);
    spec.restart.condition = args.restart_condition.unwrap_or_default();
    spec.restart.delay_ms = args.restart_delay;
    spec.restart.max_attempts = args.restart_max_attempts;
    spec.validate().map_err(|e| e.to_string())?;
    Ok(spec)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn unexpected(reply: ControlReply) -> ClientError {
    ClientError::Unexpected(format!("{reply:?}").chars().take(80).collect())
}

async fn wait_converged(client: &Client, service: &str, replicas: u64) -> Result<(), ClientError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut progress = Progress::new(replicas);
    loop {
        let tasks = client.service_tasks(&[service.to_string()]).await?;
        if progress.update(&tasks) {
            progress.finish();
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            let (done, _) = convergence(&tasks, replicas);
            return Err(ClientError::Remote(format!(
                "service {service} did not converge within 120 s ({done} of {replicas} running); see `flotilla service ps {service}`"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    let config = cli.config.clone().unwrap_or_else(default_config_path);
    let client = Client::load(&config, cli.host.as_deref())?;
    match cli.command {
        Command::Node(command) => node(&client, command).await,
        Command::Swarm(SwarmCommand::JoinToken {
            rotate,
            quiet,
            role,
        }) => {
            let role = if role == "manager" {
                NodeRole::Manager
            } else {
                NodeRole::Worker
            };
            let token = match client
                .control(ControlRequest::JoinToken { role, rotate })
                .await?
            {
                ControlReply::Token(token) => token,
                other => return Err(unexpected(other)),
            };
            let manager = client_host(&cli.host, &config)?;
            if quiet {
                println!("{token}");
            } else {
                if rotate {
                    println!("Successfully rotated {} join token.\n", role_name(role));
                }
                println!(
                    "To add a {} to this swarm, run the following command:\n\n    flotilla-node join --token {token} {manager}\n",
                    role_name(role)
                );
            }
            Ok(())
        }
        Command::Service(command) => service(&client, command).await,
        Command::Chaos(ChaosCommand::KillActor { kind, id }) => {
            match client
                .exchange(WireMessage::Chaos(ChaosRequest::KillActor { kind, id }))
                .await?
            {
                WireMessage::Ack => Ok(()),
                other => Err(ClientError::Unexpected(other.kind_name().to_string())),
            }
        }
    }
}

fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => "manager",
        NodeRole::Worker => "worker",
    }
}

fn client_host(host: &Option<String>, config: &std::path::Path) -> Result<String, ClientError> {
    if let Some(host) = host {
        return Ok(host.clone());
    }
    let config: flotilla::node::state::ClientConfig =
        flotilla::node::state::read_toml(config).map_err(|e| ClientError::Remote(e.to_string()))?;
    config.managers.first().cloned().ok_or(ClientError::NoHost)
}

async fn node(client: &Client, command: NodeCommand) -> Result<(), ClientError> {
    match command {
        NodeCommand::Ls { format } => match client.control(ControlRequest::NodeList).await? {
            ControlReply::Nodes(nodes) => print!("{}", render::nodes(&nodes, format.into())),
            other => return Err(unexpected(other)),
        },
        NodeCommand::Ps {
            node,
            format,
            no_trunc,
        } => match client.control(ControlRequest::NodeTasks { node }).await? {
            ControlReply::Tasks(tasks) => print!(
                "{}",
                render::tasks(&tasks, format.into(), no_trunc, now_ms())
            ),
            other => return Err(unexpected(other)),
        },
        NodeCommand::Inspect { nodes } => match client
            .control(ControlRequest::NodeInspect { nodes })
            .await?
        {
            ControlReply::NodeDetails(nodes) => println!("{}", render::json(&nodes)),
            other => return Err(unexpected(other)),
        },
        NodeCommand::Update {
            availability,
            label_add,
            label_rm,
            node,
        } => {
            let request = ControlRequest::NodeUpdate {
                node: node.clone(),
                availability,
                labels_add: label_add.into_iter().collect(),
                labels_rm: label_rm,
            };
            client.control(request).await?;
            println!("{node}");
        }
        NodeCommand::Promote { nodes } | NodeCommand::Demote { nodes } if nodes.is_empty() => {}
        NodeCommand::Promote { nodes } => {
            client
                .control(ControlRequest::NodeSetRole {
                    nodes: nodes.clone(),
                    role: NodeRole::Manager,
                })
                .await?;
            for node in nodes {
                println!("Node {node} promoted to a manager in the swarm.");
            }
        }
        NodeCommand::Demote { nodes } => {
            client
                .control(ControlRequest::NodeSetRole {
                    nodes: nodes.clone(),
                    role: NodeRole::Worker,
                })
                .await?;
            for node in nodes {
                println!("Manager {node} demoted in the swarm.");
            }
        }
        NodeCommand::Rm { force, nodes } => {
            client
                .control(ControlRequest::NodeRemove {
                    nodes: nodes.clone(),
                    force,
                })
                .await?;
            for node in nodes {
                println!("{node}");
            }
        }
    }
    Ok(())
}

async fn service(client: &Client, command: ServiceCommand) -> Result<(), ClientError> {
    match command {
        ServiceCommand::Create(args) => {
            let spec = service_spec(&args).map_err(ClientError::Remote)?;
            let replicas = match spec.mode {
                ServiceMode::Replicated { replicas } => Some(replicas),
                ServiceMode::Global => None,
            };
            let name = spec.name.clone();
            let id = match client
                .control(ControlRequest::ServiceCreate { spec })
                .await?
            {
                ControlReply::Done(ids) => ids.into_iter().next().unwrap_or_default(),
                other => return Err(unexpected(other)),
            };
            println!("{id}");
            if let (false, Some(replicas)) = (args.detach, replicas) {
                wait_converged(client, &name, replicas).await?;
            }
        }
        ServiceCommand::Ls { format } => match client.control(ControlRequest::ServiceList).await? {
            ControlReply::Services(services) => {
                print!("{}", render::services(&services, format.into()))
            }
            other => return Err(unexpected(other)),
        },
        ServiceCommand::Ps {
            format,
            no_trunc,
            services,
        } => {
            let tasks = client.service_tasks(&services).await?;
            print!(
                "{}",
                render::tasks(&tasks, format.into(), no_trunc, now_ms())
            );
        }
        ServiceCommand::Inspect { services } => {
            match client
                .control(ControlRequest::ServiceInspect { services })
                .await?
            {
                ControlReply::ServiceDetails(services) => println!("{}", render::json(&services)),
                other => return Err(unexpected(other)),
            }
        }
        ServiceCommand::Scale { detach, targets } => {
            client
                .control(ControlRequest::ServiceScale {
                    targets: targets.clone(),
                })
                .await?;
            for (service, replicas) in &targets {
                println!("{service} scaled to {replicas}");
            }
            if !detach {
                for (service, replicas) in targets {
                    wait_converged(client, &service, replicas).await?;
                }
            }
        }
        ServiceCommand::Rm { services } => {
            client
                .control(ControlRequest::ServiceRemove {
                    services: services.clone(),
                })
                .await?;
            for service in services {
                println!("{service}");
            }
        }
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let outcome = actix::System::new().block_on(run(cli));
    if let Err(error) = outcome {
        eprintln!("Error: {error}");
        std::process::exit(1);
    }
}
