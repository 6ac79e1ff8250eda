//! A runtime that times every operation of the one it wraps and counts its failures, for the
//! node's metrics (`crate::metrics`). `wait` is not timed: it lasts as long as the task runs.

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{
    ContainerRuntime, ContainerSpec, ExitStatus, Health, RunningInfo, RuntimeError, RuntimeHandle,
    RuntimeKind,
};
use crate::metrics::NodeMetrics;

/// See the module documentation.
pub struct MeteredRuntime {
    inner: Arc<dyn ContainerRuntime>,
    metrics: NodeMetrics,
}

impl MeteredRuntime {
    /// `inner`, measured into `metrics`.
    pub fn new(inner: Arc<dyn ContainerRuntime>, metrics: NodeMetrics) -> Self {
        Self { inner, metrics }
    }

    fn timed<'a, T: Send + 'a>(
        &'a self,
        operation: &'static str,
        call: BoxFuture<'a, Result<T, RuntimeError>>,
    ) -> BoxFuture<'a, Result<T, RuntimeError>> {
        async move {
            let started = Instant::now();
            let result = call.await;
            let seconds = started.elapsed().as_secs_f64();
            self.metrics
                .runtime_operation(operation, seconds, result.is_err());
            result
        }
        .boxed()
    }
}

impl ContainerRuntime for MeteredRuntime {
    fn kind(&self) -> RuntimeKind {
        self.inner.kind()
    }
    fn node_id(&self) -> &str {
        self.inner.node_id()
    }
    fn version(&self) -> BoxFuture<'_, Result<String, RuntimeError>> {
        self.inner.version()
    }
    fn start<'a>(
        &'a self,
        spec: &'a ContainerSpec,
    ) -> BoxFuture<'a, Result<RuntimeHandle, RuntimeError>> {
        self.timed("start", self.inner.start(spec))
    }
    fn wait<'a>(&'a self, runtime_id: &'a str) -> BoxFuture<'a, Result<ExitStatus, RuntimeError>> {
        self.inner.wait(runtime_id)
    }
    fn stop<'a>(
        &'a self,
        runtime_id: &'a str,
        grace_ms: u64,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.timed("stop", self.inner.stop(runtime_id, grace_ms))
    }
    fn remove<'a>(&'a self, runtime_id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.timed("remove", self.inner.remove(runtime_id))
    }
    fn find<'a>(
        &'a self,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunningInfo>, RuntimeError>> {
        self.timed("find", self.inner.find(task_id))
    }
    fn inspect<'a>(
        &'a self,
        runtime_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<RunningInfo>, RuntimeError>> {
        self.timed("inspect", self.inner.inspect(runtime_id))
    }
    fn list(&self) -> BoxFuture<'_, Result<Vec<RunningInfo>, RuntimeError>> {
        self.timed("list", self.inner.list())
    }
    fn health<'a>(&'a self, runtime_id: &'a str) -> BoxFuture<'a, Result<Health, RuntimeError>> {
        self.timed("health", self.inner.health(runtime_id))
    }
    fn resume_health<'a>(
        &'a self,
        runtime_id: &'a str,
        spec: &'a ContainerSpec,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        self.inner.resume_health(runtime_id, spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::sim::SimRuntime;

    #[tokio::test]
    async fn operations_are_timed_and_failures_counted() {
        let metrics = NodeMetrics::default();
        let runtime = MeteredRuntime::new(Arc::new(SimRuntime::new("n1", 0)), metrics.clone());
        runtime.list().await.expect("list");
        let labels = |operation: &str| crate::metrics::RuntimeOperation {
            operation: operation.into(),
        };
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry, false);
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains("runtime_operation_seconds_count{operation=\"list\"} 1"),
            "{text}"
        );
        metrics.runtime_operation("start", 0.01, true);
        assert_eq!(
            metrics.runtime_errors.get_or_create(&labels("start")).get(),
            1
        );
        assert_eq!(
            metrics.runtime_errors.get_or_create(&labels("list")).get(),
            0
        );
    }
}
