//! `raft-bench`'s load generator: workloads, the preload of the key space, the closed
//! and open loops, HDR latency histograms per second and in total, and the JSON report.
//!
//! What it must keep true: in the open loop (`--rate`) latency is measured from
//! the time a request was *scheduled* to be sent, not when a busy client got
//! round to sending it, so a stall shows up as the queueing it causes instead
//! of being hidden (coordinated omission). Nothing on the request path
//! allocates beyond what the HTTP client itself needs.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use raft_server::client::{Client, ClientConfig, Consistency, Endpoint, Error};
use serde::Serialize;
use tokio::sync::{Notify, watch};

/// The widest key space 8-byte zero-padded decimal keys can address.
pub const MAX_KEY_SPACE: u64 = 100_000_000;

/// The highest latency the histograms hold, in microseconds; slower requests
/// are recorded as this value.
const MAX_LATENCY_US: u64 = 60_000_000;

/// Attempts per preload put before the preload gives up. Retrying is safe: the
/// put is idempotent (same key, same value).
const PRELOAD_ATTEMPTS: u32 = 5;

/// `raft-bench`'s command line (the flags are fixed by SPEC.md).
#[derive(Debug, Parser)]
#[command(
    name = "raft-bench",
    version,
    about = "Load generator for a raftd cluster: durable write and read throughput and latency"
)]
pub struct Args {
    /// Members' client URLs, comma-separated; the leader is found through /v1/status.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "URL[,URL...]",
        required_unless_present = "local_cluster",
        conflicts_with = "local_cluster"
    )]
    pub endpoints: Vec<Endpoint>,
    /// Start a cluster of N members with `raftd local-cluster` (found next to this
    /// executable or on PATH), benchmark it, then stop it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=9))]
    pub local_cluster: Option<u32>,
    /// Concurrent clients (closed loop: each waits for its reply before sending
    /// again). Over HTTP/1.1 each has its own keep-alive connection.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub clients: u32,
    /// Speak HTTP/2 (cleartext) instead of HTTP/1.1: the clients share
    /// `--connections` connections, each carrying many concurrent requests, as gRPC
    /// clients such as etcd's benchmark tool do.
    #[arg(long)]
    pub http2: bool,
    /// With `--http2`: how many connections the clients share (client i uses
    /// connection i mod N).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000), requires = "http2")]
    pub connections: u32,
    /// How long to run: `30s`, `500ms`, `2m`, `1h` (a bare number is seconds).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Distinct keys, chosen uniformly; keys are 8 bytes, zero-padded decimal.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=MAX_KEY_SPACE))]
    pub key_space: u64,
    /// `put`, `get` (linearizable) or `mixed:R` (a fraction R of gets, the rest puts).
    #[arg(long, default_value = "put")]
    pub workload: Workload,
    /// Open loop: OPS requests per second in total, scheduled at fixed intervals,
    /// latency measured from the scheduled time. Default: closed loop.
    #[arg(long, value_name = "OPS")]
    pub rate: Option<f64>,
    /// Write the summary as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Do not write every key once before a workload with gets (`get`, `mixed:R`)
    /// starts; its gets then mostly find no key.
    #[arg(long)]
    pub no_preload: bool,
}

/// What the clients send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Workload {
    /// Only `PUT /v1/kv/{key}`.
    Put,
    /// Only linearizable `GET /v1/kv/{key}` (a missing key is a successful read).
    Get,
    /// Gets with this probability, puts otherwise.
    Mixed {
        /// The fraction of gets, in 0..=1.
        read_fraction: f64,
    },
}

impl Workload {
    /// Whether the workload sends gets at all.
    pub fn reads(&self) -> bool {
        match self {
            Self::Put => false,
            Self::Get => true,
            Self::Mixed { read_fraction } => *read_fraction > 0.0,
        }
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "put" => Ok(Self::Put),
            "get" => Ok(Self::Get),
            _ => {
                let fraction = s
                    .strip_prefix("mixed:")
                    .and_then(|f| f.parse::<f64>().ok())
                    .filter(|f| (0.0..=1.0).contains(f))
                    .ok_or_else(|| {
                        format!(
                            "unknown workload {s:?}: expected put, get or mixed:R with 0 <= R <= 1"
                        )
                    })?;
                Ok(Self::Mixed {
                    read_fraction: fraction,
                })
            }
        }
    }
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Put => f.write_str("put"),
            Self::Get => f.write_str("get"),
            Self::Mixed { read_fraction } => write!(f, "mixed:{read_fraction}"),
        }
    }
}

/// Parses `30s`, `500ms`, `2m`, `1h`, `1.5s`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?}"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?}: use ms, s, m or h")),
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(format!("the duration must be positive, got {s:?}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The 8-byte key for `index`: zero-padded decimal (`00012345`).
pub fn key_for(index: u64) -> [u8; 8] {
    let mut key = [b'0'; 8];
    let mut rest = index % MAX_KEY_SPACE;
    for byte in key.iter_mut().rev() {
        *byte = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    key
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Slowest request.
    pub max: u64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }
}

/// The summary, and exactly the `--json` document SPEC.md fixes.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Report {
    /// The workload as given (`put`, `get`, `mixed:0.9`).
    pub workload: String,
    /// Concurrent clients.
    pub clients: u32,
    /// Measured run time in seconds.
    pub duration_s: f64,
    /// Successful operations.
    pub ops: u64,
    /// Failed operations (not in the latency histogram).
    pub errors: u64,
    /// `ops / duration_s`.
    pub throughput_ops_per_s: f64,
    /// Latency of successful operations.
    pub latency_us: Latency,
}

impl Report {
    /// The summary for humans.
    pub fn summary(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        format!(
            "workload {} clients {} duration {:.1}s\nops {} errors {} throughput {:.0} ops/s\n\
             latency ms: p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}\n",
            self.workload,
            self.clients,
            self.duration_s,
            self.ops,
            self.errors,
            self.throughput_ops_per_s,
            ms(self.latency_us.p50),
            ms(self.latency_us.p90),
            ms(self.latency_us.p99),
            ms(self.latency_us.p999),
            ms(self.latency_us.max),
        )
    }
}

/// One second's numbers, for the progress line.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Seconds since the start.
    pub elapsed: Duration,
    /// Successful operations per second over the interval.
    pub ops_per_s: f64,
    /// The interval's latencies.
    pub latency_us: Latency,
    /// Errors in the interval.
    pub errors: u64,
}

impl Progress {
    /// `  3s  ops/s 12345  p50 0.512ms  p99 1.900ms  errors 0`
    pub fn line(&self) -> String {
        format!(
            "{:>4.0}s  ops/s {:>8.0}  p50 {:.3}ms  p99 {:.3}ms  errors {}",
            self.elapsed.as_secs_f64(),
            self.ops_per_s,
            self.latency_us.p50 as f64 / 1000.0,
            self.latency_us.p99 as f64 / 1000.0,
            self.errors
        )
    }
}

/// What to run (the parts of [`Args`] the run needs, endpoints resolved).
#[derive(Clone, Debug)]
pub struct Plan {
    /// Members to discover the leader from.
    pub endpoints: Vec<Endpoint>,
    /// Concurrent clients.
    pub clients: u32,
    /// Run time.
    pub duration: Duration,
    /// Bytes per value.
    pub value_size: usize,
    /// Distinct keys.
    pub key_space: u64,
    /// What to send.
    pub workload: Workload,
    /// Open-loop total rate, or closed loop.
    pub rate: Option<f64>,
    /// Write every key once before measuring a workload with gets.
    pub preload: bool,
    /// HTTP/2 connections shared by the clients; `None`: HTTP/1.1, one connection
    /// per client.
    pub http2_connections: Option<u32>,
}

impl Plan {
    /// Whether [`preload`] should run before [`run`]: the workload sends gets, which
    /// should find existing keys, and preloading was not turned off.
    pub fn needs_preload(&self) -> bool {
        self.preload && self.workload.reads()
    }

    /// The value every put writes: `value_size` bytes of `abc...`.
    fn value(&self) -> Bytes {
        Bytes::from(
            (0..self.value_size)
                .map(|i| b'a' + (i % 26) as u8)
                .collect::<Vec<u8>>(),
        )
    }
}

/// What [`preload`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct Preloaded {
    /// Keys written (the whole key space).
    pub keys: u64,
    /// Concurrent clients that wrote them.
    pub clients: u32,
    /// How long it took.
    pub elapsed: Duration,
}

impl Preloaded {
    /// `preloaded 100000 keys with 64 clients in 2.1s (not measured)`
    pub fn line(&self) -> String {
        format!(
            "preloaded {} keys with {} clients in {:.1}s (not measured)",
            self.keys,
            self.clients,
            self.elapsed.as_secs_f64()
        )
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Shared between the client tasks and the reporter.
struct Shared {
    /// One interval histogram per client task, swapped out each second.
    histograms: Vec<Mutex<Histogram<u64>>>,
    errors: AtomicU64,
    /// Wakes the leader monitor early when requests fail.
    trouble: Notify,
}

/// Finds the leader's client URL through `/v1/status` of any member.
pub async fn discover_leader(client: &Client) -> Result<Option<Endpoint>, Error> {
    let status = client.status().await?;
    let Some(leader) = status.leader_id else {
        return Ok(None);
    };
    Ok(status
        .members
        .iter()
        .find(|member| member.id == leader)
        .and_then(|member| member.client_addr.parse().ok()))
}

/// The leader's client URL, or the first endpoint while no leader is known.
async fn find_leader(plan: &Plan, discovery: &Client) -> anyhow::Result<Endpoint> {
    Ok(discover_leader(discovery)
        .await
        .map_err(|error| anyhow::anyhow!("cannot find the leader: {error}"))?
        .unwrap_or_else(|| plan.endpoints[0].clone()))
}

/// The client that finds the leader, speaking the plan's protocol.
fn discovery_client(plan: &Plan) -> anyhow::Result<Client> {
    let config = ClientConfig {
        http2: plan.http2_connections.is_some(),
        ..ClientConfig::default()
    };
    Ok(Client::with_config(plan.endpoints.clone(), config)?)
}

/// A client with one keep-alive connection, trying `leader` first and then the
/// other endpoints.
fn leader_first_client(plan: &Plan, leader: &Endpoint) -> Client {
    let mut endpoints = vec![leader.clone()];
    endpoints.extend(plan.endpoints.iter().filter(|e| *e != leader).cloned());
    let config = ClientConfig {
        max_idle_per_endpoint: 1,
        http2: plan.http2_connections.is_some(),
        ..ClientConfig::default()
    };
    Client::with_config(endpoints, config).expect("endpoints given")
}

/// The connections the client tasks send through: over HTTP/1.1 one per task, over
/// HTTP/2 a few shared ones (task i uses connection i mod N), rebuilt when the
/// leader changes.
struct Connections {
    plan: Plan,
    shared: Mutex<Option<(Endpoint, Vec<Arc<Client>>)>>,
}

impl Connections {
    fn new(plan: &Plan) -> Connections {
        Connections {
            plan: plan.clone(),
            shared: Mutex::new(None),
        }
    }

    /// The client task `index` sends through, trying `leader` first.
    fn client(&self, index: u32, leader: &Endpoint) -> Arc<Client> {
        let Some(count) = self.plan.http2_connections else {
            return Arc::new(leader_first_client(&self.plan, leader));
        };
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if shared
            .as_ref()
            .is_none_or(|(for_leader, _)| for_leader != leader)
        {
            let clients = (0..count)
                .map(|_| Arc::new(leader_first_client(&self.plan, leader)))
                .collect();
            *shared = Some((leader.clone(), clients));
        }
        let (_, clients) = shared.as_ref().expect("just filled");
        Arc::clone(&clients[index as usize % clients.len()])
    }
}

/// Writes every key of the key space once, with the plan's value size and as many
/// concurrent clients as the plan has, so that the gets of [`run`] find existing
/// keys. Nothing here is measured. A failed put is retried a few times (it is
/// idempotent), then the preload fails.
pub async fn preload(plan: &Plan) -> anyhow::Result<Preloaded> {
    let discovery = discovery_client(plan)?;
    let leader = find_leader(plan, &discovery).await?;
    let value = plan.value();
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let connections = Connections::new(plan);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..plan.clients {
        let client = connections.client(index, &leader);
        let (next, value, key_space) = (next.clone(), value.clone(), plan.key_space);
        tasks.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= key_space {
                    return Ok(());
                }
                let mut attempt = 1;
                while let Err(error) = client.put(key_for(index), value.clone()).await {
                    if attempt == PRELOAD_ATTEMPTS {
                        anyhow::bail!("preload: cannot write key {index}: {error}");
                    }
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(Preloaded {
        keys: plan.key_space,
        clients: plan.clients,
        elapsed: start.elapsed(),
    })
}

/// Runs the benchmark, calling `progress` once a second. Only this is measured:
/// [`preload`], when wanted, comes before.
pub async fn run(plan: &Plan, mut progress: impl FnMut(&Progress)) -> anyhow::Result<Report> {
    let discovery = Arc::new(discovery_client(plan)?);
    let leader = find_leader(plan, &discovery).await?;
    let (leader_tx, leader_rx) = watch::channel(leader);

    let shared = Arc::new(Shared {
        histograms: (0..plan.clients)
            .map(|_| Mutex::new(new_histogram()))
            .collect(),
        errors: AtomicU64::new(0),
        trouble: Notify::new(),
    });
    let value = plan.value();
    let start = Instant::now();
    let deadline = start + plan.duration;

    let monitor = tokio::spawn(follow_leader(discovery, leader_tx, shared.clone()));
    let connections = Arc::new(Connections::new(plan));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..plan.clients {
        let task = ClientTask {
            index,
            connections: Arc::clone(&connections),
            plan: plan.clone(),
            value: value.clone(),
            leader: leader_rx.clone(),
            shared: shared.clone(),
            start,
            deadline,
        };
        tasks.spawn(task.run());
    }
    let mut workers = tokio::spawn(async move { while tasks.join_next().await.is_some() {} });

    let mut total = new_histogram();
    let mut interval = new_histogram();
    let mut errors_seen = 0;
    let mut last = start;
    let mut ticker = tokio::time::interval_at(
        (start + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    loop {
        let done = tokio::select! {
            _ = ticker.tick() => false,
            _ = &mut workers => true,
        };
        let now = Instant::now();
        for histogram in &shared.histograms {
            let mut histogram = histogram.lock().unwrap_or_else(|p| p.into_inner());
            interval.add(&*histogram).expect("same bounds");
            histogram.reset();
        }
        let errors = shared.errors.load(Ordering::Relaxed);
        let seconds = now.duration_since(last).as_secs_f64();
        // The last, partial second gets a line only if it is long enough to mean something.
        if !done || seconds >= 0.5 {
            progress(&Progress {
                elapsed: now.duration_since(start),
                ops_per_s: interval.len() as f64 / seconds.max(1e-9),
                latency_us: Latency::of(&interval),
                errors: errors - errors_seen,
            });
        }
        total.add(&interval).expect("same bounds");
        interval.reset();
        errors_seen = errors;
        last = now;
        if done {
            break;
        }
    }
    monitor.abort();
    let elapsed = start.elapsed().as_secs_f64();
    let ops = total.len();
    Ok(Report {
        workload: plan.workload.to_string(),
        clients: plan.clients,
        duration_s: elapsed,
        ops,
        errors: shared.errors.load(Ordering::Relaxed),
        throughput_ops_per_s: ops as f64 / elapsed,
        latency_us: Latency::of(&total),
    })
}

/// Polls the leader once a second, or sooner when clients report failures, and
/// publishes changes so that writes follow the leader.
async fn follow_leader(client: Arc<Client>, leader: watch::Sender<Endpoint>, shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shared.trouble.notified() => {}
        }
        if let Ok(Some(current)) = discover_leader(&client).await {
            leader.send_if_modified(|known| {
                let changed = *known != current;
                if changed {
                    *known = current;
                }
                changed
            });
        }
    }
}

/// One client: one keep-alive connection to the leader, one request at a time.
struct ClientTask {
    index: u32,
    connections: Arc<Connections>,
    plan: Plan,
    value: Bytes,
    leader: watch::Receiver<Endpoint>,
    shared: Arc<Shared>,
    start: Instant,
    deadline: Instant,
}

impl ClientTask {
    fn connect(&mut self) -> Arc<Client> {
        let leader = self.leader.borrow_and_update().clone();
        self.connections.client(self.index, &leader)
    }

    async fn run(mut self) {
        let mut client = self.connect();
        // A per-task xorshift generator: cheap, and no shared state between tasks.
        let mut random = 0x9E37_79B9_7F4A_7C15_u64
            ^ (u64::from(self.index) + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        // Open loop: this task owns every `clients`-th slot of the global schedule.
        let schedule = self.plan.rate.map(|rate| {
            let clients = f64::from(self.plan.clients);
            (
                Duration::from_secs_f64(clients / rate),
                Duration::from_secs_f64(f64::from(self.index) / rate),
            )
        });
        let mut sent: u32 = 0;
        loop {
            let intended = match schedule {
                Some((every, offset)) => {
                    let at = self.start + offset + every * sent;
                    if at >= self.deadline {
                        break;
                    }
                    tokio::time::sleep_until(at.into()).await;
                    at
                }
                None => {
                    let now = Instant::now();
                    if now >= self.deadline {
                        break;
                    }
                    now
                }
            };
            sent = sent.saturating_add(1);
            if self.leader.has_changed().unwrap_or(false) {
                client = self.connect();
            }
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            let key = key_for(random % self.plan.key_space);
            let read = match self.plan.workload {
                Workload::Put => false,
                Workload::Get => true,
                Workload::Mixed { read_fraction } => {
                    ((random >> 11) as f64 / (1u64 << 53) as f64) < read_fraction
                }
            };
            let ok = if read {
                client.get(key, Consistency::Linearizable).await.is_ok()
            } else {
                client.put(key, self.value.clone()).await.is_ok()
            };
            if ok {
                let micros = u64::try_from(intended.elapsed().as_micros()).unwrap_or(u64::MAX);
                let mut histogram = self.shared.histograms[self.index as usize]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                histogram.saturating_record(micros.clamp(1, MAX_LATENCY_US));
            } else {
                self.shared.errors.fetch_add(1, Ordering::Relaxed);
                self.shared.trouble.notify_one();
                // Do not spin on a cluster that is down or electing.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Writes `report` as JSON to `path`.
pub fn write_json(report: &Report, path: &std::path::Path) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
    text.push('\n');
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_server::client::mock::MockServer;

    #[test]
    fn flags_parse() {
        let args = Args::try_parse_from([
            "raft-bench",
            "--endpoints",
            "http://127.0.0.1:7001,127.0.0.1:7002",
            "--clients",
            "8",
            "--duration",
            "500ms",
            "--value-size",
            "16",
            "--key-space",
            "1000",
            "--workload",
            "mixed:0.9",
            "--rate",
            "1000",
            "--json",
            "out.json",
        ])
        .unwrap();
        assert_eq!(args.endpoints.len(), 2);
        assert_eq!(
            (args.clients, args.duration, args.value_size, args.key_space),
            (8, Duration::from_millis(500), 16, 1000)
        );
        assert_eq!(args.workload, Workload::Mixed { read_fraction: 0.9 });
        assert_eq!(args.workload.to_string(), "mixed:0.9");
        assert_eq!(args.rate, Some(1000.0));
        assert!(!args.no_preload);
        let args =
            Args::try_parse_from(["raft-bench", "--endpoints", "a:1", "--no-preload"]).unwrap();
        assert!(args.no_preload);

        let args = Args::try_parse_from(["raft-bench", "--local-cluster", "3"]).unwrap();
        assert_eq!(
            (
                args.local_cluster,
                args.clients,
                args.duration,
                args.workload
            ),
            (Some(3), 64, Duration::from_secs(30), Workload::Put)
        );
        for bad in [
            &["raft-bench"][..],
            &["raft-bench", "--local-cluster", "3", "--endpoints", "a:1"],
            &["raft-bench", "--endpoints", "a:1", "--workload", "mixed:2"],
            &["raft-bench", "--endpoints", "a:1", "--duration", "3x"],
            &["raft-bench", "--endpoints", "a:1", "--key-space", "0"],
        ] {
            assert!(Args::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_and_keys() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err() && parse_duration("s").is_err());
        assert_eq!(&key_for(0), b"00000000");
        assert_eq!(&key_for(12345), b"00012345");
        assert_eq!(&key_for(MAX_KEY_SPACE - 1), b"99999999");
    }

    async fn bench_against_mock(
        workload: &str,
        rate: Option<f64>,
    ) -> (serde_json::Value, MockServer) {
        let server = MockServer::start().await;
        let plan = Plan {
            duration: Duration::from_secs(1),
            value_size: 32,
            rate,
            preload: false,
            ..test_plan(server.endpoint(), 4, 100, workload)
        };
        let mut lines = 0;
        let report = run(&plan, |progress| {
            assert!(progress.line().contains("ops/s"));
            lines += 1;
        })
        .await
        .unwrap();
        assert!(lines >= 1);
        assert!(report.summary().contains("throughput"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        write_json(&report, &path).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        (json, server)
    }

    fn keys(value: &serde_json::Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    #[tokio::test]
    async fn http2_clients_share_connections_and_count_like_http1() {
        let server = MockServer::start().await;
        let plan = Plan {
            value_size: 32,
            http2_connections: Some(2),
            ..test_plan(server.endpoint(), 8, 100, "mixed:0.5")
        };
        let preloaded = preload(&plan).await.unwrap();
        assert_eq!(preloaded.keys, 100);
        let before = server.requests();
        let report = run(&plan, |_| {}).await.unwrap();
        assert_eq!(report.errors, 0);
        assert!(report.ops > 0);
        // Every request went over HTTP/2, and the report counts what the server saw
        // (plus the leader lookups).
        assert_eq!(server.http2_requests(), server.requests());
        assert!(server.requests() - before >= report.ops);
        let connections = Connections::new(&plan);
        let leader = server.endpoint();
        assert!(Arc::ptr_eq(
            &connections.client(0, &leader),
            &connections.client(2, &leader)
        ));
        assert!(!Arc::ptr_eq(
            &connections.client(0, &leader),
            &connections.client(1, &leader)
        ));
    }

    #[tokio::test]
    async fn closed_loop_report_has_the_spec_fields() {
        let (json, server) = bench_against_mock("mixed:0.5", None).await;
        assert_eq!(
            keys(&json),
            [
                "clients",
                "duration_s",
                "errors",
                "latency_us",
                "ops",
                "throughput_ops_per_s",
                "workload"
            ]
        );
        assert_eq!(
            keys(&json["latency_us"]),
            ["max", "p50", "p90", "p99", "p999"]
        );
        assert_eq!(json["workload"], "mixed:0.5");
        assert_eq!(json["clients"], 4);
        assert_eq!(json["errors"], 0);
        assert!(json["ops"].as_u64().unwrap() > 0);
        assert!(json["throughput_ops_per_s"].as_f64().unwrap() > 0.0);
        let latency = &json["latency_us"];
        assert!(latency["p50"].as_u64() <= latency["p99"].as_u64());
        assert!(latency["p999"].as_u64() <= latency["max"].as_u64());
        // Puts reached the server and wrote 8-byte keys with 32-byte values.
        let range = Client::new(vec![server.endpoint()])
            .unwrap()
            .range("", None)
            .await
            .unwrap();
        assert!(!range.kvs.is_empty());
        assert!(
            range
                .kvs
                .iter()
                .all(|kv| kv.key.len() == 8 && kv.value.as_ref().unwrap().len() == 32)
        );
    }

    /// A short closed-loop plan over HTTP/1.1 with 8-byte values and preload on;
    /// tests override what they exercise.
    fn test_plan(endpoint: Endpoint, clients: u32, key_space: u64, workload: &str) -> Plan {
        Plan {
            endpoints: vec![endpoint],
            clients,
            duration: Duration::from_millis(500),
            value_size: 8,
            key_space,
            workload: workload.parse().unwrap(),
            rate: None,
            preload: true,
            http2_connections: None,
        }
    }

    /// A mock leader (member 2) and a mock follower that names it as its leader.
    async fn leader_and_follower() -> (MockServer, MockServer) {
        let leader = MockServer::start_with(raft_server::client::mock::MockOptions {
            id: 2,
            ..Default::default()
        })
        .await;
        let follower = MockServer::start().await;
        follower.follow(raft_server::api::Member {
            id: 2,
            peer_addr: "127.0.0.1:1".into(),
            client_addr: leader
                .endpoint()
                .as_str()
                .trim_start_matches("http://")
                .into(),
            voter: true,
        });
        (leader, follower)
    }

    #[tokio::test]
    async fn writes_go_to_the_leader_found_through_status() {
        let (leader, follower) = leader_and_follower().await;
        let plan = test_plan(follower.endpoint(), 2, 10, "put");
        let report = run(&plan, |_| {}).await.unwrap();
        assert!(report.ops > 0);
        assert_eq!(
            leader.requests(),
            report.ops,
            "every put went to the leader"
        );
        assert!(
            Client::new(vec![follower.endpoint()])
                .unwrap()
                .range("", None)
                .await
                .unwrap()
                .kvs
                .is_empty()
        );
    }

    #[test]
    fn only_workloads_with_gets_are_preloaded() {
        let plan = |workload: &str, preload: bool| Plan {
            preload,
            ..test_plan("127.0.0.1:1".parse().unwrap(), 1, 1, workload)
        };
        for (workload, needed) in [
            ("get", true),
            ("mixed:0.9", true),
            ("mixed:1", true),
            ("mixed:0", false),
            ("put", false),
        ] {
            assert_eq!(plan(workload, true).needs_preload(), needed, "{workload}");
            assert!(!plan(workload, false).needs_preload(), "{workload}");
        }
    }

    #[tokio::test]
    async fn preload_writes_every_key_once_and_is_not_measured() {
        // Data requests go to the leader only; discovery goes to the follower.
        let (leader, follower) = leader_and_follower().await;
        let plan = test_plan(follower.endpoint(), 4, 50, "get");
        let preloaded = preload(&plan).await.unwrap();
        assert_eq!((preloaded.keys, preloaded.clients), (50, 4));
        assert!(
            preloaded
                .line()
                .starts_with("preloaded 50 keys with 4 clients")
        );
        assert_eq!(leader.requests(), 50, "one put per key");
        for index in 0..50 {
            let key = key_for(index);
            let value = leader
                .value(std::str::from_utf8(&key).unwrap())
                .unwrap_or_else(|| panic!("key {index} was not preloaded"));
            assert_eq!(value.as_ref(), b"abcdefgh");
        }
        let report = run(&plan, |_| {}).await.unwrap();
        assert!(report.ops > 0);
        assert_eq!(report.errors, 0);
        assert_eq!(
            leader.requests(),
            50 + report.ops,
            "the report counts the gets only"
        );
    }

    #[tokio::test]
    async fn open_loop_runs_and_a_leaderless_cluster_is_reported() {
        let (json, _server) = bench_against_mock("put", Some(200.0)).await;
        assert!(json["ops"].as_u64().unwrap() > 0);
        assert_eq!(json["errors"], 0);

        // A cluster whose leader cannot be found is an error before any load.
        let server = MockServer::start().await;
        let plan = Plan {
            duration: Duration::from_millis(300),
            ..test_plan(server.endpoint(), 2, 10, "get")
        };
        server.set_fault(raft_server::client::mock::Fault::ShuttingDown);
        assert!(preload(&plan).await.is_err(), "the leader cannot be found");
        assert!(
            run(&plan, |_| {}).await.is_err(),
            "the leader cannot be found"
        );
    }
}
