//! Live convergence progress for `service create` / `scale`, as `docker service create` shows
//! it: an overall line, one bar per slot, then `verify: Service converged`. On a terminal the
//! bars are live (indicatif); otherwise each change of the overall count is printed as a line.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::client::{Client, ClientError};
use crate::net::admin::TaskView;

/// How long `service create` / `scale` show progress before giving up on convergence.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the tasks are fetched again while waiting.
pub const CONVERGE_POLL_PERIOD: Duration = Duration::from_millis(200);

/// Per-slot bars are drawn up to this many replicas; larger services show the overall line.
pub const SLOT_BARS_MAX: u64 = 20;

/// The task states a slot passes through on its way to running, in order.
const STAGES: [&str; 7] = [
    "new",
    "pending",
    "assigned",
    "accepted",
    "preparing",
    "starting",
    "running",
];

/// Tracks and shows one service converging.
pub struct Progress {
    replicas: u64,
    live: Option<LiveBars>,
    last_done: Option<u64>,
    /// Printed between `overall progress: ` and the counts.
    label: String,
}

struct LiveBars {
    _group: MultiProgress,
    overall: ProgressBar,
    slots: Vec<ProgressBar>,
}

/// What the tasks say: slots running, and whether the service converged.
pub fn convergence(tasks: &[TaskView], replicas: u64) -> (u64, bool) {
    let running_slots: std::collections::BTreeSet<u64> = tasks
        .iter()
        .filter(|t| t.current_state == "running" && t.desired_state == "running")
        .filter_map(|t| t.slot)
        .filter(|slot| (1..=replicas).contains(slot))
        .collect();
    let extra = tasks
        .iter()
        .any(|t| t.current_state == "running" && t.desired_state != "running");
    let done = running_slots.len() as u64;
    (done, done == replicas && !extra)
}

impl Progress {
    /// Progress towards `replicas` running tasks; live bars when stdout is a terminal.
    pub fn new(replicas: u64) -> Self {
        Self::labelled(replicas, "")
    }

    /// As [`Progress::new`], with `label` before the counts (`rolling back update: `).
    pub fn labelled(replicas: u64, label: &str) -> Self {
        // The label goes into an indicatif template, where braces would be placeholders.
        let label: String = label.chars().filter(|c| *c != '{' && *c != '}').collect();
        let live = std::io::stdout().is_terminal().then(|| {
            let group = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            let overall = group.add(ProgressBar::new(replicas));
            overall.set_style(
                ProgressStyle::with_template(&format!(
                    "overall progress: {label}{{pos}} out of {{len}} tasks"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let style = ProgressStyle::with_template("{prefix}: {msg:10} [{bar:50}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            let slots = if replicas <= SLOT_BARS_MAX {
                (1..=replicas)
                    .map(|slot| {
                        let bar = group.add(ProgressBar::new(STAGES.len() as u64));
                        bar.set_style(style.clone());
                        bar.set_prefix(format!("{slot}/{replicas}"));
                        bar
                    })
                    .collect()
            } else {
                Vec::new()
            };
            LiveBars {
                _group: group,
                overall,
                slots,
            }
        });
        Self {
            replicas,
            live,
            last_done: None,
            label,
        }
    }

    /// Shows the latest task list; returns whether the service converged.
    pub fn update(&mut self, tasks: &[TaskView]) -> bool {
        let (done, converged) = convergence(tasks, self.replicas);
        let mut newest: BTreeMap<u64, &str> = BTreeMap::new();
        for task in tasks.iter().filter(|t| t.desired_state == "running") {
            if let Some(slot) = task.slot {
                // Tasks come newest first within a slot.
                newest.entry(slot).or_insert(task.current_state.as_str());
            }
        }
        self.show(done, &newest);
        converged
    }

    /// Shows `done` tasks out of the replicas, and each slot (1-based) at its newest task's
    /// state (`new` when the slot has none yet).
    pub fn show(&mut self, done: u64, newest: &BTreeMap<u64, &str>) {
        match &self.live {
            Some(live) => {
                live.overall.set_position(done);
                for (index, bar) in live.slots.iter().enumerate() {
                    let state = newest.get(&(index as u64 + 1)).copied().unwrap_or("new");
                    let stage = STAGES.iter().position(|s| *s == state).unwrap_or(0) + 1;
                    bar.set_position(stage as u64);
                    bar.set_message(state.to_string());
                }
            }
            None => {
                if self.last_done != Some(done) {
                    println!(
                        "overall progress: {}{done} out of {} tasks",
                        self.label, self.replicas
                    );
                    self.last_done = Some(done);
                }
            }
        }
    }

    /// Leaves the final state on screen and says so.
    pub fn finish(self) {
        self.finish_bars();
        println!("verify: Service converged");
    }

    /// Leaves the final state on screen, without the `verify:` line.
    pub fn finish_bars(self) {
        match self.live {
            Some(live) => {
                live.overall.finish();
                for bar in &live.slots {
                    bar.finish();
                }
            }
            None if self.replicas <= SLOT_BARS_MAX => {
                for slot in 1..=self.replicas {
                    println!(
                        "{slot}/{}: running   [==================================================>]",
                        self.replicas
                    );
                }
            }
            None => {}
        }
    }
}

/// Shows `service` converging to `replicas` running tasks until it does, or fails after
/// [`CONVERGE_TIMEOUT`] pointing the user at `service ps`.
pub async fn wait_converged(
    client: &Client,
    service: &str,
    replicas: u64,
) -> Result<(), ClientError> {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    let mut progress = Progress::new(replicas);
    loop {
        let tasks = client.service_tasks(&[service.to_string()]).await?;
        if progress.update(&tasks) {
            progress.finish();
            return Ok(());
        }
        if Instant::now() > deadline {
            let (done, _) = convergence(&tasks, replicas);
            return Err(ClientError::Remote(format!(
                "service {service} did not converge within {} s ({done} of {replicas} running); see `flotilla service ps {service}`",
                CONVERGE_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(CONVERGE_POLL_PERIOD).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(slot: u64, current: &str, desired: &str) -> TaskView {
        TaskView {
            id: format!("t{slot}{current}"),
            name: format!("web.{slot}"),
            service_id: "s".into(),
            service_name: "web".into(),
            image: "busybox".into(),
            slot: Some(slot),
            node_id: None,
            node_hostname: None,
            desired_state: desired.into(),
            current_state: current.into(),
            state_since: String::new(),
            error: None,
            runtime: String::new(),
            runtime_id: None,
            exit_code: None,
            state_since_ms: 0,
            created_at_ms: 0,
            assigned_at_ms: None,
            started_at_ms: None,
            spec_version: 1,
            ports: Vec::new(),
            endpoints: Vec::new(),
        }
    }

    #[test]
    fn converged_means_every_slot_runs_and_nothing_else_does() {
        let two = [task(1, "running", "running"), task(2, "running", "running")];
        assert_eq!(convergence(&two, 2), (2, true));
        assert_eq!(convergence(&two[..1], 2), (1, false));
        let mut stopping = two.to_vec();
        stopping.push(task(3, "running", "shutdown"));
        assert_eq!(
            convergence(&stopping, 2),
            (2, false),
            "scale-down not finished"
        );
        let failed_history = [task(1, "running", "running"), task(1, "failed", "shutdown")];
        assert_eq!(convergence(&failed_history, 1), (1, true));
    }
}
