//! One peer's outgoing side: two bounded queues (appends; everything else), and a
//! task that dials on demand with jittered backoff, keeps the connection, and runs
//! one writer per queue on its own unidirectional stream, so heartbeats and votes
//! never wait behind a large append. Memory is bounded by the queues' limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use quinn::{Connection, SendStream};
use raft_core::{Message, MessageBody, NodeId};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use crate::codec::{Preamble, StreamKind, encode_message, encoded_len};
use crate::error::TransportError;
use crate::stats::PeerCounters;
use crate::stream::CODE_CLOSED;
use crate::tls::member_server_name;
use crate::transport::{Incoming, Shared};

/// The most messages a writer takes off its queue at once.
const MAX_BATCH_MESSAGES: usize = 1024;

/// QUIC send priority of the control stream (votes, heartbeats, responses).
const CONTROL_PRIORITY: i32 = 1;
/// QUIC send priority of the append stream.
const APPEND_PRIORITY: i32 = 0;
/// QUIC send priority of snapshot streams: they use what the others leave.
pub(crate) const SNAPSHOT_PRIORITY: i32 = -1;

/// The handle the transport keeps per peer.
pub(crate) struct Peer {
    append_tx: mpsc::Sender<Message>,
    control_tx: mpsc::Sender<Message>,
    state: Arc<PeerState>,
    task: JoinHandle<()>,
}

/// What the peer's task and its handle share.
pub(crate) struct PeerState {
    pub(crate) id: NodeId,
    pub(crate) counters: Arc<PeerCounters>,
    queued_append_bytes: AtomicU64,
    unreachable_reported: AtomicBool,
    connection: watch::Sender<Option<Connection>>,
    demand: Notify,
}

impl Peer {
    pub(crate) fn spawn(
        shared: &Arc<Shared>,
        id: NodeId,
        counters: Arc<PeerCounters>,
    ) -> Arc<Peer> {
        let capacity = shared.config.send_queue_messages.max(1);
        let (append_tx, append_rx) = mpsc::channel(capacity);
        let (control_tx, control_rx) = mpsc::channel(capacity);
        let state = Arc::new(PeerState {
            id,
            counters,
            queued_append_bytes: AtomicU64::new(0),
            unreachable_reported: AtomicBool::new(false),
            connection: watch::Sender::new(None),
            demand: Notify::new(),
        });
        let task = tokio::spawn(
            PeerTask {
                shared: shared.clone(),
                state: state.clone(),
                append_rx,
                control_rx,
            }
            .run(),
        );
        Arc::new(Peer {
            append_tx,
            control_tx,
            state,
            task,
        })
    }

    pub(crate) fn id(&self) -> NodeId {
        self.state.id
    }

    pub(crate) fn counters(&self) -> &PeerCounters {
        &self.state.counters
    }

    pub(crate) fn enqueue(&self, shared: &Shared, message: Message) -> Result<(), TransportError> {
        let is_append = matches!(message.body, MessageBody::Append(_));
        let outcome = if is_append {
            let size = encoded_len(&message) as u64;
            let queued = self
                .state
                .queued_append_bytes
                .fetch_add(size, Ordering::Relaxed);
            if queued + size > shared.config.send_queue_bytes && queued > 0 {
                self.state
                    .queued_append_bytes
                    .fetch_sub(size, Ordering::Relaxed);
                Err(mpsc::error::TrySendError::Full(message))
            } else {
                self.append_tx.try_send(message).inspect_err(|_| {
                    self.state
                        .queued_append_bytes
                        .fetch_sub(size, Ordering::Relaxed);
                })
            }
        } else {
            self.control_tx.try_send(message)
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                PeerCounters::add(&self.state.counters.dropped_queue_full, 1);
                self.state.report_unreachable(shared);
                Err(TransportError::QueueFull { peer: self.id() })
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(TransportError::Shutdown),
        }
    }

    /// The current outgoing connection, if one is established.
    pub(crate) fn current_connection(&self) -> Option<Connection> {
        self.state
            .connection
            .borrow()
            .clone()
            .filter(|connection| connection.close_reason().is_none())
    }

    /// Waits for an outgoing connection, asking the task to dial. Gives up after
    /// `wait` (the caller counts that as a failed attempt).
    pub(crate) async fn connection(&self, wait: Duration) -> Option<Connection> {
        let mut changes = self.state.connection.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(connection) = self.current_connection() {
                return Some(connection);
            }
            self.state.demand.notify_one();
            changes.borrow_and_update();
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Closes the current connection; the task reconnects on demand.
    pub(crate) fn close_connection(&self) {
        if let Some(connection) = self.state.connection.borrow().as_ref() {
            connection.close(CODE_CLOSED, b"reset");
        }
    }

    /// Closes the connection and stops the task.
    pub(crate) fn close(&self) {
        self.close_connection();
        self.task.abort();
        self.state
            .counters
            .connected
            .store(false, Ordering::Relaxed);
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PeerState {
    /// Tells the application once per episode that messages to this peer are lost.
    fn report_unreachable(&self, shared: &Shared) {
        if self.unreachable_reported.swap(true, Ordering::Relaxed) {
            return;
        }
        if shared
            .incoming
            .try_send(Incoming::Unreachable(self.id))
            .is_err()
        {
            // The application is behind; report again on the next loss.
            self.unreachable_reported.store(false, Ordering::Relaxed);
        }
    }
}

/// The peer's task: owns the queues' receiving ends and the connection.
struct PeerTask {
    shared: Arc<Shared>,
    state: Arc<PeerState>,
    append_rx: mpsc::Receiver<Message>,
    control_rx: mpsc::Receiver<Message>,
}

impl PeerTask {
    async fn run(mut self) {
        let shared = self.shared.clone();
        let config = &shared.config;
        let seed = self.state.id.get() ^ u64::from(std::process::id()) ^ nanos_now();
        let mut backoff = Backoff::new(
            config.reconnect_backoff_min,
            config.reconnect_backoff_max,
            seed,
        );
        let mut pending: Vec<Message> = Vec::new();
        loop {
            // Connections are made on demand: wait for a message or a snapshot.
            if pending.is_empty() {
                tokio::select! {
                    message = self.append_rx.recv() => match message {
                        Some(message) => pending.push(self.took_append(message)),
                        None => return,
                    },
                    message = self.control_rx.recv() => match message {
                        Some(message) => pending.push(message),
                        None => return,
                    },
                    () = self.state.demand.notified() => {}
                    () = self.shared.stopped() => return,
                }
            }
            let connection = match self.dial().await {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::debug!(peer = %self.state.id, %error, "dial failed");
                    self.drop_queued(&mut pending);
                    tokio::select! {
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                        () = self.shared.stopped() => return,
                    }
                    continue;
                }
            };
            let started = Instant::now();
            PeerCounters::add(&self.state.counters.connects, 1);
            self.state.counters.connected.store(true, Ordering::Relaxed);
            self.state.connection.send_replace(Some(connection.clone()));
            tracing::debug!(peer = %self.state.id, "connected");
            let outcome = self.serve(&connection, std::mem::take(&mut pending)).await;
            self.state.connection.send_replace(None);
            self.state
                .counters
                .connected
                .store(false, Ordering::Relaxed);
            connection.close(CODE_CLOSED, b"writer stopped");
            match outcome {
                Served::Shutdown => return,
                Served::Lost => {
                    tracing::debug!(peer = %self.state.id, "connection lost");
                    // A connection that lived a while proves the peer healthy again.
                    if started.elapsed() >= config.reconnect_backoff_max {
                        backoff.reset();
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                        () = self.shared.stopped() => return,
                    }
                }
            }
        }
    }

    fn took_append(&self, message: Message) -> Message {
        self.state
            .queued_append_bytes
            .fetch_sub(encoded_len(&message) as u64, Ordering::Relaxed);
        message
    }

    async fn dial(&self) -> Result<Connection, TransportError> {
        let peer = self.state.id;
        let addr = self
            .shared
            .member_addr(peer)
            .ok_or(TransportError::UnknownPeer { peer })?;
        let crypto = self.shared.tls.client_config(peer)?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).map_err(|_| {
            TransportError::Tls {
                source: rustls::Error::General("no TLS 1.3 AES-128-GCM suite for QUIC".to_owned()),
            }
        })?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(self.shared.quic.clone());
        let connecting = self
            .shared
            .endpoint
            .connect_with(client, addr, &member_server_name(peer))
            .map_err(|source| TransportError::Connect { peer, addr, source })?;
        connecting
            .await
            .map_err(|source| TransportError::Connection { peer, source })
    }

    /// After a failed dial: everything queued is lost; tell the application.
    fn drop_queued(&mut self, pending: &mut Vec<Message>) {
        let mut lost = pending.len() as u64;
        pending.clear();
        while let Ok(message) = self.append_rx.try_recv() {
            self.took_append(message);
            lost += 1;
        }
        while self.control_rx.try_recv().is_ok() {
            lost += 1;
        }
        PeerCounters::add(&self.state.counters.send_failures, lost);
        self.state.report_unreachable(&self.shared);
    }

    async fn serve(&mut self, connection: &Connection, pending: Vec<Message>) -> Served {
        let (mut first_append, mut first_control) = (Vec::new(), Vec::new());
        for message in pending {
            if matches!(message.body, MessageBody::Append(_)) {
                first_append.push(message);
            } else {
                first_control.push(message);
            }
        }
        let streams = async {
            let append = open_stream(connection, StreamKind::Append, self.shared.local_id).await?;
            let control =
                open_stream(connection, StreamKind::Control, self.shared.local_id).await?;
            Ok::<_, quinn::ConnectionError>((append, control))
        };
        let (append_stream, control_stream) = match streams.await {
            Ok(streams) => streams,
            Err(_) => {
                let lost = (first_append.len() + first_control.len()) as u64;
                PeerCounters::add(&self.state.counters.send_failures, lost);
                return Served::Lost;
            }
        };
        let state = &self.state;
        let batch_bytes = self.shared.config.write_batch_bytes;
        let appends = Writer {
            state,
            stream: append_stream,
            batch_bytes,
            is_append: true,
        };
        let controls = Writer {
            state,
            stream: control_stream,
            batch_bytes,
            is_append: false,
        };
        tokio::select! {
            outcome = appends.run(&mut self.append_rx, first_append) => outcome,
            outcome = controls.run(&mut self.control_rx, first_control) => outcome,
            _ = connection.closed() => Served::Lost,
            () = self.shared.stopped() => Served::Shutdown,
        }
    }
}

async fn open_stream(
    connection: &Connection,
    kind: StreamKind,
    sender: NodeId,
) -> Result<SendStream, quinn::ConnectionError> {
    let mut stream = connection.open_uni().await?;
    // quinn sends the highest-priority stream with data first: votes and heartbeats
    // overtake appends already buffered (and both overtake snapshots).
    let priority = match kind {
        StreamKind::Control => CONTROL_PRIORITY,
        _ => APPEND_PRIORITY,
    };
    let _ = stream.set_priority(priority);
    let mut preamble = BytesMut::new();
    Preamble { kind, sender }.encode(&mut preamble);
    // The preamble goes out with the first frames; a failure shows on the next write.
    stream
        .write_all(&preamble)
        .await
        .map_err(|_| quinn::ConnectionError::LocallyClosed)?;
    Ok(stream)
}

/// How serving a connection ended.
enum Served {
    Lost,
    Shutdown,
}

/// Drains one queue into one stream, many frames per write.
struct Writer<'a> {
    state: &'a PeerState,
    stream: SendStream,
    batch_bytes: usize,
    is_append: bool,
}

impl Writer<'_> {
    async fn run(mut self, queue: &mut mpsc::Receiver<Message>, mut batch: Vec<Message>) -> Served {
        let mut buf = BytesMut::with_capacity(self.batch_bytes);
        loop {
            if batch.is_empty() {
                if queue.recv_many(&mut batch, MAX_BATCH_MESSAGES).await == 0 {
                    return Served::Shutdown;
                }
                if self.is_append {
                    let bytes: usize = batch.iter().map(encoded_len).sum();
                    self.state
                        .queued_append_bytes
                        .fetch_sub(bytes as u64, Ordering::Relaxed);
                }
            }
            // `written`: messages of the batch dealt with; `framed`: frames in `buf`.
            let (mut written, mut framed) = (0usize, 0u64);
            for (at, message) in batch.iter().enumerate() {
                match encode_message(message, &mut buf) {
                    Ok(()) => framed += 1,
                    Err(error) => {
                        tracing::warn!(peer = %self.state.id, %error, "message not sent");
                        PeerCounters::add(&self.state.counters.send_failures, 1);
                    }
                }
                let last = at + 1 == batch.len();
                if buf.len() >= self.batch_bytes || (last && !buf.is_empty()) {
                    if self.stream.write_all(&buf).await.is_err() {
                        let lost = (batch.len() - written) as u64;
                        PeerCounters::add(&self.state.counters.send_failures, lost);
                        return Served::Lost;
                    }
                    PeerCounters::add(&self.state.counters.sent_bytes, buf.len() as u64);
                    PeerCounters::add(&self.state.counters.sent_messages, framed);
                    written = at + 1;
                    framed = 0;
                    buf.clear();
                }
            }
            batch.clear();
            self.state
                .unreachable_reported
                .store(false, Ordering::Relaxed);
        }
    }
}

/// Exponential backoff with jitter: each delay is drawn from the upper half of the
/// current step, so members that lost a peer together do not redial together.
struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
    rng: u64,
}

impl Backoff {
    fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            min,
            max,
            step: min,
            rng: seed | 1,
        }
    }

    fn next_delay(&mut self) -> Duration {
        // xorshift64: enough for jitter, no dependency.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        let jitter_nanos = half.as_nanos().max(1) as u64;
        half + Duration::from_nanos(self.rng % jitter_nanos)
    }

    fn reset(&mut self) {
        self.step = self.min;
    }
}

fn nanos_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_stays_in_range() {
        let min = Duration::from_millis(50);
        let max = Duration::from_secs(2);
        let mut backoff = Backoff::new(min, max, 7);
        let mut step = min;
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!(
                delay >= step / 2 && delay <= step,
                "{delay:?} outside {step:?}"
            );
            step = (step * 2).min(max);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= min);
    }
}
