//! `flotilla swarm ...`: join tokens and autolock (SPEC §2, §9).

use std::io::{BufRead, IsTerminal, Write};

use flotilla::client::{Client, ClientError};
use flotilla::core::model::NodeRole;
use flotilla::core::secrets::Plaintext;
use flotilla::net::admin::{AdminReply, AdminRequest};

use crate::args::SwarmCommand;

/// Runs one `swarm` subcommand.
pub(crate) async fn swarm(client: &Client, command: SwarmCommand) -> Result<(), ClientError> {
    match command {
        SwarmCommand::JoinToken {
            rotate,
            quiet,
            role,
        } => join_token(client, rotate, quiet, &role).await,
        SwarmCommand::Update { autolock } => {
            let Some(enabled) = autolock else {
                println!("Swarm updated.");
                return Ok(());
            };
            let key = unlock_key(
                client
                    .control(AdminRequest::SwarmAutolock { enabled })
                    .await?,
            )?;
            println!("Swarm updated.");
            if let Some(key) = key {
                print_unlock_key(&key);
            }
            Ok(())
        }
        SwarmCommand::Unlock => {
            let key = read_unlock_key()?;
            match client
                .control(AdminRequest::SwarmUnlock {
                    key: Plaintext(key.into_bytes()),
                })
                .await?
            {
                AdminReply::Done(_) => Ok(()),
                other => Err(ClientError::unexpected(other)),
            }
        }
        SwarmCommand::UnlockKey { rotate, quiet } => {
            let reply = client
                .control(AdminRequest::SwarmUnlockKey { rotate })
                .await?;
            let Some(key) = unlock_key(reply)? else {
                return Err(ClientError::Remote("autolock is not enabled".into()));
            };
            if quiet {
                println!("{key}");
                return Ok(());
            }
            if rotate {
                println!("Successfully rotated manager unlock key.\n");
            }
            print_unlock_key(&key);
            Ok(())
        }
    }
}

/// The printed unlock key of an [`AdminReply::UnlockKey`].
fn unlock_key(reply: AdminReply) -> Result<Option<String>, ClientError> {
    match reply {
        AdminReply::UnlockKey(None) => Ok(None),
        AdminReply::UnlockKey(Some(Plaintext(bytes))) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| ClientError::Unexpected("an unlock key that is not text".into())),
        other => Err(ClientError::unexpected(other)),
    }
}

fn print_unlock_key(key: &str) {
    println!(
        "To unlock a swarm manager after it restarts, run the `flotilla swarm unlock`\ncommand and provide the following key:\n\n    {key}\n\nPlease remember to store this key in a password manager, since without it you\nwill not be able to restart the manager."
    );
}

/// One line of stdin (a prompt first when it is a terminal).
fn read_unlock_key() -> Result<String, ClientError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Please enter unlock key: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| ClientError::Remote(format!("cannot read the unlock key: {e}")))?;
    let key = line.trim().to_string();
    if key.is_empty() {
        return Err(ClientError::Remote(
            "no unlock key on stdin (e.g. `echo $KEY | flotilla swarm unlock`)".into(),
        ));
    }
    Ok(key)
}

async fn join_token(
    client: &Client,
    rotate: bool,
    quiet: bool,
    role: &str,
) -> Result<(), ClientError> {
    let role = if role == "manager" {
        NodeRole::Manager
    } else {
        NodeRole::Worker
    };
    let token = match client
        .control(AdminRequest::JoinToken { role, rotate })
        .await?
    {
        AdminReply::Token(token) => token,
        other => return Err(ClientError::unexpected(other)),
    };
    // The manager that answered: the join command names a live one.
    let manager = client.host();
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

fn role_name(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => "manager",
        NodeRole::Worker => "worker",
    }
}
