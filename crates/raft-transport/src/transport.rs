//! The transport handle: start, send, membership, snapshots, statistics, shutdown.
//! `send` never awaits the network: it enqueues into a bounded per-peer queue and
//! returns. All tasks stop when the last handle is dropped or `shutdown` is called.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use raft_core::{Message, NodeId};
use tokio::sync::{mpsc, watch};

use crate::config::TransportConfig;
use crate::error::TransportError;
use crate::inbound;
use crate::peer::Peer;
use crate::snapshot::{ReceivedSnapshot, SnapshotHeader, SnapshotSource, SnapshotTransfer};
use crate::stats::{PeerCounters, TransportStats};
use crate::stream::CODE_CLOSED;
use crate::tls::{RefusalCounters, SharedMembers, TlsContext};

/// What the transport hands the application.
#[derive(Debug)]
#[non_exhaustive]
pub enum Incoming {
    /// A message from an authenticated member, addressed to this member.
    Message(Message),
    /// Messages to this member were dropped (queue full, or it could not be reached):
    /// the core should fall back to probing it. Reported once per episode.
    Unreachable(NodeId),
    /// A snapshot arrived completely and its sink published it.
    Snapshot(ReceivedSnapshot),
}

/// A running transport. Cheap to clone; every clone drives the same endpoint.
#[derive(Clone, Debug)]
pub struct Transport {
    handle: Arc<Handle>,
}

/// Stops everything when the last [`Transport`] clone is dropped.
#[derive(Debug)]
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

/// State shared by the handle and every task.
pub(crate) struct Shared {
    pub(crate) local_id: NodeId,
    pub(crate) config: TransportConfig,
    pub(crate) members: SharedMembers,
    pub(crate) tls: TlsContext,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) quic: Arc<quinn::TransportConfig>,
    pub(crate) incoming: mpsc::Sender<Incoming>,
    pub(crate) shutdown: watch::Sender<bool>,
    peers: Mutex<BTreeMap<NodeId, Arc<Peer>>>,
    counters: Mutex<BTreeMap<NodeId, Arc<PeerCounters>>>,
    inbound: Mutex<BTreeMap<NodeId, Vec<quinn::Connection>>>,
    pub(crate) receiving: crate::snapshot::receive::Registry,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("local_id", &self.local_id)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Binds the endpoint and starts accepting peers. Must be called from within a
    /// Tokio runtime. Returns the handle and the stream of [`Incoming`] events, which
    /// the application must keep draining (readers pause while it is full).
    pub fn start(
        config: TransportConfig,
    ) -> Result<(Transport, mpsc::Receiver<Incoming>), TransportError> {
        let own = config.tls.member_id();
        if own != Some(config.id) {
            return Err(TransportError::OwnCertificateId {
                expected: config.id,
                found: own,
            });
        }
        let refusals = Arc::new(RefusalCounters::default());
        let tls = TlsContext::new(config.tls.clone(), refusals)?;
        let members: SharedMembers = Arc::new(RwLock::new(config.members.clone()));
        let quic = Arc::new(quic_transport_config(&config));
        let server_crypto =
            quinn::crypto::rustls::QuicServerConfig::try_from(tls.server_config(members.clone())?)
                .map_err(|_| TransportError::Tls {
                    source: rustls::Error::General(
                        "no TLS 1.3 AES-128-GCM suite for QUIC".to_owned(),
                    ),
                })?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(quic.clone());
        let endpoint = bind(server, &config)?;
        let (incoming, events) = mpsc::channel(config.incoming_queue_messages.max(1));
        let shared = Arc::new(Shared {
            local_id: config.id,
            config,
            members,
            tls,
            endpoint,
            quic,
            incoming,
            shutdown: watch::Sender::new(false),
            peers: Mutex::new(BTreeMap::new()),
            counters: Mutex::new(BTreeMap::new()),
            inbound: Mutex::new(BTreeMap::new()),
            receiving: Default::default(),
        });
        tokio::spawn(inbound::accept_loop(shared.clone()));
        tracing::info!(id = %shared.local_id, addr = %shared.config.listen, "raft transport started");
        Ok((
            Transport {
                handle: Arc::new(Handle { shared }),
            },
            events,
        ))
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// This member's id.
    pub fn local_id(&self) -> NodeId {
        self.shared().local_id
    }

    /// The address the endpoint is bound to (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        let addr = self.shared().config.listen;
        self.shared()
            .endpoint
            .local_addr()
            .map_err(|source| TransportError::Bind { addr, source })
    }

    /// Enqueues `message` for `message.to` and returns at once. Appends go on the
    /// peer's append stream, everything else on its control stream. If the peer's
    /// queue is full the message is dropped, counted, `Unreachable` is reported, and
    /// `QueueFull` returned; a peer outside the membership gives `UnknownPeer`, a
    /// message not from this member `Misaddressed`, and one whose frame would exceed
    /// `max_frame_bytes` `FrameTooLarge` (raft-core's append size limit must stay
    /// below it).
    pub fn send(&self, message: Message) -> Result<(), TransportError> {
        let local = self.shared().local_id;
        if message.from != local {
            // The receiver would close the stream for it: refuse it here instead.
            return Err(TransportError::Misaddressed {
                from: message.from,
                to: message.to,
                peer: message.to,
                local,
            });
        }
        // The receiver would close the stream for an oversized frame.
        let frame_bytes = crate::codec::encoded_len(&message) - crate::codec::LENGTH_PREFIX_BYTES;
        let limit_bytes = self.shared().config.max_frame_bytes;
        if frame_bytes > limit_bytes as usize {
            return Err(TransportError::FrameTooLarge {
                len_bytes: frame_bytes as u64,
                limit_bytes: u64::from(limit_bytes),
            });
        }
        let peer = self.shared().peer(message.to)?;
        peer.enqueue(self.shared(), message)
    }

    /// Streams a snapshot to `to`, reading it from `source`. The returned transfer
    /// completes when the receiver acknowledged every byte as persisted; it survives
    /// reconnects, resuming from the last acknowledged offset.
    pub fn send_snapshot(
        &self,
        to: NodeId,
        header: SnapshotHeader,
        source: Arc<dyn SnapshotSource>,
    ) -> Result<SnapshotTransfer, TransportError> {
        let peer = self.shared().peer(to)?;
        let task = tokio::spawn(crate::snapshot::send::run(
            self.shared().clone(),
            peer,
            header,
            source,
        ));
        Ok(SnapshotTransfer::new(task))
    }

    /// The membership as the transport sees it.
    pub fn members(&self) -> BTreeMap<NodeId, SocketAddr> {
        self.shared()
            .members
            .read()
            .expect("membership lock")
            .clone()
    }

    /// Adds a member, or changes its address (an open connection to the old address
    /// is closed).
    pub fn add_member(&self, id: NodeId, addr: SocketAddr) {
        let previous = self
            .shared()
            .members
            .write()
            .expect("membership lock")
            .insert(id, addr);
        if previous.is_some_and(|previous| previous != addr) {
            self.shared().close_outbound(id);
        }
    }

    /// Removes a member: its connections are closed, its queue dropped, and its
    /// certificate no longer accepted.
    pub fn remove_member(&self, id: NodeId) {
        self.shared()
            .members
            .write()
            .expect("membership lock")
            .remove(&id);
        let peer = self.shared().peers.lock().expect("peers lock").remove(&id);
        if let Some(peer) = peer {
            peer.close();
        }
        self.shared().close_inbound(id);
    }

    /// Replaces the whole membership (members that left are removed as by
    /// [`Transport::remove_member`]).
    pub fn set_members(&self, members: BTreeMap<NodeId, SocketAddr>) {
        let old = self.members();
        for id in old.keys().filter(|id| !members.contains_key(id)) {
            self.remove_member(*id);
        }
        for (id, addr) in members {
            self.add_member(id, addr);
        }
    }

    /// Closes the connections to and from `peer` now. Traffic resumes on a new
    /// connection on demand. Operators use it to force a fresh handshake; tests use it
    /// to cut a transfer in the middle.
    pub fn reset_peer(&self, peer: NodeId) {
        self.shared().close_outbound(peer);
        self.shared().close_inbound(peer);
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> TransportStats {
        let shared = self.shared();
        let counters = shared.counters.lock().expect("counters lock").clone();
        let peers = shared.peers.lock().expect("peers lock").clone();
        let mut stats = TransportStats {
            peers: BTreeMap::new(),
            refused: shared.tls.refusals.snapshot(),
        };
        for (id, counter) in counters {
            let mut peer_stats = counter.read();
            if let Some(connection) = peers.get(&id).and_then(|peer| peer.current_connection()) {
                peer_stats.round_trip_time = Some(connection.rtt());
                peer_stats.lost_packets = connection.stats().path.lost_packets;
            }
            stats.peers.insert(id, peer_stats);
        }
        stats
    }

    /// Closes every connection and stops every task; waits until the peers were told.
    pub async fn shutdown(&self) {
        self.shared().stop();
        self.shared().endpoint.wait_idle().await;
    }
}

impl Shared {
    /// The peer handle for `id`, created (and its task started) on first use.
    pub(crate) fn peer(self: &Arc<Self>, id: NodeId) -> Result<Arc<Peer>, TransportError> {
        if *self.shutdown.borrow() {
            return Err(TransportError::Shutdown);
        }
        if id == self.local_id
            || !self
                .members
                .read()
                .expect("membership lock")
                .contains_key(&id)
        {
            return Err(TransportError::UnknownPeer { peer: id });
        }
        let mut peers = self.peers.lock().expect("peers lock");
        if let Some(peer) = peers.get(&id) {
            return Ok(peer.clone());
        }
        let peer = Peer::spawn(self, id, self.counters_for(id));
        peers.insert(id, peer.clone());
        Ok(peer)
    }

    /// The counters of `id`, created on first use.
    pub(crate) fn counters_for(&self, id: NodeId) -> Arc<PeerCounters> {
        self.counters
            .lock()
            .expect("counters lock")
            .entry(id)
            .or_default()
            .clone()
    }

    /// The configured address of member `id`.
    pub(crate) fn member_addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.members
            .read()
            .expect("membership lock")
            .get(&id)
            .copied()
    }

    /// A future that resolves once shutdown started.
    pub(crate) async fn stopped(&self) {
        let mut receiver = self.shutdown.subscribe();
        let _ = receiver.wait_for(|stopped| *stopped).await;
    }

    pub(crate) fn register_inbound(&self, id: NodeId, connection: quinn::Connection) {
        let mut inbound = self.inbound.lock().expect("inbound lock");
        let list = inbound.entry(id).or_default();
        list.retain(|existing| existing.close_reason().is_none());
        list.push(connection);
    }

    pub(crate) fn unregister_inbound(&self, id: NodeId, connection: &quinn::Connection) {
        let mut inbound = self.inbound.lock().expect("inbound lock");
        if let Some(list) = inbound.get_mut(&id) {
            list.retain(|existing| existing.stable_id() != connection.stable_id());
        }
    }

    fn close_inbound(&self, id: NodeId) {
        let connections = self
            .inbound
            .lock()
            .expect("inbound lock")
            .remove(&id)
            .unwrap_or_default();
        for connection in connections {
            connection.close(CODE_CLOSED, b"closed");
        }
    }

    fn close_outbound(&self, id: NodeId) {
        let peer = self.peers.lock().expect("peers lock").get(&id).cloned();
        if let Some(peer) = peer {
            peer.close_connection();
        }
    }

    fn stop(&self) {
        if self.shutdown.send_replace(true) {
            return;
        }
        let peers = std::mem::take(&mut *self.peers.lock().expect("peers lock"));
        for peer in peers.values() {
            peer.close();
        }
        self.inbound.lock().expect("inbound lock").clear();
        self.endpoint.close(CODE_CLOSED, b"shutdown");
        tracing::info!(id = %self.local_id, "raft transport stopped");
    }
}

/// Binds the UDP socket with the configured buffer sizes (best effort: the kernel
/// caps them at its maximum). Small socket buffers lose packets under bursts of
/// appends, and every loss costs QUIC congestion window.
fn bind(
    server: quinn::ServerConfig,
    config: &TransportConfig,
) -> Result<quinn::Endpoint, TransportError> {
    let error = |source| TransportError::Bind {
        addr: config.listen,
        source,
    };
    let socket = std::net::UdpSocket::bind(config.listen).map_err(error)?;
    if config.socket_buffer_bytes > 0
        && let Ok(state) = quinn::udp::UdpSocketState::new((&socket).into())
    {
        let bytes = config.socket_buffer_bytes;
        if let Err(failure) = state.set_recv_buffer_size((&socket).into(), bytes) {
            tracing::debug!(%failure, bytes, "cannot size the socket receive buffer");
        }
        if let Err(failure) = state.set_send_buffer_size((&socket).into(), bytes) {
            tracing::debug!(%failure, bytes, "cannot size the socket send buffer");
        }
    }
    let runtime = quinn::default_runtime()
        .ok_or_else(|| error(std::io::Error::other("no async runtime found")))?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        runtime,
    )
    .map_err(error)
}

/// Concurrent unidirectional streams a peer may open (append + control, with room
/// for the streams of a connection being replaced).
const MAX_UNI_STREAMS: u32 = 8;
/// Concurrent bidirectional (snapshot) streams a peer may open.
const MAX_BIDI_STREAMS: u32 = 4;

fn quic_transport_config(config: &TransportConfig) -> quinn::TransportConfig {
    let mut quic = quinn::TransportConfig::default();
    // A dialer opens two unidirectional streams per connection and one bidirectional
    // stream per snapshot transfer. Few streams bound what one peer can make this
    // member buffer: each reader holds at most one frame.
    quic.max_concurrent_uni_streams(quinn::VarInt::from_u32(MAX_UNI_STREAMS));
    quic.max_concurrent_bidi_streams(quinn::VarInt::from_u32(MAX_BIDI_STREAMS));
    // Path MTU discovery searches up to this payload size; probing beyond the real
    // path's MTU is harmless (the probes are lost and discovery settles lower).
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(config.max_udp_payload_bytes.max(1200));
    quic.mtu_discovery_config(Some(mtu));
    quic.keep_alive_interval(Some(config.keep_alive_interval));
    // An idle timeout beyond QUIC's range falls back to quinn's default.
    if let Ok(timeout) = quinn::IdleTimeout::try_from(config.idle_timeout) {
        quic.max_idle_timeout(Some(timeout));
    }
    // Flow-control windows bound what quinn buffers per stream and connection; with
    // the snapshot window they bound a transfer's memory.
    let window = config
        .snapshot
        .window_bytes
        .max(u64::from(config.max_frame_bytes) * 2);
    let stream_window = quinn::VarInt::from_u64(window).unwrap_or(quinn::VarInt::MAX);
    quic.stream_receive_window(stream_window);
    quic.receive_window(
        quinn::VarInt::from_u64(window.saturating_mul(4)).unwrap_or(quinn::VarInt::MAX),
    );
    quic.send_window(window.saturating_mul(4));
    quic
}
