//! The process runtime's records on disk: `<state_dir>/processes/<task_id>.json` (what was
//! started, with PID and start time, for adoption after a restart) and the task logs
//! `<state_dir>/tasks/<task_id>.{out,err}`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RuntimeError;
use crate::core::format;

/// What is kept on disk about one started process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessRecord {
    /// The task ID; also the record's file name.
    pub task_id: String,
    /// The node that started it.
    pub node_id: String,
    /// Container name from the spec.
    pub name: String,
    /// Image from the spec (recorded, not used).
    pub image: String,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// OS process ID, also its process group ID.
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat` when started: tells a reused PID apart.
    pub start_time_ticks: u64,
    /// The spec's labels.
    pub labels: BTreeMap<String, String>,
    /// The record's [`format::PROCESS_RECORD`] version (records of the first release have
    /// none: version 1, the same fields).
    #[serde(default = "first_release_version")]
    pub format_version: u8,
}

fn first_release_version() -> u8 {
    format::LEGACY_VERSION
}

impl ProcessRecord {
    /// The exit board's key: the PID alone could name a later process after reuse.
    pub(crate) fn board_key(&self) -> String {
        format!("{}@{}", self.pid, self.start_time_ticks)
    }
}

/// The records and logs of one node's process runtime.
pub(crate) struct RecordStore {
    node_id: String,
    records_dir: PathBuf,
    logs_dir: PathBuf,
}

impl RecordStore {
    /// Open (creating the directories) the store of `node_id` under `state_dir`.
    pub(crate) fn open(node_id: &str, state_dir: &Path) -> Result<Self, RuntimeError> {
        let store = Self {
            node_id: node_id.to_string(),
            records_dir: state_dir.join("processes"),
            logs_dir: state_dir.join("tasks"),
        };
        for dir in [&store.records_dir, &store.logs_dir] {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| RuntimeError::Io {
                    action: "create directory",
                    path: dir.clone(),
                    source,
                })?;
        }
        Ok(store)
    }

    /// Path of the stdout log of `task_id`.
    pub(crate) fn stdout_path(&self, task_id: &str) -> PathBuf {
        self.logs_dir.join(format!("{task_id}.out"))
    }

    /// Path of the stderr log of `task_id`.
    pub(crate) fn stderr_path(&self, task_id: &str) -> PathBuf {
        self.logs_dir.join(format!("{task_id}.err"))
    }

    fn record_path(&self, task_id: &str) -> PathBuf {
        self.records_dir.join(format!("{task_id}.json"))
    }

    /// Create (truncating) the stdout and stderr logs of `task_id`.
    pub(crate) fn create_logs(&self, task_id: &str) -> Result<(File, File), RuntimeError> {
        Ok((
            create_log(&self.stdout_path(task_id))?,
            create_log(&self.stderr_path(task_id))?,
        ))
    }

    /// Read the record of `task_id`, if there is one for this node.
    pub(crate) fn read(&self, task_id: &str) -> Result<Option<ProcessRecord>, RuntimeError> {
        let path = self.record_path(task_id);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RuntimeError::Io {
                    action: "read process record",
                    path,
                    source,
                })
            }
        };
        // The version first: a newer release's record may not parse as this one's.
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|source| RuntimeError::Record {
                path: path.clone(),
                source,
            })?;
        if let Some(found) = value.get("format_version") {
            let found = found
                .as_u64()
                .map_or(u8::MAX, |n| u8::try_from(n).unwrap_or(u8::MAX));
            format::PROCESS_RECORD
                .check(found)
                .map_err(|source| RuntimeError::Format {
                    path: path.clone(),
                    source,
                })?;
        }
        let record: ProcessRecord = serde_json::from_value(value)
            .map_err(|source| RuntimeError::Record { path, source })?;
        Ok((record.node_id == self.node_id).then_some(record))
    }

    /// Every readable record of this node. Unreadable ones are logged and skipped so one
    /// corrupt file cannot block orphan clean-up of the rest.
    pub(crate) fn read_all(&self) -> Result<Vec<ProcessRecord>, RuntimeError> {
        let entries = std::fs::read_dir(&self.records_dir).map_err(|source| RuntimeError::Io {
            action: "list process records",
            path: self.records_dir.clone(),
            source,
        })?;
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            let Some(task_id) = file_name
                .to_str()
                .and_then(|name| name.strip_suffix(".json"))
                .filter(|task_id| check_task_file_name(task_id).is_ok())
            else {
                continue;
            };
            match self.read(task_id) {
                Ok(Some(record)) => records.push(record),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "skipping unreadable process record"),
            }
        }
        Ok(records)
    }

    /// Write `record` atomically.
    pub(crate) fn write(&self, record: &ProcessRecord) -> Result<(), RuntimeError> {
        let path = self.record_path(&record.task_id);
        let temporary = self
            .records_dir
            .join(format!(".{}.json.tmp", record.task_id));
        let bytes = serde_json::to_vec_pretty(record).map_err(|source| RuntimeError::Record {
            path: path.clone(),
            source,
        })?;
        // Write then rename so a crash never leaves a half-written record to adopt from.
        std::fs::write(&temporary, bytes)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|source| RuntimeError::Io {
                action: "write process record",
                path,
                source,
            })
    }

    /// Delete the record and logs of `task_id`; missing files are fine.
    pub(crate) fn remove(&self, task_id: &str) -> Result<(), RuntimeError> {
        for path in [
            self.record_path(task_id),
            self.stdout_path(task_id),
            self.stderr_path(task_id),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(RuntimeError::Io {
                        action: "remove",
                        path,
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}

/// Task IDs become file names: refuse anything that could escape the state directory.
pub(crate) fn check_task_file_name(task_id: &str) -> Result<(), RuntimeError> {
    let safe = !task_id.is_empty()
        && !task_id.starts_with('.')
        && task_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if safe {
        Ok(())
    } else {
        Err(RuntimeError::InvalidSpec {
            reason: format!("task ID {task_id:?} is not a safe file name"),
        })
    }
}

/// A task's log, owner-only (0600, SPEC §4): output may hold anything the task prints.
fn create_log(path: &Path) -> Result<std::fs::File, RuntimeError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| RuntimeError::Io {
            action: "create log",
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_that_could_escape_are_refused() {
        assert!(check_task_file_name("abc-123_x.y").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "..", "a b"] {
            assert!(check_task_file_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn records_round_trip_and_belong_to_one_node() {
        let state_dir = tempfile::tempdir().expect("temporary dir");
        let store = RecordStore::open("node-a", state_dir.path()).expect("open");
        let record = ProcessRecord {
            task_id: "t1".to_string(),
            node_id: "node-a".to_string(),
            name: "web.1.t1".to_string(),
            image: "busybox".to_string(),
            command: vec!["sleep".to_string(), "1".to_string()],
            pid: 42,
            start_time_ticks: 7,
            labels: BTreeMap::new(),
            format_version: format::PROCESS_RECORD.current,
        };
        store.write(&record).expect("write");
        assert_eq!(store.read("t1").expect("read"), Some(record.clone()));
        assert_eq!(store.read_all().expect("read all"), vec![record]);
        let other = RecordStore::open("node-b", state_dir.path()).expect("open");
        assert_eq!(other.read("t1").expect("read"), None);
        std::fs::write(state_dir.path().join("processes/bad.json"), b"{").expect("write");
        assert!(store.read("bad").is_err());
        assert_eq!(store.read_all().expect("skips the bad one").len(), 1);
        // A record of the first release (no version) reads; a newer release's is refused.
        let legacy = r#"{"task_id":"t2","node_id":"node-a","name":"n","image":"i",
            "command":["sleep"],"pid":43,"start_time_ticks":8,"labels":{}}"#;
        std::fs::write(state_dir.path().join("processes/t2.json"), legacy).expect("write");
        let read = store.read("t2").expect("legacy reads").expect("ours");
        assert_eq!(read.format_version, format::LEGACY_VERSION);
        let newer = r#"{"format_version":9,"shape":"unknown"}"#;
        std::fs::write(state_dir.path().join("processes/t3.json"), newer).expect("write");
        let error = store.read("t3").expect_err("newer refused");
        assert!(error.to_string().contains("format version 9"), "{error}");
        store.remove("t1").expect("remove");
        store.remove("t1").expect("remove twice");
        assert_eq!(store.read("t1").expect("read"), None);
    }
}
