//! `raftd run`: opens the data directory (lock, identity, WAL), bootstraps or joins
//! the cluster, starts the transport, the driver and the HTTP API, and on SIGTERM or
//! SIGINT stops taking requests, hands leadership to the most caught-up voter if
//! this member leads (bounded), finishes in-flight writes and returns. Keeps true: a
//! data directory belongs to one cluster and one member id for ever (a mismatch is a
//! configuration error, exit 2); a corrupt or locked data directory is exit 3.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use raft_core::{Config, Membership, NodeId, Role};
use raft_transport::{TlsIdentity, Transport, TransportConfig};
use raft_wal::{Wal, WalError, WalOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::ServerConfig;
use crate::driver::{Driver, Request, Shared};
use crate::kv::{KvStore, MemberAddress};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::service::Service;
use crate::storage::WalStore;

/// Why `raftd run` stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration does not fit the data directory (exit 2).
    #[error("configuration error: {key}: {message}")]
    Config {
        /// The configuration key at fault.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The data directory is unusable (exit 3).
    #[error("data directory {path}: {message}")]
    DataDir {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The data directory is corrupt (exit 3).
    #[error("data directory corrupt: {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Where in it.
        offset: u64,
        /// What is damaged.
        reason: String,
    },
    /// Anything else (exit 1).
    #[error("{0}")]
    Other(String),
}

impl ServerError {
    /// The process exit code for this error (SPEC: 2 configuration, 3 data
    /// directory, 1 other).
    pub fn exit_code(&self) -> i32 {
        match self {
            ServerError::Config { .. } => 2,
            ServerError::DataDir { .. } | ServerError::Corrupt { .. } => 3,
            ServerError::Other(_) => 1,
        }
    }
}

/// A number no earlier process of this member used, with overwhelming probability:
/// 64 bits from the standard library's randomly keyed hasher (seeded by the OS), mixed
/// with the process id and the wall clock.
fn fresh_incarnation() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

fn wal_error(error: WalError, data_dir: &Path) -> ServerError {
    match error {
        WalError::Corrupt {
            path,
            offset,
            reason,
        } => ServerError::Corrupt {
            path,
            offset,
            reason: reason.to_string(),
        },
        WalError::Locked { path } => ServerError::DataDir {
            path,
            message: "locked by another raftd (a second member on the same data directory)".into(),
        },
        other => ServerError::DataDir {
            path: data_dir.to_path_buf(),
            message: other.to_string(),
        },
    }
}

/// What a data directory remembers about whom it belongs to.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Identity {
    /// Format version of this file.
    format: u32,
    cluster_id: String,
    member_id: u64,
}

const IDENTITY_FILE: &str = "identity.json";

/// The cluster id: derived from the initial members, so every member computes the
/// same one without talking.
fn cluster_id(config: &ServerConfig) -> String {
    let mut members: Vec<String> = config
        .initial_members
        .iter()
        .map(|m| format!("{}={}/{}", m.id, m.peer_addr, m.client_addr))
        .collect();
    members.sort();
    format!("{:08x}", crc32fast::hash(members.join(",").as_bytes()))
}

fn check_identity(config: &ServerConfig) -> Result<Identity, ServerError> {
    let path = config.data_dir.join(IDENTITY_FILE);
    let expected = Identity {
        format: 1,
        cluster_id: cluster_id(config),
        member_id: config.id,
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let found: Identity =
                serde_json::from_slice(&bytes).map_err(|e| ServerError::DataDir {
                    path: path.clone(),
                    message: format!("unreadable: {e}"),
                })?;
            if found.member_id != expected.member_id {
                return Err(ServerError::Config {
                    key: "id".into(),
                    message: format!(
                        "the data directory belongs to member {}, not {}",
                        found.member_id, expected.member_id
                    ),
                });
            }
            if found.cluster_id != expected.cluster_id {
                return Err(ServerError::Config {
                    key: "initial_members".into(),
                    message: format!(
                        "the data directory belongs to cluster {}, these initial members make cluster {}",
                        found.cluster_id, expected.cluster_id
                    ),
                });
            }
            Ok(found)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let temporary = path.with_extension("json.tmp");
            let bytes = serde_json::to_vec_pretty(&expected).expect("serializable");
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut file = std::fs::File::create(&temporary)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                std::fs::rename(&temporary, &path)?;
                std::fs::File::open(&config.data_dir)?.sync_all()
            };
            write().map_err(|e| ServerError::DataDir {
                path: path.clone(),
                message: e.to_string(),
            })?;
            Ok(expected)
        }
        Err(e) => Err(ServerError::DataDir {
            path,
            message: e.to_string(),
        }),
    }
}

/// How much start-up time to ask systemd for before opening the WAL: replaying a
/// large log can outlast the default start timeout (90 s), and the open is one
/// blocking call that cannot ask again midway.
const WAL_OPEN_ALLOWANCE: Duration = Duration::from_secs(600);

/// Runs a member until SIGTERM/SIGINT (clean stop, `Ok`) or a fatal error.
pub async fn run(config: ServerConfig) -> Result<(), ServerError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| ServerError::DataDir {
        path: config.data_dir.clone(),
        message: e.to_string(),
    })?;
    let options = WalOptions {
        segment_size_bytes: config.segment_size_bytes,
        ..WalOptions::default()
    };
    let notifier = Notifier::from_env();
    notifier.extend_timeout(WAL_OPEN_ALLOWANCE);
    let wal =
        Arc::new(Wal::open(&config.data_dir, options).map_err(|e| wal_error(e, &config.data_dir))?);
    let identity = check_identity(&config)?;
    if let Some(after) = wal.recovery_report().catching_up_after {
        tracing::warn!(
            after_index = after,
            "the log's last write was damaged and may have held entries this member \
             acknowledged; it will not vote or campaign until a leader has caught it up"
        );
    }

    let listed = config.initial_members.iter().any(|m| m.id == config.id);
    let initial_membership = if listed {
        Membership::with_voters(config.initial_members.iter().map(|m| NodeId(m.id)))
    } else {
        // Not an initial member: wait to be added; the log brings the configuration.
        Membership::default()
    };
    let initial_addresses: Vec<MemberAddress> = config
        .initial_members
        .iter()
        .map(|m| MemberAddress {
            id: m.id,
            peer_addr: m.peer_addr.to_string(),
            client_addr: m.client_addr.to_string(),
        })
        .collect();
    let store = WalStore::new(Arc::clone(&wal), initial_membership);

    let mut node_config = Config::new(NodeId(config.id));
    node_config.election_timeout_ticks_min = config.election_timeout_ticks;
    node_config.election_timeout_ticks_max = config.election_timeout_ticks * 2;
    node_config.heartbeat_interval_ticks = config.heartbeat_interval_ticks;
    // A lease read is safe while no follower can have voted for another leader: they
    // refuse for an election timeout (in ticks, which are never early) after hearing
    // from this one. Half of the shortest election timeout leaves room for clock drift.
    node_config.lease_duration_micros =
        config.tick_interval_ms * 1000 * u64::from(config.election_timeout_ticks) / 2;
    node_config.incarnation = fresh_incarnation();
    // The state machine starts from the newest snapshot, if any; the log after it is
    // applied again.
    let restored = crate::snapshots::load_latest(&wal).map_err(|e| ServerError::DataDir {
        path: config.data_dir.join("snap"),
        message: e,
    })?;
    node_config.applied_index =
        raft_core::LogIndex(restored.as_ref().map_or(0, |kv| kv.applied_index()));
    node_config.seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ config.id;
    let node = raft_core::Node::new(node_config, store).map_err(|e| match e {
        raft_core::Error::InvalidConfig { reason } => ServerError::Config {
            key: "election_timeout_ticks".into(),
            message: reason.into(),
        },
        other => ServerError::DataDir {
            path: config.data_dir.clone(),
            message: other.to_string(),
        },
    })?;

    let tls = TlsIdentity::from_pem_files(&config.tls.ca, &config.tls.cert, &config.tls.key)
        .map_err(|e| ServerError::Config {
            key: "tls".into(),
            message: e.to_string(),
        })?;
    let peers: BTreeMap<NodeId, SocketAddr> = config
        .initial_members
        .iter()
        .filter(|m| m.id != config.id)
        .map(|m| (NodeId(m.id), m.peer_addr))
        .collect();
    let incoming_snapshots = config.data_dir.join("snap-incoming");
    std::fs::create_dir_all(&incoming_snapshots).map_err(|e| ServerError::DataDir {
        path: incoming_snapshots.clone(),
        message: e.to_string(),
    })?;
    let snapshot_sink = Arc::new(raft_transport::FileSnapshotSinkFactory::new(
        &incoming_snapshots,
    ));
    let mut transport_config =
        TransportConfig::new(NodeId(config.id), config.listen_peer, peers, tls);
    transport_config.snapshot_sink =
        Some(Arc::clone(&snapshot_sink) as Arc<dyn raft_transport::SnapshotSinkFactory>);
    let (transport, incoming) = Transport::start(transport_config).map_err(|e| {
        ServerError::Other(format!(
            "cannot start the peer transport on {}: {e}",
            config.listen_peer
        ))
    })?;

    let metrics = Metrics::new();
    let shared = Arc::new(Shared {
        kv: RwLock::new(restored.unwrap_or_else(|| KvStore::new(initial_addresses))),
        status: Mutex::new(node.status()),
        membership: Mutex::new(node.membership().clone()),
        metrics,
    });
    let (requests_tx, requests_rx) = mpsc::channel(65536);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let driver = Driver {
        node,
        wal: Arc::clone(&wal),
        transport: transport.clone(),
        incoming,
        requests: requests_rx,
        shared: Arc::clone(&shared),
        tick_interval: Duration::from_millis(config.tick_interval_ms),
        shutdown: shutdown_rx,
        own_peer_addr: config.advertise_peer,
        snapshot_every_entries: config.snapshot_every_entries,
        snapshot_dir: config.data_dir.join("snap-outgoing"),
        snapshot_sink,
        notifier: notifier.clone(),
    };
    let driver_task = tokio::spawn(driver.run());

    let service = Service {
        requests: requests_tx.clone(),
        shared: Arc::clone(&shared),
        id: config.id,
        cluster_id: identity.cluster_id.clone(),
        max_value_bytes: config.max_value_bytes,
        request_timeout: Duration::from_millis(config.request_timeout_ms),
        ready_lag: config.ready_lag,
        shutting_down: Arc::new(AtomicBool::new(false)),
    };
    let metrics_transport = transport.clone();
    let metrics_shared = Arc::clone(&shared);
    let metrics_wal = Arc::clone(&wal);
    let refresh = Arc::new(move || {
        // The node's state is turned into gauges at scrape time, not on every loop
        // of the driver: the driver only publishes the status.
        let status = metrics_shared.status.lock().expect("status lock").clone();
        let membership = metrics_shared
            .membership
            .lock()
            .expect("membership lock")
            .clone();
        metrics_shared.metrics.record_status(&status, &membership);
        metrics_shared
            .metrics
            .record_transport(&metrics_transport.stats());
        let segments =
            std::fs::read_dir(metrics_wal.data_dir().join("wal")).map_or(0, |dir| dir.count());
        metrics_shared.metrics.wal_segments.set(segments as i64);
    });
    // QUIC keeps only a smoothed round-trip time: sample it on a fixed period.
    // It stops at shutdown, or once the server is gone (the sender dropped).
    let (rtt_transport, rtt_shared) = (transport.clone(), Arc::clone(&shared));
    let mut rtt_stop = shutdown_tx.subscribe();
    tokio::spawn(async move {
        let mut period = tokio::time::interval(crate::metrics::ROUND_TRIP_TIME_SAMPLE_PERIOD);
        loop {
            tokio::select! {
                _ = period.tick() => {
                    rtt_shared.metrics.sample_round_trip_times(&rtt_transport.stats());
                }
                _ = rtt_stop.changed() => break,
            }
        }
    });
    let app = crate::http::router(service.clone(), refresh);
    let listener = tokio::net::TcpListener::bind(config.listen_client)
        .await
        .map_err(|e| {
            ServerError::Other(format!("cannot listen on {}: {e}", config.listen_client))
        })?;
    tracing::info!(
        id = config.id,
        cluster = %identity.cluster_id,
        client = %config.listen_client,
        peer = %config.listen_peer,
        "raftd started"
    );
    let (http_stop_tx, http_stop_rx) = oneshot::channel::<()>();
    // Replies are small and latency-bound: no Nagle delay on client connections.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on a client connection");
        }
    });
    let http_task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stop_rx.await;
            })
            .await
    });
    notifier.ready(&format!("serving as member {}", config.id));

    tokio::pin!(driver_task);
    let outcome = tokio::select! {
        signal = shutdown_signal() => {
            tracing::info!(signal, "shutting down");
            notifier.stopping();
            service.stop_taking_requests();
            hand_off_leadership(&service, &requests_tx, Duration::from_millis(config.shutdown_transfer_timeout_ms)).await;
            let _ = shutdown_tx.send(true);
            match (&mut driver_task).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(ServerError::Other(e)),
                Err(e) => Err(ServerError::Other(format!("driver task failed: {e}"))),
            }
        }
        finished = &mut driver_task => match finished {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServerError::Other(e)),
            Err(e) => Err(ServerError::Other(format!("driver task failed: {e}"))),
        },
    };
    let _ = http_stop_tx.send(());
    let _ = tokio::time::timeout(crate::http::HTTP_SHUTDOWN_GRACE, http_task).await;
    transport.shutdown().await;
    outcome
}

/// If this member leads, asks the most caught-up voter to take over and waits (up
/// to `limit`) until it has.
async fn hand_off_leadership(service: &Service, requests: &mpsc::Sender<Request>, limit: Duration) {
    if !service.is_leader() {
        return;
    }
    let deadline = tokio::time::Instant::now() + limit;
    let (reply, answer) = oneshot::channel();
    if requests
        .send(Request::Transfer { to: None, reply })
        .await
        .is_err()
    {
        return;
    }
    match tokio::time::timeout_at(deadline, answer).await {
        Ok(Ok(Ok(target))) => {
            while tokio::time::Instant::now() < deadline {
                let status = service.shared.status.lock().expect("status lock").clone();
                if status.role != Role::Leader && status.leader == Some(target) {
                    tracing::info!(to = %target, "leadership handed off");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tracing::warn!("leadership hand-off did not complete in time");
        }
        _ => tracing::warn!("no voter to hand leadership to"),
    }
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}
