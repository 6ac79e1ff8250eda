//! What `flotilla events` shows (SPEC §11): the store's applied changes as records with their
//! Raft index, kept by each manager in a bounded history that a client pages through by index.
//!
//! A client asks for the records after the last index it saw, so a watcher that falls behind
//! (a slow terminal, a lost connection, another manager answering) resumes where it stopped.
//! When the records it needs are gone (pushed out of the history, lost in a snapshot restore,
//! or older than this manager's start), the page says so ([`EventPage::missed_through`]) and
//! the client prints a warning: never a silent cut.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::core::events::EventBatch;
use crate::core::store::{Event, Store};

/// Records a manager keeps (about 10 MiB at ~1 KiB each).
pub const HISTORY_RECORDS_MAX: usize = 10_000;
/// Records in one page.
pub const PAGE_RECORDS_MAX: usize = 500;

/// One change, as `events` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The Raft index of the entry that made the change.
    pub index: u64,
    /// When this manager applied it (Unix ms): in index order on any one manager.
    pub time_ms: u64,
    /// `service`, `node`, `task`, `secret`, `config` or `cluster`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `create`, `update`, `remove` (`rotate` for a new secret version, `revoke` for revoked
    /// node certificates).
    pub action: String,
    /// The object's full ID.
    pub id: String,
    /// Attributes: `name` always when known, then what the kind has (a task's service, node,
    /// state and desired state).
    pub attributes: BTreeMap<String, String>,
}

/// What a client asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventQuery {
    /// Records after this index; `None`: none yet, only where the history stands now.
    pub after_index: Option<u64>,
    /// Only records at or after this time (Unix ms): `--since 10m`.
    pub since_ms: Option<u64>,
    /// `--filter K=V`: one value of a key suffices, every key must match (as Docker's).
    pub filters: Vec<(String, String)>,
}

/// One page of records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPage {
    /// Matching records, in index order.
    pub records: Vec<EventRecord>,
    /// Ask for the records after this index next (it covers records the filters dropped).
    pub through_index: u64,
    /// Records up to this index were asked for but are gone (see the module documentation).
    pub missed_through: Option<u64>,
}

/// Filter keys `events` accepts.
pub const FILTER_KEYS: &[&str] = &["type", "event", "id", "name", "service", "node"];

/// Refuses a filter key `events` does not know, before anything is asked.
pub fn check_filters(filters: &[(String, String)]) -> Result<(), String> {
    for (key, _) in filters {
        if !FILTER_KEYS.contains(&key.as_str()) {
            return Err(format!(
                "invalid filter {key:?}: expected one of {}",
                FILTER_KEYS.join(", ")
            ));
        }
    }
    Ok(())
}

/// A manager's recent changes.
#[derive(Debug, Clone)]
pub struct EventHistory {
    capacity: usize,
    records: VecDeque<EventRecord>,
    /// The applied index the records reach.
    through_index: u64,
    /// Records up to this index are not here.
    lost_through: u64,
    /// Names of objects seen, so that a removal can still say what went.
    names: HashMap<(String, String), String>,
    /// Removed objects whose names go at the next clean-up.
    forgotten: Vec<(String, String)>,
}

impl EventHistory {
    /// A history starting at `applied_index` (what came before is not known to it).
    pub fn at(applied_index: u64, capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            records: VecDeque::new(),
            through_index: applied_index,
            lost_through: applied_index,
            names: HashMap::new(),
            forgotten: Vec::new(),
        }
    }

    /// Records a batch of applied events; `store` is the store as it is now (at or past the
    /// batch), `now_ms` this manager's clock.
    pub fn record(&mut self, batch: &EventBatch, store: &Store, now_ms: u64) {
        if batch.lossy {
            // Some events of the batch's range are gone (a snapshot was restored, the
            // applier's buffer overflowed): the whole range counts as missed.
            self.lost_through = self.lost_through.max(batch.through_index);
        } else if batch.after_index > self.through_index {
            // A batch this history never got (a full mailbox).
            self.lost_through = self.lost_through.max(batch.after_index);
        }
        for indexed in &batch.events {
            if indexed.index <= self.through_index {
                continue;
            }
            if let Some(record) = self.describe(indexed.index, &indexed.event, store, now_ms) {
                if self.records.len() == self.capacity {
                    if let Some(dropped) = self.records.pop_front() {
                        self.lost_through = self.lost_through.max(dropped.index);
                    }
                }
                self.records.push_back(record);
            }
        }
        self.through_index = self.through_index.max(batch.through_index);
        if self.forgotten.len() > self.capacity {
            for key in std::mem::take(&mut self.forgotten) {
                self.names.remove(&key);
            }
        }
    }

    /// The records `query` asks for, at most [`PAGE_RECORDS_MAX`].
    pub fn page(&self, query: &EventQuery) -> EventPage {
        let Some(after) = query.after_index else {
            return EventPage {
                records: Vec::new(),
                through_index: self.through_index,
                missed_through: None,
            };
        };
        let missed_through = (after < self.lost_through).then_some(self.lost_through);
        let mut records: Vec<EventRecord> = Vec::new();
        let mut through_index = self.through_index;
        for record in self.records.iter().filter(|r| r.index > after) {
            // A full page ends between two indexes, never inside one (an entry can make
            // several records): the next page starts after the last index shown.
            if let Some(last) = records.last() {
                if records.len() >= PAGE_RECORDS_MAX && record.index != last.index {
                    through_index = last.index;
                    break;
                }
            }
            if matches(record, query) {
                records.push(record.clone());
            }
        }
        EventPage {
            records,
            through_index: through_index.max(after),
            missed_through,
        }
    }

    fn describe(
        &mut self,
        index: u64,
        event: &Event,
        store: &Store,
        now_ms: u64,
    ) -> Option<EventRecord> {
        let mut attributes = BTreeMap::new();
        let (kind, action, id) = match event {
            Event::ClusterChanged | Event::AutolockChanged => {
                let cluster = store.cluster()?;
                if matches!(event, Event::AutolockChanged) {
                    attributes.insert("autolock".into(), store.autolock().is_some().to_string());
                }
                ("cluster", "update", cluster.id.clone())
            }
            Event::NodeChanged { node_id } => {
                let node = store.node(node_id)?;
                self.remember("node", node_id, &node.hostname);
                attributes.insert("role".into(), format!("{:?}", node.role).to_lowercase());
                attributes.insert("status".into(), format!("{:?}", node.status).to_lowercase());
                let action = created_or_updated(node.meta.created_index, index);
                ("node", action, node_id.clone())
            }
            Event::NodeRemoved { node_id } => ("node", "remove", node_id.clone()),
            Event::CertificatesRevoked { node_id } => ("node", "revoke", node_id.clone()),
            Event::ServiceCreated { service_id } | Event::ServiceUpdated { service_id } => {
                let service = store.service(service_id)?;
                self.remember("service", service_id, &service.spec.name);
                let action = if matches!(event, Event::ServiceCreated { .. }) {
                    "create"
                } else {
                    "update"
                };
                ("service", action, service_id.clone())
            }
            Event::ServiceRemoved { service_id } => ("service", "remove", service_id.clone()),
            Event::TaskCreated(task) | Event::TaskUpdated(task) | Event::TaskRemoved(task) => {
                let action = match event {
                    Event::TaskCreated(_) => "create",
                    Event::TaskUpdated(_) => "update",
                    _ => "remove",
                };
                let service_name = self.name_of("service", &task.service_id, || {
                    store.service(&task.service_id).map(|s| s.spec.name.clone())
                });
                if let Some(name) = &service_name {
                    attributes.insert("service".into(), name.clone());
                }
                if let Some(node_id) = &task.node_id {
                    attributes.insert("node".into(), node_id.clone());
                }
                attributes.insert("state".into(), task.state.as_str().to_string());
                attributes.insert(
                    "desired_state".into(),
                    task.desired_state.as_str().to_string(),
                );
                let slot = store.task(&task.task_id).and_then(|t| t.slot);
                if let (Some(service), Some(slot)) = (&service_name, slot) {
                    self.remember("task", &task.task_id, &format!("{service}.{slot}"));
                }
                ("task", action, task.task_id.clone())
            }
            Event::SecretChanged { kind, id } => {
                let object = store.secret(*kind, id)?;
                self.remember(kind.as_str(), id, &object.name);
                let action = if object.versions.len() > 1 {
                    "rotate"
                } else {
                    "create"
                };
                attributes.insert(
                    "version".into(),
                    object.latest().map_or(0, |v| v.version).to_string(),
                );
                (kind.as_str(), action, id.clone())
            }
            Event::SecretRemoved { kind, id } => (kind.as_str(), "remove", id.clone()),
        };
        if !attributes.contains_key("name") {
            if let Some(name) = self.names.get(&(kind.to_string(), id.clone())) {
                attributes.insert("name".into(), name.clone());
            }
        }
        if action == "remove" {
            // Kept a little longer: the same entry's later events (a removed service's tasks)
            // still name it. Forgotten when the map outgrows what the history holds.
            self.forgotten.push((kind.to_string(), id.clone()));
        }
        Some(EventRecord {
            index,
            time_ms: now_ms,
            kind: kind.to_string(),
            action: action.to_string(),
            id,
            attributes,
        })
    }

    fn remember(&mut self, kind: &str, id: &str, name: &str) {
        self.names
            .insert((kind.to_string(), id.to_string()), name.to_string());
    }

    fn name_of(
        &mut self,
        kind: &str,
        id: &str,
        lookup: impl FnOnce() -> Option<String>,
    ) -> Option<String> {
        if let Some(name) = self.names.get(&(kind.to_string(), id.to_string())) {
            return Some(name.clone());
        }
        let name = lookup()?;
        self.remember(kind, id, &name);
        Some(name)
    }
}

fn created_or_updated(created_index: u64, index: u64) -> &'static str {
    if created_index == index {
        "create"
    } else {
        "update"
    }
}

fn matches(record: &EventRecord, query: &EventQuery) -> bool {
    if query.since_ms.is_some_and(|since| record.time_ms < since) {
        return false;
    }
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, value) in &query.filters {
        by_key.entry(key.as_str()).or_default().push(value.as_str());
    }
    by_key.into_iter().all(|(key, values)| {
        values.iter().any(|value| match key {
            "type" => record.kind == *value,
            "event" => record.action == *value,
            "id" => record.id.starts_with(value),
            "name" => record.attributes.get("name").is_some_and(|n| n == value),
            "service" => {
                (record.kind == "service"
                    && (record.id.starts_with(value)
                        || record.attributes.get("name").is_some_and(|n| n == value)))
                    || record.attributes.get("service").is_some_and(|s| s == value)
            }
            "node" => {
                (record.kind == "node" && record.id.starts_with(value))
                    || record
                        .attributes
                        .get("node")
                        .is_some_and(|n| n.starts_with(value))
            }
            _ => false,
        })
    })
}

#[cfg(test)]
#[path = "event_history_tests.rs"]
mod tests;
