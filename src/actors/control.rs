//! The control actor (managers): carries out the admin's commands against the store.
//!
//! On the leader it validates, proposes and answers; reads wait for a linearizable read
//! barrier first. On a follower it forwards the request to the leader and relays the answer.
//! It also admits joining nodes: checks the join secret, signs the node's certificate and,
//! for managers, adds the new Raft voter.

use std::net::SocketAddr;
use std::time::Duration;

use actix::prelude::*;

use crate::actors::raft::{
    ChangeMembership, LeadershipChanged, LinearizableRead, Propose, RaftActor, RaftError,
};
use crate::actors::transport::Request;
use crate::consensus::MembershipChange;
use crate::core::model::{Node, NodeRole, NodeStatus, Service};
use crate::core::spec::ServiceMode;
use crate::core::store::{Command, NodeSpecUpdate, Store};
use crate::core::{ids, CoreError};
use crate::net::control::{
    ControlReply, ControlRequest, NodeView, ServiceView, TaskView, TASK_PAGE_MAX,
};
use crate::net::message::{
    ErrorKind, JoinAccepted, JoinRequest, Message as WireMessage, WireError,
};
use crate::net::tls::{certificate_digest, ClusterCa, Role};
use crate::net::token::{self, JoinToken};
use crate::consensus::store_machine::{raft_id_of, SharedStore};

/// How long a forwarded request may take at the leader.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// An admin command (or one forwarded by another manager).
#[derive(Debug, Message)]
#[rtype(result = "Result<ControlReply, WireError>")]
pub struct Control {
    /// The command.
    pub request: ControlRequest,
}

/// A node asks to join.
#[derive(Debug, Message)]
#[rtype(result = "Result<JoinAccepted, WireError>")]
pub struct Admit {
    /// The request as received.
    pub request: JoinRequest,
}

/// The control actor. See the module documentation.
pub struct ControlActor {
    node_id: String,
    store: SharedStore,
    raft: Addr<RaftActor>,
    transport: Recipient<Request>,
    leadership: tokio::sync::watch::Sender<Option<LeadershipChanged>>,
}

impl ControlActor {
    /// A control actor for the manager `node_id`.
    pub fn new(
        node_id: String,
        store: SharedStore,
        raft: Addr<RaftActor>,
        transport: Recipient<Request>,
    ) -> Self {
        Self {
            node_id,
            store,
            raft,
            transport,
            leadership: tokio::sync::watch::channel(None).0,
        }
    }

    fn context(&self) -> RequestContext {
        RequestContext {
            node_id: self.node_id.clone(),
            store: self.store.clone(),
            raft: self.raft.clone(),
            transport: self.transport.clone(),
            leadership: self.leadership.subscribe(),
        }
    }
}

/// What one request needs, detached from the actor so it can wait without blocking it.
struct RequestContext {
    node_id: String,
    store: SharedStore,
    raft: Addr<RaftActor>,
    transport: Recipient<Request>,
    leadership: tokio::sync::watch::Receiver<Option<LeadershipChanged>>,
}

/// Where a request must go now.
enum Route {
    Local,
    Leader(SocketAddr),
    Nowhere,
}

impl RequestContext {
    /// The route as of the current leadership, marking it seen on `watch` so that
    /// `watch.changed()` waits for the next change.
    fn route(watch: &mut tokio::sync::watch::Receiver<Option<LeadershipChanged>>) -> Route {
        match &*watch.borrow_and_update() {
            Some(leadership) if leadership.is_leader => Route::Local,
            Some(leadership) => match leadership.leader_addr.as_deref().map(str::parse) {
                Some(Ok(addr)) => Route::Leader(addr),
                _ => Route::Nowhere,
            },
            None => Route::Nowhere,
        }
    }

    /// Runs `local` on the leader, or forwards with `forward` to it. A forward is abandoned
    /// as soon as leadership moves (the old leader may be dead), and the request goes to the
    /// new leader; without any leader it waits up to the quorum timeout.
    async fn on_leader<T, L, F>(self, local: L, forward: F) -> Result<T, WireError>
    where
        L: AsyncFnOnce(&RequestContext) -> Result<T, WireError>,
        F: AsyncFn(&RequestContext, SocketAddr) -> Result<T, WireError>,
    {
        let deadline = tokio::time::Instant::now() + crate::actors::raft::QUORUM_TIMEOUT;
        loop {
            let mut watch = self.leadership.clone();
            match Self::route(&mut watch) {
                Route::Local => return local(&self).await,
                Route::Leader(addr) => {
                    tokio::select! {
                        reply = forward(&self, addr) => return reply,
                        changed = watch.changed() => {
                            if changed.is_err() {
                                return Err(no_leader());
                            }
                        }
                    }
                }
                Route::Nowhere => {
                    if tokio::time::timeout_at(deadline, watch.changed())
                        .await
                        .is_err()
                    {
                        return Err(no_leader());
                    }
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(no_leader());
            }
        }
    }
}

impl Actor for ControlActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.raft.do_send(crate::actors::raft::Subscribe {
            events: None,
            leadership: Some(ctx.address().recipient()),
        });
    }
}

impl Handler<LeadershipChanged> for ControlActor {
    type Result = ();

    fn handle(&mut self, leadership: LeadershipChanged, _: &mut Context<Self>) {
        self.leadership.send_replace(Some(leadership));
    }
}

/// The error a caller sees for a failed proposal or read.
pub fn wire_error(error: RaftError) -> WireError {
    let kind = match &error {
        RaftError::NoQuorum | RaftError::NotLeader { .. } | RaftError::LeadershipLost => {
            ErrorKind::NoQuorum
        }
        RaftError::Rejected(core) => core_error_kind(core),
        RaftError::Internal(_) => ErrorKind::Internal,
    };
    WireError::new(kind, error.to_string())
}

fn core_error_kind(error: &CoreError) -> ErrorKind {
    match error {
        CoreError::NotFound { .. } => ErrorKind::NotFound,
        CoreError::NameInUse(_) | CoreError::AlreadyInitialized => ErrorKind::Conflict,
        _ => ErrorKind::BadRequest,
    }
}

fn core(error: CoreError) -> WireError {
    WireError::new(core_error_kind(&error), error.to_string())
}

fn no_leader() -> WireError {
    WireError::new(
        ErrorKind::NoQuorum,
        "no quorum: no manager is leader right now (are a majority of managers up and reachable?)",
    )
}

/// A read-only command answered from the store.
fn answer_read(
    store: &Store,
    node_id: &str,
    request: &ControlRequest,
    now_leader: &str,
) -> Result<ControlReply, WireError> {
    match request {
        ControlRequest::NodeList => Ok(ControlReply::Nodes(
            store
                .nodes()
                .values()
                .map(|node| {
                    NodeView::of(node, manager_status(node, now_leader), node.id == node_id)
                })
                .collect(),
        )),
        ControlRequest::NodeInspect { nodes } => nodes
            .iter()
            .map(|query| store.resolve_node(query).cloned().map_err(core))
            .collect::<Result<Vec<Node>, _>>()
            .map(ControlReply::NodeDetails),
        ControlRequest::NodeTasks { node } => {
            let node = store
                .resolve_node(node.as_deref().unwrap_or(node_id))
                .map_err(core)?;
            let mut tasks = store.tasks_of_node(&node.id);
            // Grouped like `service ps`: by service and slot, newest first within a slot.
            tasks.sort_by(|a, b| {
                (
                    &a.service_name,
                    a.slot,
                    std::cmp::Reverse(a.meta.created_index),
                )
                    .cmp(&(
                        &b.service_name,
                        b.slot,
                        std::cmp::Reverse(b.meta.created_index),
                    ))
            });
            Ok(ControlReply::Tasks(
                tasks
                    .into_iter()
                    .map(|task| TaskView::of(task, Some(&node.hostname)))
                    .collect(),
            ))
        }
        ControlRequest::ServiceList => Ok(ControlReply::Services(
            store
                .services()
                .values()
                .map(|service| service_view(store, service))
                .collect(),
        )),
        ControlRequest::ServiceInspect { services } => services
            .iter()
            .map(|query| store.resolve_service(query).cloned().map_err(core))
            .collect::<Result<Vec<Service>, _>>()
            .map(ControlReply::ServiceDetails),
        ControlRequest::ServiceTasks {
            services,
            offset,
            limit,
        } => {
            let mut listing = Vec::new();
            for query in services {
                let service = store.resolve_service(query).map_err(core)?;
                listing.extend(store.tasks_of_service(&service.id));
            }
            let offset = usize::try_from(*offset).unwrap_or(usize::MAX);
            let limit = (*limit).min(TASK_PAGE_MAX) as usize;
            let tasks = listing
                .iter()
                .skip(offset)
                .take(limit)
                .map(|task| {
                    let hostname = task
                        .node_id
                        .as_deref()
                        .and_then(|id| store.node(id))
                        .map(|node| node.hostname.as_str());
                    TaskView::of(task, hostname)
                })
                .collect();
            Ok(ControlReply::TaskPage {
                tasks,
                total: listing.len() as u64,
            })
        }
        ControlRequest::JoinToken {
            role,
            rotate: false,
        } => join_token(store, *role).map(ControlReply::Token),
        _ => Err(WireError::new(ErrorKind::Internal, "not a read")),
    }
}

fn manager_status(node: &Node, leader_node_id: &str) -> Option<&'static str> {
    match node.role {
        NodeRole::Worker => None,
        NodeRole::Manager if node.id == leader_node_id => Some("leader"),
        NodeRole::Manager if node.status == NodeStatus::Ready => Some("reachable"),
        NodeRole::Manager => Some("unreachable"),
    }
}

fn service_view(store: &Store, service: &Service) -> ServiceView {
    let (mode, desired) = match service.spec.mode {
        ServiceMode::Replicated { .. } => ("replicated", store.desired_count(service)),
        ServiceMode::Global => ("global", store.desired_count(service)),
    };
    ServiceView {
        id: service.id.clone(),
        name: service.spec.name.clone(),
        mode: mode.to_string(),
        image: service.spec.image.clone(),
        command: service.spec.command.clone(),
        replicas_running: store.running_count(&service.id),
        replicas_desired: desired,
        created_at: crate::net::control::rfc3339(service.meta.created_at_ms),
        updated_at: crate::net::control::rfc3339(service.meta.updated_at_ms),
    }
}

/// The join token for `role`, from the cluster record.
pub fn join_token(store: &Store, role: NodeRole) -> Result<String, WireError> {
    let cluster = store
        .cluster()
        .ok_or_else(|| core(CoreError::NotInitialized))?;
    let ca_der = rustls::pki_types::CertificateDer::from_pem_slice(cluster.ca_cert_pem.as_bytes())
        .map_err(|e| WireError::new(ErrorKind::Internal, format!("CA certificate: {e}")))?;
    let secret = match role {
        NodeRole::Worker => &cluster.worker_join_secret,
        NodeRole::Manager => &cluster.manager_join_secret,
    };
    Ok(JoinToken::new(certificate_digest(&ca_der), secret.clone()).to_string())
}

use rustls::pki_types::pem::PemObject;

/// The commands a write request turns into (validated against the store as it is now).
fn plan_write(
    store: &Store,
    request: &ControlRequest,
) -> Result<(Vec<Command>, Vec<String>), WireError> {
    let mut rng = rand::rng();
    match request {
        ControlRequest::ServiceCreate { spec } => {
            spec.validate().map_err(core)?;
            let id = ids::new_id(&mut rng);
            let service = Service {
                id: id.clone(),
                spec: spec.clone(),
                meta: Default::default(),
            };
            Ok((vec![Command::CreateService(service)], vec![id]))
        }
        ControlRequest::ServiceScale { targets } => {
            let mut commands = Vec::new();
            let mut ids = Vec::new();
            for (query, replicas) in targets {
                let service = store.resolve_service(query).map_err(core)?;
                let ServiceMode::Replicated { .. } = service.spec.mode else {
                    return Err(WireError::new(
                        ErrorKind::BadRequest,
                        format!(
                            "{}: scale can only be used with replicated mode",
                            service.spec.name
                        ),
                    ));
                };
                let mut spec = service.spec.clone();
                spec.mode = ServiceMode::Replicated {
                    replicas: *replicas,
                };
                commands.push(Command::UpdateService {
                    service_id: service.id.clone(),
                    spec,
                    expected_version: Some(service.meta.version),
                });
                ids.push(service.id.clone());
            }
            Ok((commands, ids))
        }
        ControlRequest::ServiceRemove { services } => {
            let mut commands = Vec::new();
            let mut ids = Vec::new();
            for query in services {
                let service = store.resolve_service(query).map_err(core)?;
                commands.push(Command::RemoveService {
                    service_id: service.id.clone(),
                });
                ids.push(service.id.clone());
            }
            Ok((commands, ids))
        }
        ControlRequest::NodeUpdate {
            node,
            availability,
            labels_add,
            labels_rm,
        } => {
            let node = store.resolve_node(node).map_err(core)?;
            let update = NodeSpecUpdate {
                node_id: node.id.clone(),
                availability: *availability,
                role: None,
                labels_add: labels_add.clone(),
                labels_rm: labels_rm.clone(),
                expected_version: Some(node.meta.version),
            };
            Ok((vec![Command::UpdateNodeSpec(update)], vec![node.id.clone()]))
        }
        ControlRequest::NodeRemove { nodes, force } => {
            let mut commands = Vec::new();
            let mut ids = Vec::new();
            for query in nodes {
                let node = store.resolve_node(query).map_err(core)?;
                if node.role == NodeRole::Manager {
                    return Err(WireError::new(
                        ErrorKind::Conflict,
                        format!(
                            "node {} is a manager: demote it first (`flotilla node demote {}`), then remove it",
                            node.id, node.id
                        ),
                    ));
                }
                if node.status != NodeStatus::Down && !force {
                    return Err(WireError::new(
                        ErrorKind::Conflict,
                        format!(
                            "node {} is not down and can't be removed (use --force to remove it anyway)",
                            node.id
                        ),
                    ));
                }
                commands.push(Command::RemoveNode {
                    node_id: node.id.clone(),
                    force: *force,
                });
                ids.push(node.id.clone());
            }
            Ok((commands, ids))
        }
        ControlRequest::JoinToken { role, rotate: true } => {
            let secret = token::generate_secret()
                .map_err(|e| WireError::new(ErrorKind::Internal, e.to_string()))?;
            Ok((
                vec![Command::RotateJoinSecret {
                    role: *role,
                    secret,
                }],
                vec![],
            ))
        }
        _ => Err(WireError::new(ErrorKind::Internal, "not a write")),
    }
}

fn is_read(request: &ControlRequest) -> bool {
    matches!(
        request,
        ControlRequest::NodeList
            | ControlRequest::NodeInspect { .. }
            | ControlRequest::NodeTasks { .. }
            | ControlRequest::ServiceList
            | ControlRequest::ServiceInspect { .. }
            | ControlRequest::ServiceTasks { .. }
            | ControlRequest::JoinToken { rotate: false, .. }
    )
}

impl Handler<Control> for ControlActor {
    type Result = ResponseFuture<Result<ControlReply, WireError>>;

    fn handle(&mut self, control: Control, _: &mut Context<Self>) -> Self::Result {
        let request = control.request;
        let context = self.context();
        Box::pin(async move {
            context
                .on_leader(
                    async |context: &RequestContext| control_on_leader(context, &request).await,
                    async |context: &RequestContext, leader| {
                        forward(context, leader, request.clone()).await
                    },
                )
                .await
        })
    }
}

async fn control_on_leader(
    context: &RequestContext,
    request: &ControlRequest,
) -> Result<ControlReply, WireError> {
    let (store, raft, node_id) = (&context.store, &context.raft, &context.node_id);
    if let ControlRequest::NodeSetRole { nodes, role } = request {
        return set_roles(context, nodes, *role).await;
    }
    if is_read(request) {
        raft.send(LinearizableRead)
            .await
            .map_err(mailbox)?
            .map_err(wire_error)?;
        let store = store.read();
        if store.cluster().is_none() {
            // `init` has not committed the cluster record yet: an empty answer would mislead.
            return Err(core(CoreError::NotInitialized));
        }
        return answer_read(&store, node_id, request, node_id);
    }
    let (commands, ids) = plan_write(&store.read(), request)?;
    for command in commands {
        raft.send(Propose { command })
            .await
            .map_err(mailbox)?
            .map_err(wire_error)?;
    }
    if let ControlRequest::JoinToken { role, .. } = request {
        return join_token(&store.read(), *role).map(ControlReply::Token);
    }
    Ok(ControlReply::Done(ids))
}

fn mailbox(error: MailboxError) -> WireError {
    WireError::new(
        ErrorKind::Internal,
        format!("manager actor unavailable: {error}"),
    )
}

/// `node promote` / `node demote`. The store records the new role; the node learns it from
/// its next heartbeat answer with new credentials and restarts in that role. A promoted node
/// becomes a Raft voter when it first heartbeats as a manager (the dispatcher adds it); a
/// demoted one leaves the Raft group here, right after its role changes in the store.
async fn set_roles(
    context: &RequestContext,
    nodes: &[String],
    role: NodeRole,
) -> Result<ControlReply, WireError> {
    let (store, raft) = (&context.store, &context.raft);
    raft.send(LinearizableRead)
        .await
        .map_err(mailbox)?
        .map_err(wire_error)?;
    let mut changed = Vec::new();
    for query in nodes {
        let (node, managers, reachable_others) = {
            let store = store.read();
            let node = store.resolve_node(query).map_err(core)?.clone();
            let managers: Vec<Node> = store
                .nodes()
                .values()
                .filter(|n| n.role == NodeRole::Manager)
                .cloned()
                .collect();
            let reachable_others = managers
                .iter()
                .filter(|n| n.id != node.id && n.status == NodeStatus::Ready)
                .count();
            (node, managers, reachable_others)
        };
        if node.role == role {
            changed.push(node.id);
            continue;
        }
        if role == NodeRole::Worker {
            if managers.len() <= 1 {
                return Err(WireError::new(
                    ErrorKind::Conflict,
                    format!(
                        "cannot demote {}: it is the last manager of the swarm",
                        node.hostname
                    ),
                ));
            }
            let voters_after = managers.len() - 1;
            if reachable_others < voters_after / 2 + 1 {
                return Err(WireError::new(
                    ErrorKind::Conflict,
                    format!(
                        "cannot demote {}: the {} remaining managers would not have a quorum ({} reachable)",
                        node.hostname, voters_after, reachable_others
                    ),
                ));
            }
            if node.id == context.node_id {
                raft.do_send(crate::actors::raft::TransferLeadership { to: None });
                return Err(WireError::new(
                    ErrorKind::Conflict,
                    format!(
                        "cannot demote {}: it is the leader; leadership is moving to another manager, run the command again in a moment",
                        node.hostname
                    ),
                ));
            }
        }
        // The role first: a manager whose store role is worker is never re-added as a voter.
        let update = NodeSpecUpdate {
            node_id: node.id.clone(),
            role: Some(role),
            ..NodeSpecUpdate::default()
        };
        raft.send(Propose {
            command: Command::UpdateNodeSpec(update),
        })
        .await
        .map_err(mailbox)?
        .map_err(wire_error)?;
        if role == NodeRole::Worker {
            raft.send(ChangeMembership {
                change: MembershipChange::RemoveMember(raft_id_of(&node.id)),
                addr: None,
            })
            .await
            .map_err(mailbox)?
            .map_err(wire_error)?;
        }
        changed.push(node.id);
    }
    Ok(ControlReply::Done(changed))
}

async fn forward(
    context: &RequestContext,
    leader: SocketAddr,
    mut request: ControlRequest,
) -> Result<ControlReply, WireError> {
    let (transport, own_id) = (&context.transport, &context.node_id);
    if let ControlRequest::NodeTasks { node: node @ None } = &mut request {
        // "node ps" without a node means the node addressed, which is this one.
        *node = Some(own_id.clone());
    }
    let reply = transport
        .send(Request {
            to: leader,
            message: WireMessage::Forwarded(request),
            timeout: FORWARD_TIMEOUT,
        })
        .await
        .map_err(mailbox)?;
    match reply {
        Ok(WireMessage::ControlReply(ControlReply::Nodes(mut nodes))) => {
            for node in &mut nodes {
                node.is_self = node.id == *own_id;
            }
            Ok(ControlReply::Nodes(nodes))
        }
        Ok(WireMessage::ControlReply(reply)) => Ok(reply),
        Ok(other) => Err(WireError::new(
            ErrorKind::Internal,
            format!("unexpected {} from the leader", other.kind_name()),
        )),
        Err(crate::net::transport::TransportError::Remote(error)) => Err(error),
        Err(error) => Err(WireError::new(
            ErrorKind::NoQuorum,
            format!("no quorum: cannot reach the leader: {error}"),
        )),
    }
}

impl Handler<Admit> for ControlActor {
    type Result = ResponseFuture<Result<JoinAccepted, WireError>>;

    fn handle(&mut self, admit: Admit, _: &mut Context<Self>) -> Self::Result {
        let context = self.context();
        let request = admit.request;
        Box::pin(async move {
            context
                .on_leader(
                    async |context: &RequestContext| {
                        admit_on_leader(
                            context.store.clone(),
                            context.raft.clone(),
                            request.clone(),
                        )
                        .await
                    },
                    async |context: &RequestContext, leader| {
                        // Only the leader can add the node; it sees the join as if direct.
                        let reply = context
                            .transport
                            .send(Request {
                                to: leader,
                                message: WireMessage::Join(request.clone()),
                                timeout: FORWARD_TIMEOUT,
                            })
                            .await
                            .map_err(mailbox)?;
                        match reply {
                            Ok(WireMessage::JoinAccepted(accepted)) => Ok(accepted),
                            Ok(other) => Err(WireError::new(
                                ErrorKind::Internal,
                                format!("unexpected {} from the leader", other.kind_name()),
                            )),
                            Err(crate::net::transport::TransportError::Remote(error)) => Err(error),
                            Err(error) => {
                                Err(WireError::new(ErrorKind::NoQuorum, error.to_string()))
                            }
                        }
                    },
                )
                .await
        })
    }
}

async fn admit_on_leader(
    store: SharedStore,
    raft: Addr<RaftActor>,
    request: JoinRequest,
) -> Result<JoinAccepted, WireError> {
    raft.send(LinearizableRead)
        .await
        .map_err(mailbox)?
        .map_err(wire_error)?;
    let (role, ca, managers) = {
        let store = store.read();
        let cluster = store
            .cluster()
            .ok_or_else(|| core(CoreError::NotInitialized))?;
        let role = token::role_for_secret(
            &request.secret,
            &cluster.worker_join_secret,
            &cluster.manager_join_secret,
        )
        .map_err(|e| WireError::new(ErrorKind::Forbidden, e.to_string()))?;
        let ca = ClusterCa::load(&cluster.ca_cert_pem, &cluster.ca_key_pem)
            .map_err(|e| WireError::new(ErrorKind::Internal, e.to_string()))?;
        let managers: Vec<String> = store
            .nodes()
            .values()
            .filter(|node| node.role == NodeRole::Manager)
            .map(|node| node.addr.clone())
            .collect();
        (role, ca, managers)
    };
    let addr: SocketAddr = request.advertise_addr.parse().map_err(|_| {
        WireError::new(
            ErrorKind::BadRequest,
            format!(
                "advertise address {:?} is not host:port",
                request.advertise_addr
            ),
        )
    })?;
    let node_id = ids::new_id(&mut rand::rng());
    let cert_pem = ca
        .sign_request(&request.csr_der, &node_id, role)
        .map_err(|e| WireError::new(ErrorKind::BadRequest, e.to_string()))?;
    let node_role = if role == Role::Manager {
        NodeRole::Manager
    } else {
        NodeRole::Worker
    };
    let node = Node {
        id: node_id.clone(),
        hostname: request.hostname.clone(),
        role: node_role,
        status: NodeStatus::Unknown,
        availability: crate::core::model::Availability::Active,
        labels: Default::default(),
        addr: request.advertise_addr.clone(),
        engine_version: String::new(),
        resources: Default::default(),
        meta: Default::default(),
    };
    raft.send(Propose {
        command: Command::UpsertNode(node),
    })
    .await
    .map_err(mailbox)?
    .map_err(wire_error)?;
    if node_role == NodeRole::Manager {
        // A learner first: it gets the snapshot and the log without counting toward the
        // quorum. The dispatcher makes it a voter once it has caught up (`ensure_voter`), so
        // adding a manager never leaves the group waiting on one that is still starting.
        raft.send(ChangeMembership {
            change: MembershipChange::AddLearner(raft_id_of(&node_id)),
            addr: Some(addr),
        })
        .await
        .map_err(mailbox)?
        .map_err(wire_error)?;
    }
    tracing::info!(node = %node_id, role = %role, "node joined");
    Ok(JoinAccepted {
        node_id,
        role,
        cert_pem,
        ca_pem: ca.cert_pem().to_string(),
        manager_addrs: managers,
    })
}
