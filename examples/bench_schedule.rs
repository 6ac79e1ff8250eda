//! Scheduler and orchestrator throughput with no I/O: the pure `flotilla::core` functions a
//! leader runs, over an in-memory store.
//!
//! `cargo run --release --example bench_schedule [-- --nodes 100 --replicas 1000,10000
//! --schedule-batch 10000]` prints one JSON object per replica count.
//!
//! For each N: 100 ready nodes, one replicated service of N replicas, then reconcile (plan N
//! task creations) -> apply the creations -> schedule (at most `--schedule-batch` tasks a pass)
//! -> apply the assignments, repeated until every task is assigned. Each phase is timed. The
//! commands are also bincode-encoded as a Raft entry would carry them (`encode_ms`,
//! `command_bytes_max`) to show what the log would have to move.

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use flotilla::core::ids;
use flotilla::core::model::{Availability, Node, NodeRole, NodeStatus, Resources, Service};
use flotilla::core::orchestrator;
use flotilla::core::restart::RestartTracker;
use flotilla::core::scheduler;
use flotilla::core::spec::{ServiceMode, ServiceSpec};
use flotilla::core::store::{Command, Store};

/// A store with a Raft-like index and a clock that advance with every applied command.
struct Applier {
    store: Store,
    index: u64,
    now_ms: u64,
}

impl Applier {
    fn apply(&mut self, command: Command) -> anyhow::Result<()> {
        self.index += 1;
        self.now_ms += 1;
        self.store
            .apply(self.index, self.now_ms, command)
            .map_err(|e| anyhow::anyhow!("apply failed: {e}"))?;
        Ok(())
    }
}

fn worker(id: String) -> Node {
    Node {
        hostname: format!("host-{id}"),
        id,
        role: NodeRole::Worker,
        status: NodeStatus::Ready,
        availability: Availability::Active,
        labels: Default::default(),
        addr: "127.0.0.1:4240".into(),
        engine_version: "sim".into(),
        resources: Resources {
            nano_cpus: 4_000_000_000,
            memory_bytes: 8 << 30,
        },
        meta: Default::default(),
    }
}

/// Time spent per phase, summed over passes.
#[derive(Default)]
struct Phases {
    reconcile: Duration,
    apply_creates: Duration,
    schedule: Duration,
    apply_assignments: Duration,
    encode: Duration,
    command_bytes_max: usize,
    schedule_passes: usize,
}

fn encode(commands: &[Command], phases: &mut Phases) -> anyhow::Result<()> {
    let started = Instant::now();
    for command in commands {
        let bytes = bincode::serde::encode_to_vec(command, bincode::config::standard())?;
        phases.command_bytes_max = phases.command_bytes_max.max(bytes.len());
    }
    phases.encode += started.elapsed();
    Ok(())
}

fn run(nodes: usize, replicas: u64, schedule_batch: usize) -> anyhow::Result<serde_json::Value> {
    let mut rng = StdRng::seed_from_u64(replicas);
    let mut applier = Applier {
        store: Store::new(),
        index: 0,
        now_ms: 1_790_000_000_000,
    };
    for _ in 0..nodes {
        applier.apply(Command::UpsertNode(worker(ids::new_id(&mut rng))))?;
    }
    let mut spec = ServiceSpec::new("bench", "busybox");
    spec.mode = ServiceMode::Replicated { replicas };
    let service_id = ids::new_id(&mut rng);
    applier.apply(Command::CreateService(Service::new(
        service_id.clone(),
        spec,
    )))?;

    let mut phases = Phases::default();
    let mut restarts = RestartTracker::new();
    let total = Instant::now();

    let started = Instant::now();
    let plan = orchestrator::reconcile_service(
        &applier.store,
        &service_id,
        applier.now_ms,
        &mut restarts,
        &mut rng,
    );
    phases.reconcile += started.elapsed();
    let commands = plan.into_commands();
    encode(&commands, &mut phases)?;
    let started = Instant::now();
    for command in commands {
        applier.apply(command)?;
    }
    phases.apply_creates += started.elapsed();

    loop {
        let started = Instant::now();
        let plan = scheduler::schedule_unassigned(&applier.store, schedule_batch);
        phases.schedule += started.elapsed();
        if plan.assignments.is_empty() {
            break;
        }
        phases.schedule_passes += 1;
        let commands = plan.into_commands();
        encode(&commands, &mut phases)?;
        let started = Instant::now();
        for command in commands {
            applier.apply(command)?;
        }
        phases.apply_assignments += started.elapsed();
    }
    // The encode phase is not part of what the leader's components do in memory.
    let total = total.elapsed() - phases.encode;

    let tasks = applier.store.tasks_of_service(&service_id).len();
    let unassigned = applier.store.unassigned_tasks().count();
    if tasks as u64 != replicas || unassigned != 0 {
        anyhow::bail!("{tasks} tasks for {replicas} replicas, {unassigned} unassigned");
    }
    let ms = |d: Duration| common::round3(d.as_secs_f64() * 1e3);
    Ok(serde_json::json!({
        "benchmark": "schedule",
        "nodes": nodes,
        "tasks": tasks,
        "schedule_batch": schedule_batch,
        "schedule_passes": phases.schedule_passes,
        "reconcile_ms": ms(phases.reconcile),
        "apply_creates_ms": ms(phases.apply_creates),
        "schedule_ms": ms(phases.schedule),
        "apply_assignments_ms": ms(phases.apply_assignments),
        "total_ms": ms(total),
        "us_per_task": common::round3(total.as_secs_f64() * 1e6 / tasks as f64),
        "encode_ms": ms(phases.encode),
        "command_bytes_max": phases.command_bytes_max,
    }))
}

fn main() -> anyhow::Result<()> {
    let nodes: usize = common::argument("--nodes", 100)?;
    let schedule_batch: usize = common::argument("--schedule-batch", 10_000)?;
    let replica_counts =
        common::string_argument("--replicas")?.unwrap_or_else(|| "1000,10000,100000".into());
    for count in replica_counts.split(',') {
        let replicas: u64 = count.trim().parse()?;
        println!("{}", run(nodes, replicas, schedule_batch.max(1))?);
    }
    Ok(())
}
