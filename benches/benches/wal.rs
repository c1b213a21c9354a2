//! Durable append throughput and latency of raft-wal with 1, 16 and 256 concurrent
//! appenders (256-byte entries, each acknowledged only after its fdatasync), and in
//! the same run a raw baseline: a plain `write` + `fdatasync` loop writing the same
//! bytes per sync as the WAL's average commit group. Prints a summary with
//! entries/s, latency percentiles, average batch and the WAL/raw ratio.
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

struct Summary {
    appenders: usize,
    wal: Measured,
    raw_entries: u64,
    raw_elapsed: Duration,
    batch: usize,
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
                        completion.wait().expect("durable append");
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

fn percentile(sorted: &[u64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 * fraction) as usize).min(sorted.len() - 1);
    sorted[at] as f64 / 1000.0
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let root = tempfile::tempdir_in(bench_dir()).expect("bench directory");
    let mut summaries = Vec::new();
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
        drop(wal);

        // The raw baseline at the batch size the WAL achieved.
        let raw_path = root.path().join(format!("raw-{appenders}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&raw_path)
            .unwrap();
        let file_len = 64u64 << 20;
        let zeros = vec![0u8; 1 << 20];
        for chunk in 0..64 {
            file.write_all_at(&zeros, chunk << 20).unwrap();
        }
        file.sync_all().unwrap();
        let mut offset = 0u64;
        let (mut raw_entries, mut raw_elapsed) = (0u64, Duration::ZERO);
        {
            let mut group = criterion.benchmark_group("raw_write_fdatasync");
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(BenchmarkId::new("batch", batch), |b| {
                b.iter_custom(|iters| {
                    let elapsed = run_raw(&file, file_len, &mut offset, batch, iters);
                    raw_entries += iters * batch as u64;
                    raw_elapsed += elapsed;
                    elapsed
                });
            });
            group.finish();
        }
        summaries.push(Summary {
            appenders,
            wal: measured,
            raw_entries,
            raw_elapsed,
            batch,
        });
    }
    criterion.final_summary();

    println!();
    println!(
        "appenders | WAL entries/s | p50 us | p99 us | p99.9 us | entries/sync | raw entries/s (same batch) | WAL/raw"
    );
    for summary in &mut summaries {
        summary.wal.latencies_nanos.sort_unstable();
        let wal_rate = summary.wal.entries as f64 / summary.wal.elapsed.as_secs_f64();
        let raw_rate = summary.raw_entries as f64 / summary.raw_elapsed.as_secs_f64();
        let latencies = &summary.wal.latencies_nanos;
        println!(
            "{:>9} | {:>13.0} | {:>6.0} | {:>6.0} | {:>8.0} | {:>12} | {:>26.0} | {:>6.1}%",
            summary.appenders,
            wal_rate,
            percentile(latencies, 0.50),
            percentile(latencies, 0.99),
            percentile(latencies, 0.999),
            summary.batch,
            raw_rate,
            100.0 * wal_rate / raw_rate,
        );
    }
}
