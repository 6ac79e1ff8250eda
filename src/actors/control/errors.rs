//! How control failures reach the CLI: every error becomes a [`WireError`] with a kind the
//! CLI maps to its message and exit status.

use actix::MailboxError;

use crate::actors::raft::RaftError;
use crate::core::CoreError;
use crate::net::message::{ErrorKind, WireError};

/// The error a caller sees for a failed proposal or read.
pub fn wire_error(error: RaftError) -> WireError {
    let kind = match &error {
        RaftError::NoQuorum | RaftError::NotLeader { .. } | RaftError::LeadershipLost => {
            ErrorKind::NoQuorum
        }
        RaftError::Rejected(core) => core_error_kind(core),
        RaftError::Internal(_) => ErrorKind::Internal,
    };
    WireError::new(kind, error.to_string())
}

fn core_error_kind(error: &CoreError) -> ErrorKind {
    match error {
        CoreError::NotFound { .. } => ErrorKind::NotFound,
        CoreError::NameInUse(_)
        | CoreError::PortInUse { .. }
        | CoreError::AlreadyInitialized
        | CoreError::Conflict(_) => ErrorKind::Conflict,
        _ => ErrorKind::BadRequest,
    }
}

/// A core error as the CLI sees it.
pub(super) fn core(error: CoreError) -> WireError {
    WireError::new(core_error_kind(&error), error.to_string())
}

pub(super) fn no_leader() -> WireError {
    WireError::new(
        ErrorKind::NoQuorum,
        "no quorum: no manager is leader right now (are a majority of managers up and reachable?)",
    )
}

pub(super) fn mailbox(error: MailboxError) -> WireError {
    WireError::new(
        ErrorKind::Internal,
        format!("manager actor unavailable: {error}"),
    )
}
