//! Statistics for raft-server's metrics: plain data snapshots of per-peer atomic
//! counters. Counters only grow (except `connected` and the gauges read from quinn);
//! reading them never blocks the data path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use raft_core::NodeId;

use crate::tls::RefusalReason;

/// One peer's statistics, as of the call to [`crate::Transport::stats`].
#[derive(Clone, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct PeerStats {
    /// Message bytes written to the peer (frames, length prefixes included).
    pub sent_bytes: u64,
    /// Messages written to the peer.
    pub sent_messages: u64,
    /// Message bytes received from the peer.
    pub received_bytes: u64,
    /// Messages received from the peer and handed to the application.
    pub received_messages: u64,
    /// Messages lost because writing or dialing failed.
    pub send_failures: u64,
    /// Messages dropped because the peer's send queue was full.
    pub dropped_queue_full: u64,
    /// Streams from the peer closed for undecodable bytes, an oversized frame, an
    /// unknown version, or a misaddressed message (plus frames skipped for an
    /// unknown message tag).
    pub decode_errors: u64,
    /// Connections to the peer established (first connection included).
    pub connects: u64,
    /// Whether an outgoing connection to the peer is established now.
    pub connected: bool,
    /// QUIC's smoothed round-trip time on the outgoing connection, when connected.
    pub round_trip_time: Option<Duration>,
    /// Packets QUIC declared lost on the current outgoing connection.
    pub lost_packets: u64,
    /// Snapshot bytes the peer acknowledged as persisted.
    pub snapshot_sent_bytes: u64,
    /// Snapshot bytes received from the peer and persisted.
    pub snapshot_received_bytes: u64,
    /// Snapshot transfers to the peer that resumed from a non-zero offset.
    pub snapshot_resumes: u64,
    /// The largest number of snapshot bytes the transport held in its own buffers at
    /// once for this peer (sending or receiving): bounded by the chunk size, whatever
    /// the snapshot size.
    pub snapshot_peak_buffered_bytes: u64,
}

/// The transport's statistics.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct TransportStats {
    /// Per peer, for every member ever configured (removed members keep their last
    /// counts).
    pub peers: BTreeMap<NodeId, PeerStats>,
    /// Refused connections (both directions) by reason. Most refused peers prove no
    /// member id, so these are not per peer.
    pub refused: BTreeMap<RefusalReason, u64>,
}

impl TransportStats {
    /// Total refused connections, all reasons.
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }

    /// Refused connections for one reason.
    pub fn refused(&self, reason: RefusalReason) -> u64 {
        self.refused.get(&reason).copied().unwrap_or(0)
    }
}

/// The live counters behind [`PeerStats`].
#[derive(Debug, Default)]
pub(crate) struct PeerCounters {
    pub(crate) sent_bytes: AtomicU64,
    pub(crate) sent_messages: AtomicU64,
    pub(crate) received_bytes: AtomicU64,
    pub(crate) received_messages: AtomicU64,
    pub(crate) send_failures: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) decode_errors: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) connected: AtomicBool,
    pub(crate) snapshot_sent_bytes: AtomicU64,
    pub(crate) snapshot_received_bytes: AtomicU64,
    pub(crate) snapshot_resumes: AtomicU64,
    pub(crate) snapshot_peak_buffered_bytes: AtomicU64,
}

impl PeerCounters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn record_buffered(&self, bytes: u64) {
        self.snapshot_peak_buffered_bytes
            .fetch_max(bytes, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) -> PeerStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        PeerStats {
            sent_bytes: load(&self.sent_bytes),
            sent_messages: load(&self.sent_messages),
            received_bytes: load(&self.received_bytes),
            received_messages: load(&self.received_messages),
            send_failures: load(&self.send_failures),
            dropped_queue_full: load(&self.dropped_queue_full),
            decode_errors: load(&self.decode_errors),
            connects: load(&self.connects),
            connected: self.connected.load(Ordering::Relaxed),
            round_trip_time: None,
            lost_packets: 0,
            snapshot_sent_bytes: load(&self.snapshot_sent_bytes),
            snapshot_received_bytes: load(&self.snapshot_received_bytes),
            snapshot_resumes: load(&self.snapshot_resumes),
            snapshot_peak_buffered_bytes: load(&self.snapshot_peak_buffered_bytes),
        }
    }
}
