//! Health checks on the Docker runtime: the task's check as the container's `HealthConfig`, and
//! the engine's verdict read back from inspect. The engine runs the probes and counts the
//! failures itself (start period, retries), so nothing is counted here.

use bollard::models::{ContainerInspectResponse, HealthConfig, HealthStatusEnum};

use super::{Health, RuntimeError};
use crate::core::health::{early_window_ms, truncate, HEALTH_OUTPUT_BYTES_MAX, STARTING_PROBE_MS};
use crate::core::rollout::{HealthCheck, HealthTest};

/// Nanoseconds per millisecond: the Engine API takes durations in nanoseconds.
const NANOS_PER_MS: i64 = 1_000_000;

/// The container's `Healthcheck`: `None` keeps the image's own HEALTHCHECK (`Inherit`),
/// `["NONE"]` disables it, a shell command becomes `["CMD-SHELL", cmd]`. Of interval, timeout
/// and retries only those set are sent; the others take the image's values, as `docker run`
/// does. The start period and start interval always carry the early window.
pub(crate) fn health_config(check: &HealthCheck) -> Result<Option<HealthConfig>, RuntimeError> {
    let test = match &check.test {
        HealthTest::Inherit => return Ok(None),
        HealthTest::Disabled => {
            return Ok(Some(HealthConfig {
                test: Some(vec!["NONE".to_string()]),
                ..HealthConfig::default()
            }))
        }
        HealthTest::Shell(command) => vec!["CMD-SHELL".to_string(), command.clone()],
    };
    // The early window (`core::health`): the engine probes every STARTING_PROBE_MS during
    // its start period, which spans at least one interval, so a container is healthy as soon
    // as it is; failures there do not count, and the first counted check comes one interval
    // after the start, as without it.
    Ok(Some(HealthConfig {
        test: Some(test),
        interval: nanos(check.interval_ms, "health interval")?,
        timeout: nanos(check.timeout_ms, "health timeout")?,
        retries: check.retries.map(i64::from),
        start_period: nanos(Some(early_window_ms(check)), "health start period")?,
        start_interval: nanos(Some(STARTING_PROBE_MS), "health start interval")?,
    }))
}

fn nanos(ms: Option<u64>, what: &str) -> Result<Option<i64>, RuntimeError> {
    ms.map(|ms| {
        i64::try_from(ms)
            .ok()
            .and_then(|ms| ms.checked_mul(NANOS_PER_MS))
            .ok_or_else(|| RuntimeError::InvalidSpec {
                reason: format!("{what} {ms} ms is too large"),
            })
    })
    .transpose()
}

/// The engine's verdict on a container's health (`State.Health`), with the last probe's output
/// when it is unhealthy.
pub(crate) fn health_of(response: &ContainerInspectResponse) -> Health {
    let Some(health) = response
        .state
        .as_ref()
        .and_then(|state| state.health.as_ref())
    else {
        return Health::None;
    };
    match health.status {
        Some(HealthStatusEnum::STARTING) => Health::Starting,
        Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => {
            let output = health
                .log
                .as_ref()
                .and_then(|log| log.last())
                .and_then(|result| result.output.as_deref())
                .unwrap_or("");
            Health::Unhealthy {
                output: truncate(output.trim(), HEALTH_OUTPUT_BYTES_MAX).to_string(),
            }
        }
        Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY) | None => Health::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inherit_sends_nothing_disabled_sends_none_and_shell_only_what_is_set() {
        assert_eq!(health_config(&HealthCheck::default()).ok(), Some(None));
        let disabled = HealthCheck {
            test: HealthTest::Disabled,
            ..HealthCheck::default()
        };
        let config = health_config(&disabled).ok().flatten().expect("a config");
        assert_eq!(config.test, Some(vec!["NONE".to_string()]));
        assert_eq!(config.interval, None);
        let shell = HealthCheck {
            test: HealthTest::Shell("test -f /tmp/ok".into()),
            interval_ms: Some(250),
            retries: Some(2),
            ..HealthCheck::default()
        };
        let config = health_config(&shell).ok().flatten().expect("a config");
        assert_eq!(
            config.test,
            Some(vec!["CMD-SHELL".to_string(), "test -f /tmp/ok".to_string()])
        );
        assert_eq!(config.interval, Some(250_000_000));
        assert_eq!(config.retries, Some(2));
        assert_eq!(config.timeout, None, "unset: the image's value applies");
        // The early window: a start period of one interval, probed every 100 ms.
        assert_eq!(config.start_period, Some(250_000_000));
        assert_eq!(config.start_interval, Some(100_000_000));
        let long_start = HealthCheck {
            start_period_ms: Some(5_000),
            ..shell
        };
        let config = health_config(&long_start).ok().flatten().expect("a config");
        assert_eq!(config.start_period, Some(5_000_000_000));
    }
}
