//! Real files, real `kill -9`: the test binary re-executes itself as a child that
//! appends from several threads and reports each acknowledged index on stdout; the
//! parent kills it at a random moment, recovers the log and checks that every
//! acknowledged entry (and the hard state that came with it) survived. Rounds:
//! `RAFT_WAL_CRASH_ROUNDS` (default 20).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft_wal::{AppendUnit, Entry, HardState, SegmentPreparation, Wal, WalOptions};

use crate::common;

const CHILD_ENV: &str = "RAFT_WAL_CRASH_CHILD_DIR";
const PAYLOAD_BYTES: usize = 100;

fn options() -> WalOptions {
    WalOptions {
        segment_size_bytes: 256 * 1024,
        segment_preparation: SegmentPreparation::Background,
    }
}

fn unit_for(index: u64) -> AppendUnit {
    AppendUnit {
        hard_state: Some(HardState {
            term: 1,
            vote: 1,
            commit: index - 1,
        }),
        entries: vec![Entry {
            index,
            term: 1,
            payload: common::payload(index, 1, PAYLOAD_BYTES),
        }],
    }
}

/// The child: does nothing unless re-executed by the parent with `CHILD_ENV` set.
#[test]
fn child_appender() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let wal = Arc::new(Wal::open(&dir, options()).expect("child opens the log"));
    let next = Arc::new(Mutex::new(wal.last_index() + 1));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (wal, next) = (Arc::clone(&wal), Arc::clone(&next));
            std::thread::spawn(move || {
                loop {
                    // Submitting under the lock keeps queue order equal to index order.
                    let (index, completion) = {
                        let mut next = next.lock().unwrap();
                        let index = *next;
                        *next += 1;
                        (index, wal.submit(unit_for(index)))
                    };
                    completion.wait().expect("durable append");
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {index}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

#[test]
fn kill_9_never_loses_acknowledged_appends() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let rounds: u64 = std::env::var("RAFT_WAL_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut max_acked = 0u64;
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "process_crash::child_appender",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, acks) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(index) = line
                    .strip_prefix("ACK ")
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    let _ = sender.send(index);
                }
            }
        });
        // Let the child make progress, then kill it at a random moment.
        let first = acks
            .recv_timeout(Duration::from_secs(30))
            .expect("child acknowledges appends");
        max_acked = max_acked.max(first);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(seed % 150_000));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let acked: Vec<u64> = acks.try_iter().collect();
        max_acked = acked.into_iter().fold(max_acked, u64::max);

        let wal = Wal::open(dir.path(), options())
            .unwrap_or_else(|e| panic!("round {round}: recovery: {e}"));
        assert!(
            wal.last_index() >= max_acked,
            "round {round}: lost acknowledged entries: last {} < {max_acked}",
            wal.last_index()
        );
        assert!(
            wal.hard_state().commit + 1 >= max_acked,
            "round {round}: hard state lost"
        );
        let entries = wal.entries(1, max_acked + 1, u64::MAX).unwrap();
        assert_eq!(entries.len() as u64, max_acked);
        for entry in entries {
            assert_eq!(
                entry.payload,
                common::payload(entry.index, 1, PAYLOAD_BYTES),
                "round {round}: entry {}",
                entry.index
            );
        }
    }
    eprintln!("{rounds} kill -9 rounds, {max_acked} entries acknowledged");
    assert!(
        max_acked >= rounds,
        "the children made progress: {max_acked} acknowledged"
    );
}
