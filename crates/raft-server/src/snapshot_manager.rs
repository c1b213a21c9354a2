//! The snapshot machinery beside the driver: taking snapshots of the state machine,
//! streaming the newest one to followers that need it, and preparing the ones that
//! arrive from a leader. The driver owns a [`SnapshotManager`] and calls it from its
//! loop; every call returns at once. The slow parts (writing and reading snapshot
//! files, fsyncs, compaction) run on blocking threads and report back as
//! [`SnapshotEvent`]s on the channel the driver selects on, so a snapshot never
//! freezes ticks, heartbeats or client requests.
//!
//! Keeps true: a snapshot is durable before the log it covers is compacted; a
//! received snapshot is only staged (durable, but not the WAL's latest, deleting
//! nothing) until raft-core asks to install it, and a staged snapshot raft-core did
//! not ask for is discarded; one transfer per peer at a time, with a growing pause
//! after failures.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use raft_core::{LogIndex, Membership, Message, MessageBody, NodeId, SnapshotMeta, Term};
use raft_transport::{FileSnapshotSinkFactory, ReceivedSnapshot, Transport};
use raft_wal::{Appended, Completion, StagedSnapshot, Wal};
use tokio::sync::{mpsc, oneshot};

use crate::api::SnapshotResponse;
use crate::driver::ServiceError;
use crate::kv::KvStore;
use crate::snapshots;

/// Where a request for a snapshot hears how it ended.
pub(crate) type SnapshotReply = oneshot::Sender<Result<SnapshotResponse, ServiceError>>;

/// First pause before a failed snapshot transfer to a peer is tried again.
const SNAPSHOT_RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest pause between snapshot transfer attempts to a peer.
const SNAPSHOT_RETRY_MAX: Duration = Duration::from_secs(30);

/// Something the manager's background work finished; hand it to
/// [`SnapshotManager::on_event`].
pub(crate) enum SnapshotEvent {
    /// A snapshot was written (and the log compacted behind it), or failed.
    Taken(Result<raft_wal::SnapshotMeta, String>),
    /// Streaming a snapshot to `peer` ended.
    Sent {
        peer: NodeId,
        result: Result<(), String>,
    },
    /// A snapshot from a leader was read and staged (or refused).
    Staged {
        from: NodeId,
        leader_term: Term,
        snapshot: SnapshotMeta,
        result: Result<(KvStore, StagedSnapshot), String>,
    },
}

/// What the driver must tell the node after an event.
pub(crate) enum NodeAction {
    /// Nothing.
    None,
    /// The transfer to this peer failed: the node probes it again and asks anew.
    SnapshotFailed(NodeId),
    /// A staged snapshot is ready: step this `InstallSnapshot` message into the node.
    Step(Message),
}

/// A snapshot being installed: the state machine it restores, the membership it
/// carries, and the WAL operation that makes it the log's base.
pub(crate) struct Installing {
    pub(crate) kv: KvStore,
    pub(crate) membership: Membership,
    pub(crate) completion: Completion<Appended>,
}

/// A snapshot being written on a blocking thread, and the requests waiting for it.
struct SnapshotJob {
    index: u64,
    waiting: Vec<SnapshotReply>,
    started: Instant,
}

/// A staged snapshot whose message was just stepped into the node. After the
/// node's next readies it is either being installed or discarded.
struct PendingRestore {
    index: LogIndex,
    kv: KvStore,
    staged: StagedSnapshot,
}

/// The driver's snapshot state. See the module documentation.
pub(crate) struct SnapshotManager {
    wal: Arc<Wal>,
    transport: Transport,
    /// Observes how long taking a snapshot took.
    save_duration: prometheus::Histogram,
    /// Take a snapshot every this many applied entries (0: only on request).
    every_entries: u64,
    /// Where snapshots are copied for sending.
    outgoing_dir: std::path::PathBuf,
    /// Where the transport puts snapshots that arrive.
    sink: Arc<FileSnapshotSinkFactory>,
    /// The index of the newest durable snapshot.
    last_index: u64,
    /// The applied index of the last snapshot that failed to be written; the next
    /// automatic attempt waits for another `every_entries` after it.
    failed_index: u64,
    job: Option<SnapshotJob>,
    /// Peers a snapshot is being streamed to.
    sending: HashSet<NodeId>,
    backoff: SnapshotBackoff,
    restores: Restores,
    events: mpsc::UnboundedSender<SnapshotEvent>,
}

/// How a [`SnapshotManager`] is set up.
pub(crate) struct SnapshotSettings {
    pub(crate) every_entries: u64,
    pub(crate) outgoing_dir: std::path::PathBuf,
    pub(crate) sink: Arc<FileSnapshotSinkFactory>,
}

impl SnapshotManager {
    /// A manager and the channel its events arrive on.
    pub(crate) fn new(
        wal: Arc<Wal>,
        transport: Transport,
        save_duration: prometheus::Histogram,
        settings: SnapshotSettings,
    ) -> (SnapshotManager, mpsc::UnboundedReceiver<SnapshotEvent>) {
        let (events, events_rx) = mpsc::unbounded_channel();
        let last_index = wal.latest_snapshot().map_or(0, |s| s.index);
        let manager = SnapshotManager {
            wal,
            transport,
            save_duration,
            every_entries: settings.every_entries,
            outgoing_dir: settings.outgoing_dir,
            sink: settings.sink,
            last_index,
            failed_index: 0,
            job: None,
            sending: HashSet::new(),
            backoff: SnapshotBackoff::default(),
            restores: Restores::default(),
            events,
        };
        (manager, events_rx)
    }

    /// The WAL snapshots are written to.
    pub(crate) fn wal(&self) -> &Wal {
        &self.wal
    }

    /// Entries through `applied` are applied: take a snapshot if enough have been
    /// applied since the last one.
    pub(crate) fn applied(&mut self, applied: u64, kv: &RwLock<KvStore>, membership: &Membership) {
        if self.every_entries > 0
            && applied >= self.last_index.max(self.failed_index) + self.every_entries
        {
            self.take(None, kv, membership);
        }
    }

    /// Starts a snapshot of the state machine at its applied index: a copy of it
    /// (cheap: the store shares its structure) is written on a blocking thread and
    /// the log is compacted behind it once it is durable. `reply`, if any, hears the
    /// outcome; a request made while a snapshot is being written waits for that one.
    pub(crate) fn take(
        &mut self,
        reply: Option<SnapshotReply>,
        kv: &RwLock<KvStore>,
        membership: &Membership,
    ) {
        if let Some(job) = &mut self.job {
            job.waiting.extend(reply);
            return;
        }
        let kv = kv.read().expect("kv lock").clone();
        let index = kv.applied_index();
        if index == 0 {
            if let Some(reply) = reply {
                let _ = reply.send(Err(ServiceError::Invalid("nothing applied yet".into())));
            }
            return;
        }
        if index == self.last_index
            && let Some(existing) = self.wal.latest_snapshot()
        {
            if let Some(reply) = reply {
                let _ = reply.send(Ok(SnapshotResponse {
                    index: existing.index,
                    term: existing.term,
                    bytes: existing.data_len_bytes,
                }));
            }
            return;
        }
        let term = match self.wal.term(index) {
            Ok(term) => Term(term),
            Err(e) => {
                if let Some(reply) = reply {
                    let _ = reply.send(Err(ServiceError::Internal(e.to_string())));
                }
                return;
            }
        };
        let (wal, events, membership) = (
            Arc::clone(&self.wal),
            self.events.clone(),
            membership.clone(),
        );
        let keep = snapshots::keep_entries(self.every_entries);
        tokio::task::spawn_blocking(move || {
            let result = snapshots::write(&wal, &kv, term, &membership).and_then(|meta| {
                snapshots::compact(&wal, meta.index, keep)?;
                Ok(meta)
            });
            let _ = events.send(SnapshotEvent::Taken(result));
        });
        self.job = Some(SnapshotJob {
            index,
            waiting: reply.into_iter().collect(),
            started: Instant::now(),
        });
    }

    /// The node asks to send `message` (an `InstallSnapshot`) to a follower: stream
    /// the newest snapshot to it in the background. Returns what to tell the node.
    pub(crate) fn send(&mut self, message: Message) -> NodeAction {
        let MessageBody::InstallSnapshot(snapshot) = message.body else {
            return NodeAction::None;
        };
        if self.sending.contains(&message.to) {
            return NodeAction::None; // One transfer per peer at a time.
        }
        if !self.backoff.may_send(message.to, Instant::now()) {
            // Not yet: the node probes the peer again and asks anew later.
            return NodeAction::SnapshotFailed(message.to);
        }
        self.sending.insert(message.to);
        let (transport, wal, dir, events) = (
            self.transport.clone(),
            Arc::clone(&self.wal),
            self.outgoing_dir.clone(),
            self.events.clone(),
        );
        let (to, term) = (message.to, message.term);
        tokio::spawn(async move {
            let result = snapshots::send(transport, wal, dir, to, term, snapshot).await;
            let _ = events.send(SnapshotEvent::Sent { peer: to, result });
        });
        NodeAction::None
    }

    /// A snapshot's data arrived from a leader: read and stage it in the
    /// background, unless this member's commit index already covers it.
    pub(crate) fn received(&mut self, received: ReceivedSnapshot, commit_index: LogIndex) {
        let path = self.sink.path_for(&received.header);
        let (leader_term, snapshot) = match snapshots::parse_header(&received.header) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::warn!(from = %received.from, error = %e, "refusing a snapshot");
                let _ = std::fs::remove_file(&path);
                return;
            }
        };
        if snapshot.index <= commit_index {
            let _ = std::fs::remove_file(&path);
            return; // Already has everything it covers.
        }
        let (wal, events, from) = (Arc::clone(&self.wal), self.events.clone(), received.from);
        tokio::task::spawn_blocking(move || {
            let result = snapshots::receive(&wal, &path, &snapshot);
            let _ = events.send(SnapshotEvent::Staged {
                from,
                leader_term,
                snapshot,
                result,
            });
        });
    }

    /// Background work finished: update the manager and say what the node must hear.
    pub(crate) fn on_event(&mut self, event: SnapshotEvent, own_id: NodeId) -> NodeAction {
        match event {
            SnapshotEvent::Taken(written) => {
                self.taken(written);
                NodeAction::None
            }
            SnapshotEvent::Sent { peer, result } => {
                self.sending.remove(&peer);
                match result {
                    Ok(()) => {
                        self.backoff.succeeded(peer);
                        NodeAction::None
                    }
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "sending a snapshot failed");
                        self.backoff.failed(peer, Instant::now());
                        NodeAction::SnapshotFailed(peer)
                    }
                }
            }
            SnapshotEvent::Staged {
                from,
                leader_term,
                snapshot,
                result,
            } => match result {
                Ok((kv, staged)) => {
                    let displaced = self.restores.stage(PendingRestore {
                        index: snapshot.index,
                        kv,
                        staged,
                    });
                    if let Some(older) = displaced {
                        discard(older);
                    }
                    NodeAction::Step(Message {
                        from,
                        to: own_id,
                        term: leader_term,
                        body: MessageBody::InstallSnapshot(snapshot),
                    })
                }
                Err(e) => {
                    tracing::warn!(%from, error = %e, "could not store a received snapshot");
                    NodeAction::None
                }
            },
        }
    }

    /// The node's readies since the last event are handled: a staged snapshot whose
    /// message the node did not turn into an install (it was stale, or this member
    /// moved to a newer term) is discarded.
    pub(crate) fn settle(&mut self) {
        if let Some(restore) = self.restores.settle() {
            tracing::info!(index = %restore.index, "received snapshot not installed; discarded");
            discard(restore);
        }
    }

    /// raft-core asks to install `snapshot`: the WAL makes it the log's base (the
    /// returned completion fires once that is durable, and WAL writes handed out
    /// after it are ordered after it), and the caller replaces the state machine.
    pub(crate) fn install(&mut self, snapshot: &SnapshotMeta) -> Result<Installing, String> {
        let Some(restore) = self.restores.take(snapshot.index) else {
            return Err(format!(
                "asked to install snapshot {} that was not received",
                snapshot.index
            ));
        };
        let index = restore.index;
        let completion = self.wal.submit_install_staged(restore.staged);
        self.last_index = index.0;
        tracing::info!(index = index.0, "installing a snapshot from the leader");
        Ok(Installing {
            kv: restore.kv,
            membership: snapshot.membership.clone(),
            completion,
        })
    }

    fn taken(&mut self, written: Result<raft_wal::SnapshotMeta, String>) {
        let Some(job) = self.job.take() else {
            return;
        };
        let response = match written {
            Ok(meta) => {
                // A snapshot received from the leader meanwhile may be newer.
                self.last_index = self.last_index.max(meta.index);
                self.save_duration
                    .observe(job.started.elapsed().as_secs_f64());
                tracing::info!(
                    index = meta.index,
                    bytes = meta.data_len_bytes,
                    "snapshot taken"
                );
                Ok(SnapshotResponse {
                    index: meta.index,
                    term: meta.term,
                    bytes: meta.data_len_bytes,
                })
            }
            Err(e) => {
                self.failed_index = job.index;
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
}

/// The staged snapshot whose message was just stepped into the node, if any. It
/// lives until the node's readies that follow: taken for an install, or settled
/// (discarded) if the node did not ask for it, so a refused snapshot is never
/// installed later by mistake and its file does not linger.
#[derive(Default)]
struct Restores {
    pending: Option<PendingRestore>,
}

impl Restores {
    /// Keeps `restore`; returns the one it displaces, to discard.
    fn stage(&mut self, restore: PendingRestore) -> Option<PendingRestore> {
        self.pending.replace(restore)
    }

    /// The staged snapshot at `index`, for an install. Anything else staged is
    /// dropped (its file deleted).
    fn take(&mut self, index: LogIndex) -> Option<PendingRestore> {
        self.pending.take().filter(|restore| restore.index == index)
    }

    /// The node's readies are handled: whatever is still staged was not asked for.
    fn settle(&mut self) -> Option<PendingRestore> {
        self.pending.take()
    }
}

/// Deletes a staged snapshot that will not be installed, off the caller's thread.
fn discard(restore: PendingRestore) {
    let index = restore.index;
    tokio::task::spawn_blocking(move || {
        if let Err(e) = restore.staged.discard() {
            tracing::warn!(%index, error = %e, "could not delete a staged snapshot");
        }
    });
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(wal: &Wal, index: u64) -> PendingRestore {
        let writer = wal
            .snapshot_writer(index, 1, bytes::Bytes::new())
            .expect("writer");
        PendingRestore {
            index: LogIndex(index),
            kv: KvStore::new([]),
            staged: writer.finish_staged().expect("staged"),
        }
    }

    #[test]
    fn a_staged_snapshot_the_node_did_not_ask_for_is_not_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(dir.path(), raft_wal::WalOptions::default()).expect("wal");
        let mut restores = Restores::default();
        assert!(restores.stage(staged(&wal, 10)).is_none());
        // The node refused it (no install in its readies): settled away...
        let refused = restores
            .settle()
            .expect("the refused snapshot is handed back");
        assert_eq!(refused.index, LogIndex(10));
        refused.staged.discard().expect("discard");
        // ...so a later request to install index 10 finds nothing staged.
        assert!(restores.take(LogIndex(10)).is_none());
        // A newer snapshot displaces an older one; only the asked-for index installs.
        assert!(restores.stage(staged(&wal, 20)).is_none());
        let displaced = restores.stage(staged(&wal, 30)).expect("displaced");
        assert_eq!(displaced.index, LogIndex(20));
        assert!(restores.take(LogIndex(20)).is_none(), "a mismatched index");
        assert!(restores.stage(staged(&wal, 40)).is_none());
        assert_eq!(
            restores.take(LogIndex(40)).map(|r| r.index),
            Some(LogIndex(40))
        );
        assert!(restores.settle().is_none());
        assert!(
            wal.latest_snapshot().is_none(),
            "nothing staged became the latest"
        );
    }

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
