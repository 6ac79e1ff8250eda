//! Proposals, membership changes, leadership transfers, linearizable reads, subscriptions and
//! status: each registered by id with its reply, answered from the Ready loop.

use super::*;

async fn await_reply<T>(receiver: oneshot::Receiver<Result<T, RaftError>>) -> Result<T, RaftError> {
    match tokio::time::timeout(QUORUM_TIMEOUT, receiver).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(RaftError::LeadershipLost),
        Err(_) => Err(RaftError::NoQuorum),
    }
}

impl Handler<Propose> for RaftActor {
    type Result = ResponseFuture<Result<u64, RaftError>>;

    fn handle(&mut self, propose: Propose, ctx: &mut Context<Self>) -> Self::Result {
        if !self.leadership.is_leader {
            let error = self.not_leader();
            return Box::pin(async move { Err(error) });
        }
        if let Err(rejected) = self.store.read().check(&propose.command) {
            return Box::pin(async move { Err(RaftError::Rejected(rejected)) });
        }
        let id = self.next_id();
        let proposal = Proposal {
            now_ms: self.environment.unix_ms(),
            command: propose.command,
        };
        if let Err(error) = self.member().propose(id, &proposal) {
            let error = match error {
                MemberError::NotLeader { leader_id } => RaftError::NotLeader { leader_id },
                other => RaftError::Internal(other.to_string()),
            };
            return Box::pin(async move { Err(error) });
        }
        let (sender, receiver) = oneshot::channel();
        self.proposals.insert(id, sender);
        self.schedule_drive(ctx);
        let (started, metrics) = (std::time::Instant::now(), self.metrics.clone());
        Box::pin(async move {
            let reply = await_reply(receiver).await;
            metrics
                .proposal_seconds
                .observe(started.elapsed().as_secs_f64());
            reply
        })
    }
}

impl Handler<ChangeMembership> for RaftActor {
    type Result = ResponseFuture<Result<(), RaftError>>;

    fn handle(&mut self, request: ChangeMembership, ctx: &mut Context<Self>) -> Self::Result {
        if let (MembershipChange::AddVoter(id) | MembershipChange::AddLearner(id), Some(addr)) =
            (request.change, request.addr)
        {
            self.peer_addrs.insert(id, addr);
        }
        if !self.leadership.is_leader {
            let error = self.not_leader();
            return Box::pin(async move { Err(error) });
        }
        let (sender, receiver) = oneshot::channel();
        self.queued_changes.push_back((request.change, sender));
        self.propose_queued_change(ctx);
        Box::pin(await_reply(receiver))
    }
}

impl RaftActor {
    /// Proposes the next queued membership change, unless one is still unapplied.
    pub(super) fn propose_queued_change(&mut self, ctx: &mut Context<Self>) {
        while !self.member().membership_change_pending() {
            let Some((change, reply)) = self.queued_changes.pop_front() else {
                return;
            };
            if reply.is_closed() {
                continue;
            }
            let id = self.next_id();
            match self.member().propose_conf_change(id, change) {
                Ok(()) => {
                    self.membership_changes.insert(id, reply);
                    self.schedule_drive(ctx);
                    return;
                }
                Err(MemberError::NotLeader { leader_id }) => {
                    let _ = reply.send(Err(RaftError::NotLeader { leader_id }));
                }
                Err(other) => {
                    let _ = reply.send(Err(RaftError::Internal(other.to_string())));
                }
            }
        }
    }
}

impl Handler<TransferLeadership> for RaftActor {
    type Result = ();

    fn handle(&mut self, request: TransferLeadership, ctx: &mut Context<Self>) {
        if !self.leadership.is_leader {
            return;
        }
        let own = self.member().id();
        let target = request
            .to
            .or_else(|| self.member().voters().iter().copied().find(|id| *id != own));
        if let Some(target) = target {
            self.member().transfer_leader(target);
            self.schedule_drive(ctx);
        }
    }
}

impl Handler<LinearizableRead> for RaftActor {
    type Result = ResponseFuture<Result<(), RaftError>>;

    fn handle(&mut self, _: LinearizableRead, ctx: &mut Context<Self>) -> Self::Result {
        let id = self.next_id();
        let (sender, receiver) = oneshot::channel();
        self.reads.insert(id, sender);
        self.member().read_index(id);
        self.schedule_drive(ctx);
        Box::pin(await_reply(receiver))
    }
}

impl Handler<Subscribe> for RaftActor {
    type Result = ();

    fn handle(&mut self, subscribe: Subscribe, _: &mut Context<Self>) {
        if let Some(events) = subscribe.events {
            self.publisher.subscribe(events);
        }
        if let Some(leadership) = subscribe.leadership {
            let _ = leadership.try_send(self.leadership.clone());
            self.leadership_subscribers.push(leadership);
        }
    }
}

impl Handler<GetStatus> for RaftActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        let leadership = self.leadership.clone();
        let member = self.member();
        MessageResult(RaftStatus {
            leadership,
            voters: member.voters().to_vec(),
            learners: member.learners().to_vec(),
            caught_up_learners: member
                .learners()
                .iter()
                .copied()
                .filter(|id| member.caught_up(*id))
                .collect(),
            raft_id: member.id(),
            commit_index: member.commit_index(),
            applied_index: member.applied_index(),
        })
    }
}
