//! The flags `service create` and `service update` share (health, stop grace, `--update-*`,
//! `--rollback-*`) and `service update`'s own. They are kept as typed text: the library's
//! `client::update` parses them, so every malformed value is refused with its flag named
//! (`Error: invalid --update-delay "5x": ...`) before anything is sent.

use flotilla::client::update::{HealthFlags, RolloutFlags, ServiceChanges};

/// `--health-*`, `--no-healthcheck`, `--stop-grace-period`.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct HealthArgs {
    /// Command run to check health (`/bin/sh -c CMD`; exit 0 is healthy).
    #[arg(long, value_name = "CMD")]
    pub(crate) health_cmd: Option<String>,
    /// Time between checks, e.g. 30s.
    #[arg(long, value_name = "DUR")]
    pub(crate) health_interval: Option<String>,
    /// Longest a check may run, e.g. 30s.
    #[arg(long, value_name = "DUR")]
    pub(crate) health_timeout: Option<String>,
    /// Consecutive failures after which the task is unhealthy.
    #[arg(long, value_name = "N")]
    pub(crate) health_retries: Option<String>,
    /// Failures in this first period do not count, e.g. 10s.
    #[arg(long, value_name = "DUR")]
    pub(crate) health_start_period: Option<String>,
    /// No health check, not even the image's.
    #[arg(long)]
    pub(crate) no_healthcheck: bool,
    /// Time between SIGTERM and SIGKILL when a task stops (default 10s).
    #[arg(long, value_name = "DUR")]
    pub(crate) stop_grace_period: Option<String>,
}

impl HealthArgs {
    pub(crate) fn flags(&self) -> HealthFlags {
        HealthFlags {
            cmd: self.health_cmd.clone(),
            interval: self.health_interval.clone(),
            timeout: self.health_timeout.clone(),
            retries: self.health_retries.clone(),
            start_period: self.health_start_period.clone(),
            disable: self.no_healthcheck,
        }
    }
}

/// `--update-*` and `--rollback-*`.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct RolloutArgs {
    /// Slots updated at the same time (0: all at once; default 1).
    #[arg(long, value_name = "N")]
    pub(crate) update_parallelism: Option<String>,
    /// Pause between batches, e.g. 10s (default 0s).
    #[arg(long, value_name = "DUR")]
    pub(crate) update_delay: Option<String>,
    /// When an update fails: pause (default), continue or rollback.
    #[arg(long, value_name = "ACTION")]
    pub(crate) update_failure_action: Option<String>,
    /// How long a new task must keep running to count as updated (default 5s).
    #[arg(long, value_name = "DUR")]
    pub(crate) update_monitor: Option<String>,
    /// Failed tasks tolerated, as a fraction 0..1 of those updated (default 0).
    #[arg(long, value_name = "F")]
    pub(crate) update_max_failure_ratio: Option<String>,
    /// stop-first (default) or start-first.
    #[arg(long, value_name = "ORDER")]
    pub(crate) update_order: Option<String>,
    /// Slots rolled back at the same time (0: all at once; default 1).
    #[arg(long, value_name = "N")]
    pub(crate) rollback_parallelism: Option<String>,
    /// Pause between rollback batches (default 0s).
    #[arg(long, value_name = "DUR")]
    pub(crate) rollback_delay: Option<String>,
    /// When a rollback fails: pause (default) or continue.
    #[arg(long, value_name = "ACTION")]
    pub(crate) rollback_failure_action: Option<String>,
    /// How long a rolled-back task must keep running (default 5s).
    #[arg(long, value_name = "DUR")]
    pub(crate) rollback_monitor: Option<String>,
    /// Failed tasks tolerated during a rollback, as a fraction 0..1 (default 0).
    #[arg(long, value_name = "F")]
    pub(crate) rollback_max_failure_ratio: Option<String>,
    /// stop-first (default) or start-first.
    #[arg(long, value_name = "ORDER")]
    pub(crate) rollback_order: Option<String>,
}

impl RolloutArgs {
    pub(crate) fn update(&self) -> RolloutFlags {
        RolloutFlags {
            parallelism: self.update_parallelism.clone(),
            delay: self.update_delay.clone(),
            failure_action: self.update_failure_action.clone(),
            monitor: self.update_monitor.clone(),
            max_failure_ratio: self.update_max_failure_ratio.clone(),
            order: self.update_order.clone(),
        }
    }

    pub(crate) fn rollback(&self) -> RolloutFlags {
        RolloutFlags {
            parallelism: self.rollback_parallelism.clone(),
            delay: self.rollback_delay.clone(),
            failure_action: self.rollback_failure_action.clone(),
            monitor: self.rollback_monitor.clone(),
            max_failure_ratio: self.rollback_max_failure_ratio.clone(),
            order: self.rollback_order.clone(),
        }
    }
}

/// `service update [options] SERVICE`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct UpdateArgs {
    /// Return once the change is recorded instead of following the rollout.
    #[arg(short, long)]
    pub(crate) detach: bool,
    /// New image.
    #[arg(long)]
    pub(crate) image: Option<String>,
    /// New command and arguments, split like a shell would ("sh -c 'sleep 10'").
    #[arg(long, value_name = "\"CMD ARG...\"", allow_hyphen_values = true)]
    pub(crate) args: Option<String>,
    /// Add or change an environment variable K=V (repeatable).
    #[arg(long, value_name = "K=V")]
    pub(crate) env_add: Vec<String>,
    /// Remove an environment variable (repeatable).
    #[arg(long, value_name = "K")]
    pub(crate) env_rm: Vec<String>,
    /// Add or change a service label K=V (repeatable).
    #[arg(long, value_name = "K=V")]
    pub(crate) label_add: Vec<String>,
    /// Remove a service label (repeatable).
    #[arg(long, value_name = "K")]
    pub(crate) label_rm: Vec<String>,
    /// Add a placement constraint (repeatable).
    #[arg(long, value_name = "EXPR")]
    pub(crate) constraint_add: Vec<String>,
    /// Remove a placement constraint (repeatable).
    #[arg(long, value_name = "EXPR")]
    pub(crate) constraint_rm: Vec<String>,
    /// Number of tasks (replicated mode); alone, it scales without a rollout.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub(crate) replicas: Option<String>,
    /// CPUs to reserve per task.
    #[arg(long, value_name = "F")]
    pub(crate) reserve_cpu: Option<String>,
    /// Memory to reserve per task.
    #[arg(long, value_name = "SIZE")]
    pub(crate) reserve_memory: Option<String>,
    /// CPU limit per task.
    #[arg(long, value_name = "F")]
    pub(crate) limit_cpu: Option<String>,
    /// Memory limit per task.
    #[arg(long, value_name = "SIZE")]
    pub(crate) limit_memory: Option<String>,
    /// When to replace a finished task: any, on-failure or none.
    #[arg(long, value_name = "CONDITION")]
    pub(crate) restart_condition: Option<String>,
    /// Fixed delay before a replacement.
    #[arg(long, value_name = "DUR")]
    pub(crate) restart_delay: Option<String>,
    /// Replacements per slot before it is left finished.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub(crate) restart_max_attempts: Option<String>,
    #[command(flatten)]
    pub(crate) health: HealthArgs,
    #[command(flatten)]
    pub(crate) rollout: RolloutArgs,
    /// Redeploy every task even if nothing changed.
    #[arg(long)]
    pub(crate) force: bool,
    /// Roll back to the previous spec (no other flag may be given).
    #[arg(long)]
    pub(crate) rollback: bool,
    /// Publish a port: published=N,target=N[,protocol=tcp|udp][,mode=ingress|host] or N:N[/udp].
    #[arg(long, value_name = "SPEC")]
    pub(crate) publish_add: Vec<String>,
    /// Stop publishing a port: PUBLISHED[/tcp|udp].
    #[arg(long, value_name = "PUBLISHED")]
    pub(crate) publish_rm: Vec<String>,
    /// Give the tasks a secret: NAME or source=NAME[,target=FILE][,uid=N][,gid=N][,mode=0400].
    #[arg(long, value_name = "SECRET")]
    pub(crate) secret_add: Vec<String>,
    /// Take a secret away from the tasks (its name).
    #[arg(long, value_name = "NAME")]
    pub(crate) secret_rm: Vec<String>,
    /// Give the tasks a config: NAME or source=NAME[,target=PATH][,uid=N][,gid=N][,mode=0444].
    #[arg(long, value_name = "CONFIG")]
    pub(crate) config_add: Vec<String>,
    /// Take a config away from the tasks (its name).
    #[arg(long, value_name = "NAME")]
    pub(crate) config_rm: Vec<String>,
    /// Name, ID or unique ID prefix.
    pub(crate) service: String,
}

impl UpdateArgs {
    pub(crate) fn changes(&self) -> ServiceChanges {
        ServiceChanges {
            image: self.image.clone(),
            args: self.args.clone(),
            env_add: self.env_add.clone(),
            env_rm: self.env_rm.clone(),
            label_add: self.label_add.clone(),
            label_rm: self.label_rm.clone(),
            constraint_add: self.constraint_add.clone(),
            constraint_rm: self.constraint_rm.clone(),
            replicas: self.replicas.clone(),
            reserve_cpu: self.reserve_cpu.clone(),
            reserve_memory: self.reserve_memory.clone(),
            limit_cpu: self.limit_cpu.clone(),
            limit_memory: self.limit_memory.clone(),
            restart_condition: self.restart_condition.clone(),
            restart_delay: self.restart_delay.clone(),
            restart_max_attempts: self.restart_max_attempts.clone(),
            health: self.health.flags(),
            stop_grace_period: self.health.stop_grace_period.clone(),
            update: self.rollout.update(),
            rollback: self.rollout.rollback(),
            force: self.force,
            publish_add: self.publish_add.clone(),
            publish_rm: self.publish_rm.clone(),
            secret_add: self.secret_add.clone(),
            secret_rm: self.secret_rm.clone(),
            config_add: self.config_add.clone(),
            config_rm: self.config_rm.clone(),
        }
    }
}
