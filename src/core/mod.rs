//! Pure, I/O-free cluster logic: model, store apply and its events, write planner, node
//! sessions, assignment sets, scheduler, orchestrator, restart backoff, the clock trait.
//!
//! Nothing here touches a socket, a clock or a global RNG: time arrives as `now_ms` (unix
//! milliseconds) and randomness as a passed-in `rand::Rng`, so the leader components that
//! drive these functions replay deterministically in simulation.
//!
//! # Layout
//!
//! - [`assignment`]: a node's assignment set: computed from the store for the leader, and the
//!   worker's replica plan and orphan sweep over it.
//! - [`ids`]: 25-character base36 IDs and name / ID / prefix resolution.
//! - [`model`]: nodes, services, tasks, the task state machine, the cluster record.
//! - [`spec`]: the service spec, constraints, restart policy, validation.
//! - [`parse`]: the CLI's value parsers (sizes, CPUs, durations, `K=V`).
//! - [`ports`]: published ports (`--publish`) and the endpoints tasks are reached at.
//! - [`routing`]: the mesh's routing table (published port -> running task endpoints).
//! - [`mounts`]: a spec's references to secrets and configs.
//! - [`store`]: the Raft-applied state machine (`check`, `apply`, events, snapshots, queries).
//! - [`scheduler`]: filters and spread over a store, returning a placement plan.
//! - [`sessions`]: node heartbeats and liveness over a `now_ms` passed in.
//! - [`updater`]: the next step of a rolling update or rollback, from the store alone.
//! - [`orchestrator`]: per-service reconcile (replicated and global) returning a plan.
//! - [`clock`]: the [`clock::Clock`] handed to actors at start-up, and a manual one for tests.
//! - [`control_plan`]: what an admin's write turns into (commands to propose), and the
//!   promote/demote rules.
//! - [`rollout`]: update and rollback configs, health checks, stop grace, `update_status`.
//! - [`health`]: the health check rules: check results in, starting/healthy/unhealthy out.
//! - [`restart`]: restart policy and backoff bookkeeping, per slot.
//! - [`events`]: the one road of applied changes to watchers, with Raft indexes and gaps.
//! - [`format`]: the version of every persistent format, and its header.
//! - [`gossip`]: SWIM membership (foca) and the spread of the routing table among nodes.
//! - [`error`]: [`CoreError`], the one error type of this layer.

pub mod assignment;
pub mod clock;
pub mod control_plan;
pub mod error;
pub mod event_history;
pub mod events;
pub mod format;
pub mod gossip;
pub mod health;
pub mod ids;
pub mod model;
pub mod mounts;
pub mod orchestrator;
pub mod parse;
pub mod ports;
pub mod restart;
pub mod rollout;
pub mod routing;
pub mod scheduler;
pub mod secret_plan;
pub mod secrets;
pub mod sessions;
pub mod spec;
pub mod store;
pub mod updater;

pub use error::CoreError;

#[cfg(test)]
pub(crate) mod testkit;
