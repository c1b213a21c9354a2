//! The Prometheus metrics of docs/metrics in SPEC: one registry per member, every name
//! prefixed `raft_`, base units, counters ending in `_total`, latency histograms with
//! buckets from 100 µs. Transport counters are cumulative in raft-transport's stats;
//! they are carried over as deltas at scrape time so they stay true counters.
//! Labelled series whose label values are known in advance (failure reasons, refusal
//! reasons) are created at zero, so that every name of the contract is exposed, and
//! rates work, before the first event.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use raft_core::{Membership, NodeId, Status};
use raft_transport::{RefusalReason, TransportStats};

/// Every metric name SPEC.md fixes. Each is exposed from the start, except that a
/// per-peer or per-request family appears once it has a peer or a request to count,
/// and `raft_peer_match_index` and `raft_peer_lag_entries` only on the leader.
pub const CONTRACT_METRIC_NAMES: &[&str] = &[
    "raft_server_has_leader",
    "raft_server_is_leader",
    "raft_server_leader_changes_seen_total",
    "raft_term",
    "raft_commit_index",
    "raft_applied_index",
    "raft_last_log_index",
    "raft_snapshot_index",
    "raft_cluster_voters",
    "raft_cluster_learners",
    "raft_proposals_committed_total",
    "raft_proposals_applied_total",
    "raft_proposals_failed_total",
    "raft_proposals_pending",
    "raft_proposal_commit_duration_seconds",
    "raft_apply_duration_seconds",
    "raft_wal_fsync_duration_seconds",
    "raft_wal_fsync_batch_entries",
    "raft_wal_write_bytes_total",
    "raft_wal_segments",
    "raft_snapshot_save_duration_seconds",
    "raft_peer_sent_bytes_total",
    "raft_peer_received_bytes_total",
    "raft_peer_round_trip_time_seconds",
    "raft_peer_connected",
    "raft_peer_match_index",
    "raft_peer_lag_entries",
    "raft_client_requests_total",
    "raft_client_request_duration_seconds",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "raft_build_info",
    "raft_peer_send_failures_total",
    "raft_peer_dropped_messages_total",
];

/// The `reason` label values of `raft_proposals_failed_total`: this member was not the
/// leader, the proposal was dropped, or its outcome is unknown.
const PROPOSAL_FAILURE_REASONS: [&str; 3] = ["not_leader", "dropped", "unknown"];

/// How often raft-server samples each peer's round-trip time into
/// `raft_peer_round_trip_time_seconds`.
pub const ROUND_TRIP_TIME_SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// Latency buckets: 100 µs doubling to about 6.5 s.
fn latency_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.0001, 2.0, 17).expect("valid buckets")
}

/// Every metric of one member.
pub struct Metrics {
    registry: Registry,
    has_leader: IntGauge,
    is_leader: IntGauge,
    pub(crate) leader_changes: IntCounter,
    term: IntGauge,
    commit_index: IntGauge,
    applied_index: IntGauge,
    last_log_index: IntGauge,
    snapshot_index: IntGauge,
    voters: IntGauge,
    learners: IntGauge,
    pub(crate) proposals_committed: IntCounter,
    pub(crate) proposals_applied: IntCounter,
    proposals_failed: IntCounterVec,
    pub(crate) proposals_pending: IntGauge,
    pub(crate) proposal_commit_duration: Histogram,
    pub(crate) apply_duration: Histogram,
    fsync_duration: Histogram,
    fsync_batch_entries: Histogram,
    pub(crate) wal_write_bytes: IntCounter,
    pub(crate) wal_segments: IntGauge,
    /// Time to write a snapshot.
    pub snapshot_save_duration: Histogram,
    peer_sent_bytes: IntCounterVec,
    peer_received_bytes: IntCounterVec,
    peer_rtt: HistogramVec,
    peer_connected: IntGaugeVec,
    peer_match_index: IntGaugeVec,
    peer_lag: IntGaugeVec,
    peer_send_failures: IntCounterVec,
    peer_dropped_messages: IntCounterVec,
    peer_decode_errors: IntCounterVec,
    peer_snapshot_sent_bytes: IntCounterVec,
    peer_snapshot_received_bytes: IntCounterVec,
    client_requests: IntCounterVec,
    client_duration: HistogramVec,
    peer_refused: IntCounterVec,
    /// Last transport totals seen, per peer.
    peer_totals: Mutex<BTreeMap<NodeId, PeerTotals>>,
    /// The peers `raft_peer_match_index` and `raft_peer_lag_entries` have series for.
    progress_peers: Mutex<BTreeSet<NodeId>>,
    /// Last transport refusal totals seen, per reason.
    refused_totals: Mutex<BTreeMap<RefusalReason, u64>>,
}

/// The cumulative per-peer transport counters last carried into the metrics.
#[derive(Default)]
struct PeerTotals {
    sent_bytes: u64,
    received_bytes: u64,
    send_failures: u64,
    dropped_messages: u64,
    decode_errors: u64,
    snapshot_sent_bytes: u64,
    snapshot_received_bytes: u64,
}

/// Adds to `counter` what `total` gained since `seen`, then remembers `total`.
fn carry(counter: &IntCounterVec, label: &str, seen: &mut u64, total: u64) {
    counter
        .with_label_values(&[label])
        .inc_by(total.saturating_sub(*seen));
    *seen = (*seen).max(total);
}

macro_rules! register {
    ($registry:expr, $metric:expr) => {{
        let metric = $metric.expect("valid metric");
        $registry
            .register(Box::new(metric.clone()))
            .expect("unique metric name");
        metric
    }};
}

impl Metrics {
    /// Creates and registers every metric, including the process collector.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process collector");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help);
        let counter = |name: &str, help: &str| IntCounter::new(name, help);
        let histogram = |name: &str, help: &str| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(latency_buckets()))
        };
        let per_peer_counter =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["peer"]);
        let build_info: IntGaugeVec = register!(
            registry,
            IntGaugeVec::new(
                Opts::new(
                    "raft_build_info",
                    "Always 1; the version label names the raftd release."
                ),
                &["version"]
            )
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let metrics = Metrics {
            has_leader: register!(
                registry,
                gauge("raft_server_has_leader", "1 if this member knows a leader.")
            ),
            is_leader: register!(
                registry,
                gauge("raft_server_is_leader", "1 if this member is the leader.")
            ),
            leader_changes: register!(
                registry,
                counter(
                    "raft_server_leader_changes_seen_total",
                    "Leader changes this member has seen."
                )
            ),
            term: register!(registry, gauge("raft_term", "Current term.")),
            commit_index: register!(
                registry,
                gauge("raft_commit_index", "Highest index known committed.")
            ),
            applied_index: register!(
                registry,
                gauge("raft_applied_index", "Highest index applied.")
            ),
            last_log_index: register!(
                registry,
                gauge("raft_last_log_index", "Last index of the log.")
            ),
            snapshot_index: register!(
                registry,
                gauge("raft_snapshot_index", "Index of the newest snapshot.")
            ),
            voters: register!(
                registry,
                gauge("raft_cluster_voters", "Voters in the configuration.")
            ),
            learners: register!(
                registry,
                gauge("raft_cluster_learners", "Learners in the configuration.")
            ),
            proposals_committed: register!(
                registry,
                counter(
                    "raft_proposals_committed_total",
                    "Proposals of this member committed and applied."
                )
            ),
            proposals_applied: register!(
                registry,
                counter("raft_proposals_applied_total", "Entries applied.")
            ),
            proposals_failed: register!(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "raft_proposals_failed_total",
                        "Proposals that failed, by reason."
                    ),
                    &["reason"]
                )
            ),
            proposals_pending: register!(
                registry,
                gauge("raft_proposals_pending", "Proposals waiting to commit.")
            ),
            proposal_commit_duration: register!(
                registry,
                histogram(
                    "raft_proposal_commit_duration_seconds",
                    "From proposal to applied, on the leader."
                )
            ),
            apply_duration: register!(
                registry,
                histogram(
                    "raft_apply_duration_seconds",
                    "Time to apply one batch of committed entries."
                )
            ),
            fsync_duration: register!(
                registry,
                histogram(
                    "raft_wal_fsync_duration_seconds",
                    "Time from WAL submit to durable."
                )
            ),
            fsync_batch_entries: register!(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "raft_wal_fsync_batch_entries",
                        "Entries per durable WAL write."
                    )
                    .buckets(prometheus::exponential_buckets(1.0, 2.0, 14).expect("valid buckets"))
                )
            ),
            wal_write_bytes: register!(
                registry,
                counter("raft_wal_write_bytes_total", "Bytes of entries written.")
            ),
            wal_segments: register!(registry, gauge("raft_wal_segments", "WAL segment files.")),
            snapshot_save_duration: register!(
                registry,
                histogram(
                    "raft_snapshot_save_duration_seconds",
                    "Time to write a snapshot."
                )
            ),
            peer_sent_bytes: register!(
                registry,
                IntCounterVec::new(
                    Opts::new("raft_peer_sent_bytes_total", "Bytes sent to a peer."),
                    &["peer"]
                )
            ),
            peer_received_bytes: register!(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "raft_peer_received_bytes_total",
                        "Bytes received from a peer."
                    ),
                    &["peer"]
                )
            ),
            peer_rtt: register!(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "raft_peer_round_trip_time_seconds",
                        "QUIC's smoothed round-trip time to a peer, sampled once a second."
                    )
                    .buckets(latency_buckets()),
                    &["peer"]
                )
            ),
            peer_connected: register!(
                registry,
                IntGaugeVec::new(
                    Opts::new("raft_peer_connected", "1 if connected to the peer."),
                    &["peer"]
                )
            ),
            peer_match_index: register!(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "raft_peer_match_index",
                        "On the leader: a peer's match index."
                    ),
                    &["peer"]
                )
            ),
            peer_lag: register!(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "raft_peer_lag_entries",
                        "On the leader: entries a peer is behind."
                    ),
                    &["peer"]
                )
            ),
            peer_send_failures: register!(
                registry,
                per_peer_counter(
                    "raft_peer_send_failures_total",
                    "Messages to a peer lost because dialing or writing failed."
                )
            ),
            peer_dropped_messages: register!(
                registry,
                per_peer_counter(
                    "raft_peer_dropped_messages_total",
                    "Messages to a peer dropped because its send queue was full."
                )
            ),
            peer_decode_errors: register!(
                registry,
                per_peer_counter(
                    "raft_peer_decode_errors_total",
                    "Streams from a peer closed for bytes that do not decode."
                )
            ),
            peer_snapshot_sent_bytes: register!(
                registry,
                per_peer_counter(
                    "raft_peer_snapshot_sent_bytes_total",
                    "Snapshot bytes a peer acknowledged as persisted."
                )
            ),
            peer_snapshot_received_bytes: register!(
                registry,
                per_peer_counter(
                    "raft_peer_snapshot_received_bytes_total",
                    "Snapshot bytes received from a peer and persisted."
                )
            ),
            client_requests: register!(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "raft_client_requests_total",
                        "Client requests by operation and code."
                    ),
                    &["op", "code"]
                )
            ),
            client_duration: register!(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "raft_client_request_duration_seconds",
                        "Client request latency."
                    )
                    .buckets(latency_buckets()),
                    &["op"]
                )
            ),
            peer_refused: register!(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "raft_peer_connections_refused_total",
                        "Peer connections refused (either direction), by reason: \
                         e.g. untrusted_certificate when it does not chain to the CA."
                    ),
                    &["reason"]
                )
            ),
            peer_totals: Mutex::new(BTreeMap::new()),
            progress_peers: Mutex::new(BTreeSet::new()),
            refused_totals: Mutex::new(BTreeMap::new()),
            registry,
        };
        for reason in PROPOSAL_FAILURE_REASONS {
            metrics.proposals_failed.with_label_values(&[reason]);
        }
        for reason in RefusalReason::ALL {
            metrics.peer_refused.with_label_values(&[reason.as_str()]);
        }
        metrics
    }

    /// Counts a failed proposal; `reason` is one of [`PROPOSAL_FAILURE_REASONS`] (a
    /// new reason belongs there too, so that it is exposed before it first happens).
    pub(crate) fn proposal_failed(&self, reason: &str) {
        self.proposals_failed.with_label_values(&[reason]).inc();
    }

    /// Records one durable WAL write.
    pub(crate) fn observe_fsync(&self, duration: Duration, entries: usize) {
        self.fsync_duration.observe(duration.as_secs_f64());
        self.fsync_batch_entries.observe(entries as f64);
    }

    /// Records one client request.
    pub fn observe_request(&self, op: &str, code: u16, duration: Duration) {
        self.client_requests
            .with_label_values(&[op, &code.to_string()])
            .inc();
        self.client_duration
            .with_label_values(&[op])
            .observe(duration.as_secs_f64());
    }

    /// Copies the node's status into the gauges.
    pub(crate) fn record_status(&self, status: &Status, membership: &Membership) {
        self.has_leader.set(i64::from(status.leader.is_some()));
        self.is_leader
            .set(i64::from(status.role == raft_core::Role::Leader));
        self.term.set(status.term.0 as i64);
        self.commit_index.set(status.commit_index.0 as i64);
        self.applied_index.set(status.applied_index.0 as i64);
        self.last_log_index.set(status.last_index.0 as i64);
        self.snapshot_index.set(status.snapshot_index.0 as i64);
        self.voters.set(membership.all_voters().len() as i64);
        self.learners.set(membership.learners.len() as i64);
        let mut peers = self.progress_peers.lock().expect("metrics lock");
        for progress in &status.progress {
            let peer = progress.id.to_string();
            self.peer_match_index
                .with_label_values(&[&peer])
                .set(progress.match_index.0 as i64);
            self.peer_lag
                .with_label_values(&[&peer])
                .set(status.last_index.0.saturating_sub(progress.match_index.0) as i64);
        }
        // Only a leader tracks progress: after stepping down, or once a peer is
        // removed, its last match index would be a stale answer, so its series go.
        let unchanged = peers.len() == status.progress.len()
            && status.progress.iter().all(|p| peers.contains(&p.id));
        if !unchanged {
            let current: BTreeSet<NodeId> = status.progress.iter().map(|p| p.id).collect();
            for gone in peers.difference(&current) {
                let peer = gone.to_string();
                let _ = self.peer_match_index.remove_label_values(&[&peer]);
                let _ = self.peer_lag.remove_label_values(&[&peer]);
            }
            *peers = current;
        }
    }

    /// Brings the per-peer network metrics up to date with the transport's totals.
    pub(crate) fn record_transport(&self, stats: &TransportStats) {
        let mut totals = self.peer_totals.lock().expect("metrics lock");
        for (id, peer) in &stats.peers {
            let label = id.to_string();
            let seen = totals.entry(*id).or_default();
            carry(
                &self.peer_sent_bytes,
                &label,
                &mut seen.sent_bytes,
                peer.sent_bytes,
            );
            carry(
                &self.peer_received_bytes,
                &label,
                &mut seen.received_bytes,
                peer.received_bytes,
            );
            carry(
                &self.peer_send_failures,
                &label,
                &mut seen.send_failures,
                peer.send_failures,
            );
            carry(
                &self.peer_dropped_messages,
                &label,
                &mut seen.dropped_messages,
                peer.dropped_queue_full,
            );
            carry(
                &self.peer_decode_errors,
                &label,
                &mut seen.decode_errors,
                peer.decode_errors,
            );
            carry(
                &self.peer_snapshot_sent_bytes,
                &label,
                &mut seen.snapshot_sent_bytes,
                peer.snapshot_sent_bytes,
            );
            carry(
                &self.peer_snapshot_received_bytes,
                &label,
                &mut seen.snapshot_received_bytes,
                peer.snapshot_received_bytes,
            );
            self.peer_connected
                .with_label_values(&[&label])
                .set(i64::from(peer.connected));
            // Sampled elsewhere; created here so that every known peer has a series.
            self.peer_rtt.with_label_values(&[&label]);
        }
        drop(totals);
        let mut refused = self.refused_totals.lock().expect("metrics lock");
        for (reason, count) in &stats.refused {
            let seen = refused.entry(*reason).or_insert(0);
            self.peer_refused
                .with_label_values(&[reason.as_str()])
                .inc_by(count.saturating_sub(*seen));
            *seen = (*seen).max(*count);
        }
    }

    /// Records one sample of each connected peer's round-trip time. QUIC only keeps a
    /// smoothed estimate, so the histogram is fed on a fixed period (see
    /// [`ROUND_TRIP_TIME_SAMPLE_PERIOD`]), not per scrape: its counts then do not
    /// depend on how many Prometheus servers scrape the member, or how often.
    pub(crate) fn sample_round_trip_times(&self, stats: &TransportStats) {
        for (id, peer) in &stats.peers {
            if let Some(rtt) = peer.round_trip_time {
                self.peer_rtt
                    .with_label_values(&[&id.to_string()])
                    .observe(rtt.as_secs_f64());
            }
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_of_the_contract_is_exposed() {
        let metrics = Metrics::new();
        metrics.observe_request("put", 200, Duration::from_millis(1));
        metrics.peer_connected.with_label_values(&["2"]).set(1);
        metrics.peer_sent_bytes.with_label_values(&["2"]).inc();
        metrics.peer_received_bytes.with_label_values(&["2"]).inc();
        metrics.peer_rtt.with_label_values(&["2"]).observe(0.001);
        metrics.peer_match_index.with_label_values(&["2"]).set(1);
        metrics.peer_lag.with_label_values(&["2"]).set(0);
        metrics.peer_send_failures.with_label_values(&["2"]);
        metrics.peer_dropped_messages.with_label_values(&["2"]);
        let text = metrics.render();
        for name in CONTRACT_METRIC_NAMES {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
        }
    }

    #[test]
    fn failures_and_refusals_are_exposed_at_zero_then_counted() {
        let metrics = Metrics::new();
        let text = metrics.render();
        assert!(text.contains("raft_proposals_failed_total{reason=\"dropped\"} 0"));
        assert!(
            text.contains(
                "raft_peer_connections_refused_total{reason=\"untrusted_certificate\"} 0"
            )
        );
        // The transport's totals are cumulative; each scrape adds only what is new.
        let mut stats = TransportStats::default();
        stats.refused.insert(RefusalReason::UntrustedCertificate, 2);
        metrics.record_transport(&stats);
        stats.refused.insert(RefusalReason::UntrustedCertificate, 5);
        metrics.record_transport(&stats);
        metrics.record_transport(&stats);
        assert!(
            metrics.render().contains(
                "raft_peer_connections_refused_total{reason=\"untrusted_certificate\"} 5"
            )
        );
    }

    #[test]
    fn build_info_and_peer_transport_counters_are_exported() {
        let metrics = Metrics::new();
        let version = env!("CARGO_PKG_VERSION");
        assert!(
            metrics
                .render()
                .contains(&format!("raft_build_info{{version=\"{version}\"}} 1"))
        );
        let mut peer = raft_transport::PeerStats::default();
        peer.send_failures = 3;
        peer.dropped_queue_full = 2;
        peer.decode_errors = 1;
        peer.snapshot_sent_bytes = 4096;
        let mut stats = TransportStats::default();
        stats.peers.insert(NodeId(2), peer.clone());
        metrics.record_transport(&stats);
        peer.send_failures = 7;
        stats.peers.insert(NodeId(2), peer);
        metrics.record_transport(&stats);
        metrics.record_transport(&stats);
        let text = metrics.render();
        for line in [
            "raft_peer_send_failures_total{peer=\"2\"} 7",
            "raft_peer_dropped_messages_total{peer=\"2\"} 2",
            "raft_peer_decode_errors_total{peer=\"2\"} 1",
            "raft_peer_snapshot_sent_bytes_total{peer=\"2\"} 4096",
            "raft_peer_snapshot_received_bytes_total{peer=\"2\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn every_exported_name_is_documented() {
        let docs = include_str!("../../../docs/metrics.md");
        let metrics = Metrics::new();
        metrics.observe_request("put", 200, Duration::from_millis(1));
        metrics.record_transport(&TransportStats::default());
        let text = metrics.render();
        let names = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split(' ').next());
        for name in names {
            assert!(
                docs.contains(&format!("| `{name}` |")),
                "{name} is exported but missing from docs/metrics.md"
            );
        }
    }

    #[test]
    fn round_trip_times_are_sampled_into_a_histogram() {
        let metrics = Metrics::new();
        let mut connected = raft_transport::PeerStats::default();
        connected.round_trip_time = Some(Duration::from_micros(300));
        let mut stats = TransportStats::default();
        stats.peers.insert(NodeId(2), connected);
        stats
            .peers
            .insert(NodeId(3), raft_transport::PeerStats::default());
        metrics.sample_round_trip_times(&stats);
        metrics.sample_round_trip_times(&stats);
        // Scrapes add no samples.
        metrics.record_transport(&stats);
        let text = metrics.render();
        assert!(text.contains("# TYPE raft_peer_round_trip_time_seconds histogram"));
        assert!(text.contains("raft_peer_round_trip_time_seconds_count{peer=\"2\"} 2"));
        assert!(
            text.contains("raft_peer_round_trip_time_seconds_bucket{peer=\"2\",le=\"0.0004\"} 2"),
            "{text}"
        );
        // A disconnected peer has no estimate to sample, but a series all the same.
        assert!(text.contains("raft_peer_round_trip_time_seconds_count{peer=\"3\"} 0"));
    }
}
