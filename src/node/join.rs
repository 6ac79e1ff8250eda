//! `flotilla-node join`: a certificate from a manager of an existing cluster, then the node.

use std::net::SocketAddr;
use std::time::Duration;

use crate::core::secrets::seal::KEY_BYTES;
use crate::core::secrets::{DataKey, Keyring, Plaintext};
use crate::net::message::{JoinRequest, Message as WireMessage};
use crate::net::tls::{self, Credentials, Role};
use crate::net::token::{self, JoinToken};
use crate::net::transport;
use crate::node::compose::run;
use crate::node::daemon::{DaemonError, NodeOptions, RunningNode};
use crate::node::keys;
use crate::node::raft_start::{start_replica, RaftStart};
use crate::node::settings::{create_state_dir, machine_hostname, refuse_existing, settings_from};
use crate::node::state::{self, CREDENTIALS_FILE, NODE_FILE};

/// Joins the cluster at `manager` with `token_text`, writes the state directory, and starts.
pub async fn join(
    options: NodeOptions,
    token_text: &str,
    manager: SocketAddr,
) -> Result<RunningNode, DaemonError> {
    refuse_existing(&options.state_dir)?;
    crate::node::metrics::check_explicit(options.metrics_listen)?;
    let token = JoinToken::parse(token_text)?;
    let (key_pem, csr_der) = tls::generate_request()?;
    let (client_config, verifier) = tls::pinned_client_config(token.ca_digest)?;
    let hostname = options.hostname.clone().unwrap_or_else(machine_hostname);
    let advertise = options.advertise_addr.unwrap_or(options.listen);
    let request = WireMessage::Join(JoinRequest {
        secret: token.secret.clone(),
        csr_der,
        hostname,
        advertise_addr: advertise.to_string(),
    });
    let bind: SocketAddr = SocketAddr::new(options.listen.ip(), 0);
    let reply = transport::request_with(
        bind,
        client_config,
        manager,
        request,
        Duration::from_secs(10),
    )
    .await;
    if verifier.saw_mismatch() {
        return Err(token::TokenError::CaMismatch.into());
    }
    let accepted = match reply {
        Ok(WireMessage::JoinAccepted(accepted)) => accepted,
        Ok(other) => {
            return Err(DaemonError::Cluster(format!(
                "unexpected answer to join: {}",
                other.kind_name()
            )))
        }
        Err(transport::TransportError::Remote(error)) => {
            return Err(DaemonError::Cluster(error.message))
        }
        Err(error) => return Err(error.into()),
    };
    let credentials = Credentials {
        cert_pem: accepted.cert_pem,
        key_pem,
        ca_pem: accepted.ca_pem,
    };
    let identity = credentials.identity()?;
    if identity.node_id != accepted.node_id || identity.role != accepted.role {
        return Err(DaemonError::Cluster(
            "the certificate does not match the join answer".into(),
        ));
    }
    let mut managers = accepted.manager_addrs;
    if !managers.contains(&manager.to_string()) {
        managers.push(manager.to_string());
    }
    let settings = settings_from(&options, accepted.node_id, accepted.role, managers);
    let keyring = joined_keyring(accepted.role, accepted.data_key)?;
    create_state_dir(&options.state_dir)?;
    if let Some(key) = keyring.data_key() {
        // Wrapped by this manager's own new key-encryption key. A cluster under autolock
        // rewraps it by the unlock key as soon as this manager applies the store.
        keys::save(&options.state_dir, &key)?;
    }
    state::write_toml(&options.state_dir.join(CREDENTIALS_FILE), &credentials)?;
    let manager_parts = if accepted.role == Role::Manager {
        Some(start_replica(
            &options.state_dir,
            &settings.node_id,
            RaftStart::Join,
        )?)
    } else {
        None
    };
    state::write_toml(&options.state_dir.join(NODE_FILE), &settings)?;
    run(
        settings,
        &options.state_dir,
        credentials,
        manager_parts,
        keyring,
        options.enable_chaos,
        None,
    )
    .await
}

/// The keyring of a node that joined as `role` with `data_key` from the leader: a worker's is
/// empty whatever came; a manager without one (the leader's state directory predates
/// secrets) starts with an empty one too, and says so.
fn joined_keyring(role: Role, data_key: Option<Plaintext>) -> Result<Keyring, DaemonError> {
    if role != Role::Manager {
        return Ok(Keyring::new());
    }
    let Some(Plaintext(bytes)) = data_key else {
        tracing::warn!(
            "the leader sent no data key (its state directory predates secrets): this manager cannot create or deliver secrets"
        );
        return Ok(Keyring::new());
    };
    let bytes: [u8; KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| {
        DaemonError::Cluster(format!(
            "the join answer's data key holds {} bytes, not {KEY_BYTES}",
            bytes.len()
        ))
    })?;
    Ok(Keyring::with_key(DataKey::from_bytes(bytes)))
}
