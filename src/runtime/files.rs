//! The files a task gets from the cluster's secrets and configs (SPEC §9), as the runtimes
//! see them: plaintext held in memory only, written by the runtime into a per-task directory
//! on a tmpfs (never persistent disk) and removed with the task.

use std::fmt;
use std::sync::Arc;

/// Whether a file is a secret (`/run/secrets/<target>`, `FLOTILLA_SECRETS_DIR`) or a config
/// (`/<target>` or its absolute target, `FLOTILLA_CONFIGS_DIR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskFileKind {
    /// From `--secret`.
    Secret,
    /// From `--config`.
    Config,
}

/// One file of one task. `Debug` never shows the data.
#[derive(Clone, PartialEq, Eq)]
pub struct TaskFile {
    /// Secret or config.
    pub kind: TaskFileKind,
    /// Secrets: a file name under `/run/secrets`; configs: a file name (`/<target>`) or an
    /// absolute path in the container. The process runtime uses the file name.
    pub target: String,
    /// Owner user ID (Docker runtime); empty is root.
    pub uid: String,
    /// Owner group ID (Docker runtime); empty is root.
    pub gid: String,
    /// File mode (`0444` unless given).
    pub mode: u32,
    /// The plaintext: shared, never copied per container, never logged.
    pub data: Arc<Vec<u8>>,
}

impl fmt::Debug for TaskFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskFile")
            .field("kind", &self.kind)
            .field("target", &self.target)
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .finish()
    }
}
