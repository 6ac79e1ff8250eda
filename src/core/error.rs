//! The one error type of the core layer.

use thiserror::Error;

/// Everything that can go wrong in pure cluster logic: parsing user input, validating a spec,
/// resolving a name, or checking a store command before (and while) it is applied.
///
/// Messages are written for the user: the control plane prints them after `Error: `.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoreError {
    /// A user-supplied value (size, duration, constraint, `K=V` pair ...) did not parse.
    #[error("invalid {what} {value:?}: {reason}")]
    Parse {
        /// What was being parsed, e.g. `memory size`.
        what: &'static str,
        /// The offending input.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// A service spec failed validation.
    #[error("invalid service spec: {0}")]
    InvalidSpec(String),
    /// No object matched a name, ID or ID prefix.
    #[error("no such {kind}: {query}")]
    NotFound {
        /// `node`, `service` or `task`.
        kind: &'static str,
        /// The name, ID or prefix that was looked up.
        query: String,
    },
    /// An ID prefix matched more than one object.
    #[error("{kind} {query} is ambiguous ({count} matches found)")]
    Ambiguous {
        /// `node`, `service` or `task`.
        kind: &'static str,
        /// The prefix that was looked up.
        query: String,
        /// How many objects it matched.
        count: usize,
    },
    /// `InitCluster` on a store that already holds a cluster.
    #[error("this node is already part of a swarm")]
    AlreadyInitialized,
    /// A command that needs the cluster record arrived before `InitCluster`.
    #[error("the swarm is not initialized")]
    NotInitialized,
    /// A service with that name already exists.
    #[error("service name {0:?} is already in use")]
    NameInUse(String),
    /// An object with that ID already exists.
    #[error("{kind} {id} already exists")]
    AlreadyExists {
        /// `node`, `service` or `task`.
        kind: &'static str,
        /// The duplicated ID.
        id: String,
    },
    /// Optimistic concurrency: the object changed since the caller read it.
    #[error("update out of sequence: {kind} {id} is at version {found}, expected {expected}")]
    VersionMismatch {
        /// `node` or `service`.
        kind: &'static str,
        /// The object's ID.
        id: String,
        /// The version the caller read.
        expected: u64,
        /// The version in the store.
        found: u64,
    },
    /// A published port another service already publishes (SPEC §8).
    #[error("port '{port}/{protocol}' is already in use by service '{service}'")]
    PortInUse {
        /// The published port.
        port: u16,
        /// `tcp` or `udp`.
        protocol: String,
        /// The service that publishes it.
        service: String,
    },
    /// `RemoveNode` without force on a node that is not down.
    #[error("node {0} is not down and can't be removed (use --force)")]
    NodeNotDown(String),
    /// A command that is well-formed bytes but makes no sense (empty batch, mode change ...).
    #[error("invalid command: {0}")]
    InvalidCommand(String),
    /// A request that the cluster's current state forbids (removing a manager, demoting the
    /// last one ...); the message says what to do instead.
    #[error("{0}")]
    Conflict(String),
    /// A request that can never succeed as asked (scaling a global service ...).
    #[error("{0}")]
    BadRequest(String),
    /// A snapshot could not be decoded.
    #[error("cannot decode store snapshot: {0}")]
    Snapshot(String),
}

impl CoreError {
    /// Shorthand for [`CoreError::Parse`].
    pub fn parse(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        CoreError::Parse {
            what,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
