//! Waiting for a signal, and shutting a node down cleanly.

use std::time::Duration;

use crate::actors::raft::{GetStatus, TransferLeadership};
use crate::actors::worker::StopAllTasks;
use crate::node::daemon::RunningNode;

/// Waits for SIGINT or SIGTERM.
pub async fn wait_for_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// Waits for SIGINT or SIGTERM, then shuts the node down cleanly: a leader hands leadership
/// over first, and the endpoint tells its peers it is going.
pub async fn wait_for_shutdown(node: RunningNode) {
    wait_for_signal().await;
    tracing::info!("shutting down");
    if let Some(raft) = &node.raft {
        if let Ok(status) = raft.send(GetStatus).await {
            if status.leadership.is_leader && status.voters.len() > 1 {
                raft.do_send(TransferLeadership { to: None });
                for _ in 0..20 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    match raft.send(GetStatus).await {
                        Ok(status) if !status.leadership.is_leader => break,
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
        }
    }
    let stopping = node.worker.send(StopAllTasks {
        grace_ms: SHUTDOWN_TASK_GRACE_MS,
    });
    if tokio::time::timeout(
        Duration::from_millis(SHUTDOWN_TASK_GRACE_MS + 2_000),
        stopping,
    )
    .await
    .is_err()
    {
        tracing::warn!("some tasks did not stop in time");
    }
    node.transport.shutdown().await;
}

/// Grace period for each task when the node shuts down cleanly.
pub const SHUTDOWN_TASK_GRACE_MS: u64 = 3_000;
