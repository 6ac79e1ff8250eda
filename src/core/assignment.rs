//! A node's assignment set: what the leader computes from the store for each node, and what a
//! worker decides when a set arrives (which replicas to start or retire, and when to sweep
//! the runtime for containers of tasks it no longer has).
//!
//! Both sides live here, beside each other, so the rule that decides which tasks a node is
//! told about and the rule that decides which of them it runs cannot drift apart. The
//! dispatcher and the worker actor only carry sets over the wire and act on these answers.
//!
//! - [`delivery`]: the secrets and configs a set carries for its tasks (SPEC §9).

pub mod delivery;

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::core::model::{Task, TaskState};
use crate::core::store::{Store, TaskStatusUpdate};

/// Every task a worker should know about: running ones and ones it must stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentSet {
    /// A digest of the tasks and their desired states (see [`assignment_version`]): equal sets
    /// have equal versions on any leader. It is not ordered: a different version only says
    /// the set differs, not which is newer (that is [`sequence`](Self::sequence)). Heartbeats
    /// carry it, so the leader sees a stale worker.
    pub version: u64,
    /// The tasks, with their desired states.
    pub tasks: Vec<Task>,
    /// The node the set is for: a worker applies only a set that names it (a set pushed to the
    /// wrong address must not make that node stop its own tasks).
    #[serde(default)]
    pub node_id: String,
    /// The Raft index the set was built at (the store's applied index). Committed entries are
    /// never undone, so it only grows, on every leader: it orders sets that arrive on
    /// separate streams, and a worker never applies an older one after a newer.
    #[serde(default)]
    pub sequence: u64,
    /// The plaintext of the secrets and configs the tasks reference (see [`delivery`]), filled
    /// by the leader for this node only. Not part of the version: it follows from the tasks.
    /// The worker keeps it in memory and never saves it (`actors::worker::persist`). (No
    /// `skip_serializing_if`: bincode, on the wire, reads every field.)
    #[serde(default)]
    pub files: Vec<delivery::DeliveredFile>,
}

impl AssignmentSet {
    /// The set a worker holds before any leader has spoken and nothing was saved.
    pub fn empty(node_id: &str) -> AssignmentSet {
        AssignmentSet {
            version: 0,
            tasks: Vec::new(),
            node_id: node_id.to_string(),
            sequence: 0,
            files: Vec::new(),
        }
    }

    /// The set without its files: what may be written to disk or shown.
    pub fn without_files(&self) -> AssignmentSet {
        AssignmentSet {
            version: self.version,
            tasks: self.tasks.clone(),
            node_id: self.node_id.clone(),
            sequence: self.sequence,
            files: Vec::new(),
        }
    }
}

// ---- The leader's side -------------------------------------------------------------------

/// Whether a task placed on a node still belongs in the node's assignment set: finished
/// tasks drop out (the node has nothing left to do for them).
pub fn is_live(task: &Task) -> bool {
    !task.status.state.is_terminal()
}

/// The live tasks placed on (or targeting) `node_id`, newest first.
pub fn live_tasks_of<'s>(store: &'s Store, node_id: &str) -> impl Iterator<Item = &'s Task> {
    store
        .tasks_of_node(node_id)
        .into_iter()
        .filter(|task| is_live(task))
}

/// Every task a node must know of: those placed on it that have not finished. The version is a
/// digest of the tasks and their desired states, so equal sets have equal versions on any
/// leader. It carries no files: the leader adds them with [`delivery::files_for`].
pub fn assignment_set(store: &Store, node_id: &str) -> AssignmentSet {
    AssignmentSet {
        version: assignment_version(store, node_id),
        tasks: live_tasks_of(store, node_id).cloned().collect(),
        node_id: node_id.to_string(),
        sequence: store.applied_index(),
        files: Vec::new(),
    }
}

/// The version [`assignment_set`] would carry: the store's per-node digest, kept on apply (every
/// heartbeat compares it; visiting the node's tasks each time was the leader's largest CPU
/// cost at 1,500 nodes). Never 0, which is the version of a worker that holds no set yet.
pub fn assignment_version(store: &Store, node_id: &str) -> u64 {
    store.assignment_digest(node_id).max(1)
}

/// Splits a node's status report into the updates it may make (for tasks placed on it) and
/// the task IDs it may not (unknown tasks, or tasks of another node): a node reports only on
/// its own tasks, whatever IDs it sends.
pub fn own_updates(
    store: &Store,
    node_id: &str,
    updates: Vec<TaskStatusUpdate>,
) -> (Vec<TaskStatusUpdate>, Vec<String>) {
    let (own, refused): (Vec<_>, Vec<_>) = updates.into_iter().partition(|update| {
        store
            .task(&update.task_id)
            .is_some_and(|task| task.node_id.as_deref() == Some(node_id))
    });
    (
        own,
        refused.into_iter().map(|update| update.task_id).collect(),
    )
}

// ---- The worker's side -------------------------------------------------------------------

/// What a worker does with a set that arrived (see [`judge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// A newer set with other content: it replaces the held one.
    Replace,
    /// A set with the held content, no older than the held one: the leader confirms it (the
    /// worker keeps the content, takes the sequence, and the set counts as the leader's).
    Confirm,
    /// An older set (or one of the same sequence with other content, which no correct leader
    /// builds): ignored. Sets travel on separate streams and can overtake each other.
    Stale,
    /// A set for another node: refused (a leader pushed to a wrong address, or someone lied).
    NotOurs,
}

/// What a worker `own_node_id` holding `held` does with `incoming`. Versions are digests, not
/// counters, so ordering is by sequence; among sets no older than the held one a different
/// version replaces it (also one that went back to an earlier content, since that is what the
/// leader wants now).
pub fn judge(own_node_id: &str, held: &AssignmentSet, incoming: &AssignmentSet) -> Arrival {
    if incoming.node_id != own_node_id {
        return Arrival::NotOurs;
    }
    if incoming.sequence < held.sequence {
        return Arrival::Stale;
    }
    match (
        incoming.version == held.version,
        incoming.sequence == held.sequence,
    ) {
        (true, _) => Arrival::Confirm,
        (false, false) => Arrival::Replace,
        (false, true) => Arrival::Stale,
    }
}

/// Whether the worker must run a replica for `task`: the managers want it running and it has
/// not finished. Tasks in the set that fail this are ones the node must stop.
pub fn should_run(task: &Task) -> bool {
    task.desired_state == TaskState::Running && !task.status.state.is_terminal()
}

/// What a worker must do to make its replicas match its assignment set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicaPlan {
    /// Tasks to start a replica for (wanted, and no replica yet), in set order.
    pub start: Vec<Task>,
    /// Whether the replicas in `start` may only re-attach to what already runs. True until
    /// the leader has spoken: the set is then the one saved before this node went down, its
    /// tasks may have run already, and starting them afresh could run a task twice.
    pub adopt_only: bool,
    /// Task IDs of replicas no longer wanted, to retire (sorted).
    pub retire: Vec<String>,
    /// Whether to sweep the runtime for containers of tasks that have no replica (see
    /// [`orphans`]). Only on the leader's set: a saved set may be missing tasks the leader
    /// gave this node since, and sweeping on it would kill them.
    pub sweep_orphans: bool,
    /// Task IDs the managers want stopped that the store still sees live but this worker
    /// holds no replica for (sorted): nothing will ever report them, so the worker reports
    /// them shut down itself (their containers, if any, go with the orphan sweep). Only on the
    /// leader's set. Without this a task whose last report was lost (the agent crashed twice)
    /// stayed `running` in the store for ever (found by the whole-cluster simulation).
    pub settle: Vec<String>,
}

/// Compares the set with the replicas the worker runs (`running`: their task IDs).
/// `authoritative` says whether the set came from the leader or only from the state directory.
pub fn plan_replicas<'a>(
    set: &AssignmentSet,
    running: impl IntoIterator<Item = &'a str>,
    authoritative: bool,
) -> ReplicaPlan {
    let running: HashSet<&str> = running.into_iter().collect();
    let wanted: HashSet<&str> = set
        .tasks
        .iter()
        .filter(|task| should_run(task))
        .map(|task| task.id.as_str())
        .collect();
    let mut start_ids = HashSet::new();
    let start = set
        .tasks
        .iter()
        .filter(|task| should_run(task) && !running.contains(task.id.as_str()))
        // A set never names a task twice; if one did, one replica is enough.
        .filter(|task| start_ids.insert(task.id.as_str()))
        .cloned()
        .collect();
    let mut retire: Vec<String> = running
        .iter()
        .filter(|id| !wanted.contains(*id))
        .map(|id| id.to_string())
        .collect();
    retire.sort();
    let mut settle: Vec<String> = if authoritative {
        set.tasks
            .iter()
            .filter(|task| !should_run(task) && !task.status.state.is_terminal())
            .filter(|task| !running.contains(task.id.as_str()))
            .map(|task| task.id.clone())
            .collect()
    } else {
        Vec::new()
    };
    settle.sort();
    settle.dedup();
    ReplicaPlan {
        start,
        adopt_only: !authoritative,
        retire,
        sweep_orphans: authoritative,
        settle,
    }
}

/// The orphan sweep's decision: of the containers (or processes) the runtime lists for this
/// node, those whose task has no replica. Decide it against the replicas the worker has *when
/// the listing returns*, not when it was asked for: a newer set may have started replicas
/// meanwhile, and a sweep deciding on the older one would remove their fresh containers.
pub fn orphans<T>(
    listed: impl IntoIterator<Item = T>,
    task_id_of: impl Fn(&T) -> &str,
    has_replica: impl Fn(&str) -> bool,
) -> Vec<T> {
    listed
        .into_iter()
        .filter(|item| !has_replica(task_id_of(item)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::TaskStatus;
    use crate::core::store::Command;
    use crate::core::testkit::{self, Harness};

    fn task(id: &str, desired: TaskState, observed: TaskState) -> Task {
        let service = testkit::service("s1", "web", 3);
        let mut task = Task::new(id.into(), &service, Some(1), Some("n1".into()));
        task.desired_state = desired;
        task.status.state = observed;
        task
    }

    fn set(version: u64, tasks: Vec<Task>) -> AssignmentSet {
        AssignmentSet {
            version,
            tasks,
            node_id: "n1".into(),
            sequence: version,
            files: Vec::new(),
        }
    }

    fn sequenced(version: u64, sequence: u64, node_id: &str) -> AssignmentSet {
        AssignmentSet {
            version,
            tasks: Vec::new(),
            node_id: node_id.into(),
            sequence,
            files: Vec::new(),
        }
    }

    fn ids(tasks: &[Task]) -> Vec<&str> {
        tasks.iter().map(|task| task.id.as_str()).collect()
    }

    #[test]
    fn live_means_not_finished() {
        use TaskState::*;
        let table = [
            (New, true),
            (Pending, true),
            (Assigned, true),
            (Accepted, true),
            (Preparing, true),
            (Starting, true),
            (Running, true),
            (Complete, false),
            (Failed, false),
            (Shutdown, false),
            (Rejected, false),
            (Orphaned, false),
        ];
        for (observed, live) in table {
            assert_eq!(is_live(&task("t", Running, observed)), live, "{observed:?}");
        }
    }

    #[test]
    fn a_replica_runs_only_for_tasks_wanted_running_and_not_finished() {
        use TaskState::*;
        let table = [
            (Running, Assigned, true),
            (Running, Running, true),
            (Running, Failed, false),
            (Running, Complete, false),
            (Shutdown, Running, false),
            (Complete, Running, false),
            (Shutdown, Shutdown, false),
        ];
        for (desired, observed, runs) in table {
            assert_eq!(
                should_run(&task("t", desired, observed)),
                runs,
                "desired {desired:?}, observed {observed:?}"
            );
        }
    }

    #[test]
    fn a_set_replaces_the_held_one_when_newer_with_other_content() {
        use Arrival::*;
        let held = sequenced(7, 10, "n1");
        // (incoming version, incoming sequence, verdict)
        let table = [
            (8, 11, Replace),
            (3, 50, Replace),
            (7, 11, Confirm),
            (7, 10, Confirm),
            (7, 9, Stale),
            (8, 9, Stale),
            (8, 10, Stale),
        ];
        for (version, sequence, verdict) in table {
            assert_eq!(
                judge("n1", &held, &sequenced(version, sequence, "n1")),
                verdict,
                "incoming version {version}, sequence {sequence}"
            );
        }
    }

    #[test]
    fn a_set_naming_another_node_is_never_applied() {
        let held = AssignmentSet::empty("n1");
        for incoming in [
            sequenced(8, 11, "n2"),
            sequenced(8, 11, ""),
            sequenced(0, 0, "n2"),
        ] {
            assert_eq!(judge("n1", &held, &incoming), Arrival::NotOurs);
        }
    }

    #[test]
    fn the_first_set_from_the_leader_replaces_the_empty_one() {
        let held = AssignmentSet::empty("n1");
        assert_eq!(judge("n1", &held, &sequenced(8, 1, "n1")), Arrival::Replace);
    }

    #[test]
    fn the_replica_plan_starts_the_missing_and_retires_the_unwanted() {
        use TaskState::*;
        let assigned = set(
            5,
            vec![
                task("runs", Running, Running),
                task("new", Running, Assigned),
                task("stop", Shutdown, Running),
                task("failed", Running, Failed),
            ],
        );
        /// Replicas running, whether the set is the leader's, replicas to start, to retire.
        type Row<'a> = (&'a [&'a str], bool, &'a [&'a str], &'a [&'a str]);
        let table: [Row; 4] = [
            (&[], true, &["runs", "new"], &[]),
            (&["runs"], true, &["new"], &[]),
            (
                &["runs", "stop", "failed", "gone"],
                true,
                &["new"],
                &["failed", "gone", "stop"],
            ),
            (&["runs", "new"], false, &[], &[]),
        ];
        for (running, authoritative, start, retire) in table {
            let plan = plan_replicas(&assigned, running.iter().copied(), authoritative);
            assert_eq!(ids(&plan.start), start, "running {running:?}");
            assert_eq!(plan.retire, retire, "running {running:?}");
            assert_eq!(plan.adopt_only, !authoritative);
            assert_eq!(plan.sweep_orphans, authoritative);
        }
    }

    #[test]
    fn an_empty_set_retires_everything_and_starts_nothing() {
        let plan = plan_replicas(&AssignmentSet::empty("n1"), ["b", "a"], true);
        assert!(plan.start.is_empty());
        assert_eq!(plan.retire, ["a", "b"]);
    }

    #[test]
    fn a_task_named_twice_gets_one_replica() {
        let twice = set(
            2,
            vec![
                task("t", TaskState::Running, TaskState::Assigned),
                task("t", TaskState::Running, TaskState::Assigned),
            ],
        );
        assert_eq!(ids(&plan_replicas(&twice, [], true).start), ["t"]);
    }

    #[test]
    fn orphans_are_the_listed_tasks_without_a_replica() {
        let listed = vec![("c1", "kept"), ("c2", "gone"), ("c3", "also-gone")];
        // (replicas, orphan container IDs)
        let table: [(&[&str], &[&str]); 3] = [
            (&["kept"], &["c2", "c3"]),
            (&["kept", "gone", "also-gone"], &[]),
            (&[], &["c1", "c2", "c3"]),
        ];
        for (replicas, expected) in table {
            let found = orphans(
                listed.clone(),
                |(_, task_id)| task_id,
                |task_id| replicas.contains(&task_id),
            );
            let found: Vec<&str> = found.iter().map(|(container, _)| *container).collect();
            assert_eq!(found, expected, "replicas {replicas:?}");
        }
    }

    #[test]
    fn the_set_of_a_node_holds_its_live_tasks_and_a_nonzero_version() {
        let mut harness = Harness::with_nodes(vec![testkit::node("n1"), testkit::node("n2")]);
        assert_eq!(assignment_version(&harness.store, "n1"), 1);
        assert!(assignment_set(&harness.store, "n1").tasks.is_empty());
        let service = testkit::service("s1", "web", 3);
        harness.apply(Command::CreateService(service.clone()));
        let on = |id: &str, node: &str| Task::new(id.into(), &service, Some(1), Some(node.into()));
        harness.apply(Command::CreateTasks(vec![
            on("t1", "n1"),
            on("t2", "n1"),
            on("t3", "n2"),
        ]));
        // The Raft state machine records the applied index; the harness applies bare.
        harness.store.set_applied_index(2);
        let before = assignment_version(&harness.store, "n1");
        let mut held = assignment_set(&harness.store, "n1");
        held.tasks.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(ids(&held.tasks), ["t1", "t2"]);
        assert_eq!(held.version, before);
        harness.apply(Command::UpdateTaskStatuses(vec![TaskStatusUpdate {
            task_id: "t1".into(),
            status: TaskStatus {
                state: TaskState::Failed,
                ..TaskStatus::default()
            },
            runtime: None,
            runtime_id: None,
            endpoints: None,
        }]));
        harness.store.set_applied_index(3);
        let after = assignment_set(&harness.store, "n1");
        assert_eq!(ids(&after.tasks), ["t2"], "a finished task drops out");
        assert_ne!(after.version, before);
        assert_eq!(after.node_id, "n1");
        assert!(after.sequence > held.sequence, "built at a later index");
        assert_eq!(judge("n1", &held, &after), Arrival::Replace);
        assert_eq!(
            judge("n1", &after, &held),
            Arrival::Stale,
            "never back to the older"
        );
    }

    #[test]
    fn a_node_reports_only_on_its_own_tasks() {
        let mut harness = Harness::with_nodes(vec![testkit::node("n1"), testkit::node("n2")]);
        let service = testkit::service("s1", "web", 3);
        harness.apply(Command::CreateService(service.clone()));
        let on = |id: &str, node: &str| Task::new(id.into(), &service, Some(1), Some(node.into()));
        harness.apply(Command::CreateTasks(vec![
            on("mine", "n1"),
            on("theirs", "n2"),
        ]));
        let update = |task_id: &str| TaskStatusUpdate {
            task_id: task_id.into(),
            status: TaskStatus {
                state: TaskState::Failed,
                ..TaskStatus::default()
            },
            runtime: None,
            runtime_id: None,
            endpoints: None,
        };
        let report = vec![update("theirs"), update("mine"), update("unknown")];
        let (own, refused) = own_updates(&harness.store, "n1", report);
        let own: Vec<&str> = own.iter().map(|update| update.task_id.as_str()).collect();
        assert_eq!(own, ["mine"]);
        assert_eq!(refused, ["theirs", "unknown"]);
    }

    #[test]
    fn stopped_tasks_nobody_holds_are_settled_only_on_the_leaders_set() {
        use TaskState::*;
        let tasks = vec![
            task("held", Shutdown, Running),
            task("orphaned", Shutdown, Running),
            task("finished", Shutdown, Shutdown),
            task("wanted", Running, Running),
        ];
        let plan = plan_replicas(&set(7, tasks.clone()), ["held", "wanted"], true);
        assert_eq!(plan.settle, vec!["orphaned".to_string()]);
        assert_eq!(plan.retire, vec!["held".to_string()]);
        // A saved set may be stale: never settle on it.
        let saved = plan_replicas(&set(7, tasks), ["wanted"], false);
        assert!(saved.settle.is_empty());
    }
}
