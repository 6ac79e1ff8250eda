//! `Store::apply`: a committed command's deterministic effect on the store, and the events
//! it produces for watchers.

use super::{Command, Event, TaskRef};
use crate::core::error::CoreError;
use crate::core::model::{Meta, NodeRole, TaskState, TaskStatus, VersionedSpec};
use crate::core::rollout::{UpdateState, UpdateStatus};
use crate::core::sessions::refreshed_record;
use crate::core::store::{is_unassigned, Store};

fn touch(meta: &mut Meta, index: u64, now_ms: u64) {
    meta.version = index;
    meta.updated_at_ms = now_ms;
}

fn created(index: u64, now_ms: u64) -> Meta {
    Meta {
        version: index,
        created_index: index,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    }
}

impl Store {
    /// Applies a committed command at Raft `index`, with the leader's `now_ms` carried in the
    /// entry so every replica computes the same result. Re-runs [`Store::check`]; on `Err`
    /// the store is unchanged. Changed objects get `meta.version = index`.
    pub fn apply(
        &mut self,
        index: u64,
        now_ms: u64,
        command: Command,
    ) -> Result<Vec<Event>, CoreError> {
        self.check(&command)?;
        let mut events = Vec::new();
        match command {
            Command::InitCluster(info) => {
                self.cluster = Some(info);
                events.push(Event::ClusterChanged);
            }
            Command::RotateJoinSecret { role, secret } => {
                if let Some(cluster) = self.cluster.as_mut() {
                    match role {
                        NodeRole::Worker => cluster.worker_join_secret = secret.0,
                        NodeRole::Manager => cluster.manager_join_secret = secret.0,
                    }
                    events.push(Event::ClusterChanged);
                }
            }
            Command::UpsertNode(mut node) => {
                let mut meta = created(index, now_ms);
                if let Some(old) = self.nodes.get(&node.id) {
                    meta.created_index = old.meta.created_index;
                    meta.created_at_ms = old.meta.created_at_ms;
                }
                node.meta = meta;
                events.push(Event::NodeChanged {
                    node_id: node.id.clone(),
                });
                self.nodes.insert(node.id.clone(), node);
            }
            Command::UpdateNodeStatus { node_id, status } => {
                if let Some(node) = self.nodes.get_mut(&node_id) {
                    if node.status != status {
                        node.status = status;
                        touch(&mut node.meta, index, now_ms);
                        events.push(Event::NodeChanged { node_id });
                    }
                }
            }
            Command::UpdateNodeSpec(update) => {
                if let Some(node) = self.nodes.get_mut(&update.node_id) {
                    if let Some(availability) = update.availability {
                        node.availability = availability;
                    }
                    if let Some(role) = update.role {
                        node.role = role;
                    }
                    node.labels.extend(update.labels_add);
                    for key in &update.labels_rm {
                        node.labels.remove(key);
                    }
                    touch(&mut node.meta, index, now_ms);
                    events.push(Event::NodeChanged {
                        node_id: update.node_id,
                    });
                }
            }
            Command::RemoveNode { node_id, .. } => {
                self.nodes.remove(&node_id);
                events.push(Event::NodeRemoved { node_id });
            }
            Command::CreateService(mut service) => {
                service.meta = created(index, now_ms);
                service.spec_version = index;
                service.previous_spec = None;
                service.update_status = None;
                self.index
                    .service_by_name
                    .insert(service.spec.name.clone(), service.id.clone());
                events.push(Event::ServiceCreated {
                    service_id: service.id.clone(),
                });
                self.services.insert(service.id.clone(), service);
            }
            Command::UpdateService {
                service_id, spec, ..
            } => {
                self.replace_spec(index, now_ms, service_id, spec, &mut events);
            }
            Command::RollbackService {
                service_id,
                message,
                ..
            } => {
                if let Some(service) = self.services.get_mut(&service_id) {
                    if let Some(previous) = service.previous_spec.take() {
                        self.index.service_by_name.remove(&service.spec.name);
                        self.index
                            .service_by_name
                            .insert(previous.spec.name.clone(), service_id.clone());
                        let old = std::mem::replace(&mut service.spec, previous.spec);
                        service.previous_spec = Some(VersionedSpec {
                            spec: old,
                            version: service.spec_version,
                        });
                        service.spec_version = previous.version;
                        service.update_status = Some(UpdateStatus {
                            state: UpdateState::RollbackStarted,
                            message,
                            started_at_ms: now_ms,
                            completed_at_ms: None,
                        });
                        touch(&mut service.meta, index, now_ms);
                        events.push(Event::ServiceUpdated { service_id });
                    }
                }
            }
            Command::SetUpdateStatus {
                service_id,
                spec_version,
                status,
            } => {
                if let Some(service) = self.services.get_mut(&service_id) {
                    if service.spec_version == spec_version
                        && service.update_status.as_ref() != Some(&status)
                    {
                        service.update_status = Some(status);
                        touch(&mut service.meta, index, now_ms);
                        events.push(Event::ServiceUpdated { service_id });
                    }
                }
            }
            Command::RemoveService { service_id } => {
                if let Some(service) = self.services.remove(&service_id) {
                    self.index.service_by_name.remove(&service.spec.name);
                    events.push(Event::ServiceRemoved {
                        service_id: service_id.clone(),
                    });
                    let task_ids: Vec<String> = self
                        .service_task_iter(&service_id)
                        .filter(|t| t.desired_state < TaskState::Shutdown)
                        .map(|t| t.id.clone())
                        .collect();
                    for task_id in task_ids {
                        self.set_desired(index, now_ms, &task_id, TaskState::Shutdown, &mut events);
                    }
                }
            }
            Command::CreateTasks(tasks) => {
                for mut task in tasks {
                    let Some(service) = self.services.get(&task.service_id) else {
                        continue;
                    };
                    if task.spec_version == 0 {
                        // A command of an older release, which had no spec versions.
                        task.spec_version = service.spec_version;
                    }
                    task.meta = created(index, now_ms);
                    task.status.since_ms = now_ms;
                    events.push(Event::TaskCreated(TaskRef::of(&task)));
                    self.put_task(task);
                }
            }
            Command::AssignTasks(assignments) => {
                for (task_id, node_id) in assignments {
                    let Some(task) = self.tasks.get(&task_id) else {
                        continue;
                    };
                    let targets_other = task.node_id.as_ref().is_some_and(|n| *n != node_id);
                    if !is_unassigned(task) || targets_other || !self.nodes.contains_key(&node_id) {
                        continue;
                    }
                    let mut task = task.clone();
                    task.node_id = Some(node_id);
                    task.assigned_at_ms = Some(now_ms);
                    task.status = TaskStatus {
                        state: TaskState::Assigned,
                        since_ms: now_ms,
                        message: "scheduler assigned task to node".into(),
                        ..TaskStatus::default()
                    };
                    touch(&mut task.meta, index, now_ms);
                    events.push(Event::TaskUpdated(TaskRef::of(&task)));
                    self.put_task(task);
                }
            }
            Command::UpdateTaskStatuses(updates) => {
                for update in updates {
                    let Some(task) = self.tasks.get(&update.task_id) else {
                        continue;
                    };
                    if !task.status.state.can_advance_to(update.status.state) {
                        continue;
                    }
                    let mut task = task.clone();
                    if update.status.state == TaskState::Running {
                        task.started_at_ms = Some(update.status.since_ms);
                    }
                    task.status = update.status;
                    if let Some(runtime) = update.runtime {
                        task.runtime = runtime;
                    }
                    if update.runtime_id.is_some() {
                        task.runtime_id = update.runtime_id;
                    }
                    if let Some(endpoints) = update.endpoints {
                        task.endpoints = endpoints;
                    }
                    touch(&mut task.meta, index, now_ms);
                    events.push(Event::TaskUpdated(TaskRef::of(&task)));
                    self.put_task(task);
                }
            }
            Command::SetTaskDesiredStates(items) => {
                for (task_id, state) in items {
                    self.set_desired(index, now_ms, &task_id, state, &mut events);
                }
            }
            Command::RemoveTasks(task_ids) => {
                for task_id in task_ids {
                    if let Some(task) = self.take_task(&task_id) {
                        events.push(Event::TaskRemoved(TaskRef::of(&task)));
                    }
                }
            }
            Command::SetPendingReasons(items) => {
                for (task_id, reason) in items {
                    let Some(task) = self.tasks.get(&task_id) else {
                        continue;
                    };
                    if !is_unassigned(task) {
                        continue;
                    }
                    let mut task = task.clone();
                    if task.status.state < TaskState::Pending {
                        task.status.state = TaskState::Pending;
                        task.status.since_ms = now_ms;
                    }
                    task.status.error = Some(reason);
                    touch(&mut task.meta, index, now_ms);
                    events.push(Event::TaskUpdated(TaskRef::of(&task)));
                    self.put_task(task);
                }
            }
            Command::RevokeCertificates(revocation) => {
                self.revocations.record(&revocation, index);
                events.push(Event::CertificatesRevoked {
                    node_id: revocation.node_id,
                });
            }
            Command::RefreshNode(refresh) => {
                if let Some(node) = self.nodes.get_mut(&refresh.node_id) {
                    // Judged against the record as it is now, not as the dispatcher read it.
                    if let Some(mut refreshed) = refreshed_record(node, &refresh.description) {
                        touch(&mut refreshed.meta, index, now_ms);
                        *node = refreshed;
                        events.push(Event::NodeChanged {
                            node_id: refresh.node_id,
                        });
                    }
                }
            }
            Command::CreateSecret(mut object) => {
                object.meta = created(index, now_ms);
                events.push(Event::SecretChanged {
                    kind: object.kind,
                    id: object.id.clone(),
                });
                self.objects_mut(object.kind)
                    .insert(object.id.clone(), object);
            }
            Command::RemoveSecret { kind, id } => {
                if self.objects_mut(kind).remove(&id).is_some() {
                    events.push(Event::SecretRemoved { kind, id });
                }
            }
            Command::RotateSecret { kind, id, version } => {
                let number = version.version;
                if let Some(object) = self.objects_mut(kind).get_mut(&id) {
                    object.versions.push(version);
                    touch(&mut object.meta, index, now_ms);
                }
                // Its users move to the new version as `service update` would move them.
                for (service_id, spec) in self.specs_moved_to(kind, &id, number) {
                    self.replace_spec(index, now_ms, service_id, spec, &mut events);
                }
                events.push(Event::SecretChanged { kind, id });
            }
            Command::SetAutolock(sealed) => {
                self.autolock = sealed;
                events.push(Event::AutolockChanged);
            }
        }
        Ok(events)
    }

    /// A service's new spec: a rollout (the old spec becomes the previous one, SPEC §7)
    /// unless only the replica count changed.
    fn replace_spec(
        &mut self,
        index: u64,
        now_ms: u64,
        service_id: String,
        spec: crate::core::spec::ServiceSpec,
        events: &mut Vec<Event>,
    ) {
        let Some(service) = self.services.get_mut(&service_id) else {
            return;
        };
        self.index.service_by_name.remove(&service.spec.name);
        self.index
            .service_by_name
            .insert(spec.name.clone(), service_id.clone());
        if !service.spec.differs_only_in_replicas(&spec) {
            let old = std::mem::replace(&mut service.spec, spec.clone());
            service.previous_spec = Some(VersionedSpec {
                spec: old,
                version: service.spec_version,
            });
            service.spec_version = index;
            service.update_status = Some(UpdateStatus {
                state: UpdateState::Updating,
                message: "update in progress".into(),
                started_at_ms: now_ms,
                completed_at_ms: None,
            });
        }
        service.spec = spec;
        touch(&mut service.meta, index, now_ms);
        events.push(Event::ServiceUpdated { service_id });
    }

    /// Moves a task's desired state forward. A task no worker has seen yet (not assigned)
    /// is also marked shutdown at once: nobody else would ever report it stopped.
    fn set_desired(
        &mut self,
        index: u64,
        now_ms: u64,
        task_id: &str,
        state: TaskState,
        events: &mut Vec<Event>,
    ) {
        let Some(task) = self.tasks.get(task_id) else {
            return;
        };
        if state <= task.desired_state {
            return;
        }
        let mut task = task.clone();
        task.desired_state = state;
        if state > TaskState::Running && task.status.state < TaskState::Assigned {
            task.status = TaskStatus {
                state: TaskState::Shutdown,
                since_ms: now_ms,
                message: "shut down before assignment".into(),
                ..TaskStatus::default()
            };
        }
        touch(&mut task.meta, index, now_ms);
        events.push(Event::TaskUpdated(TaskRef::of(&task)));
        self.put_task(task);
    }
}
