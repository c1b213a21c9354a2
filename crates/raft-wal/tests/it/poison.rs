//! After a failed write or fsync the log refuses all further work, every waiter
//! gets the error, and nothing is retried; reopening recovers what was durable.

use bytes::Bytes;
use raft_wal::WalError;
use raft_wal::storage::{CrashMode, FaultyStorage};

use crate::common::{self, unit};

fn assert_poisoned<T: std::fmt::Debug>(result: raft_wal::Result<T>) {
    assert!(
        matches!(result, Err(WalError::Poisoned { .. })),
        "expected poisoned, got {result:?}"
    );
}

#[test]
fn a_failed_fsync_poisons_the_log_for_every_waiter() {
    let storage = FaultyStorage::new();
    let wal = common::open(&storage, common::small_options()).unwrap();
    wal.append(unit(1..=3, 1, None)).unwrap();
    let syncs_before = storage.operations();
    storage.fail_next_sync();
    let failed = wal.append(unit(4..=5, 1, None));
    assert!(matches!(failed, Err(WalError::Io { .. })), "{failed:?}");
    // One write and one (failed) sync: the sync was not retried.
    assert_eq!(storage.operations(), syncs_before + 2);
    // Everything afterwards is refused, through every entry point.
    let pending: Vec<_> = (0..5)
        .map(|i| wal.submit(unit(6 + i..=6 + i, 1, None)))
        .collect();
    for completion in pending {
        assert_poisoned(completion.wait());
    }
    assert_poisoned(wal.append(unit(4..=4, 1, None)));
    assert_poisoned(wal.compact(2));
    assert_poisoned(wal.snapshot_writer(3, 1, Bytes::new()));
    assert_eq!(
        storage.operations(),
        syncs_before + 2,
        "no I/O after poisoning"
    );
    // Reads of durable state still work.
    assert_eq!(wal.last_index(), 3);
    drop(wal);
    storage.crash(CrashMode::DropUnsynced);
    let wal = common::open(&storage, common::small_options()).unwrap();
    assert_eq!(wal.last_index(), 3);
    wal.append(unit(4..=4, 1, None)).unwrap();
}

#[test]
fn a_failed_write_poisons_the_log() {
    let storage = FaultyStorage::new();
    let wal = common::open(&storage, common::small_options()).unwrap();
    wal.append(unit(1..=2, 1, None)).unwrap();
    storage.fail_next_write();
    assert!(matches!(
        wal.append(unit(3..=3, 1, None)),
        Err(WalError::Io { .. })
    ));
    assert_poisoned(wal.append(unit(3..=3, 1, None)));
    drop(wal);
    let wal = common::open(&storage, common::small_options()).unwrap();
    assert_eq!(wal.last_index(), 2);
}

#[test]
fn a_failure_while_preparing_a_segment_poisons_the_log() {
    let storage = FaultyStorage::new();
    let wal = common::open(&storage, common::small_options()).unwrap();
    // Each unit nearly fills a segment, so the second one needs the next segment.
    let big = |index| raft_wal::AppendUnit {
        hard_state: None,
        entries: vec![raft_wal::Entry {
            index,
            term: 1,
            payload: common::payload(index, 1, 850),
        }],
    };
    wal.append(big(1)).unwrap();
    assert_eq!(common::segment_files(&storage).len(), 1);
    // The next sync is the new segment's, before anything of unit 2 is written.
    storage.fail_next_sync();
    let failed = wal.append(big(2));
    assert!(matches!(failed, Err(WalError::Io { .. })), "{failed:?}");
    assert_poisoned(wal.append(big(2)));
    drop(wal);
    let wal = common::open(&storage, common::small_options()).unwrap();
    assert_eq!(wal.last_index(), 1);
    wal.append(big(2)).unwrap();
}
