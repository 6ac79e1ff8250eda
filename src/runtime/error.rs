//! The runtime layer's one error type.

use std::path::PathBuf;

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `--runtime` named something other than `auto`, `docker` or `process`.
    #[error("unknown runtime {name} (expected auto, docker or process)")]
    UnknownRuntime {
        /// The name given.
        name: String,
    },

    /// The Docker Engine did not answer (socket missing, refused, or ping timed out).
    #[error("docker engine not reachable: {reason}")]
    DockerUnavailable {
        /// What went wrong.
        reason: String,
    },

    /// The image is not in the local engine; there is no registry to pull from.
    #[error("image {image} not found locally and no registry is reachable")]
    ImageNotFound {
        /// The image reference asked for.
        image: String,
    },

    /// A container with this name already exists (e.g. a retried start of the same task).
    #[error("a container named {name} already exists")]
    NameConflict {
        /// The container name.
        name: String,
    },

    /// The Docker Engine refused or failed a request.
    #[error("docker {operation} failed: {source}")]
    Docker {
        /// The operation attempted, e.g. `create` or `kill`.
        operation: &'static str,
        /// bollard's error.
        #[source]
        source: bollard::errors::Error,
    },

    /// The process runtime could not find or execute the command.
    #[error("cannot run {command}: {source}")]
    Spawn {
        /// `command[0]`.
        command: String,
        /// The OS error (e.g. not found on PATH).
        #[source]
        source: std::io::Error,
    },

    /// A spec was asked to start on a runtime of another node.
    #[error("spec is for node {spec_node_id} but this runtime acts for node {runtime_node_id}")]
    ForeignNode {
        /// The spec's node ID.
        spec_node_id: String,
        /// The runtime's node ID.
        runtime_node_id: String,
    },

    /// The spec cannot be started as given (e.g. no command on the process runtime).
    #[error("invalid container spec: {reason}")]
    InvalidSpec {
        /// What is wrong with it.
        reason: String,
    },

    /// The runtime ID is not one of this node's containers or processes.
    #[error("no container or process {runtime_id} on this node")]
    NotFound {
        /// The runtime ID asked for.
        runtime_id: String,
    },

    /// A task already has a live process or container on this node; starting a second would
    /// duplicate it.
    #[error("task {task_id} already runs as {runtime_id}")]
    AlreadyRunning {
        /// The task ID.
        task_id: String,
        /// The runtime ID of what runs.
        runtime_id: String,
    },

    /// Reading or writing the state directory failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. `write process record`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A process record on disk could not be parsed or written.
    #[error("process record {path}: {source}")]
    Record {
        /// The record file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },

    /// A process record on disk was written by a newer release.
    #[error("process record {path}: {source}")]
    Format {
        /// The record file.
        path: PathBuf,
        /// The version found and the newest this build reads.
        #[source]
        source: crate::core::format::FormatError,
    },

    /// Sending a signal failed for a reason other than the process being gone.
    #[error("signal {signal} to process group {pgid}: {source}")]
    Signal {
        /// The signal number.
        signal: i32,
        /// The process group ID.
        pgid: i32,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
