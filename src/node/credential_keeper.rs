//! Renewed credentials, kept: written atomically to the state directory, then swapped into the
//! node's endpoint for every new connection. The worker's renewal hands them here
//! ([`CredentialsRenewed`]).

use std::path::PathBuf;

use actix::prelude::*;

use crate::actors::worker::CredentialsRenewed;
use crate::net::transport::Transport;
use crate::node::state::{self, CREDENTIALS_FILE};

/// Keeps renewed credentials (see the module documentation).
pub struct CredentialKeeper {
    state_dir: PathBuf,
    transport: Transport,
}

impl CredentialKeeper {
    /// A keeper for the node with `state_dir` and endpoint `transport`.
    pub fn new(state_dir: PathBuf, transport: Transport) -> Self {
        Self {
            state_dir,
            transport,
        }
    }
}

impl Actor for CredentialKeeper {
    type Context = Context<Self>;
}

impl Handler<CredentialsRenewed> for CredentialKeeper {
    type Result = ();

    fn handle(
        &mut self,
        CredentialsRenewed(credentials): CredentialsRenewed,
        _: &mut Context<Self>,
    ) {
        // On disk first: a restart after the swap must not come back with the old certificate.
        if let Err(error) = state::write_toml(&self.state_dir.join(CREDENTIALS_FILE), &credentials)
        {
            tracing::error!(%error, "cannot keep the renewed certificate; the old one stays in use");
            return;
        }
        match self.transport.reload_credentials(&credentials) {
            Ok(()) => tracing::info!("renewed certificate in use for new connections"),
            Err(error) => tracing::error!(%error, "cannot use the renewed certificate"),
        }
    }
}
