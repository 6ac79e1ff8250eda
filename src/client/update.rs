//! `service update` (and the new `service create` flags): the flags as the user typed them,
//! and the pure function that applies them to a spec. Every value is parsed here, so a
//! malformed one is refused before anything is sent, with the flag named in the error
//! (`invalid --update-delay "5x": unit is ms, s, m or h`).

use crate::core::mounts::{parse_config_reference, parse_secret_reference};
use crate::core::ports::{parse_publish, PortConfig, PortProtocol};
use crate::core::rollout::{
    parse_ratio, FailureAction, HealthCheck, HealthTest, UpdateConfig, UpdateOrder,
};
use crate::core::spec::{
    parse_cpus, parse_duration_ms, parse_key_value, parse_memory, Constraint, RestartCondition,
    ServiceMode, ServiceSpec,
};
use crate::core::CoreError;

/// `--health-*` and `--no-healthcheck`, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthFlags {
    /// `--health-cmd CMD`.
    pub cmd: Option<String>,
    /// `--health-interval DUR`.
    pub interval: Option<String>,
    /// `--health-timeout DUR`.
    pub timeout: Option<String>,
    /// `--health-retries N`.
    pub retries: Option<String>,
    /// `--health-start-period DUR`.
    pub start_period: Option<String>,
    /// `--no-healthcheck`.
    pub disable: bool,
}

/// `--update-*` or `--rollback-*`, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RolloutFlags {
    /// `--*-parallelism N`.
    pub parallelism: Option<String>,
    /// `--*-delay DUR`.
    pub delay: Option<String>,
    /// `--*-failure-action pause|continue|rollback`.
    pub failure_action: Option<String>,
    /// `--*-monitor DUR`.
    pub monitor: Option<String>,
    /// `--*-max-failure-ratio F`.
    pub max_failure_ratio: Option<String>,
    /// `--*-order stop-first|start-first`.
    pub order: Option<String>,
}

/// Which of `--update-*` / `--rollback-*` a [`RolloutFlags`] is: the flag names for errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollout {
    /// `--update-*`.
    Update,
    /// `--rollback-*`.
    Rollback,
}

impl Rollout {
    /// `[parallelism, delay, failure-action, monitor, max-failure-ratio, order]` flag names
    /// (static, because [`CoreError::Parse`] names what it parsed with a `&'static str`).
    fn flags(self) -> [&'static str; 6] {
        match self {
            Rollout::Update => [
                "--update-parallelism",
                "--update-delay",
                "--update-failure-action",
                "--update-monitor",
                "--update-max-failure-ratio",
                "--update-order",
            ],
            Rollout::Rollback => [
                "--rollback-parallelism",
                "--rollback-delay",
                "--rollback-failure-action",
                "--rollback-monitor",
                "--rollback-max-failure-ratio",
                "--rollback-order",
            ],
        }
    }
}

/// Every flag of `service update`, as typed (repeatable ones in the order given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceChanges {
    /// `--image`.
    pub image: Option<String>,
    /// `--args "CMD ARG..."`, split like a shell would.
    pub args: Option<String>,
    /// `--env-add K=V`.
    pub env_add: Vec<String>,
    /// `--env-rm K`.
    pub env_rm: Vec<String>,
    /// `--label-add K=V`.
    pub label_add: Vec<String>,
    /// `--label-rm K`.
    pub label_rm: Vec<String>,
    /// `--constraint-add EXPR`.
    pub constraint_add: Vec<String>,
    /// `--constraint-rm EXPR`.
    pub constraint_rm: Vec<String>,
    /// `--replicas N`.
    pub replicas: Option<String>,
    /// `--reserve-cpu F`.
    pub reserve_cpu: Option<String>,
    /// `--reserve-memory SIZE`.
    pub reserve_memory: Option<String>,
    /// `--limit-cpu F`.
    pub limit_cpu: Option<String>,
    /// `--limit-memory SIZE`.
    pub limit_memory: Option<String>,
    /// `--restart-condition any|on-failure|none`.
    pub restart_condition: Option<String>,
    /// `--restart-delay DUR`.
    pub restart_delay: Option<String>,
    /// `--restart-max-attempts N`.
    pub restart_max_attempts: Option<String>,
    /// `--health-*`, `--no-healthcheck`.
    pub health: HealthFlags,
    /// `--stop-grace-period DUR`.
    pub stop_grace_period: Option<String>,
    /// `--update-*`.
    pub update: RolloutFlags,
    /// `--rollback-*`.
    pub rollback: RolloutFlags,
    /// `--force`: redeploy every slot even without a change.
    pub force: bool,
    /// `--publish-add SPEC`: publish a port (replacing one on the same published port).
    pub publish_add: Vec<String>,
    /// `--publish-rm PUBLISHED[/PROTOCOL]`: stop publishing a port.
    pub publish_rm: Vec<String>,
    /// `--secret-add NAME|source=...`: give the tasks a secret (replacing one on the same
    /// target).
    pub secret_add: Vec<String>,
    /// `--secret-rm NAME`: take a secret away.
    pub secret_rm: Vec<String>,
    /// `--config-add NAME|source=...`: as `--secret-add`, for a config.
    pub config_add: Vec<String>,
    /// `--config-rm NAME`: take a config away.
    pub config_rm: Vec<String>,
}

/// Gives a parse error the flag's name instead of the generic `duration`, `cpu count` ...
fn flagged<T>(flag: &'static str, parsed: Result<T, CoreError>) -> Result<T, CoreError> {
    parsed.map_err(|error| match error {
        CoreError::Parse { value, reason, .. } => CoreError::Parse {
            what: flag,
            value,
            reason,
        },
        other => other,
    })
}

fn whole_number(flag: &'static str, text: &str) -> Result<u64, CoreError> {
    let trimmed = text.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CoreError::parse(
            flag,
            text,
            "expected a whole number of 0 or more",
        ));
    }
    trimmed
        .parse()
        .map_err(|_| CoreError::parse(flag, text, "too large"))
}

fn duration(flag: &'static str, text: &str) -> Result<u64, CoreError> {
    flagged(flag, parse_duration_ms(text))
}

fn restart_condition(text: &str) -> Result<RestartCondition, CoreError> {
    match text {
        "any" => Ok(RestartCondition::Any),
        "on-failure" => Ok(RestartCondition::OnFailure),
        "none" => Ok(RestartCondition::None),
        _ => Err(CoreError::parse(
            "--restart-condition",
            text,
            "expected any, on-failure or none",
        )),
    }
}

/// Applies `--update-*` or `--rollback-*` to `config`; a rollback cannot itself roll back.
pub fn apply_rollout_flags(
    config: &mut UpdateConfig,
    flags: &RolloutFlags,
    which: Rollout,
) -> Result<(), CoreError> {
    let [parallelism, delay, action, monitor, ratio, order] = which.flags();
    if let Some(text) = &flags.parallelism {
        config.parallelism = whole_number(parallelism, text)?;
    }
    if let Some(text) = &flags.delay {
        config.delay_ms = duration(delay, text)?;
    }
    if let Some(text) = &flags.failure_action {
        let parsed = FailureAction::parse(action, text)?;
        if which == Rollout::Rollback && parsed == FailureAction::Rollback {
            return Err(CoreError::parse(action, text, "expected pause or continue"));
        }
        config.failure_action = parsed;
    }
    if let Some(text) = &flags.monitor {
        config.monitor_ms = duration(monitor, text)?;
    }
    if let Some(text) = &flags.max_failure_ratio {
        config.max_failure_ratio_ppm = parse_ratio(ratio, text)?;
    }
    if let Some(text) = &flags.order {
        config.order = UpdateOrder::parse(order, text)?;
    }
    Ok(())
}

/// Applies `--health-*` / `--no-healthcheck` to `health`. `--no-healthcheck` with another
/// health flag is refused; alone it also drops the old interval, timeout ... (they mean
/// nothing without a check). `--health-cmd` replaces whatever test there was.
pub fn apply_health_flags(health: &mut HealthCheck, flags: &HealthFlags) -> Result<(), CoreError> {
    let others = flags.cmd.is_some()
        || flags.interval.is_some()
        || flags.timeout.is_some()
        || flags.retries.is_some()
        || flags.start_period.is_some();
    if flags.disable {
        if others {
            return Err(CoreError::BadRequest(
                "--no-healthcheck conflicts with --health-* options".into(),
            ));
        }
        *health = HealthCheck {
            test: HealthTest::Disabled,
            ..HealthCheck::default()
        };
        return Ok(());
    }
    if let Some(command) = &flags.cmd {
        if command.trim().is_empty() {
            return Err(CoreError::parse(
                "--health-cmd",
                command,
                "must not be empty",
            ));
        }
        health.test = HealthTest::Shell(command.clone());
    }
    if let Some(text) = &flags.interval {
        health.interval_ms = Some(duration("--health-interval", text)?);
    }
    if let Some(text) = &flags.timeout {
        health.timeout_ms = Some(duration("--health-timeout", text)?);
    }
    if let Some(text) = &flags.retries {
        let retries = whole_number("--health-retries", text)?;
        let retries = u32::try_from(retries)
            .map_err(|_| CoreError::parse("--health-retries", text, "too large"))?;
        if retries == 0 {
            return Err(CoreError::parse(
                "--health-retries",
                text,
                "must be at least 1",
            ));
        }
        health.retries = Some(retries);
    }
    if let Some(text) = &flags.start_period {
        health.start_period_ms = Some(duration("--health-start-period", text)?);
    }
    if others && health.test == HealthTest::Disabled {
        // Options for a check that is switched off: the options would be refused by
        // validation; the user meant "inherit the image's check with these timings".
        health.test = HealthTest::Inherit;
    }
    Ok(())
}

/// Applies the `--stop-grace-period`, health and rollout flags: the part `service create`
/// and `service update` share.
pub fn apply_shared_flags(
    spec: &mut ServiceSpec,
    health: &HealthFlags,
    stop_grace_period: Option<&str>,
    update: &RolloutFlags,
    rollback: &RolloutFlags,
) -> Result<(), CoreError> {
    apply_health_flags(&mut spec.health, health)?;
    if let Some(text) = stop_grace_period {
        spec.stop_grace_ms = Some(duration("--stop-grace-period", text)?);
    }
    apply_rollout_flags(&mut spec.update, update, Rollout::Update)?;
    apply_rollout_flags(&mut spec.rollback, rollback, Rollout::Rollback)?;
    Ok(())
}

/// `service update`'s flags applied to the service's current spec: the spec to send. Pure;
/// the result is validated (a bad combination, such as a reservation above the new limit, is
/// refused here rather than by the manager). `--force` bumps `force_update`, which makes the
/// spec differ and so redeploys every slot.
pub fn apply_changes(
    current: &ServiceSpec,
    changes: &ServiceChanges,
) -> Result<ServiceSpec, CoreError> {
    let mut spec = current.clone();
    if let Some(image) = &changes.image {
        spec.image = image.clone();
    }
    if let Some(args) = &changes.args {
        spec.command =
            shell_split(args).map_err(|reason| CoreError::parse("--args", args, reason))?;
    }
    for key in &changes.env_rm {
        spec.env.remove(key);
    }
    for pair in &changes.env_add {
        let (key, value) = flagged("--env-add", parse_key_value(pair))?;
        spec.env.insert(key, value);
    }
    for key in &changes.label_rm {
        spec.labels.remove(key);
    }
    for pair in &changes.label_add {
        let (key, value) = flagged("--label-add", parse_key_value(pair))?;
        spec.labels.insert(key, value);
    }
    for text in &changes.constraint_rm {
        let gone = flagged("--constraint-rm", Constraint::parse(text))?;
        spec.constraints.retain(|c| *c != gone);
    }
    for text in &changes.constraint_add {
        let added = flagged("--constraint-add", Constraint::parse(text))?;
        if !spec.constraints.contains(&added) {
            spec.constraints.push(added);
        }
    }
    if let Some(text) = &changes.replicas {
        let replicas = whole_number("--replicas", text)?;
        match spec.mode {
            ServiceMode::Replicated { .. } => spec.mode = ServiceMode::Replicated { replicas },
            ServiceMode::Global => {
                return Err(CoreError::BadRequest(
                    "--replicas can only be used with replicated mode".into(),
                ))
            }
        }
    }
    let resources = &mut spec.resources;
    if let Some(text) = &changes.reserve_cpu {
        resources.reservations.nano_cpus = flagged("--reserve-cpu", parse_cpus(text))?;
    }
    if let Some(text) = &changes.reserve_memory {
        resources.reservations.memory_bytes = flagged("--reserve-memory", parse_memory(text))?;
    }
    if let Some(text) = &changes.limit_cpu {
        resources.limits.nano_cpus = flagged("--limit-cpu", parse_cpus(text))?;
    }
    if let Some(text) = &changes.limit_memory {
        resources.limits.memory_bytes = flagged("--limit-memory", parse_memory(text))?;
    }
    if let Some(text) = &changes.restart_condition {
        spec.restart.condition = restart_condition(text)?;
    }
    if let Some(text) = &changes.restart_delay {
        spec.restart.delay_ms = Some(duration("--restart-delay", text)?);
    }
    if let Some(text) = &changes.restart_max_attempts {
        spec.restart.max_attempts = Some(whole_number("--restart-max-attempts", text)?);
    }
    apply_shared_flags(
        &mut spec,
        &changes.health,
        changes.stop_grace_period.as_deref(),
        &changes.update,
        &changes.rollback,
    )?;
    apply_publish_changes(&mut spec.ports, &changes.publish_add, &changes.publish_rm)?;
    apply_mount_changes(&mut spec, changes)?;
    if changes.force {
        spec.force_update = spec.force_update.wrapping_add(1);
    }
    spec.validate()?;
    Ok(spec)
}

/// `--publish-rm` then `--publish-add`: a removal names the published port (`8080`, or
/// `8080/udp` for one protocol), an addition replaces a port published on the same number and
/// protocol.
fn apply_publish_changes(
    ports: &mut Vec<PortConfig>,
    add: &[String],
    remove: &[String],
) -> Result<(), CoreError> {
    for text in remove {
        let (number, protocol) = match text.split_once('/') {
            Some((number, protocol)) => (number, Some(protocol)),
            None => (text.as_str(), None),
        };
        let published: u16 = number
            .trim()
            .parse()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| {
                CoreError::parse(
                    "--publish-rm",
                    text,
                    "expected PUBLISHED[/tcp|udp], 1-65535",
                )
            })?;
        let protocol = match protocol {
            None => None,
            Some("tcp") => Some(PortProtocol::Tcp),
            Some("udp") => Some(PortProtocol::Udp),
            Some(_) => {
                return Err(CoreError::parse(
                    "--publish-rm",
                    text,
                    "protocol is not tcp or udp",
                ))
            }
        };
        ports.retain(|port| {
            port.published != published || protocol.is_some_and(|p| p != port.protocol)
        });
    }
    for text in add {
        let added = parse_publish(text)?;
        ports
            .retain(|port| !(port.published == added.published && port.protocol == added.protocol));
        ports.push(added);
    }
    Ok(())
}

/// `--secret-rm`/`--config-rm` then `--secret-add`/`--config-add`: a removal names the
/// object (by name, or by the ID the reference holds); an addition replaces a reference on the
/// same target, and is resolved to the object's newest version by the leader. Removing what
/// the service does not use is an error, as in Docker.
fn apply_mount_changes(spec: &mut ServiceSpec, changes: &ServiceChanges) -> Result<(), CoreError> {
    for name in &changes.secret_rm {
        let before = spec.secrets.len();
        spec.secrets
            .retain(|r| r.name != *name && r.secret_id != *name);
        if spec.secrets.len() == before {
            return Err(CoreError::parse(
                "--secret-rm",
                name,
                "the service does not use this secret",
            ));
        }
    }
    for name in &changes.config_rm {
        let before = spec.configs.len();
        spec.configs
            .retain(|r| r.name != *name && r.config_id != *name);
        if spec.configs.len() == before {
            return Err(CoreError::parse(
                "--config-rm",
                name,
                "the service does not use this config",
            ));
        }
    }
    for text in &changes.secret_add {
        let added = flagged("--secret-add", parse_secret_reference(text))?;
        spec.secrets.retain(|r| r.target != added.target);
        spec.secrets.push(added);
    }
    for text in &changes.config_add {
        let added = flagged("--config-add", parse_config_reference(text))?;
        spec.configs.retain(|r| r.target != added.target);
        spec.configs.push(added);
    }
    Ok(())
}

/// Splits `text` into words as a POSIX shell would for the simple cases: blanks separate
/// words, `'...'` keeps everything literally, `"..."` keeps blanks and honours `\"`, `\\`,
/// and a backslash outside quotes escapes the next character. No expansion of any kind.
pub fn shell_split(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    // A word exists once anything (even an empty quoted string) was seen.
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("trailing backslash".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
#[path = "update_tests.rs"]
mod tests;
