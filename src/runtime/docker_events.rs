//! The Docker runtime's one `docker events` subscription: `die` events of this node's
//! containers, published to the exit board, replayed across reconnects with `since`; and
//! `destroy` events, after which the task's secrets and configs directory goes too when no
//! container of the task is left (a container removed by hand, not through the runtime).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::EventsOptionsBuilder;
use bollard::Docker;
use futures::StreamExt;

use super::docker_status::{ended_status, status_code};
use super::exit_board::ExitBoard;
use super::files::remove_task_files;
use super::{ExitStatus, LABEL_NODE_ID, LABEL_TASK_ID};

/// Pause before re-subscribing to `docker events` after the stream broke, in ms.
const EVENTS_RECONNECT_DELAY_MS: u64 = 500;
/// How far back the first events subscription replays, in seconds (the API's resolution),
/// so a container that died while the subscription was being set up is not missed.
const EVENTS_REPLAY_S: i64 = 1;

/// Follow `die` events of this node's containers for as long as the runtime lives, publishing
/// each to the board. Reconnects after errors, replaying from the last event seen.
pub(crate) async fn follow_events(
    docker: Docker,
    node_id: String,
    board: Arc<ExitBoard>,
    files_root: Arc<RwLock<PathBuf>>,
) {
    let mut since_s = unix_now_s() - EVENTS_REPLAY_S;
    let mut reconnecting = false;
    loop {
        let mut filters = HashMap::new();
        filters.insert("type", vec!["container".to_string()]);
        filters.insert("event", vec!["die".to_string(), "destroy".to_string()]);
        filters.insert("label", vec![format!("{LABEL_NODE_ID}={node_id}")]);
        let options = EventsOptionsBuilder::default()
            .since(&since_s.to_string())
            .filters(&filters)
            .build();
        let mut events = docker.events(Some(options));
        if reconnecting {
            // The replay covers the gap, unless the engine itself restarted and lost it:
            // settle every waiter whose container no longer runs.
            settle_pending(&docker, &board).await;
        }
        while let Some(event) = events.next().await {
            match event {
                Ok(message) => {
                    if let Some(time_s) = message.time {
                        since_s = since_s.max(time_s);
                    }
                    let Some(actor) = message.actor else { continue };
                    let Some(container_id) = actor.id else {
                        continue;
                    };
                    if message.action.as_deref() == Some("destroy") {
                        let task_id = actor
                            .attributes
                            .as_ref()
                            .and_then(|attributes| attributes.get(LABEL_TASK_ID));
                        if let Some(task_id) = task_id {
                            let root = read_root(&files_root);
                            remove_files_of_destroyed(&docker, &root, &node_id, task_id).await;
                        }
                        continue;
                    }
                    let exit_code = actor
                        .attributes
                        .as_ref()
                        .and_then(|attributes| attributes.get("exitCode"))
                        .and_then(|code| code.parse::<i64>().ok());
                    let status = match exit_code {
                        Some(code) => ExitStatus::from_code(code),
                        None => ExitStatus::unknown("died; exit code not reported"),
                    };
                    board.publish(&container_id, status);
                }
                Err(error) => {
                    tracing::warn!(%error, "docker events stream failed; reconnecting");
                    break;
                }
            }
        }
        reconnecting = true;
        tokio::time::sleep(Duration::from_millis(EVENTS_RECONNECT_DELAY_MS)).await;
    }
}

/// The files root as it is now (tests move it after the runtime started).
pub(crate) fn read_root(root: &RwLock<PathBuf>) -> PathBuf {
    root.read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}

/// Removes a destroyed container's task files unless another container of the task exists
/// (a restart in place made it before this event arrived; its mounts use the directory).
async fn remove_files_of_destroyed(
    docker: &Docker,
    root: &std::path::Path,
    node_id: &str,
    task_id: &str,
) {
    let mut filters = HashMap::new();
    filters.insert(
        "label",
        vec![
            format!("{LABEL_NODE_ID}={node_id}"),
            format!("{LABEL_TASK_ID}={task_id}"),
        ],
    );
    let options = bollard::query_parameters::ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    match docker.list_containers(Some(options)).await {
        Ok(left) if left.is_empty() => {
            if let Err(error) = remove_task_files(root, node_id, task_id) {
                tracing::warn!(%error, task_id, "could not remove a destroyed task's files");
            }
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, task_id, "list after destroy failed; files kept"),
    }
}

async fn settle_pending(docker: &Docker, board: &ExitBoard) {
    for runtime_id in board.pending_ids() {
        match docker.inspect_container(&runtime_id, None).await {
            Ok(response) => {
                if let Some(status) = ended_status(&response) {
                    board.publish(&runtime_id, status);
                }
            }
            Err(error) if status_code(&error) == Some(404) => {
                board.publish(
                    &runtime_id,
                    ExitStatus::unknown("container no longer exists"),
                );
            }
            Err(error) => tracing::warn!(%error, runtime_id, "inspect after reconnect failed"),
        }
    }
}

fn unix_now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
