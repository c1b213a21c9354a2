//! Appends, reads, suffix truncation, rotation, compaction and the directory lock,
//! on both backends.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use raft_wal::storage::FaultyStorage;
use raft_wal::{
    AppendUnit, Entry, HardState, Rejection, SegmentPreparation, Wal, WalError, WalOptions,
};

use crate::common::{self, ModelLog, entry, observe, unit};

#[test]
fn appends_survive_reopen() {
    let storage = FaultyStorage::new();
    let mut model = ModelLog::default();
    {
        let wal = common::open(&storage, common::small_options()).unwrap();
        for start in (1..=40).step_by(4) {
            let hard_state = HardState {
                term: 1,
                vote: 2,
                commit: start - 1,
            };
            let unit = unit(start..=start + 3, 1, Some(hard_state));
            let appended = wal.append(unit.clone()).unwrap();
            assert_eq!(appended.last_index, start + 3);
            assert_eq!(appended.last_term, 1);
            model.append(&unit);
            assert_eq!(observe(&wal), model.observed());
        }
        assert!(
            common::segment_files(&storage).len() > 3,
            "small segments rotate"
        );
    }
    let wal = common::open(&storage, common::small_options()).unwrap();
    assert_eq!(observe(&wal), model.observed());
    assert_eq!(wal.term(17).unwrap(), 1);
    assert!(matches!(
        wal.term(41),
        Err(WalError::Unavailable { index: 41, .. })
    ));
    // max_bytes limits the batch but always returns one entry.
    assert_eq!(wal.entries(1, 40, 0).unwrap().len(), 1);
    assert_eq!(wal.entries(1, 40, 100).unwrap().len(), 2);
}

#[test]
fn suffix_truncation_replaces_entries_and_survives_reopen() {
    let storage = FaultyStorage::new();
    let mut model = ModelLog::default();
    {
        let wal = common::open(&storage, common::small_options()).unwrap();
        for unit in [
            unit(1..=10, 1, None),
            unit(6..=8, 2, None),
            unit(9..=9, 2, None),
            unit(3..=3, 3, None),
        ] {
            wal.append(unit.clone()).unwrap();
            model.append(&unit);
            assert_eq!(observe(&wal), model.observed());
        }
        assert_eq!(wal.last_index(), 3);
    }
    let wal = common::open(&storage, common::small_options()).unwrap();
    assert_eq!(observe(&wal), model.observed());
}

#[test]
fn invalid_units_are_rejected_without_harm() {
    let storage = FaultyStorage::new();
    let wal = common::open(&storage, common::small_options()).unwrap();
    wal.append(unit(
        1..=5,
        2,
        Some(HardState {
            term: 2,
            vote: 1,
            commit: 3,
        }),
    ))
    .unwrap();
    let reject = |unit: AppendUnit| match wal.append(unit) {
        Err(WalError::Rejected { reason }) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    };
    assert!(matches!(
        reject(unit(7..=7, 2, None)),
        Rejection::Gap { .. }
    ));
    assert!(matches!(
        reject(unit((1 << 62) + 1..=(1 << 62) + 1, 2, None)),
        Rejection::IndexOutOfRange { .. }
    ));
    assert!(matches!(
        reject(unit(6..=6, 1, None)),
        Rejection::TermRegression { .. }
    ));
    assert!(matches!(
        reject(unit(3..=3, 3, None)),
        Rejection::TruncatesCommitted { .. }
    ));
    let mut gapped = unit(6..=7, 2, None);
    gapped.entries[1].index = 9;
    assert!(matches!(reject(gapped), Rejection::NotContiguous { .. }));
    let vote_change = AppendUnit {
        hard_state: Some(HardState {
            term: 2,
            vote: 3,
            commit: 3,
        }),
        entries: vec![],
    };
    assert!(matches!(
        reject(vote_change),
        Rejection::VoteChanged { term: 2 }
    ));
    let beyond = AppendUnit {
        hard_state: Some(HardState {
            term: 2,
            vote: 1,
            commit: 9,
        }),
        entries: vec![],
    };
    assert!(matches!(
        reject(beyond),
        Rejection::CommitBeyondLastIndex { .. }
    ));
    let too_large = AppendUnit {
        hard_state: None,
        entries: vec![Entry {
            index: 6,
            term: 2,
            payload: Bytes::from(vec![1u8; 4096]),
        }],
    };
    assert!(matches!(
        wal.append(too_large),
        Err(WalError::TooLarge { .. })
    ));
    assert_eq!(wal.append(unit(6..=6, 2, None)).unwrap().last_index, 6);
}

#[test]
fn compaction_needs_a_snapshot_and_deletes_whole_segments() {
    let storage = FaultyStorage::new();
    let wal = common::open(&storage, common::small_options()).unwrap();
    for start in (1..=60).step_by(5) {
        wal.append(unit(start..=start + 4, 1, None)).unwrap();
    }
    let before = common::segment_files(&storage).len();
    assert!(matches!(
        wal.compact(30),
        Err(WalError::Rejected {
            reason: Rejection::CompactionBeyondSnapshot { .. }
        })
    ));
    let mut writer = wal
        .snapshot_writer(40, 1, Bytes::from_static(b"members"))
        .unwrap();
    std::io::Write::write_all(&mut writer, b"state machine").unwrap();
    writer.finish().unwrap();
    wal.compact(41).unwrap();
    assert_eq!(wal.first_index(), 41);
    assert_eq!(wal.term(40).unwrap(), 1);
    assert!(matches!(
        wal.entries(40, 41, 10),
        Err(WalError::Compacted {
            first_index: 41,
            ..
        })
    ));
    assert!(
        common::segment_files(&storage).len() < before,
        "whole segments deleted: {before} {:?}",
        storage.files()
    );
    let expected = observe(&wal);
    drop(wal);
    let wal = common::open(&storage, common::small_options()).unwrap();
    assert_eq!(observe(&wal), expected);
}

#[test]
fn second_open_is_locked() {
    let storage = FaultyStorage::new();
    let _wal = common::open(&storage, common::small_options()).unwrap();
    assert!(matches!(
        common::open(&storage, common::small_options()),
        Err(WalError::Locked { .. })
    ));

    let dir = tempfile::tempdir().unwrap();
    let _real = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert!(matches!(
        Wal::open(dir.path(), WalOptions::default()),
        Err(WalError::Locked { .. })
    ));
}

#[test]
fn real_files_rotate_map_sealed_segments_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        segment_size_bytes: 64 * 1024,
        segment_preparation: SegmentPreparation::Background,
    };
    let mut model = ModelLog::default();
    {
        let wal = Wal::open(dir.path(), options).unwrap();
        for start in (1..=2000).step_by(10) {
            let unit = AppendUnit {
                hard_state: Some(HardState {
                    term: 1,
                    vote: 1,
                    commit: start - 1,
                }),
                entries: (start..start + 10)
                    .map(|index| Entry {
                        index,
                        term: 1,
                        payload: common::payload(index, 1, 100),
                    })
                    .collect(),
            };
            wal.append(unit.clone()).unwrap();
            model.append(&unit);
        }
        // Sealed segments are read through the map, the active one with reads.
        assert_eq!(observe(&wal), model.observed());
        assert!(wal.stats().commit_groups >= 200);
    }
    let segments = std::fs::read_dir(dir.path().join("wal")).unwrap().count();
    assert!(segments > 3, "rotated into {segments} segments");
    let wal = Wal::open(dir.path(), options).unwrap();
    assert_eq!(observe(&wal), model.observed());
}

#[test]
fn concurrent_appenders_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), WalOptions::default()).unwrap());
    // Index assignment and submission happen under one lock, so queue order is
    // index order; waiting for durability happens outside it.
    let next = Arc::new(Mutex::new(1u64));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (wal, next) = (Arc::clone(&wal), Arc::clone(&next));
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let completion = {
                        let mut next = next.lock().unwrap();
                        let index = *next;
                        *next += 1;
                        wal.submit(AppendUnit {
                            hard_state: None,
                            entries: vec![entry(index, 1)],
                        })
                    };
                    completion.wait().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(wal.last_index(), 400);
    let stats = wal.stats();
    assert_eq!(stats.entries, 400);
    assert!(stats.syncs <= 400);
    let entries = wal.entries(1, 401, u64::MAX).unwrap();
    assert!(
        entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.index == i as u64 + 1 && e.payload == entry(e.index, 1).payload)
    );
}

#[test]
fn payloads_read_from_mapped_segments_outlive_their_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        segment_size_bytes: 16 * 1024,
        segment_preparation: SegmentPreparation::Background,
    };
    let wal = Wal::open(dir.path(), options).unwrap();
    for start in (1..=600).step_by(10) {
        wal.append(unit(start..=start + 9, 1, None)).unwrap();
    }
    // Entry 5 lives in a sealed segment: its payload is a slice of the map.
    let held = wal.entries(5, 6, u64::MAX).unwrap().remove(0);
    let mut writer = wal.snapshot_writer(500, 1, Bytes::new()).unwrap();
    std::io::Write::write_all(&mut writer, b"state").unwrap();
    writer.finish().unwrap();
    wal.compact(501).unwrap();
    drop(wal);
    // The segments are gone (deleted by the preparer before it stopped) ...
    let wal = Wal::open(dir.path(), options).unwrap();
    assert_eq!(wal.first_index(), 501);
    let segments = std::fs::read_dir(dir.path().join("wal")).unwrap().count();
    assert!(segments <= 4, "{segments} segments left after compaction");
    // ... and the payload read before stays valid.
    assert_eq!(held.payload, entry(5, 1).payload);
}

#[test]
fn completions_can_be_polled_and_waited_with_a_timeout() {
    let storage = FaultyStorage::new();
    let wal = common::open(&storage, common::small_options()).unwrap();
    let completion = wal.submit(unit(1..=2, 1, None));
    // Either outcome of the timed wait is fine; the result must be the same.
    let outcome = match completion.wait_timeout(std::time::Duration::from_millis(1)) {
        Ok(outcome) => outcome,
        Err(pending) => pending.wait(),
    };
    assert_eq!(outcome.unwrap().last_index, 2);
    let polled = wal.submit(unit(3..=3, 1, None));
    let outcome = loop {
        if let Some(outcome) = polled.try_take() {
            break outcome;
        }
        std::thread::yield_now();
    };
    assert_eq!(outcome.unwrap().last_index, 3);
    assert_eq!(
        wal.append(AppendUnit::default()).unwrap().last_index,
        3,
        "an empty unit is a no-op"
    );
}

/// Wakes a parked thread and records that it did.
struct ThreadWaker {
    thread: std::thread::Thread,
    woken: std::sync::atomic::AtomicBool,
}

impl std::task::Wake for ThreadWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.woken.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.unpark();
    }
}

#[test]
fn an_awaited_completion_is_woken_by_the_writer() {
    use std::future::Future;
    use std::sync::atomic::Ordering;
    use std::task::{Context, Poll};

    let storage = FaultyStorage::new();
    let wal = common::open(&storage, common::small_options()).unwrap();
    let waker = std::sync::Arc::new(ThreadWaker {
        thread: std::thread::current(),
        woken: false.into(),
    });
    let task_waker = std::task::Waker::from(std::sync::Arc::clone(&waker));
    let mut cx = Context::from_waker(&task_waker);
    for last in 1..=20u64 {
        waker.woken.store(false, Ordering::SeqCst);
        let mut completion = std::pin::pin!(wal.submit(unit(last..=last, 1, None)));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let outcome = loop {
            match completion.as_mut().poll(&mut cx) {
                Poll::Ready(outcome) => break outcome,
                Poll::Pending => {
                    // Only a wake from the writer ends this wait early.
                    while !waker.woken.swap(false, Ordering::SeqCst) {
                        assert!(
                            std::time::Instant::now() < deadline,
                            "the writer never woke the task"
                        );
                        std::thread::park_timeout(std::time::Duration::from_millis(100));
                    }
                }
            }
        };
        assert_eq!(outcome.unwrap().last_index, last);
    }
}

#[test]
fn units_queued_together_see_each_other() {
    let storage = FaultyStorage::new();
    let wal = common::open(&storage, common::small_options()).unwrap();
    let mut model = ModelLog::default();
    // Submitted without waiting, these usually share one commit group; each is
    // checked against the log as the earlier ones leave it.
    let units = [
        unit(1..=5, 1, None),
        unit(
            3..=4,
            2,
            Some(HardState {
                term: 2,
                vote: 1,
                commit: 2,
            }),
        ),
        unit(5..=6, 2, None),
        unit(
            6..=6,
            3,
            Some(HardState {
                term: 3,
                vote: 0,
                commit: 4,
            }),
        ),
    ];
    let completions: Vec<_> = units.iter().map(|unit| wal.submit(unit.clone())).collect();
    let rejected = wal.submit(unit(2..=2, 3, None));
    for (unit, completion) in units.iter().zip(completions) {
        let appended = completion.wait().unwrap();
        model.append(unit);
        assert_eq!(appended.last_index, model.last_index());
    }
    assert!(matches!(
        rejected.wait(),
        Err(WalError::Rejected {
            reason: Rejection::TruncatesCommitted {
                index: 2,
                commit: 4
            }
        })
    ));
    assert_eq!(observe(&wal), model.observed());
    drop(wal);
    let wal = common::open(&storage, common::small_options()).unwrap();
    assert_eq!(observe(&wal), model.observed());
}

#[test]
fn readers_see_a_consistent_durable_prefix_while_appends_rotate_segments() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        segment_size_bytes: 8 * 1024,
        segment_preparation: SegmentPreparation::Background,
    };
    let wal = Arc::new(Wal::open(dir.path(), options).unwrap());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (wal, done) = (Arc::clone(&wal), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let last = wal.last_index();
                let entries = wal.entries(1, last + 1, u64::MAX).unwrap();
                assert_eq!(entries.len() as u64, last);
                for entry in &entries {
                    assert_eq!(entry.payload, entry_payload(entry.index));
                }
                reads += 1;
            }
            reads
        })
    };
    for start in (1..=1500).step_by(5) {
        let unit = AppendUnit {
            hard_state: None,
            entries: (start..start + 5)
                .map(|index| Entry {
                    index,
                    term: 1,
                    payload: entry_payload(index),
                })
                .collect(),
        };
        wal.append(unit).unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    assert!(reader.join().unwrap() > 0);
}

fn entry_payload(index: u64) -> Bytes {
    common::payload(index, 1, 64)
}
