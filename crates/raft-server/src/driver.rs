//! The one task that owns this member's raft-core `Node` and runs its driver loop:
//! ticks, peer messages, client proposals and reads, durability acknowledgements from
//! the WAL, and applying committed entries to the key-value state machine. Keeps
//! true: the node is touched only here (no locks around it); messages that promise
//! durability leave only after the WAL acknowledged the write; a client hears
//! "committed" only after its entry is applied; WAL writes are acknowledged to the
//! node in the order they were handed out. The WAL's writer thread wakes this task
//! directly when a write is durable (no thread in between), and snapshots are
//! written on a blocking thread from a copy of the state machine, so neither a disk
//! wait nor a snapshot stalls the loop.

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
    Node, NodeId, PersistAck, ProposalResult, ReadMode, Role, Status,
};
use raft_transport::{Incoming, Transport};
use raft_wal::{AppendUnit, Appended, Completion, Wal};
use tokio::sync::{mpsc, oneshot, watch};

use crate::kv::{self, ApplyResult, KvStore, MemberAddress};
use crate::metrics::Metrics;
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
    completion: Option<Completion<Appended>>,
    wrote: bool,
    messages: Vec<Message>,
    ack: PersistAck,
    entries: usize,
    submitted: Instant,
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
        match &mut oldest.completion {
            None => Poll::Ready(Ok(())),
            Some(completion) => match Pin::new(completion).poll(cx) {
                Poll::Ready(Ok(_)) => {
                    oldest.completion = None;
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e.to_string())),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// A snapshot being written on a blocking thread, and the requests waiting for it.
struct SnapshotJob {
    index: u64,
    waiting: Vec<oneshot::Sender<Result<crate::api::SnapshotResponse, ServiceError>>>,
    started: Instant,
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
}

/// Most peer messages stepped into the node between two readies.
const MAX_BATCHED_MESSAGES: usize = 256;

/// First pause before a failed snapshot transfer to a peer is tried again.
const SNAPSHOT_RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest pause between snapshot transfer attempts to a peer.
const SNAPSHOT_RETRY_MAX: Duration = Duration::from_secs(30);

/// When each peer whose snapshot transfer failed may be sent one again: the pause
/// doubles with every failure in a row (from [`SNAPSHOT_RETRY_MIN`] up to
/// [`SNAPSHOT_RETRY_MAX`]) and is forgotten after a success, so a follower that
/// cannot take a snapshot (down, out of disk) does not get one restarted every
/// heartbeat.
#[derive(Debug, Default)]
struct SnapshotBackoff {
    peers: HashMap<NodeId, (Instant, Duration)>,
}

impl SnapshotBackoff {
    /// Whether a transfer to `peer` may start at `now`.
    fn may_send(&self, peer: NodeId, now: Instant) -> bool {
        self.peers.get(&peer).is_none_or(|(at, _)| now >= *at)
    }

    /// A transfer to `peer` failed at `now`.
    fn failed(&mut self, peer: NodeId, now: Instant) {
        let pause = self
            .peers
            .get(&peer)
            .map_or(SNAPSHOT_RETRY_MIN, |(_, last)| {
                (*last * 2).min(SNAPSHOT_RETRY_MAX)
            });
        self.peers.insert(peer, (now + pause, pause));
    }

    /// A transfer to `peer` succeeded.
    fn succeeded(&mut self, peer: NodeId) {
        self.peers.remove(&peer);
    }
}

/// How sending a snapshot to a peer ended.
struct SnapshotSent {
    peer: NodeId,
    result: Result<(), String>,
}

struct Loop {
    node: Node<WalStore>,
    transport: Transport,
    shared: Arc<Shared>,
    /// Writes handed to the WAL and not yet acknowledged to the node, oldest first.
    writes: VecDeque<PendingWrite>,
    pending_writes: HashMap<EntryId, (oneshot::Sender<Result<ApplyResult, ServiceError>>, Instant)>,
    pending_changes: HashMap<EntryId, oneshot::Sender<Result<(), ServiceError>>>,
    pending_reads: HashMap<u64, oneshot::Sender<Result<(), ServiceError>>>,
    reads_waiting_apply: BTreeMap<LogIndex, Vec<oneshot::Sender<Result<(), ServiceError>>>>,
    next_read_id: u64,
    last_leader: Option<NodeId>,
    own_id: NodeId,
    own_peer_addr: SocketAddr,
    wal: Arc<Wal>,
    snapshot_every_entries: u64,
    snapshot_dir: std::path::PathBuf,
    snapshot_sink: Arc<raft_transport::FileSnapshotSinkFactory>,
    last_snapshot_index: u64,
    /// Peers a snapshot is being streamed to.
    sending_snapshots: std::collections::HashSet<NodeId>,
    /// When a peer whose snapshot transfer failed may get one again.
    snapshot_backoff: SnapshotBackoff,
    snapshot_sent_tx: mpsc::UnboundedSender<SnapshotSent>,
    /// A snapshot received and durable, waiting for raft-core to ask to install it.
    pending_restore: Option<(LogIndex, KvStore)>,
    /// The snapshot being written, if any.
    snapshot_job: Option<SnapshotJob>,
    /// The applied index of the last snapshot that failed to be written; the next
    /// automatic attempt waits for another `snapshot_every_entries` after it.
    failed_snapshot_index: u64,
    snapshot_done_tx: mpsc::UnboundedSender<Result<raft_wal::SnapshotMeta, String>>,
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
        } = self;
        let (snapshot_sent_tx, mut snapshot_sent_rx) = mpsc::unbounded_channel::<SnapshotSent>();
        let last_snapshot_index = wal.latest_snapshot().map_or(0, |s| s.index);
        let (snapshot_done_tx, mut snapshot_done_rx) = mpsc::unbounded_channel();
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
            wal: Arc::clone(&wal),
            snapshot_every_entries,
            snapshot_dir,
            snapshot_sink,
            last_snapshot_index,
            sending_snapshots: std::collections::HashSet::new(),
            snapshot_backoff: SnapshotBackoff::default(),
            snapshot_sent_tx,
            pending_restore: None,
            snapshot_job: None,
            failed_snapshot_index: 0,
            snapshot_done_tx,
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
                Some(written) = snapshot_done_rx.recv() => state.on_snapshot_written(written),
                Some(sent) = snapshot_sent_rx.recv() => {
                    state.sending_snapshots.remove(&sent.peer);
                    match sent.result {
                        Ok(()) => state.snapshot_backoff.succeeded(sent.peer),
                        Err(e) => {
                            tracing::warn!(peer = %sent.peer, error = %e, "sending a snapshot failed");
                            state.snapshot_backoff.failed(sent.peer, Instant::now());
                            state.node.report_snapshot_failed(sent.peer);
                        }
                    }
                }
                Some(request) = requests.recv() => {
                    state.on_request(request);
                    // Batch: take every request already waiting before the next ready.
                    while let Ok(request) = requests.try_recv() {
                        state.on_request(request);
                    }
                }
                _ = ticker.tick() => {
                    if let Err(e) = state.node.tick() {
                        break Err(format!("raft node failed: {e}"));
                    }
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
    /// The oldest handed-out write is durable: release its messages and tell the
    /// node, then do the same for every later write that is durable already.
    fn on_durable(&mut self) -> Result<(), String> {
        while let Some(oldest) = self.writes.front_mut() {
            if let Some(completion) = &oldest.completion {
                match completion.try_take() {
                    None => break,
                    Some(Err(e)) => return Err(format!("WAL write failed: {e}")),
                    Some(Ok(_)) => oldest.completion = None,
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
        if let MessageBody::InstallSnapshot(snapshot) = message.body {
            // The snapshot's data travels on the transport's snapshot stream; the
            // follower steps the message in once the data is durable there.
            if self.sending_snapshots.contains(&message.to) {
                return; // One transfer per peer at a time.
            }
            if !self.snapshot_backoff.may_send(message.to, Instant::now()) {
                // Not yet: the node probes the peer again and asks anew later.
                self.node.report_snapshot_failed(message.to);
                return;
            }
            self.sending_snapshots.insert(message.to);
            let (transport, wal, dir, done) = (
                self.transport.clone(),
                Arc::clone(&self.wal),
                self.snapshot_dir.clone(),
                self.snapshot_sent_tx.clone(),
            );
            let (to, term) = (message.to, message.term);
            tokio::spawn(async move {
                let result = crate::snapshots::send(transport, wal, dir, to, term, snapshot).await;
                let _ = done.send(SnapshotSent { peer: to, result });
            });
            return;
        }
        if let Err(e) = self.transport.send(message) {
            tracing::debug!(error = %e, "message not sent");
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
            Incoming::Snapshot(received) => self.on_snapshot_received(received),
            _ => {}
        }
    }

    fn on_request(&mut self, request: Request) {
        match request {
            Request::Propose { command, reply } => match self.node.propose(command) {
                Ok(id) => {
                    self.shared.metrics.proposals_pending.inc();
                    self.pending_writes.insert(id, (reply, Instant::now()));
                }
                Err(e) => {
                    self.shared.metrics.proposal_failed("not_leader");
                    let _ = reply.send(Err(map_core_error(e)));
                }
            },
            Request::Read { mode, reply } => {
                self.next_read_id += 1;
                match self.node.read_index(self.next_read_id, mode) {
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
            Request::Snapshot { reply } => self.start_snapshot(Some(reply)),
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
                if let Some(snapshot) = &persist.snapshot {
                    self.install_snapshot(snapshot)?;
                }
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
                    ProposalResult::Committed => continue,
                    ProposalResult::Dropped => ("dropped", ServiceError::Dropped),
                    ProposalResult::Unknown => ("unknown", ServiceError::Unknown),
                };
                if let Some((reply, _)) = self.pending_writes.remove(&outcome.proposal) {
                    self.shared.metrics.proposals_pending.dec();
                    self.shared.metrics.proposal_failed(failure.0);
                    let _ = reply.send(Err(failure.1.clone()));
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
        self.publish_status();
        Ok(())
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
            if let Some((reply, proposed_at)) = self.pending_writes.remove(&id) {
                metrics.proposals_pending.dec();
                metrics.proposals_committed.inc();
                metrics
                    .proposal_commit_duration
                    .observe(proposed_at.elapsed().as_secs_f64());
                let _ = reply.send(Ok(result));
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
        if self.snapshot_every_entries > 0
            && last.0
                >= self.last_snapshot_index.max(self.failed_snapshot_index)
                    + self.snapshot_every_entries
        {
            self.start_snapshot(None);
        }
    }

    /// Starts snapshotting the state machine at the applied index: a copy of it is
    /// written on a blocking thread, and the log is compacted once the snapshot is
    /// durable ([`Loop::on_snapshot_written`]). `reply`, if any, hears the outcome; a
    /// request made while a snapshot is being written waits for that one.
    fn start_snapshot(
        &mut self,
        reply: Option<oneshot::Sender<Result<crate::api::SnapshotResponse, ServiceError>>>,
    ) {
        if let Some(job) = &mut self.snapshot_job {
            job.waiting.extend(reply);
            return;
        }
        let kv = self.shared.kv.read().expect("kv lock").clone();
        let index = kv.applied_index();
        if index == 0 {
            if let Some(reply) = reply {
                let _ = reply.send(Err(ServiceError::Invalid("nothing applied yet".into())));
            }
            return;
        }
        if index == self.last_snapshot_index
            && let Some(existing) = self.wal.latest_snapshot()
        {
            if let Some(reply) = reply {
                let _ = reply.send(Ok(crate::api::SnapshotResponse {
                    index: existing.index,
                    term: existing.term,
                    bytes: existing.data_len_bytes,
                }));
            }
            return;
        }
        let term = match self.wal.term(index) {
            Ok(term) => raft_core::Term(term),
            Err(e) => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(ServiceError::Internal(e.to_string())));
                }
                return;
            }
        };
        let membership = self
            .shared
            .membership
            .lock()
            .expect("membership lock")
            .clone();
        let (wal, done) = (Arc::clone(&self.wal), self.snapshot_done_tx.clone());
        tokio::task::spawn_blocking(move || {
            let _ = done.send(crate::snapshots::write(&wal, &kv, term, &membership));
        });
        self.snapshot_job = Some(SnapshotJob {
            index,
            waiting: reply.into_iter().collect(),
            started: Instant::now(),
        });
    }

    /// A snapshot finished writing: compact the log behind it and answer whoever
    /// waits for it.
    fn on_snapshot_written(&mut self, written: Result<raft_wal::SnapshotMeta, String>) {
        let Some(job) = self.snapshot_job.take() else {
            return;
        };
        let outcome = written.and_then(|meta| {
            crate::snapshots::compact(
                &self.wal,
                meta.index,
                crate::snapshots::keep_entries(self.snapshot_every_entries),
            )?;
            Ok(meta)
        });
        let response = match outcome {
            Ok(meta) => {
                // A snapshot received from the leader meanwhile may be newer.
                self.last_snapshot_index = self.last_snapshot_index.max(meta.index);
                self.shared
                    .metrics
                    .snapshot_save_duration
                    .observe(job.started.elapsed().as_secs_f64());
                tracing::info!(
                    index = meta.index,
                    bytes = meta.data_len_bytes,
                    "snapshot taken"
                );
                Ok(crate::api::SnapshotResponse {
                    index: meta.index,
                    term: meta.term,
                    bytes: meta.data_len_bytes,
                })
            }
            Err(e) => {
                // A newer snapshot received from the leader may have superseded it.
                self.failed_snapshot_index = job.index;
                tracing::warn!(index = job.index, error = %e, "taking a snapshot failed");
                Err(ServiceError::Internal(format!(
                    "taking a snapshot failed: {e}"
                )))
            }
        };
        for reply in job.waiting {
            let _ = reply.send(response.clone());
        }
    }

    /// A snapshot's data arrived: make it durable, then step its message into the node.
    fn on_snapshot_received(&mut self, received: raft_transport::ReceivedSnapshot) {
        let path = self.snapshot_sink.path_for(&received.header);
        let (leader_term, snapshot) = match crate::snapshots::parse_header(&received.header) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::warn!(from = %received.from, error = %e, "refusing a snapshot");
                return;
            }
        };
        if snapshot.index.0 <= self.node.status().commit_index.0 {
            let _ = std::fs::remove_file(&path);
            return; // Already has everything it covers.
        }
        match crate::snapshots::receive(&self.wal, &path, &snapshot) {
            Ok(kv) => {
                self.pending_restore = Some((snapshot.index, kv));
                let message = Message {
                    from: received.from,
                    to: self.own_id,
                    term: leader_term,
                    body: MessageBody::InstallSnapshot(snapshot),
                };
                if let Err(e) = self.node.step(message) {
                    tracing::warn!(error = %e, "snapshot refused");
                }
            }
            Err(e) => {
                tracing::warn!(from = %received.from, error = %e, "could not store a received snapshot")
            }
        }
    }

    /// raft-core asks to install a snapshot: the WAL drops the log it replaces and the
    /// state machine becomes the snapshot's.
    fn install_snapshot(&mut self, snapshot: &raft_core::SnapshotMeta) -> Result<(), String> {
        let Some((index, kv)) = self
            .pending_restore
            .take()
            .filter(|(index, _)| *index == snapshot.index)
        else {
            return Err(format!(
                "asked to install snapshot {} that was not received",
                snapshot.index
            ));
        };
        let meta = self
            .wal
            .latest_snapshot()
            .filter(|m| m.index == index.0)
            .ok_or_else(|| format!("snapshot {index} is not durable"))?;
        self.wal
            .install_snapshot(&meta)
            .map_err(|e| format!("installing snapshot {index}: {e}"))?;
        self.node.log_store().forget();
        *self.shared.kv.write().expect("kv lock") = kv;
        *self.shared.membership.lock().expect("membership lock") = snapshot.membership.clone();
        self.last_snapshot_index = index.0;
        self.sync_transport_members();
        tracing::info!(index = index.0, "snapshot installed");
        Ok(())
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
        for (_, (reply, _)) in self.pending_writes.drain() {
            let _ = reply.send(Err(ServiceError::Unknown));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_retries_back_off_and_reset_after_a_success() {
        let (peer, other) = (NodeId(2), NodeId(3));
        let start = Instant::now();
        let mut backoff = SnapshotBackoff::default();
        assert!(backoff.may_send(peer, start));
        let mut now = start;
        let mut pauses = Vec::new();
        for _ in 0..8 {
            backoff.failed(peer, now);
            let mut pause = Duration::ZERO;
            while !backoff.may_send(peer, now + pause) {
                pause += Duration::from_millis(250);
            }
            pauses.push(pause);
            now += pause;
        }
        assert_eq!(pauses[0], SNAPSHOT_RETRY_MIN);
        assert_eq!(pauses[1], SNAPSHOT_RETRY_MIN * 2);
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*pauses.last().unwrap(), SNAPSHOT_RETRY_MAX);
        assert!(backoff.may_send(other, start), "peers back off separately");
        backoff.succeeded(peer);
        assert!(backoff.may_send(peer, now));
        backoff.failed(peer, now);
        assert!(!backoff.may_send(peer, now + SNAPSHOT_RETRY_MIN / 2));
        assert!(backoff.may_send(peer, now + SNAPSHOT_RETRY_MIN));
    }
}
