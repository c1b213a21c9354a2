//! The transport's configuration, with defaults fit for a LAN cluster. Every limit
//! that bounds memory lives here, so the bound can be read in one place.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use raft_core::NodeId;

use crate::codec::DEFAULT_MAX_FRAME_BYTES;
use crate::snapshot::SnapshotSinkFactory;
use crate::tls::TlsIdentity;

/// Everything [`crate::Transport::start`] needs.
#[derive(Clone)]
#[non_exhaustive]
pub struct TransportConfig {
    /// This member's id; its certificate must name it.
    pub id: NodeId,
    /// The UDP address to bind (the member's peer address).
    pub listen: SocketAddr,
    /// The initial membership: member id to peer address. This member may be listed;
    /// it is never dialed.
    pub members: BTreeMap<NodeId, SocketAddr>,
    /// The CA, certificate and key.
    pub tls: TlsIdentity,
    /// The largest frame accepted or sent, length prefix excluded.
    pub max_frame_bytes: u32,
    /// Messages queued per peer (appends and other messages each get this many)
    /// before new ones are dropped.
    pub send_queue_messages: usize,
    /// Append bytes queued per peer before new appends are dropped.
    pub send_queue_bytes: u64,
    /// Received messages buffered for the application before readers stop reading
    /// (QUIC flow control then slows the senders).
    pub incoming_queue_messages: usize,
    /// A writer encodes up to this many bytes of frames before each write.
    pub write_batch_bytes: usize,
    /// The UDP socket's send and receive buffer sizes, capped by the kernel's
    /// `net.core.rmem_max`/`wmem_max`; 0 keeps the system default. Larger buffers
    /// avoid packet loss under bursts of appends at the price of queueing delay.
    pub socket_buffer_bytes: usize,
    /// The largest UDP payload path MTU discovery tries (quinn's default is 1452, an
    /// Ethernet frame; raise it on networks with jumbo frames or on loopback).
    pub max_udp_payload_bytes: u16,
    /// How often an idle connection sends a QUIC keep-alive.
    pub keep_alive_interval: Duration,
    /// A connection silent this long is dead (dead-peer detection).
    pub idle_timeout: Duration,
    /// The first reconnect delay; it doubles per failed attempt.
    pub reconnect_backoff_min: Duration,
    /// The largest reconnect delay.
    pub reconnect_backoff_max: Duration,
    /// Snapshot streaming parameters.
    pub snapshot: SnapshotConfig,
    /// Where incoming snapshots are written; without one, snapshots are refused.
    pub snapshot_sink: Option<Arc<dyn SnapshotSinkFactory>>,
}

impl fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportConfig")
            .field("id", &self.id)
            .field("listen", &self.listen)
            .field("members", &self.members)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("send_queue_messages", &self.send_queue_messages)
            .field("send_queue_bytes", &self.send_queue_bytes)
            .field("snapshot", &self.snapshot)
            .field("snapshot_sink", &self.snapshot_sink.is_some())
            .finish_non_exhaustive()
    }
}

impl TransportConfig {
    /// A configuration with default limits and timeouts.
    pub fn new(
        id: NodeId,
        listen: SocketAddr,
        members: BTreeMap<NodeId, SocketAddr>,
        tls: TlsIdentity,
    ) -> TransportConfig {
        TransportConfig {
            id,
            listen,
            members,
            tls,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            send_queue_messages: 4096,
            send_queue_bytes: 64 * 1024 * 1024,
            incoming_queue_messages: 4096,
            write_batch_bytes: 256 * 1024,
            socket_buffer_bytes: 0,
            max_udp_payload_bytes: 65527,
            keep_alive_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            reconnect_backoff_min: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(2),
            snapshot: SnapshotConfig::default(),
            snapshot_sink: None,
        }
    }
}

/// How snapshots stream.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct SnapshotConfig {
    /// Bytes of snapshot data per chunk frame; the sender and the receiver each
    /// buffer about one chunk.
    pub chunk_bytes: u32,
    /// Bytes the sender may have written beyond the receiver's last acknowledgement.
    /// Held by QUIC's flow control, not by the transport.
    pub window_bytes: u64,
    /// The receiver syncs its sink and acknowledges at least this often.
    pub ack_interval_bytes: u64,
    /// An optional cap on the sending rate.
    pub bandwidth_bytes_per_second: Option<u64>,
    /// Connections a transfer tries before giving up.
    pub max_attempts: u32,
}

impl Default for SnapshotConfig {
    fn default() -> SnapshotConfig {
        SnapshotConfig {
            chunk_bytes: 64 * 1024,
            window_bytes: 8 * 1024 * 1024,
            ack_interval_bytes: 4 * 1024 * 1024,
            bandwidth_bytes_per_second: None,
            max_attempts: 20,
        }
    }
}
