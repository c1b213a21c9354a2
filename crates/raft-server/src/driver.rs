//! The one task that owns this member's raft-core `Node` and runs its driver loop:
//! ticks, peer messages, client proposals and reads, durability acknowledgements from
//! the WAL, and applying committed entries to the key-value state machine. Keeps
//! true: the node is touched only here (no locks around it); messages that promise
//! durability leave only after the WAL acknowledged the write; a client hears
//! "committed" only after its entry is applied; WAL writes are acknowledged to the
//! node in the order they were handed out. The WAL's writer thread wakes this task
//! directly when a write is durable (no thread in between). Nothing here waits on a
//! disk: snapshots (taking, sending, staging received ones) belong to the
//! [`SnapshotManager`], whose slow work runs elsewhere and reports back as events.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_core::{
    Entry, EntryId, EntryPayload, LogIndex, Membership, MembershipChange, Message, MessageBody,
    Monotonic, Node, NodeId, PersistAck, ProposalResult, ReadMode, Role, Status,
};
use raft_transport::{Incoming, Transport};
use raft_wal::{AppendUnit, Appended, Completion, Wal};
use tokio::sync::{mpsc, oneshot, watch};

use crate::kv::{self, ApplyResult, KvStore, MemberAddress};
use crate::metrics::Metrics;
use crate::snapshot_manager::{NodeAction, SnapshotManager, SnapshotSettings};
use crate::storage::{WalStore, to_wal_entry};

/// Why a request could not be served. The HTTP layer maps these to status codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// This member does not lead; `leader` is the one it knows of, if any.
    #[error("not the leader")]
    NotLeader {
        /// The leader this member knows of.
        leader: Option<NodeId>,
    },
    /// The entry was not committed: another leader's entry took its place. Safe to
    /// retry.
    #[error("the write was dropped by a leader change; retry")]
    Dropped,
    /// The outcome is unknown: the write may still commit.
    #[error("the outcome of the write is unknown; it may still be applied")]
    Unknown,
    /// The request is invalid for the current state (message for the operator).
    #[error("{0}")]
    Invalid(String),
    /// The member is shutting down.
    #[error("the member is shutting down")]
    ShuttingDown,
    /// Something failed inside the member.
    #[error("{0}")]
    Internal(String),
}

/// A request from the service layer to the driver.
pub(crate) enum Request {
    Propose {
        command: Bytes,
        reply: oneshot::Sender<Result<ApplyResult, ServiceError>>,
    },
    Read {
        mode: ReadMode,
        reply: oneshot::Sender<Result<(), ServiceError>>,
    },
    ChangeMembership {
        change: MembershipChange,
        context: Bytes,
        reply: oneshot::Sender<Result<(), ServiceError>>,
    },
    Transfer {
        to: Option<NodeId>,
        reply: oneshot::Sender<Result<NodeId, ServiceError>>,
    },
    Snapshot {
        reply: oneshot::Sender<Result<crate::api::SnapshotResponse, ServiceError>>,
    },
}

/// State the driver publishes for readers (HTTP handlers, metrics).
pub(crate) struct Shared {
    /// The state machine. The driver writes under the lock while applying; readers
    /// read after their read index has been applied.
    pub(crate) kv: RwLock<KvStore>,
    /// The node's status after the last loop iteration.
    pub(crate) status: Mutex<Status>,
    /// The membership in effect as of the applied index.
    pub(crate) membership: Mutex<Membership>,
    pub(crate) metrics: Metrics,
}

/// One handed-out write: the completion to wait for (none for a batch with nothing
/// to write), the messages to release once durable, the acknowledgement for the
/// node, and for metrics whether anything went to the WAL, the number of entries
/// and when it was submitted.
struct PendingWrite {
    /// A snapshot install handed to the WAL just before the write, if any.
    install: Option<Completion<Appended>>,
    completion: Option<Completion<Appended>>,
    wrote: bool,
    messages: Vec<Message>,
    ack: PersistAck,
    entries: usize,
    submitted: Instant,
}

/// A client's write proposed to the node and not answered yet.
struct PendingProposal {
    reply: oneshot::Sender<Result<ApplyResult, ServiceError>>,
    proposed_at: Instant,
    /// Whether the command is a put, whose result is known without applying it.
    is_put: bool,
}

/// Resolves when the oldest handed-out write is durable (or failed). Writes complete
/// in submission order, so waiting on the oldest is enough.
struct OldestWrite<'a>(&'a mut VecDeque<PendingWrite>);

impl Future for OldestWrite<'_> {
    type Output = Result<(), String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let Some(oldest) = self.0.front_mut() else {
            return Poll::Pending;
        };
        for slot in [&mut oldest.install, &mut oldest.completion] {
            if let Some(completion) = slot {
                match Pin::new(completion).poll(cx) {
                    Poll::Ready(Ok(_)) => *slot = None,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e.to_string())),
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// The driver's inputs and outputs, for `run`.
pub(crate) struct Driver {
    pub(crate) node: Node<WalStore>,
    pub(crate) wal: Arc<Wal>,
    pub(crate) transport: Transport,
    pub(crate) incoming: mpsc::Receiver<Incoming>,
    pub(crate) requests: mpsc::Receiver<Request>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) tick_interval: Duration,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) own_peer_addr: SocketAddr,
    /// Take a snapshot every this many applied entries (0: never).
    pub(crate) snapshot_every_entries: u64,
    /// Where snapshots are staged for sending.
    pub(crate) snapshot_dir: std::path::PathBuf,
    /// Where the transport puts snapshots that arrive.
    pub(crate) snapshot_sink: Arc<raft_transport::FileSnapshotSinkFactory>,
    /// Watchdog pings and status lines for systemd, sent from the ticker arm.
    pub(crate) notifier: crate::notify::Notifier,
}

/// Most peer messages stepped into the node between two readies.
const MAX_BATCHED_MESSAGES: usize = 256;

struct Loop {
    node: Node<WalStore>,
    transport: Transport,
    shared: Arc<Shared>,
    /// Writes handed to the WAL and not yet acknowledged to the node, oldest first.
    writes: VecDeque<PendingWrite>,
    pending_writes: HashMap<EntryId, PendingProposal>,
    pending_changes: HashMap<EntryId, oneshot::Sender<Result<(), ServiceError>>>,
    pending_reads: HashMap<u64, oneshot::Sender<Result<(), ServiceError>>>,
    reads_waiting_apply: BTreeMap<LogIndex, Vec<oneshot::Sender<Result<(), ServiceError>>>>,
    next_read_id: u64,
    last_leader: Option<NodeId>,
    own_id: NodeId,
    own_peer_addr: SocketAddr,
    /// Taking, sending and staging snapshots.
    snapshots: SnapshotManager,
    /// The origin of the monotonic clock handed to the node.
    clock_origin: Instant,
    /// Whether the WAL's durable "catching up" flag (a cut log tail that may have held
    /// acknowledged entries) is still set; cleared once the node is caught up.
    catching_up_flag: bool,
}

impl Driver {
    /// Runs until shutdown or a fatal error (a failed WAL write).
    pub(crate) async fn run(self) -> Result<(), String> {
        let Driver {
            node,
            wal,
            transport,
            mut incoming,
            mut requests,
            shared,
            tick_interval,
            mut shutdown,
            own_peer_addr,
            snapshot_every_entries,
            snapshot_dir,
            snapshot_sink,
            mut notifier,
        } = self;
        let (snapshots, mut snapshot_events) = SnapshotManager::new(
            Arc::clone(&wal),
            transport.clone(),
            shared.metrics.snapshot_save_duration.clone(),
            SnapshotSettings {
                every_entries: snapshot_every_entries,
                outgoing_dir: snapshot_dir,
                sink: snapshot_sink,
            },
        );
        let own_id = node.id();
        let mut state = Loop {
            node,
            transport,
            shared,
            writes: VecDeque::new(),
            pending_writes: HashMap::new(),
            pending_changes: HashMap::new(),
            pending_reads: HashMap::new(),
            reads_waiting_apply: BTreeMap::new(),
            next_read_id: 0,
            last_leader: None,
            own_id,
            own_peer_addr,
            snapshots,
            clock_origin: Instant::now(),
            catching_up_flag: wal.recovery_report().catching_up_after.is_some(),
        };
        state.sync_transport_members();
        let mut ticker = tokio::time::interval(tick_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break Ok(());
                    }
                }
                durable = OldestWrite(&mut state.writes), if !state.writes.is_empty() => {
                    if let Err(e) = durable.and_then(|()| state.on_durable()) {
                        break Err(e);
                    }
                }
                Some(event) = incoming.recv() => {
                    state.on_incoming(event);
                    // Batch: step every message already waiting (up to a bound, so
                    // the other inputs get their turn) before the next ready.
                    for _ in 0..MAX_BATCHED_MESSAGES {
                        let Ok(event) = incoming.try_recv() else { break };
                        state.on_incoming(event);
                    }
                }
                Some(event) = snapshot_events.recv() => {
                    let action = state.snapshots.on_event(event, state.own_id);
                    state.on_snapshot_action(action);
                }
                Some(request) = requests.recv() => {
                    state.on_request(request);
                    // Batch: take every request already waiting before the next ready.
                    while let Ok(request) = requests.try_recv() {
                        state.on_request(request);
                    }
                }
                _ = ticker.tick() => {
                    let now = state.now();
                    if let Err(e) = state.node.tick(now) {
                        break Err(format!("raft node failed: {e}"));
                    }
                    notifier.on_tick(|| state.node.status());
                }
            }
            if let Err(e) = state.process_ready(&wal) {
                break Err(e);
            }
        };
        state.fail_all(ServiceError::ShuttingDown);
        // In-flight WAL writes finish before the member exits.
        for write in std::mem::take(&mut state.writes) {
            if let Some(completion) = write.completion {
                let _ = completion.await;
            }
        }
        result
    }
}

impl Loop {
    /// The monotonic clock, as the node reads it: lease reads are measured on it, so
    /// a pause of this process (when ticks stop) still counts.
    fn now(&self) -> Monotonic {
        Monotonic::from_micros(
            u64::try_from(self.clock_origin.elapsed().as_micros()).unwrap_or(u64::MAX),
        )
    }

    /// The oldest handed-out write is durable: release its messages and tell the
    /// node, then do the same for every later write that is durable already.
    fn on_durable(&mut self) -> Result<(), String> {
        'writes: while let Some(oldest) = self.writes.front_mut() {
            for slot in [&mut oldest.install, &mut oldest.completion] {
                if let Some(completion) = slot {
                    match completion.try_take() {
                        None => break 'writes,
                        Some(Err(e)) => return Err(format!("WAL write failed: {e}")),
                        Some(Ok(_)) => *slot = None,
                    }
                }
            }
            let write = self.writes.pop_front().expect("not empty");
            if write.wrote {
                self.shared
                    .metrics
                    .observe_fsync(write.submitted.elapsed(), write.entries);
            }
            for message in write.messages {
                self.send(message);
            }
            self.node
                .on_persisted(write.ack)
                .map_err(|e| format!("raft node failed: {e}"))?;
        }
        Ok(())
    }

    fn send(&mut self, message: Message) {
        if matches!(message.body, MessageBody::InstallSnapshot(_)) {
            // The snapshot's data travels on the transport's snapshot stream; the
            // follower steps the message in once the data is staged there.
            let action = self.snapshots.send(message);
            self.on_snapshot_action(action);
            return;
        }
        if let Err(e) = self.transport.send(message) {
            tracing::debug!(error = %e, "message not sent");
        }
    }

    /// Tells the node what the snapshot manager's work came to.
    fn on_snapshot_action(&mut self, action: NodeAction) {
        match action {
            NodeAction::None => {}
            NodeAction::SnapshotFailed(peer) => self.node.report_snapshot_failed(peer),
            NodeAction::Step(message) => {
                if let Err(e) = self.node.step(message) {
                    tracing::warn!(error = %e, "snapshot refused");
                }
            }
        }
    }

    fn on_incoming(&mut self, event: Incoming) {
        match event {
            Incoming::Message(message) => {
                if matches!(message.body, MessageBody::InstallSnapshot(_)) {
                    // Snapshots arrive with their data on the snapshot stream only.
                    tracing::warn!(from = %message.from, "ignoring a snapshot message without data");
                    return;
                }
                if let Err(e) = self.node.step(message) {
                    tracing::warn!(error = %e, "message refused");
                }
            }
            Incoming::Unreachable(peer) => self.node.report_unreachable(peer),
            Incoming::Snapshot(received) => {
                let commit_index = self.node.status().commit_index;
                self.snapshots.received(received, commit_index);
            }
            _ => {}
        }
    }

    fn on_request(&mut self, request: Request) {
        match request {
            Request::Propose { command, reply } => {
                let is_put = kv::Command::is_put(&command);
                match self.node.propose(command) {
                    Ok(id) => {
                        self.shared.metrics.proposals_pending.inc();
                        let proposal = PendingProposal {
                            reply,
                            proposed_at: Instant::now(),
                            is_put,
                        };
                        self.pending_writes.insert(id, proposal);
                    }
                    Err(e) => {
                        self.shared.metrics.proposal_failed("not_leader");
                        let _ = reply.send(Err(map_core_error(e)));
                    }
                }
            }
            Request::Read { mode, reply } => {
                self.next_read_id += 1;
                let now = self.now();
                match self.node.read_index(self.next_read_id, mode, now) {
                    Ok(()) => {
                        self.pending_reads.insert(self.next_read_id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(map_core_error(e)));
                    }
                }
            }
            Request::ChangeMembership {
                change,
                context,
                reply,
            } => match self.node.propose_membership_change(change, context) {
                Ok(id) => {
                    self.pending_changes.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(map_core_error(e)));
                }
            },
            Request::Snapshot { reply } => {
                let membership = self.current_membership();
                self.snapshots
                    .take(Some(reply), &self.shared.kv, &membership);
            }
            Request::Transfer { to, reply } => {
                let target = to.or_else(|| self.best_transfer_target());
                let result = match target {
                    None => Err(ServiceError::Invalid(
                        "no other voter to hand leadership to".into(),
                    )),
                    Some(target) => self
                        .node
                        .transfer_leadership(target)
                        .map(|_| target)
                        .map_err(map_core_error),
                };
                let _ = reply.send(result);
            }
        }
    }

    /// The most caught-up other voter.
    fn best_transfer_target(&self) -> Option<NodeId> {
        let status = self.node.status();
        let membership = self.node.membership();
        status
            .progress
            .iter()
            .filter(|p| p.id != self.own_id && membership.voters.contains(&p.id))
            .max_by_key(|p| p.match_index)
            .map(|p| p.id)
    }

    fn process_ready(&mut self, wal: &Wal) -> Result<(), String> {
        while self.node.has_ready() {
            let ready = self
                .node
                .ready()
                .map_err(|e| format!("raft node failed: {e}"))?;
            for message in ready.messages {
                self.send(message);
            }
            if let Some(persist) = ready.persist {
                let install = match &persist.snapshot {
                    Some(snapshot) => self.install_snapshot(snapshot)?,
                    None => None,
                };
                let entries = persist.entries.len();
                self.node.log_store().remember(&persist.entries);
                let completion = if persist.hard_state.is_none() && persist.entries.is_empty() {
                    None
                } else {
                    let unit = AppendUnit {
                        hard_state: persist.hard_state.map(|h| raft_wal::HardState {
                            term: h.term.0,
                            vote: h.vote.map_or(0, |v| v.0),
                            commit: h.commit.0,
                        }),
                        entries: persist.entries.iter().map(to_wal_entry).collect(),
                    };
                    let bytes: u64 = unit
                        .entries
                        .iter()
                        .map(|e| e.payload.len() as u64 + 24)
                        .sum();
                    self.shared.metrics.wal_write_bytes.inc_by(bytes);
                    Some(wal.submit(unit))
                };
                self.writes.push_back(PendingWrite {
                    install,
                    wrote: completion.is_some(),
                    completion,
                    messages: persist.messages,
                    ack: persist.ack,
                    entries,
                    submitted: Instant::now(),
                });
            }
            if !ready.committed_entries.is_empty() {
                self.apply(ready.committed_entries);
            }
            for outcome in ready.proposal_outcomes {
                let failure = match outcome.result {
                    ProposalResult::Committed => {
                        self.answer_committed_by_snapshot(outcome.proposal);
                        continue;
                    }
                    ProposalResult::Dropped => ("dropped", ServiceError::Dropped),
                    ProposalResult::Unknown => ("unknown", ServiceError::Unknown),
                };
                if let Some(proposal) = self.pending_writes.remove(&outcome.proposal) {
                    self.shared.metrics.proposals_pending.dec();
                    self.shared.metrics.proposal_failed(failure.0);
                    let _ = proposal.reply.send(Err(failure.1.clone()));
                }
                if let Some(reply) = self.pending_changes.remove(&outcome.proposal) {
                    let _ = reply.send(Err(failure.1));
                }
            }
            for read in ready.read_states {
                let Some(reply) = self.pending_reads.remove(&read.request_id) else {
                    continue;
                };
                match read.index {
                    None => {
                        let _ = reply.send(Err(ServiceError::NotLeader {
                            leader: self.node.leader(),
                        }));
                    }
                    Some(index) if index.0 <= self.applied_index() => {
                        let _ = reply.send(Ok(()));
                    }
                    Some(index) => self
                        .reads_waiting_apply
                        .entry(index)
                        .or_default()
                        .push(reply),
                }
            }
        }
        // A staged snapshot the node did not ask to install is not kept.
        self.snapshots.settle();
        self.publish_status();
        Ok(())
    }

    /// The node reports `proposal` committed. Normally applying its entry answers the
    /// client; but if a snapshot installed here covers the index, the entry is never
    /// applied on this member, and the client is answered now. A put's result (its
    /// revision is its index) is known without applying it; a delete's or a
    /// transaction's depends on the state it ran against, which only the snapshot
    /// reflects, so the client hears that the outcome is unknown here.
    fn answer_committed_by_snapshot(&mut self, proposal: EntryId) {
        if proposal.index.0 > self.applied_index() {
            return; // Applying it will answer.
        }
        let Some(pending) = self.pending_writes.remove(&proposal) else {
            return;
        };
        let metrics = &self.shared.metrics;
        metrics.proposals_pending.dec();
        let result = if pending.is_put {
            metrics.proposals_committed.inc();
            Ok(ApplyResult::Put {
                revision: proposal.index.0,
            })
        } else {
            metrics.proposal_failed("unknown");
            Err(ServiceError::Unknown)
        };
        let _ = pending.reply.send(result);
    }

    fn applied_index(&self) -> u64 {
        self.shared.kv.read().expect("kv lock").applied_index()
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        let started = Instant::now();
        let last = entries.last().map(|e| e.index).expect("not empty");
        let mut results = Vec::new();
        let mut membership_changed = false;
        {
            let mut kv = self.shared.kv.write().expect("kv lock");
            for entry in &entries {
                let index = entry.index.0;
                if index <= kv.applied_index() {
                    continue; // Already in the state machine (recovered from a snapshot).
                }
                match &entry.payload {
                    EntryPayload::Command(bytes) => match kv::Command::decode(bytes.clone()) {
                        Ok(command) => results.push((entry.id(), kv.apply(index, &command))),
                        Err(e) => {
                            tracing::error!(index, error = %e, "undecodable command in the log; applied as a no-op");
                            kv.apply_noop(index);
                        }
                    },
                    EntryPayload::Membership {
                        membership,
                        context,
                    } => {
                        let voters = membership.all_voters().into_iter().map(|id| id.0).collect();
                        let learners = membership.learners.iter().map(|id| id.0).collect();
                        if let Err(e) = kv.apply_membership(index, &voters, &learners, context) {
                            tracing::error!(index, error = %e, "membership context undecodable");
                        }
                        *self.shared.membership.lock().expect("membership lock") =
                            membership.clone();
                        membership_changed = true;
                        if let Some(reply) = self.pending_changes.remove(&entry.id()) {
                            let _ = reply.send(Ok(()));
                        }
                    }
                    _ => kv.apply_noop(index),
                }
            }
        }
        self.node.on_applied(last);
        let metrics = &self.shared.metrics;
        metrics
            .apply_duration
            .observe(started.elapsed().as_secs_f64());
        metrics.proposals_applied.inc_by(entries.len() as u64);
        for (id, result) in results {
            if let Some(proposal) = self.pending_writes.remove(&id) {
                metrics.proposals_pending.dec();
                metrics.proposals_committed.inc();
                metrics
                    .proposal_commit_duration
                    .observe(proposal.proposed_at.elapsed().as_secs_f64());
                let _ = proposal.reply.send(Ok(result));
            }
        }
        // Reads whose index is now applied.
        let still_waiting = self.reads_waiting_apply.split_off(&last.next());
        for (_, replies) in std::mem::replace(&mut self.reads_waiting_apply, still_waiting) {
            for reply in replies {
                let _ = reply.send(Ok(()));
            }
        }
        if membership_changed {
            self.sync_transport_members();
        }
        let membership = self.current_membership();
        self.snapshots.applied(last.0, &self.shared.kv, &membership);
    }

    /// raft-core asks to install a snapshot: the WAL makes it the log's base (the
    /// returned completion fires once that is durable; the batch's own write is
    /// queued behind it) and the state machine becomes the snapshot's.
    fn install_snapshot(
        &mut self,
        snapshot: &raft_core::SnapshotMeta,
    ) -> Result<Option<Completion<Appended>>, String> {
        let installing = self.snapshots.install(snapshot)?;
        let completion = Some(installing.completion);
        self.node.log_store().forget();
        *self.shared.kv.write().expect("kv lock") = installing.kv;
        *self.shared.membership.lock().expect("membership lock") = installing.membership;
        self.sync_transport_members();
        Ok(completion)
    }

    fn current_membership(&self) -> Membership {
        self.shared
            .membership
            .lock()
            .expect("membership lock")
            .clone()
    }

    /// Tells the transport every other member's peer address, from the state machine.
    fn sync_transport_members(&self) {
        let kv = self.shared.kv.read().expect("kv lock");
        let members: BTreeMap<NodeId, SocketAddr> = kv
            .members()
            .into_iter()
            .filter(|(m, _)| m.id != self.own_id.0)
            .filter_map(|(m, _)| m.peer_addr.parse().ok().map(|addr| (NodeId(m.id), addr)))
            .collect();
        let _ = self.own_peer_addr;
        self.transport.set_members(members);
    }

    fn publish_status(&mut self) {
        let status = self.node.status();
        if self.catching_up_flag && !status.catching_up {
            // A leader caught this member up and the entries are durable: the flag
            // may go. Queued behind every write handed out so far; should the WAL
            // fail to record it, it poisons itself and the next write stops raftd.
            tracing::info!("caught up by the leader after a lost log tail; voting again");
            drop(self.snapshots.wal().clear_catching_up());
            self.catching_up_flag = false;
        }
        let metrics = &self.shared.metrics;
        if status.leader != self.last_leader {
            if status.leader.is_some() {
                metrics.leader_changes.inc();
            }
            self.last_leader = status.leader;
        }
        *self.shared.status.lock().expect("status lock") = status;
    }

    fn fail_all(&mut self, error: ServiceError) {
        for (_, proposal) in self.pending_writes.drain() {
            let _ = proposal.reply.send(Err(ServiceError::Unknown));
        }
        for (_, reply) in self.pending_changes.drain() {
            let _ = reply.send(Err(ServiceError::Unknown));
        }
        for (_, reply) in self.pending_reads.drain() {
            let _ = reply.send(Err(error.clone()));
        }
        for (_, replies) in std::mem::take(&mut self.reads_waiting_apply) {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// Maps raft-core's refusals to the service's errors.
pub(crate) fn map_core_error(error: raft_core::Error) -> ServiceError {
    match error {
        raft_core::Error::NotLeader { leader } => ServiceError::NotLeader { leader },
        raft_core::Error::TransferInProgress { .. } => ServiceError::NotLeader { leader: None },
        raft_core::Error::LeaseReadWithoutCheckQuorum
        | raft_core::Error::MembershipChangeInProgress
        | raft_core::Error::InvalidMembershipChange { .. }
        | raft_core::Error::InvalidTransferTarget { .. } => {
            ServiceError::Invalid(error.to_string())
        }
        other => ServiceError::Internal(other.to_string()),
    }
}

/// Whether the node is the leader (for readiness and metrics).
pub(crate) fn is_leader(status: &Status) -> bool {
    status.role == Role::Leader
}

/// Builds the member context of an "add learner" change.
pub(crate) fn member_context(member: &MemberAddress) -> Bytes {
    kv::encode_member_context(std::slice::from_ref(member))
}
