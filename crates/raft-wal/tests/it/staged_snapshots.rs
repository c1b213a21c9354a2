//! A snapshot received from a leader is never durable-but-not-installed: it is
//! staged (durable, not the latest, deleting nothing), and the install promotes it
//! and cuts the log in one operation on the writer thread. If the process dies in
//! between, the next open either forgets the staged file or, if the promotion was
//! durable, repeats the install: the log never claims a commit index over entries
//! that contradict the latest snapshot.

use std::io::Write;
use std::path::PathBuf;

use bytes::Bytes;
use raft_wal::storage::{CrashMode, FaultyStorage};
use raft_wal::{HardState, Rejection, Wal, WalError};

use crate::common::{self, unit};

fn snap_files(storage: &FaultyStorage) -> Vec<PathBuf> {
    let snap_dir = common::data_dir().join("snap");
    storage
        .files()
        .into_iter()
        .filter(|path| path.parent() == Some(snap_dir.as_path()))
        .collect()
}

/// A follower's log: 1..=5 in term 1 (committed up to 3), then 6..=10 written in
/// term 2 by a leader that lost; the new leader's snapshot covers index 8 in term 3.
fn divergent_follower(storage: &FaultyStorage) -> Wal {
    let wal = common::open(storage, common::small_options()).unwrap();
    let hs = |term, vote, commit| Some(HardState { term, vote, commit });
    wal.append(unit(1..=5, 1, hs(1, 1, 3))).unwrap();
    wal.append(unit(6..=10, 2, hs(2, 2, 3))).unwrap();
    wal.append(raft_wal::AppendUnit {
        hard_state: hs(3, 0, 3),
        entries: vec![],
    })
    .unwrap();
    wal
}

fn received(wal: &Wal) -> raft_wal::SnapshotWriter {
    let mut writer = wal
        .snapshot_writer(8, 3, Bytes::from_static(b"voters=1,2,3"))
        .unwrap();
    writer.write_all(&[5u8; 700]).unwrap();
    writer
}

/// What must hold after any crash around receiving the snapshot at (8, 3).
fn assert_consistent(wal: &Wal, context: &str) {
    let state = wal.hard_state();
    match wal.latest_snapshot() {
        Some(meta) => {
            assert_eq!((meta.index, meta.term), (8, 3), "{context}");
            // The log agrees with the snapshot and claims nothing divergent.
            assert_eq!(wal.term(8).ok(), Some(3), "{context}: log disagrees");
            assert_eq!((wal.first_index(), wal.last_index()), (9, 8), "{context}");
            assert_eq!(state.commit, 8, "{context}");
        }
        None => {
            // Not installed: the log is as before, its commit over matching entries.
            assert_eq!((wal.first_index(), wal.last_index()), (1, 10), "{context}");
            assert_eq!(state.commit, 3, "{context}");
        }
    }
    assert!(state.commit <= wal.last_index(), "{context}");
    assert_eq!(state.term, 3, "{context}");
}

#[test]
fn a_latest_snapshot_that_the_log_contradicts_is_installed_at_open() {
    // The old order: the snapshot became the latest before the install cut the log,
    // and the process died in between.
    let storage = FaultyStorage::new();
    let wal = divergent_follower(&storage);
    received(&wal).finish().unwrap();
    drop(wal);
    storage.crash(CrashMode::DropUnsynced);
    let wal = common::open(&storage, common::small_options()).unwrap();
    assert_consistent(&wal, "reopened");
    assert!(wal.latest_snapshot().is_some());
}

#[test]
fn a_latest_snapshot_that_the_log_matches_leaves_the_log_alone_at_open() {
    let storage = FaultyStorage::new();
    let wal = divergent_follower(&storage);
    let mut writer = wal.snapshot_writer(4, 1, Bytes::new()).unwrap();
    writer.write_all(b"state").unwrap();
    writer.finish().unwrap();
    drop(wal);
    let wal = common::open(&storage, common::small_options()).unwrap();
    assert_eq!((wal.first_index(), wal.last_index()), (1, 10));
    assert_eq!(wal.hard_state().commit, 3);
}

#[test]
fn a_staged_snapshot_is_not_the_latest_until_installed() {
    let storage = FaultyStorage::new();
    let wal = divergent_follower(&storage);
    let staged = received(&wal).finish_staged().unwrap();
    assert_eq!((staged.meta().index, staged.meta().term), (8, 3));
    assert_eq!(wal.latest_snapshot(), None);
    assert_eq!(snap_files(&storage).len(), 1);
    let installed = wal.submit_install_staged(staged).wait().unwrap();
    assert_eq!((installed.last_index, installed.last_term), (8, 3));
    assert_consistent(&wal, "installed");
    assert!(wal.latest_snapshot().is_some());
    drop(wal);
    let wal = common::open(&storage, common::small_options()).unwrap();
    assert_consistent(&wal, "reopened");
    assert!(wal.latest_snapshot().is_some());
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut wal.open_snapshot().unwrap().unwrap(), &mut data).unwrap();
    assert_eq!(data, vec![5u8; 700]);
}

#[test]
fn a_refused_staged_snapshot_is_discarded() {
    let storage = FaultyStorage::new();
    let wal = divergent_follower(&storage);
    let staged = received(&wal).finish_staged().unwrap();
    staged.discard().unwrap();
    assert!(snap_files(&storage).is_empty());
    // Dropping one discards it too.
    drop(received(&wal).finish_staged().unwrap());
    assert!(snap_files(&storage).is_empty());
    // An install that the log refuses (older than the latest snapshot) leaves no file.
    let mut writer = wal.snapshot_writer(9, 3, Bytes::new()).unwrap();
    writer.write_all(b"newer").unwrap();
    let stale = received(&wal).finish_staged().unwrap();
    writer.finish().unwrap();
    assert!(matches!(
        wal.install_staged(stale),
        Err(WalError::Rejected {
            reason: Rejection::StaleSnapshot { .. }
        })
    ));
    assert_eq!(snap_files(&storage).len(), 1);
    assert_eq!(wal.latest_snapshot().unwrap().index, 9);
}

#[test]
fn a_crash_anywhere_between_staging_and_install_leaves_a_consistent_log() {
    let total = {
        let storage = FaultyStorage::new();
        let wal = divergent_follower(&storage);
        let start = storage.operations();
        let staged = received(&wal).finish_staged().unwrap();
        wal.install_staged(staged).unwrap();
        storage.operations() - start
    };
    let mut outcomes = [0u32; 2];
    for k in 0..=total {
        for mode in [
            CrashMode::DropUnsynced,
            CrashMode::KeepUnsynced,
            CrashMode::TearLast { seed: k },
            CrashMode::TearLast { seed: !k },
        ] {
            let context = format!("crash after op {k} ({mode:?})");
            let storage = FaultyStorage::new();
            let wal = divergent_follower(&storage);
            storage.stop_after(k);
            let acknowledged = wal
                .snapshot_writer(8, 3, Bytes::from_static(b"voters=1,2,3"))
                .and_then(|mut writer| {
                    writer.write_all(&[5u8; 700]).expect("buffered");
                    writer.finish_staged()
                })
                .and_then(|staged| wal.install_staged(staged))
                .is_ok();
            drop(wal);
            storage.crash(mode);
            let wal = common::open(&storage, common::small_options())
                .unwrap_or_else(|e| panic!("{context}: {e}"));
            assert_consistent(&wal, &context);
            if acknowledged {
                assert!(wal.latest_snapshot().is_some(), "{context}: install lost");
            }
            outcomes[usize::from(wal.latest_snapshot().is_some())] += 1;
            let leftovers: Vec<_> = snap_files(&storage)
                .into_iter()
                .filter(|path| !path.to_string_lossy().ends_with(".snap"))
                .collect();
            assert!(leftovers.is_empty(), "{context}: {leftovers:?}");
        }
    }
    assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
}
