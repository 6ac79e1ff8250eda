use super::*;
use crate::core::spec::{ConstraintKey, ConstraintOp};

fn base() -> ServiceSpec {
    let mut spec = ServiceSpec::new("web", "busybox:1");
    spec.mode = ServiceMode::Replicated { replicas: 3 };
    spec.env.insert("KEEP".into(), "1".into());
    spec.env.insert("GONE".into(), "1".into());
    spec.labels.insert("tier".into(), "front".into());
    spec.constraints
        .push(Constraint::parse("node.role==worker").expect("constraint"));
    spec
}

fn some(text: &str) -> Option<String> {
    Some(text.to_string())
}

fn error_of(changes: &ServiceChanges) -> String {
    apply_changes(&base(), changes)
        .expect_err("the change must be refused")
        .to_string()
}

#[test]
fn no_flags_change_nothing_and_force_bumps_the_counter() {
    let spec = base();
    assert_eq!(
        apply_changes(&spec, &ServiceChanges::default()),
        Ok(spec.clone())
    );
    let forced = ServiceChanges {
        force: true,
        ..ServiceChanges::default()
    };
    let once = apply_changes(&spec, &forced).expect("force");
    assert_eq!(once.force_update, 1);
    let twice = apply_changes(&once, &forced).expect("force again");
    assert_eq!(twice.force_update, 2);
    assert!(
        !spec.differs_only_in_replicas(&once),
        "a forced spec is a rollout"
    );
}

#[test]
fn every_field_is_applied() {
    let changes = ServiceChanges {
        image: some("busybox:2"),
        args: some(r#"sh -c 'echo "hi there"' "a b" c\ d"#),
        env_add: vec!["NEW=2".into(), "KEEP=3".into()],
        env_rm: vec!["GONE".into(), "NEVER".into()],
        label_add: vec!["zone=east".into()],
        label_rm: vec!["tier".into()],
        constraint_add: vec!["node.labels.zone==east".into()],
        constraint_rm: vec!["node.role == worker".into()],
        replicas: some("5"),
        reserve_cpu: some("0.5"),
        reserve_memory: some("64m"),
        limit_cpu: some("1"),
        limit_memory: some("128m"),
        restart_condition: some("on-failure"),
        restart_delay: some("2s"),
        restart_max_attempts: some("4"),
        health: HealthFlags {
            cmd: some("true"),
            interval: some("1s"),
            timeout: some("500ms"),
            retries: some("2"),
            start_period: some("3s"),
            disable: false,
        },
        stop_grace_period: some("15s"),
        update: RolloutFlags {
            parallelism: some("2"),
            delay: some("1s"),
            failure_action: some("rollback"),
            monitor: some("10s"),
            max_failure_ratio: some("0.25"),
            order: some("start-first"),
        },
        rollback: RolloutFlags {
            parallelism: some("0"),
            delay: some("0s"),
            failure_action: some("continue"),
            monitor: some("1s"),
            max_failure_ratio: some("1"),
            order: some("stop-first"),
        },
        force: false,
        publish_add: Vec::new(),
        publish_rm: Vec::new(),
        secret_add: vec!["source=db,target=password,mode=0400".into()],
        secret_rm: Vec::new(),
        config_add: vec!["site".into()],
        config_rm: Vec::new(),
    };
    let spec = apply_changes(&base(), &changes).expect("valid changes");
    assert_eq!(
        (
            spec.secrets.len(),
            spec.secrets[0].target.as_str(),
            spec.secrets[0].mode
        ),
        (1, "password", 0o400)
    );
    assert!(
        spec.secrets[0].secret_id.is_empty(),
        "the leader resolves the name"
    );
    assert_eq!(spec.configs.len(), 1);
    assert_eq!(spec.configs[0].target, "site");
    assert_eq!(spec.image, "busybox:2");
    assert_eq!(
        spec.command,
        ["sh", "-c", r#"echo "hi there""#, "a b", "c d"]
    );
    assert_eq!(spec.env.get("NEW").map(String::as_str), Some("2"));
    assert_eq!(spec.env.get("KEEP").map(String::as_str), Some("3"));
    assert!(!spec.env.contains_key("GONE"));
    assert_eq!(spec.labels.len(), 1);
    assert_eq!(spec.labels.get("zone").map(String::as_str), Some("east"));
    assert_eq!(spec.constraints.len(), 1);
    assert_eq!(spec.constraints[0].key, ConstraintKey::Label("zone".into()));
    assert_eq!(spec.constraints[0].op, ConstraintOp::Eq);
    assert_eq!(spec.mode, ServiceMode::Replicated { replicas: 5 });
    assert_eq!(spec.resources.reservations.nano_cpus, 500_000_000);
    assert_eq!(spec.resources.reservations.memory_bytes, 64 << 20);
    assert_eq!(spec.resources.limits.nano_cpus, 1_000_000_000);
    assert_eq!(spec.resources.limits.memory_bytes, 128 << 20);
    assert_eq!(spec.restart.condition, RestartCondition::OnFailure);
    assert_eq!(spec.restart.delay_ms, Some(2_000));
    assert_eq!(spec.restart.max_attempts, Some(4));
    assert_eq!(
        spec.health,
        HealthCheck {
            test: HealthTest::Shell("true".into()),
            interval_ms: Some(1_000),
            timeout_ms: Some(500),
            retries: Some(2),
            start_period_ms: Some(3_000),
        }
    );
    assert_eq!(spec.stop_grace_ms, Some(15_000));
    assert_eq!(
        spec.update,
        UpdateConfig {
            parallelism: 2,
            delay_ms: 1_000,
            monitor_ms: 10_000,
            failure_action: FailureAction::Rollback,
            max_failure_ratio_ppm: 250_000,
            order: UpdateOrder::StartFirst,
        }
    );
    assert_eq!(
        spec.rollback,
        UpdateConfig {
            parallelism: 0,
            delay_ms: 0,
            monitor_ms: 1_000,
            failure_action: FailureAction::Continue,
            max_failure_ratio_ppm: 1_000_000,
            order: UpdateOrder::StopFirst,
        }
    );
    assert_eq!(spec.force_update, 0);
    assert_eq!(spec.name, "web", "the name never changes");
}

#[test]
fn replicas_alone_is_a_scale() {
    let changes = ServiceChanges {
        replicas: some("7"),
        ..ServiceChanges::default()
    };
    let spec = apply_changes(&base(), &changes).expect("scale");
    assert!(base().differs_only_in_replicas(&spec));
    let mut global = base();
    global.mode = ServiceMode::Global;
    let error = apply_changes(&global, &changes)
        .expect_err("global")
        .to_string();
    assert!(error.contains("--replicas"), "{error}");
}

#[test]
fn no_healthcheck_disables_and_conflicts_with_health_options() {
    let mut checked = base();
    checked.health = HealthCheck {
        test: HealthTest::Shell("true".into()),
        retries: Some(5),
        ..HealthCheck::default()
    };
    let off = ServiceChanges {
        health: HealthFlags {
            disable: true,
            ..HealthFlags::default()
        },
        ..ServiceChanges::default()
    };
    let spec = apply_changes(&checked, &off).expect("disable");
    assert_eq!(spec.health.test, HealthTest::Disabled);
    assert_eq!(spec.health.retries, None);
    let both = ServiceChanges {
        health: HealthFlags {
            disable: true,
            cmd: some("true"),
            ..HealthFlags::default()
        },
        ..ServiceChanges::default()
    };
    assert!(error_of(&both).contains("--no-healthcheck"));
}

#[test]
fn bad_values_name_their_flag() {
    let cases: Vec<(&str, ServiceChanges)> = vec![
        (
            "--update-delay",
            ServiceChanges {
                update: RolloutFlags {
                    delay: some("5x"),
                    ..RolloutFlags::default()
                },
                ..ServiceChanges::default()
            },
        ),
        (
            "--rollback-monitor",
            ServiceChanges {
                rollback: RolloutFlags {
                    monitor: some("5"),
                    ..RolloutFlags::default()
                },
                ..ServiceChanges::default()
            },
        ),
        (
            "--update-max-failure-ratio",
            ServiceChanges {
                update: RolloutFlags {
                    max_failure_ratio: some("1.5"),
                    ..RolloutFlags::default()
                },
                ..ServiceChanges::default()
            },
        ),
        (
            "--rollback-max-failure-ratio",
            ServiceChanges {
                rollback: RolloutFlags {
                    max_failure_ratio: some("-0.1"),
                    ..RolloutFlags::default()
                },
                ..ServiceChanges::default()
            },
        ),
        (
            "--update-order",
            ServiceChanges {
                update: RolloutFlags {
                    order: some("first"),
                    ..RolloutFlags::default()
                },
                ..ServiceChanges::default()
            },
        ),
        (
            "--update-failure-action",
            ServiceChanges {
                update: RolloutFlags {
                    failure_action: some("stop"),
                    ..RolloutFlags::default()
                },
                ..ServiceChanges::default()
            },
        ),
        (
            "--rollback-failure-action",
            ServiceChanges {
                rollback: RolloutFlags {
                    failure_action: some("rollback"),
                    ..RolloutFlags::default()
                },
                ..ServiceChanges::default()
            },
        ),
        (
            "--update-parallelism",
            ServiceChanges {
                update: RolloutFlags {
                    parallelism: some("-1"),
                    ..RolloutFlags::default()
                },
                ..ServiceChanges::default()
            },
        ),
        (
            "--update-parallelism",
            ServiceChanges {
                update: RolloutFlags {
                    parallelism: some("99999999999999999999999"),
                    ..RolloutFlags::default()
                },
                ..ServiceChanges::default()
            },
        ),
        (
            "--replicas",
            ServiceChanges {
                replicas: some("-1"),
                ..ServiceChanges::default()
            },
        ),
        (
            "--replicas",
            ServiceChanges {
                replicas: some("3.5"),
                ..ServiceChanges::default()
            },
        ),
        (
            "--health-retries",
            ServiceChanges {
                health: HealthFlags {
                    retries: some("0"),
                    ..HealthFlags::default()
                },
                ..ServiceChanges::default()
            },
        ),
        (
            "--health-retries",
            ServiceChanges {
                health: HealthFlags {
                    retries: some("4294967296"),
                    ..HealthFlags::default()
                },
                ..ServiceChanges::default()
            },
        ),
        (
            "--health-interval",
            ServiceChanges {
                health: HealthFlags {
                    interval: some("soon"),
                    ..HealthFlags::default()
                },
                ..ServiceChanges::default()
            },
        ),
        (
            "--health-timeout",
            ServiceChanges {
                health: HealthFlags {
                    timeout: some(""),
                    ..HealthFlags::default()
                },
                ..ServiceChanges::default()
            },
        ),
        (
            "--health-start-period",
            ServiceChanges {
                health: HealthFlags {
                    start_period: some("1d"),
                    ..HealthFlags::default()
                },
                ..ServiceChanges::default()
            },
        ),
        (
            "--health-cmd",
            ServiceChanges {
                health: HealthFlags {
                    cmd: some("  "),
                    ..HealthFlags::default()
                },
                ..ServiceChanges::default()
            },
        ),
        (
            "--stop-grace-period",
            ServiceChanges {
                stop_grace_period: some("10"),
                ..ServiceChanges::default()
            },
        ),
        (
            "--restart-delay",
            ServiceChanges {
                restart_delay: some("x"),
                ..ServiceChanges::default()
            },
        ),
        (
            "--restart-max-attempts",
            ServiceChanges {
                restart_max_attempts: some("-2"),
                ..ServiceChanges::default()
            },
        ),
        (
            "--restart-condition",
            ServiceChanges {
                restart_condition: some("always"),
                ..ServiceChanges::default()
            },
        ),
        (
            "--reserve-cpu",
            ServiceChanges {
                reserve_cpu: some("lots"),
                ..ServiceChanges::default()
            },
        ),
        (
            "--limit-memory",
            ServiceChanges {
                limit_memory: some("12x"),
                ..ServiceChanges::default()
            },
        ),
        (
            "--env-add",
            ServiceChanges {
                env_add: vec!["=x".into()],
                ..ServiceChanges::default()
            },
        ),
        (
            "--label-add",
            ServiceChanges {
                label_add: vec!["nokey".into()],
                ..ServiceChanges::default()
            },
        ),
        (
            "--constraint-add",
            ServiceChanges {
                constraint_add: vec!["node.cpu==2".into()],
                ..ServiceChanges::default()
            },
        ),
        (
            "--constraint-rm",
            ServiceChanges {
                constraint_rm: vec!["garbage".into()],
                ..ServiceChanges::default()
            },
        ),
        (
            "--args",
            ServiceChanges {
                args: some("sh -c 'oops"),
                ..ServiceChanges::default()
            },
        ),
    ];
    for (flag, changes) in cases {
        let error = error_of(&changes);
        assert!(error.contains(flag), "{flag}: {error}");
    }
    let error = error_of(&ServiceChanges {
        update: RolloutFlags {
            delay: some("5x"),
            ..RolloutFlags::default()
        },
        ..ServiceChanges::default()
    });
    assert_eq!(
        error,
        r#"invalid --update-delay "5x": unit is ms, s, m or h"#
    );
}

#[test]
fn a_combination_the_spec_forbids_is_refused() {
    let changes = ServiceChanges {
        reserve_memory: some("1g"),
        limit_memory: some("1m"),
        ..ServiceChanges::default()
    };
    assert!(error_of(&changes).contains("memory reservation exceeds"));
    let huge = ServiceChanges {
        update: RolloutFlags {
            delay: some("48h"),
            ..RolloutFlags::default()
        },
        ..ServiceChanges::default()
    };
    assert!(error_of(&huge).contains("24h"));
}

#[test]
fn secrets_and_configs_are_removed_by_name_and_replaced_on_the_same_target() {
    let mut start = base();
    let with = |secret_add: &[&str], secret_rm: &[&str], config_rm: &[&str]| ServiceChanges {
        secret_add: secret_add.iter().map(|s| s.to_string()).collect(),
        secret_rm: secret_rm.iter().map(|s| s.to_string()).collect(),
        config_rm: config_rm.iter().map(|s| s.to_string()).collect(),
        ..ServiceChanges::default()
    };
    start =
        apply_changes(&start, &with(&["db", "source=api,target=key"], &[], &[])).expect("added");
    start.secrets[0].secret_id = "id-db".into();
    start.secrets[0].version = 3;
    let spec =
        apply_changes(&start, &with(&["source=api2,target=key"], &[], &[])).expect("replaced");
    assert_eq!(spec.secrets.len(), 2);
    assert_eq!(
        spec.secrets[0].version, 3,
        "an untouched reference keeps its version"
    );
    assert_eq!(spec.secrets[1].name, "api2", "the same target is replaced");
    let spec = apply_changes(&spec, &with(&[], &["db"], &[])).expect("removed");
    assert_eq!(spec.secrets.len(), 1);
    let error = apply_changes(&spec, &with(&[], &["db"], &[])).expect_err("gone already");
    assert!(error.to_string().contains("--secret-rm"), "{error}");
    let error = apply_changes(&spec, &with(&[], &[], &["site"])).expect_err("never had it");
    assert!(error.to_string().contains("--config-rm"), "{error}");
    let error = apply_changes(&spec, &with(&["source=x,uid=root"], &[], &[])).expect_err("uid");
    assert!(error.to_string().contains("numeric"), "{error}");
}

#[test]
fn shell_split_handles_quotes_and_escapes() {
    assert_eq!(
        shell_split("  a  b\tc "),
        Ok(vec!["a".into(), "b".into(), "c".into()])
    );
    assert_eq!(shell_split("''"), Ok(vec![String::new()]));
    assert_eq!(shell_split(""), Ok(vec![]));
    assert_eq!(
        shell_split(r#"say "it's \"ok\"" 'a\b'"#),
        Ok(vec!["say".into(), r#"it's "ok""#.into(), r"a\b".into()])
    );
    assert_eq!(shell_split("a'b'c"), Ok(vec!["abc".into()]));
    assert!(shell_split("\"open").is_err());
    assert!(shell_split("end\\").is_err());
}
