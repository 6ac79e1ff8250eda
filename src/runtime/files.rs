//! The files a task gets from the cluster's secrets and configs (SPEC §9), as the runtimes
//! see them: plaintext held in memory only, written by the runtime into a per-task directory
//! on a tmpfs (never persistent disk) and removed with the task.
//!
//! Layout: `<root>/<node_id>/<task_id>/secrets/<target>` and
//! `<root>/<node_id>/<task_id>/configs/<file name of target>`, directories 0700, each file
//! with exactly its mode. The root is [`FILES_ROOT_DEFAULT`] (or [`FILES_ROOT_ENV`]) and must
//! be on a tmpfs or ramfs: [`write_task_files`] checks with `statfs` and refuses otherwise.

use std::collections::HashSet;
use std::ffi::CString;
use std::fmt;
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::RuntimeError;

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

/// Environment variable that moves the root of the per-task file directories (tests use it).
pub const FILES_ROOT_ENV: &str = "FLOTILLA_FILES_ROOT";

/// Root of the per-task file directories unless [`FILES_ROOT_ENV`] says otherwise: a tmpfs on
/// every Linux system with glibc's POSIX shared memory.
pub const FILES_ROOT_DEFAULT: &str = "/dev/shm/flotilla";

/// Where Docker mounts a task's secrets (`/run/secrets/<target>`, SPEC §9).
pub const CONTAINER_SECRETS_DIR: &str = "/run/secrets";

/// Mode of every directory the runtimes make for task files: only the node's user (and so a
/// process-runtime task, which runs as that user) may enter them.
const DIR_MODE: u32 = 0o700;

/// `statfs` type of tmpfs (`TMPFS_MAGIC` in `linux/magic.h`).
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// `statfs` type of ramfs (`RAMFS_MAGIC` in `linux/magic.h`).
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// The root for task files: [`FILES_ROOT_ENV`] when set and not empty, else
/// [`FILES_ROOT_DEFAULT`].
pub fn files_root_from_env() -> PathBuf {
    match std::env::var_os(FILES_ROOT_ENV) {
        Some(root) if !root.is_empty() => PathBuf::from(root),
        _ => PathBuf::from(FILES_ROOT_DEFAULT),
    }
}

/// The paths of one task's file directory, computed without touching the disk:
/// `<root>/<node_id>/<task_id>/{secrets,configs}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFilesDir {
    /// `<root>/<node_id>/<task_id>`.
    pub dir: PathBuf,
    /// `<dir>/secrets`, given to a process as `FLOTILLA_SECRETS_DIR`.
    pub secrets_dir: PathBuf,
    /// `<dir>/configs`, given to a process as `FLOTILLA_CONFIGS_DIR`.
    pub configs_dir: PathBuf,
}

impl TaskFilesDir {
    /// The directory of `task_id` on `node_id` under `root`; both IDs must be plain file names.
    pub fn new(root: &Path, node_id: &str, task_id: &str) -> Result<Self, RuntimeError> {
        check_id("node ID", node_id)?;
        check_id("task ID", task_id)?;
        let dir = root.join(node_id).join(task_id);
        Ok(Self {
            secrets_dir: dir.join("secrets"),
            configs_dir: dir.join("configs"),
            dir,
        })
    }

    /// Where `file` lives on the host: `secrets/<target>` or `configs/<file name of target>`.
    /// `file`'s target must have passed [`check_targets`].
    pub fn host_path(&self, file: &TaskFile) -> PathBuf {
        match file.kind {
            TaskFileKind::Secret => self.secrets_dir.join(&file.target),
            TaskFileKind::Config => self.configs_dir.join(host_file_name(&file.target)),
        }
    }

    /// Remove the directory and everything in it; nothing there is not an error.
    pub fn remove(&self) -> Result<(), RuntimeError> {
        remove_dir(&self.dir)
    }

    /// The environment a process-runtime task gets for its files (SPEC §9).
    pub fn env(&self) -> [(String, String); 2] {
        [
            (
                "FLOTILLA_SECRETS_DIR".to_string(),
                self.secrets_dir.display().to_string(),
            ),
            (
                "FLOTILLA_CONFIGS_DIR".to_string(),
                self.configs_dir.display().to_string(),
            ),
        ]
    }
}

impl TaskFile {
    /// Where the Docker runtime mounts the file in the container: `/run/secrets/<target>` for a
    /// secret; `/<target>`, or the target itself when absolute, for a config.
    pub fn container_path(&self) -> String {
        match self.kind {
            TaskFileKind::Secret => format!("{CONTAINER_SECRETS_DIR}/{}", self.target),
            TaskFileKind::Config if self.target.starts_with('/') => self.target.clone(),
            TaskFileKind::Config => format!("/{}", self.target),
        }
    }
}

/// How [`write_task_files`] sets the files' owners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Leave them owned by the node's user (process runtime: the task runs as that user).
    NodeUser,
    /// `chown` each file to its `uid`/`gid` when either is given (Docker runtime: a bind mount
    /// keeps the host owner). Needs root; a failed `chown` fails the write.
    FromSpec,
}

/// Check every target of `files` (SPEC §9) and that no two land on the same host file: a
/// secret's target is a plain file name; a config's is a file name or an absolute path
/// without `..`. Modes must fit in `0o777`.
pub fn check_targets(files: &[TaskFile]) -> Result<(), RuntimeError> {
    let mut seen: HashSet<(TaskFileKind, &str)> = HashSet::new();
    for file in files {
        match file.kind {
            TaskFileKind::Secret => {
                if !is_plain_file_name(&file.target) {
                    return Err(invalid(format!(
                        "secret target {:?} must be a plain file name (no '/', not '.' or '..')",
                        file.target
                    )));
                }
            }
            TaskFileKind::Config => check_config_target(&file.target)?,
        }
        if file.mode & !0o777 != 0 {
            return Err(invalid(format!(
                "mode {:o} of {:?} has bits beyond 0777",
                file.mode, file.target
            )));
        }
        if !seen.insert((file.kind, host_file_name(&file.target))) {
            return Err(invalid(format!(
                "two {} files would both be {:?} in the task's directory (target {:?})",
                kind_name(file.kind),
                host_file_name(&file.target),
                file.target
            )));
        }
    }
    Ok(())
}

/// Write `files` into the task's directory under `root`, which must be on a tmpfs or ramfs:
/// `secrets/` and `configs/` (both made, mode 0700) hold each file with exactly its mode,
/// whatever the umask. `Ok(None)` and nothing made when there are no files.
///
/// A directory left from an earlier attempt of the same task is an error: the caller decides
/// whether it is stale ([`remove_task_files`]) or still in use. On any failure the directory
/// is removed again, so no half-written task directory stays behind.
pub fn write_task_files(
    root: &Path,
    node_id: &str,
    task_id: &str,
    files: &[TaskFile],
    ownership: Ownership,
) -> Result<Option<TaskFilesDir>, RuntimeError> {
    if files.is_empty() {
        return Ok(None);
    }
    check_targets(files)?;
    let dir = TaskFilesDir::new(root, node_id, task_id)?;
    check_in_memory(nearest_existing(root))?;
    let node_dir = root.join(node_id);
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(&node_dir)
        .map_err(|source| io_error("create task files directory", &node_dir, source))?;
    make_dir(&dir.dir)?;
    let written = fill_task_dir(&dir, files, ownership);
    if let Err(error) = written {
        if let Err(cleanup) = remove_dir(&dir.dir) {
            tracing::warn!(%cleanup, "could not remove a half-written task files directory");
        }
        return Err(error);
    }
    Ok(Some(dir))
}

/// Remove the task's directory and everything in it; nothing there is not an error.
pub fn remove_task_files(root: &Path, node_id: &str, task_id: &str) -> Result<(), RuntimeError> {
    TaskFilesDir::new(root, node_id, task_id)?.remove()
}

/// Everything after the task directory itself was made (and so owned by this attempt).
fn fill_task_dir(
    dir: &TaskFilesDir,
    files: &[TaskFile],
    ownership: Ownership,
) -> Result<(), RuntimeError> {
    // Checked again where the files go: a symlink or a mount under the root must not lead
    // them onto a disk.
    check_in_memory(&dir.dir)?;
    make_dir(&dir.secrets_dir)?;
    make_dir(&dir.configs_dir)?;
    for file in files {
        let path = dir.host_path(file);
        write_file(&path, file)?;
        if ownership == Ownership::FromSpec {
            chown_from_spec(&path, file)?;
        }
    }
    Ok(())
}

fn write_file(path: &Path, file: &TaskFile) -> Result<(), RuntimeError> {
    let mut handle = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(file.mode)
        .open(path)
        .map_err(|source| io_error("create task file", path, source))?;
    // The umask narrowed the mode given to open(2): set the exact one.
    handle
        .set_permissions(Permissions::from_mode(file.mode))
        .map_err(|source| io_error("set mode of task file", path, source))?;
    handle
        .write_all(&file.data)
        .map_err(|source| io_error("write task file", path, source))
}

fn chown_from_spec(path: &Path, file: &TaskFile) -> Result<(), RuntimeError> {
    if file.uid.is_empty() && file.gid.is_empty() {
        return Ok(());
    }
    // An empty one of the two is root (SPEC §9: empty is root).
    let uid = parse_id("uid", &file.uid, &file.target)?;
    let gid = parse_id("gid", &file.gid, &file.target)?;
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|source| RuntimeError::Io {
        action: "chown task file (needs root: a bind mount keeps the host owner)",
        path: path.to_path_buf(),
        source,
    })
}

fn parse_id(field: &str, value: &str, target: &str) -> Result<u32, RuntimeError> {
    if value.is_empty() {
        return Ok(0);
    }
    value.parse().map_err(|_| {
        invalid(format!(
            "{field} {value:?} of {target:?} is not a numeric ID"
        ))
    })
}

/// Refuse unless `path` is on a tmpfs or ramfs, so no secret ever reaches persistent disk.
fn check_in_memory(path: &Path) -> Result<(), RuntimeError> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        invalid(format!(
            "task files root {} contains a NUL byte",
            path.display()
        ))
    })?;
    // SAFETY: `statfs` only writes into the zeroed struct we own; the path is NUL-terminated.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stats) } != 0 {
        return Err(io_error(
            "check filesystem of task files root",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    #[allow(clippy::unnecessary_cast)] // `f_type`'s width differs between architectures.
    let fs_type = stats.f_type as i64;
    if fs_type == TMPFS_MAGIC || fs_type == RAMFS_MAGIC {
        return Ok(());
    }
    Err(RuntimeError::Io {
        action: "refuse to write secrets and configs to",
        path: path.to_path_buf(),
        source: std::io::Error::other(format!(
            "not a tmpfs or ramfs (filesystem type {fs_type:#x}); secrets must never reach \
             persistent disk: point {FILES_ROOT_ENV} at a tmpfs (default {FILES_ROOT_DEFAULT})"
        )),
    })
}

/// `path` or its nearest ancestor that exists: the filesystem a directory made there lands on.
fn nearest_existing(path: &Path) -> &Path {
    path.ancestors()
        .find(|ancestor| ancestor.exists())
        .unwrap_or(Path::new("/"))
}

fn make_dir(path: &Path) -> Result<(), RuntimeError> {
    DirBuilder::new()
        .mode(DIR_MODE)
        .create(path)
        .map_err(|source| io_error("create task files directory", path, source))?;
    std::fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
        .map_err(|source| io_error("set mode of task files directory", path, source))
}

fn remove_dir(path: &Path) -> Result<(), RuntimeError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(io_error("remove task files directory", path, source)),
    }
}

fn check_config_target(target: &str) -> Result<(), RuntimeError> {
    if is_plain_file_name(target) {
        return Ok(());
    }
    let path = Path::new(target);
    let absolute_without_dot_dot = path.is_absolute()
        && !target.ends_with('/')
        && !target.contains('\0')
        && path.components().all(|part| part != Component::ParentDir)
        && path.file_name().is_some();
    if absolute_without_dot_dot {
        return Ok(());
    }
    Err(invalid(format!(
        "config target {target:?} must be a file name or an absolute file path without '..'"
    )))
}

/// The file name a target has in the task's directory (for an absolute config target, its
/// last component).
fn host_file_name(target: &str) -> &str {
    target.rsplit('/').next().unwrap_or(target)
}

fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

fn check_id(what: &str, id: &str) -> Result<(), RuntimeError> {
    if is_plain_file_name(id) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {id:?} cannot name a task files directory"
        )))
    }
}

fn kind_name(kind: TaskFileKind) -> &'static str {
    match kind {
        TaskFileKind::Secret => "secret",
        TaskFileKind::Config => "config",
    }
}

fn invalid(reason: String) -> RuntimeError {
    RuntimeError::InvalidSpec { reason }
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> RuntimeError {
    RuntimeError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(kind: TaskFileKind, target: &str, mode: u32, data: &[u8]) -> TaskFile {
        TaskFile {
            kind,
            target: target.to_string(),
            uid: String::new(),
            gid: String::new(),
            mode,
            data: Arc::new(data.to_vec()),
        }
    }

    fn shm_root() -> Option<tempfile::TempDir> {
        match tempfile::Builder::new()
            .prefix("flotilla-files-")
            .tempdir_in("/dev/shm")
        {
            Ok(root) => Some(root),
            Err(error) => {
                eprintln!("note: skipping, no /dev/shm: {error}");
                None
            }
        }
    }

    #[test]
    fn targets_are_file_names_or_absolute_config_paths() {
        let good = [
            file(TaskFileKind::Secret, "db_pass", 0o400, b"x"),
            file(TaskFileKind::Config, "app.conf", 0o444, b"x"),
            file(TaskFileKind::Config, "/etc/nginx/nginx.conf", 0o444, b"x"),
        ];
        assert!(check_targets(&good).is_ok());
        for (kind, target) in [
            (TaskFileKind::Secret, ""),
            (TaskFileKind::Secret, "."),
            (TaskFileKind::Secret, ".."),
            (TaskFileKind::Secret, "a/b"),
            (TaskFileKind::Secret, "/etc/passwd"),
            (TaskFileKind::Config, "etc/app.conf"),
            (TaskFileKind::Config, "/etc/../root/x"),
            (TaskFileKind::Config, "/etc/"),
            (TaskFileKind::Config, "/"),
            (TaskFileKind::Config, ".."),
        ] {
            let error = check_targets(&[file(kind, target, 0o444, b"x")]).err();
            let message = error.map(|error| error.to_string()).unwrap_or_default();
            assert!(
                message.contains(&format!("{target:?}")),
                "{kind:?} target {target:?} should be refused by name, got {message:?}"
            );
        }
    }

    #[test]
    fn refuses_two_files_with_one_host_name_and_wide_modes() {
        let clash = [
            file(TaskFileKind::Config, "/etc/a/x.conf", 0o444, b"1"),
            file(TaskFileKind::Config, "/etc/b/x.conf", 0o444, b"2"),
        ];
        assert!(check_targets(&clash).is_err());
        let same_name_other_kind = [
            file(TaskFileKind::Secret, "x", 0o444, b"1"),
            file(TaskFileKind::Config, "x", 0o444, b"2"),
        ];
        assert!(check_targets(&same_name_other_kind).is_ok());
        assert!(check_targets(&[file(TaskFileKind::Secret, "s", 0o4755, b"1")]).is_err());
    }

    #[test]
    fn container_paths_follow_the_spec() {
        let secret = file(TaskFileKind::Secret, "db_pass", 0o444, b"");
        let relative = file(TaskFileKind::Config, "app.conf", 0o444, b"");
        let absolute = file(TaskFileKind::Config, "/etc/app.conf", 0o444, b"");
        assert_eq!(secret.container_path(), "/run/secrets/db_pass");
        assert_eq!(relative.container_path(), "/app.conf");
        assert_eq!(absolute.container_path(), "/etc/app.conf");
    }

    #[test]
    fn writes_exact_modes_and_removes_idempotently() {
        let Some(root) = shm_root() else { return };
        let files = [
            file(TaskFileKind::Secret, "db_pass", 0o400, b"s3cret"),
            file(TaskFileKind::Config, "/etc/app.conf", 0o666, b"port=1"),
        ];
        // 0666 is wider than any usual umask lets open(2) make: only an explicit chmod gets it.
        let written = write_task_files(root.path(), "n1", "t1", &files, Ownership::NodeUser);
        let dir = written.expect("writes").expect("has files");
        let mode = |path: &Path| {
            std::fs::metadata(path)
                .map(|meta| meta.permissions().mode() & 0o7777)
                .ok()
        };
        assert_eq!(dir.dir, root.path().join("n1").join("t1"));
        assert_eq!(mode(&dir.secrets_dir.join("db_pass")), Some(0o400));
        assert_eq!(mode(&dir.configs_dir.join("app.conf")), Some(0o666));
        assert_eq!(mode(&dir.dir), Some(0o700));
        assert_eq!(mode(&dir.secrets_dir), Some(0o700));
        assert_eq!(
            std::fs::read(dir.secrets_dir.join("db_pass"))
                .ok()
                .as_deref(),
            Some(&b"s3cret"[..])
        );
        // A second write of the same task finds the directory and refuses.
        assert!(write_task_files(root.path(), "n1", "t1", &files, Ownership::NodeUser).is_err());
        assert!(
            dir.dir.exists(),
            "a refused rewrite leaves the first one alone"
        );
        remove_task_files(root.path(), "n1", "t1").expect("removes");
        assert!(!dir.dir.exists());
        remove_task_files(root.path(), "n1", "t1").expect("removing twice is fine");
    }

    #[test]
    fn a_failed_write_leaves_no_directory() {
        let Some(root) = shm_root() else { return };
        let mut bad_owner = file(TaskFileKind::Secret, "second", 0o400, b"2");
        bad_owner.uid = "nobody".to_string();
        let files = [file(TaskFileKind::Secret, "first", 0o400, b"1"), bad_owner];
        let error = write_task_files(root.path(), "n1", "t1", &files, Ownership::FromSpec)
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(error.contains("\"nobody\""), "{error}");
        assert!(!root.path().join("n1").join("t1").exists());
    }

    #[test]
    fn no_files_make_no_directory() {
        let Some(root) = shm_root() else { return };
        let written = write_task_files(root.path(), "n1", "t1", &[], Ownership::NodeUser);
        assert!(matches!(written, Ok(None)));
        assert!(!root.path().join("n1").exists());
    }

    #[test]
    fn refuses_a_root_on_persistent_disk() {
        let Ok(root) = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")) else {
            return;
        };
        if check_in_memory(root.path()).is_ok() {
            eprintln!("note: skipping, the source tree is on a tmpfs here");
            return;
        }
        let files = [file(TaskFileKind::Secret, "db_pass", 0o400, b"s3cret")];
        let error = write_task_files(root.path(), "n1", "t1", &files, Ownership::NodeUser)
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(error.contains("not a tmpfs"), "{error}");
        assert!(!root.path().join("n1").exists(), "nothing written");
    }

    #[test]
    fn debug_hides_the_data() {
        let secret = file(TaskFileKind::Secret, "db_pass", 0o400, b"s3cret");
        let shown = format!("{secret:?}");
        assert!(!shown.contains("s3cret"));
        assert!(shown.contains("<6 bytes>"));
    }
}
