//! `flotilla secret ...` and `flotilla config ...` (SPEC §9): the data is read from a file or
//! stdin here and sent over mutual TLS to a manager, which seals a secret's before it reaches
//! the Raft log; nothing of it is printed.

use std::io::Read;
use std::path::Path;

use clap::Subcommand;
use flotilla::client::render;
use flotilla::client::{Client, ClientError};
use flotilla::core::secrets::{Plaintext, SecretKind, DATA_BYTES_MAX};
use flotilla::net::admin::{AdminReply, AdminRequest};

use crate::args::{parse_kv, Format};
use crate::now_ms;

/// `create NAME FILE|-`, shared by secrets and configs.
#[derive(clap::Args)]
pub(crate) struct CreateArgs {
    /// Label K=V (repeatable).
    #[arg(long, short = 'l', value_parser = parse_kv)]
    label: Vec<(String, String)>,
    name: String,
    /// A file, or `-` for stdin.
    file: String,
}

/// `ls`, shared by secrets and configs.
#[derive(clap::Args)]
pub(crate) struct ListArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Print only IDs.
    #[arg(short, long)]
    quiet: bool,
}

/// `inspect` and `rm`: names, IDs or unique ID prefixes.
#[derive(clap::Args)]
pub(crate) struct NamesArgs {
    #[arg(required = true)]
    names: Vec<String>,
}

#[derive(Subcommand)]
pub(crate) enum SecretCommand {
    /// Create a secret from a file, or from stdin with `-`; prints its ID.
    Create(CreateArgs),
    /// List secrets.
    Ls(ListArgs),
    /// Show secrets in detail (never their data).
    Inspect(NamesArgs),
    /// Remove secrets; refused for one in use by a service.
    Rm(NamesArgs),
    /// Store a new version of a secret; every service using it rolls to the new version.
    Rotate {
        name: String,
        /// A file, or `-` for stdin.
        file: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Create a config from a file, or from stdin with `-`; prints its ID.
    Create(CreateArgs),
    /// List configs.
    Ls(ListArgs),
    /// Show configs in detail, their data base64-encoded.
    Inspect(NamesArgs),
    /// Remove configs; refused for one in use by a service.
    Rm(NamesArgs),
}

pub(crate) async fn secret(client: &Client, command: SecretCommand) -> Result<(), ClientError> {
    let kind = SecretKind::Secret;
    match command {
        SecretCommand::Create(args) => create(client, kind, args).await,
        SecretCommand::Ls(args) => list(client, kind, args).await,
        SecretCommand::Inspect(args) => inspect(client, kind, args.names).await,
        SecretCommand::Rm(args) => remove(client, kind, args.names).await,
        SecretCommand::Rotate { name, file } => {
            let data = read_data(kind, &file)?;
            let ids = done(
                client
                    .control(AdminRequest::SecretRotate { kind, name, data })
                    .await?,
            )?;
            for id in ids {
                println!("{id}");
            }
            Ok(())
        }
    }
}

pub(crate) async fn config(client: &Client, command: ConfigCommand) -> Result<(), ClientError> {
    let kind = SecretKind::Config;
    match command {
        ConfigCommand::Create(args) => create(client, kind, args).await,
        ConfigCommand::Ls(args) => list(client, kind, args).await,
        ConfigCommand::Inspect(args) => inspect(client, kind, args.names).await,
        ConfigCommand::Rm(args) => remove(client, kind, args.names).await,
    }
}

async fn create(client: &Client, kind: SecretKind, args: CreateArgs) -> Result<(), ClientError> {
    let CreateArgs { label, name, file } = args;
    // Refused here, before reading anything: the manager checks again.
    flotilla::core::secrets::validate_name(kind.as_str(), &name)
        .map_err(|e| ClientError::Remote(e.to_string()))?;
    let data = read_data(kind, &file)?;
    let request = AdminRequest::SecretCreate {
        kind,
        name,
        labels: label.into_iter().collect(),
        data,
    };
    for id in done(client.control(request).await?)? {
        println!("{id}");
    }
    Ok(())
}

async fn list(client: &Client, kind: SecretKind, args: ListArgs) -> Result<(), ClientError> {
    let ListArgs { format, quiet } = args;
    let rows = views(client.control(AdminRequest::SecretList { kind }).await?)?;
    if quiet {
        for row in rows {
            println!("{}", row.id);
        }
    } else {
        print!("{}", render::secrets(kind, &rows, format.into(), now_ms()));
    }
    Ok(())
}

async fn inspect(client: &Client, kind: SecretKind, names: Vec<String>) -> Result<(), ClientError> {
    let rows = views(
        client
            .control(AdminRequest::SecretInspect { kind, names })
            .await?,
    )?;
    println!("{}", render::json(&rows));
    Ok(())
}

async fn remove(client: &Client, kind: SecretKind, names: Vec<String>) -> Result<(), ClientError> {
    client
        .control(AdminRequest::SecretRemove {
            kind,
            names: names.clone(),
        })
        .await?;
    // Docker prints what it was given.
    for name in names {
        println!("{name}");
    }
    Ok(())
}

fn done(reply: AdminReply) -> Result<Vec<String>, ClientError> {
    match reply {
        AdminReply::Done(ids) => Ok(ids),
        other => Err(ClientError::unexpected(other)),
    }
}

fn views(reply: AdminReply) -> Result<Vec<flotilla::net::admin::SecretView>, ClientError> {
    match reply {
        AdminReply::Secrets(rows) => Ok(rows),
        other => Err(ClientError::unexpected(other)),
    }
}

/// The data from `file` or stdin (`-`), refused here when empty or above 500 KiB (reading
/// stops just past the limit, so a huge file is never held whole).
fn read_data(kind: SecretKind, file: &str) -> Result<Plaintext, ClientError> {
    let limit = DATA_BYTES_MAX as u64 + 1;
    let mut data = Vec::new();
    let read = if file == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut data)
    } else {
        std::fs::File::open(Path::new(file)).and_then(|f| f.take(limit).read_to_end(&mut data))
    };
    read.map_err(|error| ClientError::Remote(format!("cannot read {file}: {error}")))?;
    flotilla::core::secrets::validate_data(kind.as_str(), &data)
        .map_err(|e| ClientError::Remote(e.to_string()))?;
    Ok(Plaintext(data))
}
