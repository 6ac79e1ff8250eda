//! Reading the Docker Engine's answers: how a container ended, and an error's HTTP status.
//! Shared by the runtime (`docker`) and its events follower (`docker_events`).

use bollard::errors::Error as BollardError;
use bollard::models::ContainerInspectResponse;

use super::ExitStatus;

/// How the container ended, or `None` while it runs (or has not started yet).
pub(crate) fn ended_status(response: &ContainerInspectResponse) -> Option<ExitStatus> {
    let state = response.state.as_ref()?;
    if state.running == Some(true) {
        return None;
    }
    let code = state.exit_code.unwrap_or(0);
    let mut status = ExitStatus::from_code(code);
    if state.oom_killed == Some(true) {
        status.message = format!("out of memory ({})", status.message);
    }
    if let Some(error) = state.error.as_deref().filter(|error| !error.is_empty()) {
        status.message = format!("{}: {error}", status.message);
    }
    Some(status)
}

/// The HTTP status of an engine error, if it was one.
pub(crate) fn status_code(error: &BollardError) -> Option<u16> {
    match error {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}
