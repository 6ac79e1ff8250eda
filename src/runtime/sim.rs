//! The sim runtime: starts nothing, for hollow nodes and the in-process cluster harness.
//!
//! A started task "runs" after `start_delay_ms` until it is stopped, removed, or a test makes it
//! exit with [`SimRuntime::exit_task`]. IDs are `sim-<n>`. Everything is in memory, so a sim node
//! that restarts has no containers to adopt.
//!
//! Health: nothing runs, so there is nothing to probe. A task with a `--health-cmd` is reported
//! healthy at once (its check is taken to pass); any other has no check (sim images have no
//! HEALTHCHECK). A test can make one unhealthy with [`SimRuntime::set_health`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::exit_board::{next_status, ExitBoard};
use super::{
    check_spec, ContainerRuntime, ContainerSpec, ExitStatus, Health, RunningInfo, RuntimeError,
    RuntimeHandle, RuntimeKind,
};
use crate::core::rollout::HealthTest;

/// One simulated container.
struct SimTask {
    task_id: String,
    labels: BTreeMap<String, String>,
    health: Health,
}

/// In-memory containers of one node.
#[derive(Default)]
struct SimTable {
    by_runtime_id: HashMap<String, SimTask>,
    runtime_id_by_task_id: HashMap<String, String>,
}

/// A runtime that pretends; see the module docs.
pub struct SimRuntime {
    node_id: String,
    start_delay_ms: u64,
    next_id: AtomicU64,
    table: Mutex<SimTable>,
    board: ExitBoard,
}

impl SimRuntime {
    /// A sim runtime for `node_id` whose containers run `start_delay_ms` after `start`.
    pub fn new(node_id: &str, start_delay_ms: u64) -> Self {
        Self {
            node_id: node_id.to_string(),
            start_delay_ms,
            next_id: AtomicU64::new(1),
            table: Mutex::new(SimTable::default()),
            board: ExitBoard::default(),
        }
    }

    fn table(&self) -> MutexGuard<'_, SimTable> {
        // Every mutation is a pair of inserts or removes done without awaiting or panicking in
        // between, so a poisoned lock still holds a consistent table.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Test hook: make `runtime_id` exit with `exit_code`, as if it crashed (non-zero) or
    /// finished (zero). Returns false if it is unknown or already ended.
    pub fn exit_task(&self, runtime_id: &str, exit_code: i64) -> bool {
        if self.board.status(runtime_id) != Some(None) {
            return false;
        }
        self.board
            .publish(runtime_id, ExitStatus::from_code(exit_code))
    }

    /// Test hook: what `health` reports for `runtime_id` from now on. False if it is unknown.
    pub fn set_health(&self, runtime_id: &str, health: Health) -> bool {
        match self.table().by_runtime_id.get_mut(runtime_id) {
            Some(task) => {
                task.health = health;
                true
            }
            None => false,
        }
    }

    /// Number of simulated containers that currently run.
    pub fn running_count(&self) -> usize {
        self.board.pending_ids().len()
    }

    fn info(&self, runtime_id: &str, task: &SimTask) -> RunningInfo {
        let status = self.board.status(runtime_id).flatten();
        RunningInfo {
            runtime_id: runtime_id.to_string(),
            task_id: task.task_id.clone(),
            running: status.is_none(),
            exit: status,
            labels: task.labels.clone(),
        }
    }

    async fn start_sim(&self, spec: &ContainerSpec) -> Result<RuntimeHandle, RuntimeError> {
        check_spec(spec, &self.node_id)?;
        let runtime_id = format!("sim-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        {
            let mut table = self.table();
            if let Some(existing) = table.runtime_id_by_task_id.get(&spec.task_id) {
                if self.board.status(existing) == Some(None) {
                    return Err(RuntimeError::AlreadyRunning {
                        task_id: spec.task_id.clone(),
                        runtime_id: existing.clone(),
                    });
                }
            }
            table
                .runtime_id_by_task_id
                .insert(spec.task_id.clone(), runtime_id.clone());
            table.by_runtime_id.insert(
                runtime_id.clone(),
                SimTask {
                    task_id: spec.task_id.clone(),
                    labels: spec.effective_labels(),
                    health: match spec.health.test {
                        HealthTest::Shell(_) => Health::Healthy,
                        HealthTest::Inherit | HealthTest::Disabled => Health::None,
                    },
                },
            );
            self.board.track(&runtime_id);
        }
        if self.start_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.start_delay_ms)).await;
        }
        Ok(RuntimeHandle { runtime_id })
    }

    async fn wait_sim(&self, runtime_id: &str) -> Result<ExitStatus, RuntimeError> {
        let mut receiver =
            self.board
                .subscribe_existing(runtime_id)
                .ok_or_else(|| RuntimeError::NotFound {
                    runtime_id: runtime_id.to_string(),
                })?;
        Ok(next_status(&mut receiver)
            .await
            .unwrap_or_else(|| ExitStatus::unknown("removed")))
    }
}

impl ContainerRuntime for SimRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Sim
    }

    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn version(&self) -> BoxFuture<'_, Result<String, RuntimeError>> {
        async { Ok(format!("sim {}", env!("CARGO_PKG_VERSION"))) }.boxed()
    }

    fn start<'a>(
        &'a self,
        spec: &'a ContainerSpec,
    ) -> BoxFuture<'a, Result<RuntimeHandle, RuntimeError>> {
        self.start_sim(spec).boxed()
    }

    fn wait<'a>(&'a self, runtime_id: &'a str) -> BoxFuture<'a, Result<ExitStatus, RuntimeError>> {
        self.wait_sim(runtime_id).boxed()
    }

    fn stop<'a>(
        &'a self,
        runtime_id: &'a str,
        _grace_ms: u64,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        async move {
            if self.board.status(runtime_id).is_none() {
                return Err(RuntimeError::NotFound {
                    runtime_id: runtime_id.to_string(),
                });
            }
            self.board.publish(
                runtime_id,
                ExitStatus {
                    exit_code: Some(0),
                    message: "stopped".to_string(),
                },
            );
            Ok(())
        }
        .boxed()
    }

    fn remove<'a>(&'a self, runtime_id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        async move {
            let mut table = self.table();
            if let Some(task) = table.by_runtime_id.remove(runtime_id) {
                if table
                    .runtime_id_by_task_id
                    .get(&task.task_id)
                    .map(String::as_str)
                    == Some(runtime_id)
                {
                    table.runtime_id_by_task_id.remove(&task.task_id);
                }
            }
            self.board.publish(runtime_id, ExitStatus::from_signal(9));
            self.board.forget(runtime_id);
            Ok(())
        }
        .boxed()
    }

    fn find<'a>(
        &'a self,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunningInfo>, RuntimeError>> {
        async move {
            let table = self.table();
            Ok(table
                .runtime_id_by_task_id
                .get(task_id)
                .and_then(|runtime_id| {
                    table
                        .by_runtime_id
                        .get(runtime_id)
                        .map(|task| self.info(runtime_id, task))
                }))
        }
        .boxed()
    }

    fn inspect<'a>(
        &'a self,
        runtime_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunningInfo>, RuntimeError>> {
        async move {
            let table = self.table();
            Ok(table
                .by_runtime_id
                .get(runtime_id)
                .map(|task| self.info(runtime_id, task)))
        }
        .boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<RunningInfo>, RuntimeError>> {
        async move {
            let table = self.table();
            Ok(table
                .by_runtime_id
                .iter()
                .map(|(runtime_id, task)| self.info(runtime_id, task))
                .collect())
        }
        .boxed()
    }

    fn health<'a>(&'a self, runtime_id: &'a str) -> BoxFuture<'a, Result<Health, RuntimeError>> {
        async move {
            Ok(self
                .table()
                .by_runtime_id
                .get(runtime_id)
                .map_or(Health::None, |task| task.health.clone()))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(node_id: &str, task_id: &str) -> ContainerSpec {
        ContainerSpec {
            name: format!("web.1.{task_id}"),
            image: "busybox:latest".to_string(),
            command: vec!["sleep".to_string(), "30".to_string()],
            env: Vec::new(),
            labels: BTreeMap::new(),
            node_id: node_id.to_string(),
            task_id: task_id.to_string(),
            memory_limit_bytes: None,
            nano_cpus_limit: None,
            stop_grace_ms: 10_000,
            health: Default::default(),
            ports: Vec::new(),
            files: Vec::new(),
        }
    }

    #[tokio::test]
    async fn start_takes_the_configured_delay_and_then_runs() {
        let runtime = SimRuntime::new("node-a", 50);
        let started_at = tokio::time::Instant::now();
        let handle = runtime.start(&spec("node-a", "t1")).await.expect("starts");
        assert!(started_at.elapsed() >= Duration::from_millis(50));
        assert_eq!(handle.runtime_id, "sim-1");
        let info = runtime.find("t1").await.expect("find").expect("found");
        assert!(info.running);
        assert_eq!(
            info.labels
                .get(super::super::LABEL_NODE_ID)
                .map(String::as_str),
            Some("node-a")
        );
        assert_eq!(runtime.running_count(), 1);
        assert_eq!(runtime.kind(), RuntimeKind::Sim);
    }

    #[tokio::test]
    async fn exit_hook_resolves_waiters_with_the_code() {
        let runtime = SimRuntime::new("node-a", 0);
        let handle = runtime.start(&spec("node-a", "t1")).await.expect("starts");
        let waiter = runtime.wait(&handle.runtime_id);
        assert!(runtime.exit_task(&handle.runtime_id, 3));
        assert!(!runtime.exit_task(&handle.runtime_id, 4), "already ended");
        assert_eq!(waiter.await.expect("waits"), ExitStatus::from_code(3));
        let info = runtime
            .inspect(&handle.runtime_id)
            .await
            .expect("inspect")
            .expect("known");
        assert!(!info.running);
        assert_eq!(info.exit, Some(ExitStatus::from_code(3)));
    }

    #[tokio::test]
    async fn stop_and_remove_end_the_task_and_forget_it() {
        let runtime = SimRuntime::new("node-a", 0);
        let first = runtime.start(&spec("node-a", "t1")).await.expect("starts");
        let second = runtime.start(&spec("node-a", "t2")).await.expect("starts");
        runtime.stop(&first.runtime_id, 10).await.expect("stops");
        assert_eq!(
            runtime
                .wait(&first.runtime_id)
                .await
                .expect("waits")
                .exit_code,
            Some(0)
        );
        let mut listed: Vec<(String, bool)> = runtime
            .list()
            .await
            .expect("lists")
            .into_iter()
            .map(|info| (info.task_id, info.running))
            .collect();
        listed.sort();
        assert_eq!(
            listed,
            vec![("t1".to_string(), false), ("t2".to_string(), true)]
        );
        runtime.remove(&second.runtime_id).await.expect("removes");
        runtime
            .remove(&second.runtime_id)
            .await
            .expect("removing twice is fine");
        assert!(runtime.find("t2").await.expect("find").is_none());
        assert!(matches!(
            runtime.wait(&second.runtime_id).await,
            Err(RuntimeError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn refuses_duplicates_and_foreign_specs() {
        let runtime = SimRuntime::new("node-a", 0);
        let first = runtime.start(&spec("node-a", "t1")).await.expect("starts");
        assert!(matches!(
            runtime.start(&spec("node-a", "t1")).await,
            Err(RuntimeError::AlreadyRunning { .. })
        ));
        assert!(matches!(
            runtime.start(&spec("node-b", "t9")).await,
            Err(RuntimeError::ForeignNode { .. })
        ));
        assert!(runtime.exit_task(&first.runtime_id, 1));
        let again = runtime
            .start(&spec("node-a", "t1"))
            .await
            .expect("restart after exit");
        assert_ne!(again.runtime_id, first.runtime_id);
    }

    #[tokio::test]
    async fn dropped_wait_is_harmless() {
        let runtime = SimRuntime::new("node-a", 0);
        let handle = runtime.start(&spec("node-a", "t1")).await.expect("starts");
        let waited =
            tokio::time::timeout(Duration::from_millis(10), runtime.wait(&handle.runtime_id)).await;
        assert!(waited.is_err(), "still running");
        assert!(runtime.exit_task(&handle.runtime_id, 0));
        assert!(runtime
            .wait(&handle.runtime_id)
            .await
            .expect("waits")
            .is_success());
    }
}
