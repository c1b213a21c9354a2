//! Durable append throughput and latency of raft-wal with 1, 16 and 256 concurrent
//! appenders (256-byte entries, each acknowledged only after its fdatasync), and in
//! the same run a raw baseline: a plain `write` + `fdatasync` loop writing the same
//! bytes per sync as the WAL's average commit group.
//!
//! The disk here is shared and noisy (fdatasync rates swing tenfold within
//! seconds), so after the criterion groups a summary alternates short WAL and raw
//! rounds (`RAFT_WAL_BENCH_ROUNDS`, default 10, of `RAFT_WAL_BENCH_ROUND_MS`, default
//! 300 ms, per side) and prints medians: entries/s, latency percentiles, entries per
//! sync, CPU per entry (whole process) and the median of the per-round WAL/raw
//! ratios. Besides one OS thread per appender, the summary has a `256 (8x32)` row:
//! 256 concurrent appends kept in flight by 8 threads through the non-blocking
//! `submit`, as an event-loop server would drive the log.
//!
//! The log lives in a temporary directory under `RAFT_WAL_BENCH_DIR` (default: the
//! system temp dir); it must be on the real disk, not tmpfs.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};
use raft_wal::{AppendUnit, Entry, Wal, WalOptions};

const ENTRY_BYTES: usize = 256;
/// On-disk bytes of one 256-byte entry (32-byte frame header, payload aligned to 8).
const FRAME_BYTES: usize = 32 + ENTRY_BYTES;
/// On-disk bytes of a commit marker.
const COMMIT_BYTES: usize = 64;
const APPENDERS: [usize; 3] = [1, 16, 256];

#[derive(Default)]
struct Measured {
    entries: u64,
    elapsed: Duration,
    latencies_nanos: Vec<u64>,
    groups: u64,
}

fn bench_dir() -> PathBuf {
    std::env::var_os("RAFT_WAL_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

/// `total` durable appends spread over `appenders` threads; returns the time from
/// the common start to the last acknowledgement.
fn run_appenders(
    wal: &Arc<Wal>,
    next: &Arc<Mutex<u64>>,
    appenders: usize,
    total: u64,
    measured: &mut Measured,
) -> Duration {
    let payload = Bytes::from(vec![0xA5u8; ENTRY_BYTES]);
    let per_thread = total.div_ceil(appenders as u64);
    let barrier = Arc::new(Barrier::new(appenders + 1));
    let groups_before = wal.stats().commit_groups;
    let (elapsed, latencies) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..appenders)
            .map(|_| {
                let (wal, next, barrier, payload) = (
                    Arc::clone(wal),
                    Arc::clone(next),
                    Arc::clone(&barrier),
                    payload.clone(),
                );
                scope.spawn(move || {
                    let mut latencies = Vec::with_capacity(per_thread as usize);
                    barrier.wait();
                    for _ in 0..per_thread {
                        let started = Instant::now();
                        append_one(&wal, &next, &payload, appenders);
                        latencies.push(started.elapsed().as_nanos() as u64);
                    }
                    latencies
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let latencies: Vec<Vec<u64>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (start.elapsed(), latencies)
    });
    measured.entries += per_thread * appenders as u64;
    measured.elapsed += elapsed;
    measured.groups += wal.stats().commit_groups - groups_before;
    for thread in latencies {
        measured.latencies_nanos.extend(thread);
    }
    elapsed
}

/// `iterations` rounds of one write of `batch` entries' bytes plus a commit marker
/// and one fdatasync, into a preallocated file (like the WAL's segments).
fn run_raw(
    file: &std::fs::File,
    file_len: u64,
    offset: &mut u64,
    batch: usize,
    iterations: u64,
) -> Duration {
    let bytes = vec![0x5Au8; batch * FRAME_BYTES + COMMIT_BYTES];
    let start = Instant::now();
    for _ in 0..iterations {
        if *offset + bytes.len() as u64 > file_len {
            *offset = 0;
        }
        file.write_all_at(&bytes, *offset).unwrap();
        file.sync_data().unwrap();
        *offset += bytes.len() as u64;
    }
    start.elapsed()
}

/// One durable append of the next index. A lone appender uses the blocking call
/// (which writes the group on the calling thread when the log is idle); concurrent
/// appenders assign the index and submit under one lock, so queue order is index
/// order, and wait for durability outside it.
fn append_one(wal: &Wal, next: &Mutex<u64>, payload: &Bytes, appenders: usize) {
    let unit = |index| AppendUnit {
        hard_state: None,
        entries: vec![Entry {
            index,
            term: 1,
            payload: payload.clone(),
        }],
    };
    if appenders == 1 {
        let mut next = next.lock().unwrap();
        wal.append(unit(*next)).expect("durable append");
        *next += 1;
        return;
    }
    let completion = {
        let mut next = next.lock().unwrap();
        let index = *next;
        *next += 1;
        wal.submit(unit(index))
    };
    completion.wait().expect("durable append");
}

fn percentile(sorted: &[u64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 * fraction) as usize).min(sorted.len() - 1);
    sorted[at] as f64 / 1000.0
}

/// `(user + system)` CPU seconds of this process so far, from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(") ")
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |at: usize| {
        fields
            .get(at)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of stat(5), counted from the state field (field 3).
    (ticks(11) + ticks(12)) / 100.0
}

/// Appends from `appenders` threads until `duration` has passed.
fn wal_round(
    wal: &Arc<Wal>,
    next: &Arc<Mutex<u64>>,
    appenders: usize,
    duration: Duration,
) -> (Measured, f64) {
    let payload = Bytes::from(vec![0xA5u8; ENTRY_BYTES]);
    let stats_before = wal.stats();
    let cpu_before = cpu_seconds();
    let start = Instant::now();
    let deadline = start + duration;
    let latencies: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..appenders)
            .map(|_| {
                let (wal, next, payload) = (Arc::clone(wal), Arc::clone(next), payload.clone());
                scope.spawn(move || {
                    let mut latencies = Vec::new();
                    loop {
                        let started = Instant::now();
                        if started >= deadline {
                            return latencies;
                        }
                        append_one(&wal, &next, &payload, appenders);
                        latencies.push(started.elapsed().as_nanos() as u64);
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = start.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    let stats = wal.stats();
    let mut measured = Measured {
        entries: stats.entries - stats_before.entries,
        elapsed,
        latencies_nanos: latencies.into_iter().flatten().collect(),
        groups: stats.commit_groups - stats_before.commit_groups,
    };
    measured.latencies_nanos.sort_unstable();
    (measured, cpu)
}

/// `threads` threads, each keeping `depth` appends in flight through the
/// non-blocking `submit` (the way an event-loop server drives the log):
/// `threads * depth` concurrent appenders without one OS thread each.
fn pipelined_round(
    wal: &Arc<Wal>,
    next: &Arc<Mutex<u64>>,
    threads: usize,
    depth: usize,
    duration: Duration,
) -> (Measured, f64) {
    let payload = Bytes::from(vec![0xA5u8; ENTRY_BYTES]);
    let stats_before = wal.stats();
    let cpu_before = cpu_seconds();
    let start = Instant::now();
    let deadline = start + duration;
    let latencies: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (wal, next, payload) = (Arc::clone(wal), Arc::clone(next), payload.clone());
                scope.spawn(move || {
                    let mut latencies = Vec::new();
                    let mut in_flight = std::collections::VecDeque::with_capacity(depth);
                    loop {
                        while in_flight.len() < depth && Instant::now() < deadline {
                            let started = Instant::now();
                            let completion = {
                                let mut next = next.lock().unwrap();
                                let index = *next;
                                *next += 1;
                                wal.submit(AppendUnit {
                                    hard_state: None,
                                    entries: vec![Entry {
                                        index,
                                        term: 1,
                                        payload: payload.clone(),
                                    }],
                                })
                            };
                            in_flight.push_back((started, completion));
                        }
                        let Some((started, completion)) = in_flight.pop_front() else {
                            return latencies;
                        };
                        completion.wait().expect("durable append");
                        latencies.push(started.elapsed().as_nanos() as u64);
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = start.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    let stats = wal.stats();
    let mut measured = Measured {
        entries: stats.entries - stats_before.entries,
        elapsed,
        latencies_nanos: latencies.into_iter().flatten().collect(),
        groups: stats.commit_groups - stats_before.commit_groups,
    };
    measured.latencies_nanos.sort_unstable();
    (measured, cpu)
}

/// Raw write + fdatasync rounds of `batch` entries' bytes until `duration` passed.
fn raw_round(
    file: &std::fs::File,
    file_len: u64,
    offset: &mut u64,
    batch: usize,
    duration: Duration,
) -> f64 {
    let mut syncs = 0u64;
    let start = Instant::now();
    while start.elapsed() < duration {
        run_raw(file, file_len, offset, batch, 1);
        syncs += 1;
    }
    (syncs * batch as u64) as f64 / start.elapsed().as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn preallocated_file(path: &std::path::Path, len: u64) -> std::fs::File {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap();
    let mut zeros = vec![1u8; 1 << 20];
    zeros.fill(0);
    for chunk in 0..len >> 20 {
        file.write_all_at(&zeros, chunk << 20).unwrap();
    }
    file.sync_all().unwrap();
    file
}

/// The raw baseline's file and position, shared by all rounds.
struct Raw {
    file: std::fs::File,
    len: u64,
    offset: u64,
    round: Duration,
}

/// Alternates WAL rounds with raw rounds at the batch each WAL round achieved;
/// returns the summary row of medians.
fn interleave(
    label: &str,
    rounds: usize,
    raw: &mut Raw,
    mut wal_round: impl FnMut() -> (Measured, f64),
) -> String {
    let (mut wal_rates, mut raw_rates, mut ratios, mut batches, mut cpu_micros) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut latencies = Vec::new();
    for _ in 0..rounds {
        let (round, cpu) = wal_round();
        let wal_rate = round.entries as f64 / round.elapsed.as_secs_f64();
        let batch = (round.entries as f64 / round.groups.max(1) as f64)
            .round()
            .max(1.0) as usize;
        let raw_rate = raw_round(&raw.file, raw.len, &mut raw.offset, batch, raw.round);
        wal_rates.push(wal_rate);
        raw_rates.push(raw_rate);
        ratios.push(wal_rate / raw_rate);
        batches.push(batch as f64);
        cpu_micros.push(cpu * 1e6 / round.entries.max(1) as f64);
        latencies.extend(round.latencies_nanos);
    }
    latencies.sort_unstable();
    format!(
        "{:>10} | {:>13.0} | {:>6.0} | {:>6.0} | {:>8.0} | {:>12.0} | {:>12.1} | {:>26.0} | {:>6.1}%",
        label,
        median(&mut wal_rates),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 0.999),
        median(&mut batches),
        median(&mut cpu_micros),
        median(&mut raw_rates),
        100.0 * median(&mut ratios),
    )
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let rounds: usize = std::env::var("RAFT_WAL_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let round_duration = Duration::from_millis(
        std::env::var("RAFT_WAL_BENCH_ROUND_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300),
    );
    let root = tempfile::tempdir_in(bench_dir()).expect("bench directory");
    let raw_len = 64u64 << 20;
    let mut raw = Raw {
        file: preallocated_file(&root.path().join("raw"), raw_len),
        len: raw_len,
        offset: 0,
        round: round_duration,
    };
    let mut rows = Vec::new();
    for appenders in APPENDERS {
        let dir = root.path().join(format!("wal-{appenders}"));
        let wal = Arc::new(Wal::open(&dir, WalOptions::default()).expect("open wal"));
        let next = Arc::new(Mutex::new(1u64));
        let mut measured = Measured::default();
        {
            let mut group = criterion.benchmark_group("wal_durable_append");
            group.throughput(Throughput::Elements(1));
            group.bench_function(BenchmarkId::new("appenders", appenders), |b| {
                b.iter_custom(|iters| {
                    run_appenders(
                        &wal,
                        &next,
                        appenders,
                        iters.max(appenders as u64),
                        &mut measured,
                    )
                });
            });
            group.finish();
        }
        let batch = (measured.entries as f64 / measured.groups.max(1) as f64)
            .round()
            .max(1.0) as usize;
        {
            let mut group = criterion.benchmark_group("raw_write_fdatasync");
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(BenchmarkId::new("batch", batch), |b| {
                b.iter_custom(|iters| run_raw(&raw.file, raw.len, &mut raw.offset, batch, iters));
            });
            group.finish();
        }
        if rounds > 0 {
            let label = appenders.to_string();
            rows.push(interleave(&label, rounds, &mut raw, || {
                wal_round(&wal, &next, appenders, round_duration)
            }));
        }
    }
    if rounds > 0 {
        // 256 concurrent appenders as an event-loop server would drive the log:
        // 8 threads with 32 appends each in flight.
        let dir = root.path().join("wal-pipelined");
        let wal = Arc::new(Wal::open(&dir, WalOptions::default()).expect("open wal"));
        let next = Arc::new(Mutex::new(1u64));
        rows.push(interleave("256 (8x32)", rounds, &mut raw, || {
            pipelined_round(&wal, &next, 8, 32, round_duration)
        }));
    }
    criterion.final_summary();
    println!();
    println!("Interleaved rounds ({rounds} x {round_duration:?} per side), medians:");
    println!(
        " appenders | WAL entries/s | p50 us | p99 us | p99.9 us | entries/sync | CPU us/entry | raw entries/s (same batch) | WAL/raw"
    );
    for row in rows {
        println!("{row}");
    }
}
