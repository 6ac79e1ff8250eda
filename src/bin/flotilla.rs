//! `flotilla`: the admin CLI (argument parsing and printing only; the work is in
//! `flotilla::client`).
//!
//! Files: this one holds the top-level command and `main`; `args` the subcommands' arguments;
//! `service_args` the flags `service create` and `update` share; `node`, `service`, `swarm`,
//! `secret` (secrets and configs) and `events` what those subcommands send and print.

// The crate root of a binary looks for modules beside it (`src/bin/`), where every file is a
// binary of its own; the paths keep this binary's modules in a folder of their own instead.
#[path = "flotilla/args.rs"]
mod args;
#[path = "flotilla/events.rs"]
mod events;
#[path = "flotilla/node.rs"]
mod node;
#[path = "flotilla/secret.rs"]
mod secret;
#[path = "flotilla/service.rs"]
mod service;
#[path = "flotilla/service_args.rs"]
mod service_args;
#[path = "flotilla/swarm.rs"]
mod swarm;

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};
use flotilla::client::{default_config_path, Client, ClientError};
use flotilla::net::message::{ChaosKind, ChaosRequest, Message as WireMessage};

use args::{NodeCommand, ServiceCommand, SwarmCommand};

#[derive(Parser)]
#[command(name = "flotilla", version, about = "Manage a Flotilla swarm")]
struct Cli {
    /// The node to talk to (default: the first manager in the configuration).
    #[arg(long, global = true, env = "FLOTILLA_HOST")]
    host: Option<String>,
    /// The client configuration (written by `flotilla-node init`). Given before the
    /// subcommand, as Docker's `--config`: after it, `--config` is `service create`'s.
    #[arg(long, env = "FLOTILLA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
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
    /// Manage secrets (encrypted at rest, never shown).
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// Manage configs (as secrets, but plain and shown by inspect).
    #[command(subcommand)]
    Config(secret::ConfigCommand),
    /// Stream the changes of the cluster state as they are applied.
    Events(events::EventsArgs),
    /// Fault injection (nodes started with --enable-chaos only).
    #[command(subcommand)]
    Chaos(ChaosCommand),
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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    let config = cli.config.clone().unwrap_or_else(default_config_path);
    let client = Client::load(&config, cli.host.as_deref())?;
    match cli.command {
        Command::Node(command) => node::node(&client, command).await,
        Command::Swarm(command) => swarm::swarm(&client, command).await,
        Command::Service(command) => service::service(&client, command).await,
        Command::Secret(command) => secret::secret(&client, command).await,
        Command::Config(command) => secret::config(&client, command).await,
        Command::Events(args) => events::events(&client, args).await,
        Command::Chaos(ChaosCommand::KillActor { kind, id }) => {
            match client
                .exchange(
                    WireMessage::Chaos(ChaosRequest::KillActor { kind, id }),
                    flotilla::client::ANY_NODE,
                )
                .await?
            {
                WireMessage::Ack => Ok(()),
                other => Err(ClientError::Unexpected(other.kind_name().to_string())),
            }
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let outcome = actix::System::new().block_on(run(cli));
    if let Err(error) = outcome {
        eprintln!("Error: {error}");
        std::process::exit(1);
    }
}
