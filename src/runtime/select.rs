//! Which runtime a node gets: the one factory that names the implementations, kept apart from
//! the trait they share.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{docker, process, ContainerRuntime, RuntimeChoice, RuntimeError, AUTO_PING_TIMEOUT_MS};

/// Build the runtime chosen by `--runtime` for `node_id`, keeping process records under
/// `state_dir`. `auto` pings the Docker Engine for at most [`AUTO_PING_TIMEOUT_MS`].
///
/// Must run inside a tokio runtime that outlives the returned runtime (the Docker runtime
/// spawns its events task there): on actix, the System arbiter.
pub async fn select(
    choice: RuntimeChoice,
    node_id: &str,
    state_dir: &Path,
) -> Result<Arc<dyn ContainerRuntime>, RuntimeError> {
    let ping_timeout = Duration::from_millis(AUTO_PING_TIMEOUT_MS);
    match choice {
        RuntimeChoice::Docker => Ok(Arc::new(
            docker::DockerRuntime::connect(node_id, ping_timeout).await?,
        )),
        RuntimeChoice::Process => Ok(Arc::new(process::ProcessRuntime::new(node_id, state_dir)?)),
        RuntimeChoice::Auto => match docker::DockerRuntime::connect(node_id, ping_timeout).await {
            Ok(runtime) => Ok(Arc::new(runtime)),
            Err(error) => {
                tracing::info!(%error, "docker engine not answering; using the process runtime");
                Ok(Arc::new(process::ProcessRuntime::new(node_id, state_dir)?))
            }
        },
    }
}
