//! A cut tail that may have held acknowledged records is reported, and the report
//! survives restarts until the server clears it: raft-core must not vote while its
//! log may lack entries it acknowledged. A torn write that was never acknowledged
//! (its commit marker never reached the disk) and a clean reopen report nothing.

use raft_wal::storage::{CrashMode, FaultyStorage};
use raft_wal::{RecoveryReport, SegmentPreparation, WalOptions};

use crate::common::{self, unit};
use crate::hard_state::{active_segment, copy_with, written_end};

const COMMIT_FRAME_LEN: usize = 64;
const SECTOR: usize = 512;

fn options() -> WalOptions {
    WalOptions {
        segment_size_bytes: 8192,
        segment_preparation: SegmentPreparation::Inline,
    }
}

/// A log of 1..=20 and a last group 21..=40 (acknowledged), closed; returns the
/// storage, the active segment and the last group's byte range.
fn built() -> (FaultyStorage, std::path::PathBuf, usize, usize) {
    let storage = FaultyStorage::new();
    let wal = common::open(&storage, options()).unwrap();
    wal.append(unit(1..=20, 1, None)).unwrap();
    let active = active_segment(&storage);
    let start = written_end(&storage, &active);
    wal.append(unit(21..=40, 1, None)).unwrap();
    assert_eq!(active_segment(&storage), active);
    let end = written_end(&storage, &active);
    assert_eq!(wal.recovery_report(), RecoveryReport::default());
    drop(wal);
    (storage, active, start, end)
}

fn expect_catching_up_until_cleared(storage: &FaultyStorage, after: u64) {
    let wal = common::open(storage, options()).unwrap();
    assert_eq!(wal.last_index(), after, "the damaged group was cut");
    assert_eq!(wal.recovery_report().catching_up_after, Some(after));
    drop(wal);
    // The damage is gone from the disk now; the mark is not.
    let wal = common::open(storage, options()).unwrap();
    assert_eq!(wal.recovery_report().catching_up_after, Some(after));
    // New appends do not clear it; only the server does, once caught up.
    wal.append(unit(after + 1..=after + 2, 2, None)).unwrap();
    assert_eq!(wal.recovery_report().catching_up_after, Some(after));
    wal.clear_catching_up().wait().unwrap();
    assert_eq!(wal.recovery_report().catching_up_after, None);
    drop(wal);
    let wal = common::open(storage, options()).unwrap();
    assert_eq!(wal.recovery_report().catching_up_after, None);
    assert_eq!(wal.last_index(), after + 2);
}

#[test]
fn a_damaged_commit_marker_of_a_fully_written_group_marks_catching_up() {
    let (storage, active, _, end) = built();
    let mut bytes = storage.durable_contents(&active).unwrap();
    // A flipped bit in the marker's checksum: every sector of the group is there.
    bytes[end - COMMIT_FRAME_LEN + 5] ^= 0x04;
    let damaged = copy_with(&storage, &active, Some(&bytes));
    expect_catching_up_until_cleared(&damaged, 20);
}

#[test]
fn a_lost_sector_before_an_intact_commit_marker_marks_catching_up() {
    let (storage, active, start, end) = built();
    let mut bytes = storage.durable_contents(&active).unwrap();
    let sector = start.div_ceil(SECTOR) * SECTOR;
    assert!(
        sector + SECTOR <= end - COMMIT_FRAME_LEN,
        "a whole sector inside the group"
    );
    bytes[sector..sector + SECTOR].fill(0);
    let damaged = copy_with(&storage, &active, Some(&bytes));
    expect_catching_up_until_cleared(&damaged, 20);
}

#[test]
fn clean_reopens_and_unacknowledged_torn_writes_do_not_mark_catching_up() {
    let (storage, active, _, end) = built();
    let wal = common::open(&storage, options()).unwrap();
    assert_eq!(wal.recovery_report().catching_up_after, None);
    // A group is written but the process dies before its sync returns; its commit
    // marker never reaches the disk.
    storage.stop_after(1);
    assert!(wal.append(unit(41..=60, 1, None)).is_err());
    drop(wal);
    storage.crash(CrashMode::KeepUnsynced);
    let mut bytes = storage.durable_contents(&active).unwrap();
    let tail_end = written_end(&storage, &active);
    assert!(tail_end > end + COMMIT_FRAME_LEN);
    bytes[tail_end - COMMIT_FRAME_LEN..tail_end].fill(0);
    let torn = copy_with(&storage, &active, Some(&bytes));
    let wal = common::open(&torn, options()).unwrap();
    assert_eq!(wal.last_index(), 40);
    assert_eq!(wal.recovery_report().catching_up_after, None);
    drop(wal);
    // The same write, torn sector by sector in every way that leaves its marker
    // behind, or dropped whole.
    for seed in 0..16 {
        let storage = built().0;
        let wal = common::open(&storage, options()).unwrap();
        storage.stop_after(1);
        assert!(wal.append(unit(41..=60, 1, None)).is_err());
        drop(wal);
        let tail_end = written_end(&storage, &active);
        let mode = if seed == 0 {
            CrashMode::DropUnsynced
        } else {
            CrashMode::TearLast { seed }
        };
        storage.crash(mode);
        let mut bytes = storage.durable_contents(&active).unwrap();
        bytes[tail_end - COMMIT_FRAME_LEN..tail_end].fill(0);
        let torn = copy_with(&storage, &active, Some(&bytes));
        let wal = common::open(&torn, options()).unwrap();
        assert_eq!(wal.last_index(), 40, "seed {seed}");
        assert_eq!(wal.recovery_report().catching_up_after, None, "seed {seed}");
    }
}
