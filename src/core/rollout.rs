//! What a user declares about changing a running service (SPEC §7): the update and rollback
//! configs, the health check and the stop grace period, and the replicated state of a rollout
//! (`update_status`). The rules that drive a rollout are in [`super::updater`].

use serde::{Deserialize, Serialize};

use super::error::CoreError;

/// Default monitor period after each batch of an update (Docker's 5 s).
pub const MONITOR_MS_DEFAULT: u64 = 5_000;
/// Default health check interval and timeout (Docker's 30 s).
pub const HEALTH_INTERVAL_MS_DEFAULT: u64 = 30_000;
/// Default health check timeout.
pub const HEALTH_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Default consecutive failures after which a task is unhealthy.
pub const HEALTH_RETRIES_DEFAULT: u32 = 3;
/// Default time between SIGTERM and SIGKILL (SPEC §5).
pub const STOP_GRACE_MS_DEFAULT: u64 = 10_000;
/// Upper bound on every duration of this module (one day), so arithmetic cannot overflow.
pub const DURATION_MS_MAX: u64 = 24 * 60 * 60 * 1000;
/// Shortest health check interval or timeout accepted (Docker refuses below 1 ms; a check
/// every millisecond would be a busy loop, so 10 ms).
pub const HEALTH_INTERVAL_MS_MIN: u64 = 10;
/// A failure ratio is stored in millionths, so the spec stays `Eq` and exact.
pub const RATIO_SCALE: u32 = 1_000_000;

/// What an update does when its tasks fail (`--update-failure-action`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailureAction {
    /// Stop the rollout where it is (the default).
    #[default]
    Pause,
    /// Go on with the next slots.
    Continue,
    /// Roll back to the previous spec (updates only, not rollbacks).
    Rollback,
}

impl FailureAction {
    /// Parses `pause`, `continue` or `rollback`; `flag` names the option in the error.
    pub fn parse(flag: &'static str, text: &str) -> Result<FailureAction, CoreError> {
        match text {
            "pause" => Ok(FailureAction::Pause),
            "continue" => Ok(FailureAction::Continue),
            "rollback" => Ok(FailureAction::Rollback),
            _ => Err(CoreError::parse(
                flag,
                text,
                "expected pause, continue or rollback",
            )),
        }
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureAction::Pause => "pause",
            FailureAction::Continue => "continue",
            FailureAction::Rollback => "rollback",
        }
    }
}

/// Whether a slot's new task starts before or after its old one stops (`--update-order`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    /// Stop the old task, then start the new one (the default).
    #[default]
    StopFirst,
    /// Start the new task; stop the old one once the new one runs (and is healthy).
    StartFirst,
}

impl UpdateOrder {
    /// Parses `stop-first` or `start-first`; `flag` names the option in the error.
    pub fn parse(flag: &'static str, text: &str) -> Result<UpdateOrder, CoreError> {
        match text {
            "stop-first" => Ok(UpdateOrder::StopFirst),
            "start-first" => Ok(UpdateOrder::StartFirst),
            _ => Err(CoreError::parse(
                flag,
                text,
                "expected stop-first or start-first",
            )),
        }
    }

    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateOrder::StopFirst => "stop-first",
            UpdateOrder::StartFirst => "start-first",
        }
    }
}

/// How a change is rolled out (`--update-*`) or rolled back (`--rollback-*`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateConfig {
    /// Slots changed at the same time; 0 means all at once.
    pub parallelism: u64,
    /// Pause after a slot's new task runs before the next slot starts.
    pub delay_ms: u64,
    /// How long a new task must keep running to count as a success.
    pub monitor_ms: u64,
    /// What a failed rollout does.
    pub failure_action: FailureAction,
    /// Failed tasks tolerated, as millionths of the slots rolled out.
    pub max_failure_ratio_ppm: u32,
    /// Stop-first or start-first.
    pub order: UpdateOrder,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay_ms: 0,
            monitor_ms: MONITOR_MS_DEFAULT,
            failure_action: FailureAction::Pause,
            max_failure_ratio_ppm: 0,
            order: UpdateOrder::StopFirst,
        }
    }
}

impl UpdateConfig {
    /// Checks the bounds; `which` is `update` or `rollback` (a rollback cannot roll back).
    pub fn validate(&self, which: &str) -> Result<(), CoreError> {
        let invalid = |m: String| Err(CoreError::InvalidSpec(m));
        if self.delay_ms > DURATION_MS_MAX || self.monitor_ms > DURATION_MS_MAX {
            return invalid(format!("{which} delay and monitor must be at most 24h"));
        }
        if self.max_failure_ratio_ppm > RATIO_SCALE {
            return invalid(format!("{which} max failure ratio must be between 0 and 1"));
        }
        if which == "rollback" && self.failure_action == FailureAction::Rollback {
            return invalid("rollback failure action must be pause or continue".into());
        }
        Ok(())
    }
}

/// Parses a failure ratio `0` .. `1` (`0.25`) into millionths; `flag` names the option.
pub fn parse_ratio(flag: &'static str, text: &str) -> Result<u32, CoreError> {
    let bad = |reason: &str| CoreError::parse(flag, text, reason);
    let trimmed = text.trim();
    let (whole, fraction) = trimmed.split_once('.').unwrap_or((trimmed, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return Err(bad("expected a number between 0 and 1"));
    }
    if fraction.len() > 6 {
        return Err(bad("at most 6 decimals"));
    }
    let whole: u32 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .map_err(|_| bad("expected a number between 0 and 1"))?
    };
    let mut scaled_fraction: u32 = 0;
    if !fraction.is_empty() {
        let value: u32 = fraction.parse().map_err(|_| bad("bad decimals"))?;
        scaled_fraction = value * 10u32.pow(6 - fraction.len() as u32);
    }
    let ppm = whole
        .checked_mul(RATIO_SCALE)
        .and_then(|w| w.checked_add(scaled_fraction))
        .filter(|ppm| *ppm <= RATIO_SCALE)
        .ok_or_else(|| bad("expected a number between 0 and 1"))?;
    Ok(ppm)
}

/// What a health check runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum HealthTest {
    /// The image's own HEALTHCHECK, if it has one (Docker); none on the process runtime.
    #[default]
    Inherit,
    /// No health check, whatever the image says (`--no-healthcheck`).
    Disabled,
    /// A shell command (`--health-cmd`): `/bin/sh -c CMD` in the container, or on the host
    /// with the task's environment on the process runtime. Exit 0 is healthy.
    Shell(String),
}

/// `--health-*`: what to run and when. `None` fields take the image's value (Docker) or the
/// default (30 s interval and timeout, 3 retries, no start period).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct HealthCheck {
    /// What runs.
    pub test: HealthTest,
    /// Time between checks.
    pub interval_ms: Option<u64>,
    /// Longest a check may run; longer counts as a failure.
    pub timeout_ms: Option<u64>,
    /// Consecutive failures after which the task is unhealthy.
    pub retries: Option<u32>,
    /// Failures in this first period do not count (a success still counts).
    pub start_period_ms: Option<u64>,
}

impl HealthCheck {
    /// The interval, or its default.
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms.unwrap_or(HEALTH_INTERVAL_MS_DEFAULT)
    }

    /// The timeout, or its default.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or(HEALTH_TIMEOUT_MS_DEFAULT)
    }

    /// The retries, or their default.
    pub fn retries(&self) -> u32 {
        self.retries.unwrap_or(HEALTH_RETRIES_DEFAULT)
    }

    /// The start period, or none.
    pub fn start_period_ms(&self) -> u64 {
        self.start_period_ms.unwrap_or(0)
    }

    /// Checks the bounds and that `--no-healthcheck` comes without other health options.
    pub fn validate(&self) -> Result<(), CoreError> {
        let invalid = |m: &str| Err(CoreError::InvalidSpec(m.to_string()));
        for (name, value) in [
            ("health interval", self.interval_ms),
            ("health timeout", self.timeout_ms),
        ] {
            if let Some(ms) = value {
                if !(HEALTH_INTERVAL_MS_MIN..=DURATION_MS_MAX).contains(&ms) {
                    return invalid(&format!("{name} must be between 10ms and 24h"));
                }
            }
        }
        if self.start_period_ms.is_some_and(|ms| ms > DURATION_MS_MAX) {
            return invalid("health start period must be at most 24h");
        }
        if self.retries == Some(0) {
            return invalid("health retries must be at least 1");
        }
        match &self.test {
            HealthTest::Shell(command) if command.trim().is_empty() => {
                invalid("health command must not be empty")
            }
            HealthTest::Disabled
                if self.interval_ms.is_some()
                    || self.timeout_ms.is_some()
                    || self.retries.is_some()
                    || self.start_period_ms.is_some() =>
            {
                invalid("--no-healthcheck conflicts with --health-* options")
            }
            _ => Ok(()),
        }
    }
}

/// Where a rollout is (SPEC §7's `update_status.state`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UpdateState {
    /// Rolling the new spec out.
    Updating,
    /// Stopped by a failure (`pause`), until the next update.
    Paused,
    /// Every slot runs the new spec.
    Completed,
    /// Rolling the previous spec back out.
    RollbackStarted,
    /// A rollback stopped by a failure.
    RollbackPaused,
    /// Every slot runs the previous spec again.
    RollbackCompleted,
}

impl UpdateState {
    /// Whether a rollout is still moving (updating or rolling back).
    pub fn is_active(self) -> bool {
        matches!(self, UpdateState::Updating | UpdateState::RollbackStarted)
    }

    /// Whether the rollout is a rollback.
    pub fn is_rollback(self) -> bool {
        matches!(
            self,
            UpdateState::RollbackStarted
                | UpdateState::RollbackPaused
                | UpdateState::RollbackCompleted
        )
    }

    /// The snake_case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateState::Updating => "updating",
            UpdateState::Paused => "paused",
            UpdateState::Completed => "completed",
            UpdateState::RollbackStarted => "rollback_started",
            UpdateState::RollbackPaused => "rollback_paused",
            UpdateState::RollbackCompleted => "rollback_completed",
        }
    }
}

/// The replicated state of a service's last rollout.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UpdateStatus {
    /// Where it is.
    pub state: UpdateState,
    /// Why it is there (`update paused due to failure or early termination of task ...`).
    pub message: String,
    /// Unix milliseconds at which it started.
    pub started_at_ms: u64,
    /// Unix milliseconds at which it completed, paused or was rolled back.
    pub completed_at_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_orders_and_actions_parse_or_name_the_flag() {
        let flag = "--update-max-failure-ratio";
        assert_eq!(parse_ratio(flag, "0"), Ok(0));
        assert_eq!(parse_ratio(flag, "0.25"), Ok(250_000));
        assert_eq!(parse_ratio(flag, "1"), Ok(RATIO_SCALE));
        assert_eq!(parse_ratio(flag, ".5"), Ok(500_000));
        for bad in ["", "1.5", "-0.1", "2", "abc", "0.1234567", "1e-3"] {
            let error = parse_ratio(flag, bad).expect_err(bad).to_string();
            assert!(error.contains(flag), "{bad}: {error}");
        }
        assert_eq!(
            UpdateOrder::parse("--update-order", "start-first"),
            Ok(UpdateOrder::StartFirst)
        );
        let error = UpdateOrder::parse("--update-order", "first").expect_err("bad order");
        assert!(error.to_string().contains("--update-order"), "{error}");
        let error = FailureAction::parse("--update-failure-action", "stop").expect_err("bad");
        assert!(
            error.to_string().contains("--update-failure-action"),
            "{error}"
        );
    }

    #[test]
    fn configs_and_health_checks_validate_their_bounds() {
        assert!(UpdateConfig::default().validate("update").is_ok());
        let rollback_rollback = UpdateConfig {
            failure_action: FailureAction::Rollback,
            ..UpdateConfig::default()
        };
        assert!(rollback_rollback.validate("update").is_ok());
        assert!(rollback_rollback.validate("rollback").is_err());
        let health = HealthCheck {
            test: HealthTest::Shell("true".into()),
            interval_ms: Some(5),
            ..HealthCheck::default()
        };
        assert!(health.validate().is_err());
        let disabled = HealthCheck {
            test: HealthTest::Disabled,
            retries: Some(2),
            ..HealthCheck::default()
        };
        assert!(disabled.validate().is_err());
        assert_eq!(HealthCheck::default().interval_ms(), 30_000);
    }
}
