//! The `flotilla` subcommands' arguments (clap definitions, value parsers) and the service spec
//! that `service create`'s arguments describe.

use std::collections::BTreeMap;

use clap::{Subcommand, ValueEnum};
use flotilla::client::render::OutputFormat;
use flotilla::client::update::apply_shared_flags;
use flotilla::core::model::Availability;
use flotilla::core::mounts::{
    parse_config_reference, parse_secret_reference, ConfigReference, SecretReference,
};
use flotilla::core::ports::{parse_publish, PortConfig};
use flotilla::core::spec::{
    parse_cpus, parse_duration_ms, parse_key_value, parse_memory, Constraint, RestartCondition,
    ServiceMode, ServiceSpec,
};

pub(crate) use crate::service_args::{HealthArgs, RolloutArgs, UpdateArgs};

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
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
pub(crate) enum NodeCommand {
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
    /// Show nodes in detail, with each node's gossip view.
    Inspect {
        /// Text instead of JSON.
        #[arg(long)]
        pretty: bool,
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
pub(crate) enum SwarmCommand {
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
    /// Update the swarm's settings.
    Update {
        /// Lock managers when they restart until `swarm unlock` gives them the unlock key.
        #[arg(long, action = clap::ArgAction::Set, required = true)]
        autolock: Option<bool>,
    },
    /// Unlock a locked manager (reads the unlock key from stdin).
    Unlock,
    /// Show (or rotate) the unlock key.
    UnlockKey {
        /// Replace the key; the old one stops unlocking managers.
        #[arg(long)]
        rotate: bool,
        /// Print the key only.
        #[arg(short, long)]
        quiet: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum ServiceCommand {
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
    /// Change a service and roll the change out (or, with --rollback, roll it back).
    Update(Box<UpdateArgs>),
    /// Roll a service back to its previous spec.
    Rollback {
        /// Return at once instead of following the rollback.
        #[arg(short, long)]
        detach: bool,
        /// Name, ID or unique ID prefix.
        service: String,
    },
}

#[derive(clap::Args)]
pub(crate) struct CreateArgs {
    /// Service name (default: from the image).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Number of tasks (replicated mode; default 1).
    #[arg(long)]
    pub(crate) replicas: Option<u64>,
    /// Service mode.
    #[arg(long, value_parser = ["replicated", "global"], default_value = "replicated")]
    pub(crate) mode: String,
    /// Environment variable K=V (repeatable).
    #[arg(long, short = 'e', value_parser = parse_kv)]
    pub(crate) env: Vec<(String, String)>,
    /// Service label K=V (repeatable).
    #[arg(long, value_parser = parse_kv)]
    pub(crate) label: Vec<(String, String)>,
    /// Placement constraint, e.g. node.labels.zone==east or node.role!=manager (repeatable).
    #[arg(long, value_parser = parse_constraint)]
    pub(crate) constraint: Vec<Constraint>,
    /// CPUs to reserve per task, e.g. 0.5.
    #[arg(long, value_parser = parse_cpu_arg)]
    pub(crate) reserve_cpu: Option<u64>,
    /// Memory to reserve per task, e.g. 64m.
    #[arg(long, value_parser = parse_memory_arg)]
    pub(crate) reserve_memory: Option<u64>,
    /// CPU limit per task, e.g. 1.5.
    #[arg(long, value_parser = parse_cpu_arg)]
    pub(crate) limit_cpu: Option<u64>,
    /// Memory limit per task, e.g. 256m.
    #[arg(long, value_parser = parse_memory_arg)]
    pub(crate) limit_memory: Option<u64>,
    /// When to replace a finished task: any, on-failure or none.
    #[arg(long, value_parser = parse_restart_condition)]
    pub(crate) restart_condition: Option<RestartCondition>,
    /// Fixed delay before a replacement, e.g. 5s (default: 0, then 1s, 2s, 4s ... up to 30s).
    #[arg(long, value_parser = parse_duration_arg)]
    pub(crate) restart_delay: Option<u64>,
    /// Replacements per slot before it is left finished.
    #[arg(long)]
    pub(crate) restart_max_attempts: Option<u64>,
    /// Publish a port: published=N,target=N[,protocol=tcp|udp][,mode=ingress|host]
    /// [,proxy-protocol=v2] or N:N[/udp] (repeatable).
    #[arg(short = 'p', long, value_name = "SPEC", value_parser = parse_publish_arg)]
    pub(crate) publish: Vec<PortConfig>,
    /// Give the tasks a secret: NAME or source=NAME[,target=FILE][,uid=N][,gid=N][,mode=0400]
    /// (repeatable; default target NAME, mode 0444).
    #[arg(long, value_name = "SECRET", value_parser = parse_secret_arg)]
    pub(crate) secret: Vec<SecretReference>,
    /// Give the tasks a config: NAME or source=NAME[,target=PATH][,uid=N][,gid=N][,mode=0444]
    /// (repeatable).
    #[arg(long, value_name = "CONFIG", value_parser = parse_config_arg)]
    pub(crate) config: Vec<ConfigReference>,
    #[command(flatten)]
    pub(crate) health: HealthArgs,
    #[command(flatten)]
    pub(crate) rollout: RolloutArgs,
    /// Return at once instead of showing progress until the service converges.
    #[arg(short, long)]
    pub(crate) detach: bool,
    /// The image (recorded and shown by the process runtime, run by docker).
    pub(crate) image: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(crate) command: Vec<String>,
}

pub(crate) fn parse_kv(text: &str) -> Result<(String, String), String> {
    parse_key_value(text).map_err(|e| e.to_string())
}
pub(crate) fn parse_constraint(text: &str) -> Result<Constraint, String> {
    Constraint::parse(text).map_err(|e| e.to_string())
}
pub(crate) fn parse_cpu_arg(text: &str) -> Result<u64, String> {
    parse_cpus(text).map_err(|e| e.to_string())
}
pub(crate) fn parse_memory_arg(text: &str) -> Result<u64, String> {
    parse_memory(text).map_err(|e| e.to_string())
}
pub(crate) fn parse_duration_arg(text: &str) -> Result<u64, String> {
    parse_duration_ms(text).map_err(|e| e.to_string())
}
pub(crate) fn parse_publish_arg(text: &str) -> Result<PortConfig, String> {
    parse_publish(text).map_err(|e| e.to_string())
}
pub(crate) fn parse_secret_arg(text: &str) -> Result<SecretReference, String> {
    parse_secret_reference(text).map_err(|e| e.to_string())
}
pub(crate) fn parse_config_arg(text: &str) -> Result<ConfigReference, String> {
    parse_config_reference(text).map_err(|e| e.to_string())
}
pub(crate) fn parse_restart_condition(text: &str) -> Result<RestartCondition, String> {
    match text {
        "any" => Ok(RestartCondition::Any),
        "on-failure" => Ok(RestartCondition::OnFailure),
        "none" => Ok(RestartCondition::None),
        other => Err(format!("{other:?}: expected any, on-failure or none")),
    }
}
pub(crate) fn parse_availability(text: &str) -> Result<Availability, String> {
    match text {
        "active" => Ok(Availability::Active),
        "pause" => Ok(Availability::Pause),
        "drain" => Ok(Availability::Drain),
        other => Err(format!("{other:?}: expected active, pause or drain")),
    }
}
pub(crate) fn parse_scale(text: &str) -> Result<(String, u64), String> {
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

pub(crate) fn service_spec(args: &CreateArgs) -> Result<ServiceSpec, String> {
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
    spec.ports = args.publish.clone();
    spec.secrets = args.secret.clone();
    spec.configs = args.config.clone();
    apply_shared_flags(
        &mut spec,
        &args.health.flags(),
        args.health.stop_grace_period.as_deref(),
        &args.rollout.update(),
        &args.rollout.rollback(),
    )
    .map_err(|e| e.to_string())?;
    spec.validate().map_err(|e| e.to_string())?;
    Ok(spec)
}
