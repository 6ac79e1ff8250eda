//! What a user declares: the service spec, its placement constraints and restart policy, the
//! parsers for the CLI's sizes, CPU counts and durations, and validation.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::CoreError;
use super::mounts::{ConfigReference, SecretReference};
pub use super::parse::{parse_cpus, parse_duration_ms, parse_key_value, parse_memory};
use super::ports::{validate_ports, PortConfig};
use super::rollout::{HealthCheck, UpdateConfig, DURATION_MS_MAX};

/// CPU and memory, used for node capacity, reservations and limits. Zero means none.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct Resources {
    /// Billionths of a CPU.
    pub nano_cpus: u64,
    /// Bytes.
    pub memory_bytes: u64,
}

impl Resources {
    /// Whether `self` fits into `available` on both axes.
    pub fn fits_in(&self, available: &Resources) -> bool {
        self.nano_cpus <= available.nano_cpus && self.memory_bytes <= available.memory_bytes
    }

    /// Component-wise saturating sum.
    pub fn saturating_add(&self, other: &Resources) -> Resources {
        Resources {
            nano_cpus: self.nano_cpus.saturating_add(other.nano_cpus),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
        }
    }

    /// Component-wise saturating difference.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            nano_cpus: self.nano_cpus.saturating_sub(other.nano_cpus),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
        }
    }
}

/// Longest service name Docker accepts.
pub const SERVICE_NAME_LEN_MAX: usize = 63;
/// Upper bound on `--replicas`; the 1,000,000-task goal fits with room to spare.
pub const REPLICAS_MAX: u64 = 10_000_000;
/// Upper bound on `--restart-delay` (one day), so backoff arithmetic cannot overflow.
pub const RESTART_DELAY_MS_MAX: u64 = 24 * 60 * 60 * 1000;

/// How many tasks a service runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ServiceMode {
    /// A fixed number of tasks, in slots `1..=replicas`.
    Replicated {
        /// Desired number of tasks.
        replicas: u64,
    },
    /// One task on every eligible node.
    Global,
}

/// CPU and memory a task reserves (for scheduling) and may use at most (for the runtime).
/// Zero means "none".
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct ResourceRequirements {
    /// Reserved on the node when the task is placed.
    pub reservations: Resources,
    /// Enforced by the runtime.
    pub limits: Resources,
}

/// The node attribute a constraint looks at.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ConstraintKey {
    /// `node.id`
    NodeId,
    /// `node.hostname`
    Hostname,
    /// `node.role` (`manager` or `worker`)
    Role,
    /// `node.labels.<key>`
    Label(String),
}

/// Equality or inequality.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ConstraintOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// A placement constraint such as `node.labels.zone==east` or `node.role != manager`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Constraint {
    /// What is compared.
    pub key: ConstraintKey,
    /// How.
    pub op: ConstraintOp,
    /// With what.
    pub value: String,
}

impl Constraint {
    /// Parses `KEY==VALUE` or `KEY!=VALUE`; spaces around the operator are allowed.
    pub fn parse(text: &str) -> Result<Constraint, CoreError> {
        let bad = |reason: &str| CoreError::parse("constraint", text, reason);
        let (op, at) = match (text.find("=="), text.find("!=")) {
            (Some(at), None) => (ConstraintOp::Eq, at),
            (None, Some(at)) => (ConstraintOp::Ne, at),
            _ => return Err(bad("expected exactly one of == or !=")),
        };
        let key = text[..at].trim();
        let value = text[at + 2..].trim();
        if value.is_empty() {
            return Err(bad("empty value"));
        }
        if value.contains("==") || value.contains("!=") {
            return Err(bad("expected exactly one of == or !="));
        }
        let key = match key {
            "node.id" => ConstraintKey::NodeId,
            "node.hostname" => ConstraintKey::Hostname,
            "node.role" => {
                if value != "manager" && value != "worker" {
                    return Err(bad("node.role is manager or worker"));
                }
                ConstraintKey::Role
            }
            other => match other.strip_prefix("node.labels.") {
                Some(label) if !label.is_empty() => ConstraintKey::Label(label.to_string()),
                _ => {
                    return Err(bad(
                        "key is node.id, node.hostname, node.role or node.labels.<key>",
                    ))
                }
            },
        };
        Ok(Constraint {
            key,
            op,
            value: value.to_string(),
        })
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            ConstraintKey::NodeId => f.write_str("node.id")?,
            ConstraintKey::Hostname => f.write_str("node.hostname")?,
            ConstraintKey::Role => f.write_str("node.role")?,
            ConstraintKey::Label(key) => write!(f, "node.labels.{key}")?,
        }
        let op = match self.op {
            ConstraintOp::Eq => "==",
            ConstraintOp::Ne => "!=",
        };
        write!(f, "{op}{}", self.value)
    }
}

/// When a finished task is replaced.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RestartCondition {
    /// Whatever the exit (the default).
    #[default]
    Any,
    /// Unless it completed with exit code 0.
    OnFailure,
    /// Never (a node lost or drained still moves the task).
    None,
}

/// `--restart-condition`, `--restart-delay`, `--restart-max-attempts`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct RestartPolicy {
    /// When to replace.
    pub condition: RestartCondition,
    /// A fixed delay instead of the exponential backoff.
    pub delay_ms: Option<u64>,
    /// Replacements per slot after which the slot is left finished.
    pub max_attempts: Option<u64>,
}

/// A service as the user declared it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Unique service name.
    pub name: String,
    /// Image reference (recorded but not used by the process runtime).
    pub image: String,
    /// Command and arguments; empty means the image's default.
    pub command: Vec<String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// Service labels.
    pub labels: BTreeMap<String, String>,
    /// Replicated or global.
    pub mode: ServiceMode,
    /// Reservations and limits.
    pub resources: ResourceRequirements,
    /// Placement constraints, all of which must hold.
    pub constraints: Vec<Constraint>,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Health check (`--health-*`, `--no-healthcheck`).
    pub health: HealthCheck,
    /// Time between SIGTERM and SIGKILL (`--stop-grace-period`); `None` is 10 s.
    pub stop_grace_ms: Option<u64>,
    /// How a change is rolled out (`--update-*`).
    pub update: UpdateConfig,
    /// How a rollback is rolled out (`--rollback-*`).
    pub rollback: UpdateConfig,
    /// Bumped by `service update --force`: a changed spec that redeploys every slot.
    pub force_update: u64,
    /// Published ports (`-p/--publish`, SPEC §8).
    pub ports: Vec<PortConfig>,
    /// Secrets the tasks get (`--secret`, SPEC §9).
    pub secrets: Vec<SecretReference>,
    /// Configs the tasks get (`--config`, SPEC §9).
    pub configs: Vec<ConfigReference>,
}

impl ServiceSpec {
    /// A replicated service with one replica and everything else defaulted.
    pub fn new(name: &str, image: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.to_string(),
            image: image.to_string(),
            command: Vec::new(),
            env: BTreeMap::new(),
            labels: BTreeMap::new(),
            mode: ServiceMode::Replicated { replicas: 1 },
            resources: ResourceRequirements::default(),
            constraints: Vec::new(),
            restart: RestartPolicy::default(),
            health: HealthCheck::default(),
            stop_grace_ms: None,
            update: UpdateConfig::default(),
            rollback: UpdateConfig::default(),
            force_update: 0,
            ports: Vec::new(),
            secrets: Vec::new(),
            configs: Vec::new(),
        }
    }

    /// Whether `other` differs from `self` only in the replica count: a scale, which needs no
    /// rollout (SPEC §7).
    pub fn differs_only_in_replicas(&self, other: &ServiceSpec) -> bool {
        let mut same_count = other.clone();
        if let (ServiceMode::Replicated { replicas }, ServiceMode::Replicated { .. }) =
            (&self.mode, &mut same_count.mode)
        {
            same_count.mode = ServiceMode::Replicated {
                replicas: *replicas,
            };
        }
        *self == same_count
    }

    /// Checks what the CLI cannot: name syntax, image, bounds, reservations within limits.
    pub fn validate(&self) -> Result<(), CoreError> {
        validate_service_name(&self.name)?;
        let invalid = |m: String| Err(CoreError::InvalidSpec(m));
        if self.image.trim().is_empty() {
            return invalid("image must not be empty".into());
        }
        if self.image.chars().any(char::is_whitespace) {
            return invalid(format!("image {:?} contains whitespace", self.image));
        }
        if let ServiceMode::Replicated { replicas } = self.mode {
            if replicas > REPLICAS_MAX {
                return invalid(format!("replicas {replicas} exceeds {REPLICAS_MAX}"));
            }
        }
        if self.env.keys().any(|k| k.is_empty() || k.contains('=')) {
            return invalid("environment variable names must be non-empty without '='".into());
        }
        let (reserve, limit) = (&self.resources.reservations, &self.resources.limits);
        if limit.nano_cpus != 0 && reserve.nano_cpus > limit.nano_cpus {
            return invalid("cpu reservation exceeds the cpu limit".into());
        }
        if limit.memory_bytes != 0 && reserve.memory_bytes > limit.memory_bytes {
            return invalid("memory reservation exceeds the memory limit".into());
        }
        for constraint in &self.constraints {
            // Re-parse the printed form: catches values that were built in code, not parsed.
            Constraint::parse(&constraint.to_string())?;
        }
        if self
            .restart
            .delay_ms
            .is_some_and(|d| d > RESTART_DELAY_MS_MAX)
        {
            return invalid(format!("restart delay exceeds {RESTART_DELAY_MS_MAX} ms"));
        }
        self.health.validate()?;
        if self.stop_grace_ms.is_some_and(|ms| ms > DURATION_MS_MAX) {
            return invalid("stop grace period must be at most 24h".into());
        }
        crate::core::mounts::validate_references(&self.secrets, &self.configs)?;
        self.update.validate("update")?;
        self.rollback.validate("rollback")?;
        validate_ports(&self.ports)?;
        Ok(())
    }
}

/// Docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most [`SERVICE_NAME_LEN_MAX`] characters.
pub fn validate_service_name(name: &str) -> Result<(), CoreError> {
    let invalid = |why: &str| Err(CoreError::InvalidSpec(format!("name {name:?} {why}")));
    let mut chars = name.chars();
    match chars.next() {
        None => return Err(CoreError::InvalidSpec("name must not be empty".into())),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return invalid("must start with a letter or digit")
        }
        Some(_) => {}
    }
    if name.len() > SERVICE_NAME_LEN_MAX {
        return invalid(&format!("is longer than {SERVICE_NAME_LEN_MAX} characters"));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-') {
        return invalid("may only contain [a-zA-Z0-9_.-]");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_parse_print_and_reject() {
        let c = Constraint::parse("node.labels.zone==east").unwrap();
        assert_eq!(c.key, ConstraintKey::Label("zone".into()));
        assert_eq!(c.op, ConstraintOp::Eq);
        assert_eq!(c.to_string(), "node.labels.zone==east");
        let c = Constraint::parse("node.role != manager").unwrap();
        assert_eq!(
            (c.key.clone(), c.op),
            (ConstraintKey::Role, ConstraintOp::Ne)
        );
        assert_eq!(c.to_string(), "node.role!=manager");
        for bad in [
            "node.labels.zone=east",
            "node.labels.==x",
            "node.cpu==2",
            "node.role==boss",
            "node.id==",
            "node.id==a==b",
        ] {
            assert!(Constraint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validation_messages() {
        assert!(ServiceSpec::new("web-1.a_b", "nginx").validate().is_ok());
        let long = "a".repeat(SERVICE_NAME_LEN_MAX + 1);
        for name in ["", "-web", "we b", "web/1", long.as_str()] {
            let spec = ServiceSpec::new(name, "nginx");
            assert!(
                matches!(spec.validate(), Err(CoreError::InvalidSpec(_))),
                "{name:?}"
            );
        }
        assert!(ServiceSpec::new("web", " ").validate().is_err());
        let mut spec = ServiceSpec::new("web", "nginx");
        spec.resources.reservations.memory_bytes = 2;
        spec.resources.limits.memory_bytes = 1;
        assert!(spec.validate().is_err());
        assert_eq!(parse_key_value("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_key_value("=x").is_err());
    }
}
