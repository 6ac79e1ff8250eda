//! The Docker runtime's one `docker events` subscription: `die` events of this node's
//! containers, published to the exit board, replayed across reconnects with `since`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::EventsOptionsBuilder;
use bollard::Docker;
use futures::StreamExt;

use super::docker_status::{ended_status, status_code};
use super::exit_board::ExitBoard;
use super::{ExitStatus, LABEL_NODE_ID};

/// Pause before re-subscribing to `docker events` after the stream broke, in ms.
const EVENTS_RECONNECT_DELAY_MS: u64 = 500;
/// How far back the first events subscription replays, in seconds (the API's resolution),
/// so a container that died while the subscription was being set up is not missed.
const EVENTS_REPLAY_S: i64 = 1;

/// Follow `die` events of this node's containers for as long as the runtime lives, publishing
/// each to the board. Reconnects after errors, replaying from the last event seen.
pub(crate) async fn follow_events(docker: Docker, node_id: String, board: Arc<ExitBoard>) {
    let mut since_s = unix_now_s() - EVENTS_REPLAY_S;
    let mut reconnecting = false;
    loop {
        let mut filters = HashMap::new();
        filters.insert("type", vec!["container".to_string()]);
        filters.insert("event", vec!["die".to_string()]);
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
