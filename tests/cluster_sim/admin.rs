//! The admin client: joins the workers, then during chaos issues service create / scale /
//! remove, node drain / activate and node rm, one write at a time, and records which were
//! acknowledged (committed and answered), rejected (changed nothing) or unknown (timed out
//! or leadership changed: they may or may not have committed).

use flotilla::core::model::Availability;
use rand::Rng;

use crate::messages::{AdminOp, AdminOutcome, Payload};
use crate::sim::{trace, Simulation, ADMIN_ADDR, MANAGERS};

/// An unanswered write counts as unknown after this long.
const ADMIN_TIMEOUT_MS: u64 = 3_000;
const SERVICES_MAX: u64 = 4;
/// At most this many workers are removed, and one is drained at a time, so tasks always
/// have somewhere to run.
const REMOVALS_MAX: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Acked,
    Rejected,
    Unknown,
}

#[derive(Clone, Debug)]
pub struct OpRecord {
    pub op: AdminOp,
    pub outcome: Outcome,
}

struct Outstanding {
    op: AdminOp,
    op_id: u64,
    sent_at_ms: u64,
}

pub struct AdminClient {
    next_op_id: u64,
    outstanding: Option<Outstanding>,
    target: u64,
    pub history: Vec<OpRecord>,
    next_op_at_ms: u64,
    services_created: u64,
    /// Service names issued so far (created or maybe created).
    pub names: Vec<String>,
    /// A worker it drained (or may have), to activate before draining another.
    drained: Option<String>,
    workers: u64,
}

impl AdminClient {
    pub fn new(workers: u64) -> Self {
        Self {
            next_op_id: 1,
            outstanding: None,
            target: 1,
            history: Vec::new(),
            next_op_at_ms: 0,
            services_created: 0,
            names: Vec::new(),
            drained: None,
            workers,
        }
    }

    fn joined_all(&self) -> bool {
        (1..=self.workers).all(|i| {
            let node_id = format!("w{i}");
            self.history.iter().any(|r| {
                r.outcome == Outcome::Acked
                    && r.op
                        == AdminOp::Join {
                            node_id: node_id.clone(),
                        }
            })
        })
    }

    /// The write waiting for an answer, if any.
    pub fn outstanding_op(&self) -> Option<&AdminOp> {
        self.outstanding.as_ref().map(|o| &o.op)
    }

    pub fn removals_issued(&self) -> usize {
        self.history
            .iter()
            .filter(|r| {
                matches!(r.op, AdminOp::NodeRemove { .. }) && r.outcome != Outcome::Rejected
            })
            .count()
    }
}

impl Simulation {
    /// Issues the next write when none is outstanding (during chaos only; joins first).
    pub fn admin_issue(&mut self) {
        if self.admin.outstanding.is_some() || self.now_ms < self.admin.next_op_at_ms {
            return;
        }
        if !self.chaos && self.admin.joined_all() {
            return;
        }
        let op = if !self.admin.joined_all() {
            let missing = (1..=self.admin.workers)
                .map(|i| format!("w{i}"))
                .find(|node_id| {
                    !self.admin.history.iter().any(|r| {
                        r.outcome == Outcome::Acked
                            && r.op
                                == AdminOp::Join {
                                    node_id: node_id.clone(),
                                }
                    })
                });
            match missing {
                Some(node_id) => AdminOp::Join { node_id },
                None => return,
            }
        } else {
            let Some(op) = self.pick_op() else {
                return;
            };
            op
        };
        self.admin_send(op);
    }

    fn pick_op(&mut self) -> Option<AdminOp> {
        self.admin.next_op_at_ms = self.now_ms + self.rng.random_range(100..1_500);
        let roll = self.rng.random_range(0..100);
        let pick_name = |sim: &mut Simulation| -> Option<String> {
            let names = &sim.admin.names;
            (!names.is_empty()).then(|| names[sim.rng.random_range(0..names.len())].clone())
        };
        if roll < 30 {
            if self.admin.services_created >= SERVICES_MAX {
                return None;
            }
            self.admin.services_created += 1;
            let name = format!("svc{}", self.admin.services_created);
            self.admin.names.push(name.clone());
            let replicas = self.rng.random_range(0..=4);
            return Some(AdminOp::ServiceCreate { name, replicas });
        }
        if roll < 48 {
            let name = pick_name(self)?;
            let replicas = self.rng.random_range(0..=5);
            return Some(AdminOp::ServiceScale { name, replicas });
        }
        if roll < 60 {
            let name = pick_name(self)?;
            let image = format!("busybox:{}", self.rng.random_range(0..1_000));
            let start_first = self.rng.random_bool(0.5);
            let parallelism = self.rng.random_range(0..=2);
            return Some(AdminOp::ServiceUpdate {
                name,
                image,
                start_first,
                parallelism,
            });
        }
        if roll < 70 {
            let name = pick_name(self)?;
            return Some(AdminOp::ServiceRemove { name });
        }
        let workers = self.admin.workers;
        if roll < 88 {
            if let Some(node_id) = self.admin.drained.clone() {
                return Some(AdminOp::NodeAvailability {
                    node_id,
                    availability: Availability::Active,
                });
            }
            let node_id = format!("w{}", self.rng.random_range(1..=workers));
            self.admin.drained = Some(node_id.clone());
            return Some(AdminOp::NodeAvailability {
                node_id,
                availability: Availability::Drain,
            });
        }
        if self.admin.removals_issued() >= REMOVALS_MAX {
            return None;
        }
        // A worker that is down now is likely marked down in the store.
        let down: Vec<String> = self
            .workers
            .iter()
            .filter(|w| !w.agent_up && !w.removed)
            .map(|w| w.node_id.clone())
            .filter(|id| self.admin.drained.as_ref() != Some(id))
            .collect();
        if down.is_empty() {
            return None;
        }
        let node_id = down[self.rng.random_range(0..down.len())].clone();
        Some(AdminOp::NodeRemove { node_id })
    }

    fn admin_send(&mut self, op: AdminOp) {
        let op_id = self.admin.next_op_id;
        self.admin.next_op_id += 1;
        trace!(
            self.now_ms,
            "admin: {op:?} (attempt {op_id}) to manager {}",
            self.admin.target
        );
        self.admin.outstanding = Some(Outstanding {
            op: op.clone(),
            op_id,
            sent_at_ms: self.now_ms,
        });
        let to = self.admin.target;
        self.send(ADMIN_ADDR, to, Payload::AdminRequest { op_id, op });
    }

    fn admin_finish(&mut self, outcome: Outcome) {
        let Some(outstanding) = self.admin.outstanding.take() else {
            return;
        };
        trace!(self.now_ms, "admin: {:?} -> {outcome:?}", outstanding.op);
        match outcome {
            Outcome::Acked => self.stats.ops_acked += 1,
            Outcome::Rejected => self.stats.ops_rejected += 1,
            Outcome::Unknown => self.stats.ops_unknown += 1,
        }
        if outcome == Outcome::Acked {
            match &outstanding.op {
                AdminOp::Join { node_id } => {
                    if let Some(position) = self.workers.iter().position(|w| &w.node_id == node_id)
                    {
                        self.worker_joined(position);
                    }
                }
                AdminOp::NodeRemove { node_id } => {
                    self.stats.nodes_removed += 1;
                    if let Some(index) = self.admin_index.get(&outstanding.op_id) {
                        self.removed_at_index.insert(node_id.clone(), *index);
                    }
                }
                AdminOp::NodeAvailability {
                    node_id,
                    availability: Availability::Active,
                } if self.admin.drained.as_ref() == Some(node_id) => {
                    self.admin.drained = None;
                }
                _ => {}
            }
        }
        if let (
            Outcome::Rejected,
            AdminOp::NodeAvailability {
                node_id,
                availability: Availability::Drain,
            },
        ) = (outcome, &outstanding.op)
        {
            if self.admin.drained.as_ref() == Some(node_id) {
                self.admin.drained = None;
            }
        }
        self.admin.history.push(OpRecord {
            op: outstanding.op,
            outcome,
        });
    }

    pub fn admin_receive(&mut self, payload: Payload) {
        let Payload::AdminReply { op_id, outcome } = payload else {
            return;
        };
        let Some(outstanding) = &self.admin.outstanding else {
            return;
        };
        if outstanding.op_id != op_id {
            return;
        }
        match outcome {
            AdminOutcome::Done => self.admin_finish(Outcome::Acked),
            AdminOutcome::Rejected(_) => self.admin_finish(Outcome::Rejected),
            AdminOutcome::Unknown => self.admin_finish(Outcome::Unknown),
            AdminOutcome::NotLeader { leader } => {
                // Nothing changed: send the same write where the leader is said to be.
                self.admin.target = match leader {
                    Some(leader) if (1..=MANAGERS).contains(&leader) => leader,
                    _ => self.admin.target % MANAGERS + 1,
                };
                let op = outstanding.op.clone();
                self.admin.outstanding = None;
                self.admin_send(op);
            }
        }
    }

    /// Times out an unanswered write (unknown) and, in the quiet phase, stops issuing.
    pub fn step_admin(&mut self) {
        // Joins are retried until acknowledged, even in the quiet phase.
        self.admin_issue();
        let Some(outstanding) = &self.admin.outstanding else {
            return;
        };
        if self.now_ms >= outstanding.sent_at_ms + ADMIN_TIMEOUT_MS {
            self.admin.target = self.admin.target % MANAGERS + 1;
            self.admin_finish(Outcome::Unknown);
        }
    }
}
