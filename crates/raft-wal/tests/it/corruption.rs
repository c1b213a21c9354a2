//! Bit flips: anywhere in a sealed segment, or in the last segment before its last
//! commit marker, a flip is reported as corruption naming the file and an offset at
//! or before the flip; a flip in the unsynced tail (after the last commit marker) is
//! cut off with the tail. Never is the log shortened silently.

use std::path::{Path, PathBuf};

use raft_wal::storage::{CrashMode, FaultyStorage};
use raft_wal::{SegmentPreparation, WalError, WalOptions};

use crate::common::{self, ModelLog, Observed, observe, unit};

const COMMIT_FRAME_LEN: usize = 64;

fn options() -> WalOptions {
    WalOptions {
        segment_size_bytes: 4096,
        segment_preparation: SegmentPreparation::Inline,
    }
}

/// One past the last non-zero byte: the end of the last commit marker (whose last
/// eight bytes are a non-zero tag).
fn written_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |at| at + 1)
}

fn copy_of(storage: &FaultyStorage) -> FaultyStorage {
    let copy = FaultyStorage::new();
    for path in storage.files() {
        copy.put_durable(
            &path,
            &storage.durable_contents(&path).expect("listed file"),
        );
    }
    copy
}

struct Built {
    storage: FaultyStorage,
    sealed: Vec<PathBuf>,
    last: PathBuf,
    last_group_start: usize,
    last_group_end: usize,
    before_last_group: Observed,
    full: Observed,
}

/// A log with at least two sealed segments and two groups in the active one.
fn build() -> Built {
    let storage = FaultyStorage::new();
    let wal = common::open(&storage, options()).unwrap();
    let mut model = ModelLog::default();
    let mut next = 1;
    let mut groups_in_active = 0;
    let mut before = model.observed();
    let (mut start, mut end) = (0, 0);
    loop {
        let files_before = common::segment_files(&storage);
        let active = files_before.last().cloned().unwrap();
        let end_before = written_end(&storage.contents(&active).unwrap());
        let observed_before = model.observed();
        let unit = unit(next..=next + 9, 1, None);
        wal.append(unit.clone()).unwrap();
        model.append(&unit);
        next += 10;
        let files = common::segment_files(&storage);
        if files.last() == Some(&active) {
            groups_in_active += 1;
            (start, end) = (end_before, written_end(&storage.contents(&active).unwrap()));
            before = observed_before;
        } else {
            groups_in_active = 0;
        }
        if files.len() >= 3 && groups_in_active >= 2 {
            break;
        }
    }
    let full = model.observed();
    drop(wal);
    let mut files = common::segment_files(&storage);
    let last = files.pop().unwrap();
    Built {
        storage,
        sealed: files,
        last,
        last_group_start: start,
        last_group_end: end,
        before_last_group: before,
        full,
    }
}

fn expect_corrupt(storage: &FaultyStorage, file: &Path, flipped_at: usize) {
    match common::open(storage, options()) {
        Err(WalError::Corrupt { path, offset, .. }) => {
            assert_eq!(path, file, "flip at {flipped_at}");
            assert!(
                offset <= flipped_at as u64,
                "reported {offset} for a flip at {flipped_at}"
            );
        }
        Err(other) => panic!("flip at {flipped_at} in {file:?}: unexpected error {other:?}"),
        Ok(wal) => panic!(
            "flip at {flipped_at} in {file:?} went unnoticed: {:?}",
            observe(&wal).last_index
        ),
    }
}

fn expect_state(storage: &FaultyStorage, expected: &Observed, flipped_at: usize) {
    let wal =
        common::open(storage, options()).unwrap_or_else(|e| panic!("flip at {flipped_at}: {e:?}"));
    assert_eq!(&observe(&wal), expected, "flip at {flipped_at}");
}

#[test]
fn flips_in_sealed_segments_are_corruption() {
    let built = build();
    for file in &built.sealed {
        let len = built.storage.durable_contents(file).unwrap().len();
        for offset in 0..len {
            let storage = copy_of(&built.storage);
            assert!(storage.flip_bit(file, offset as u64, (offset % 8) as u8));
            expect_corrupt(&storage, file, offset);
        }
    }
}

#[test]
fn flips_before_the_last_commit_marker_are_corruption_and_after_it_harmless() {
    let built = build();
    let len = built.storage.durable_contents(&built.last).unwrap().len();
    let marker_start = built.last_group_end - COMMIT_FRAME_LEN;
    for offset in 0..len {
        let storage = copy_of(&built.storage);
        assert!(storage.flip_bit(&built.last, offset as u64, (offset % 8) as u8));
        if offset < marker_start {
            expect_corrupt(&storage, &built.last, offset);
        } else if offset < built.last_group_end {
            // A damaged final commit marker is indistinguishable from one that
            // never reached the disk: the last group is cut off as a torn tail.
            expect_state(&storage, &built.before_last_group, offset);
        } else {
            expect_state(&storage, &built.full, offset);
        }
    }
    assert!(built.last_group_start < marker_start);
}

#[test]
fn flips_in_the_unsynced_tail_are_cut_off() {
    let built = build();
    let storage = copy_of(&built.storage);
    let wal = common::open(&storage, options()).unwrap();
    let active = common::segment_files(&storage).pop().unwrap();
    let synced_end = written_end(&storage.contents(&active).unwrap());
    // The next group is written, but the process dies before its sync returns.
    storage.stop_after(1);
    let next = built.full.last_index + 1;
    assert!(wal.append(unit(next..=next + 4, 1, None)).is_err());
    drop(wal);
    storage.crash(CrashMode::KeepUnsynced);
    let mut bytes = storage.durable_contents(&active).unwrap();
    let tail_end = written_end(&bytes);
    assert!(
        tail_end > synced_end + COMMIT_FRAME_LEN,
        "the unsynced group reached the file"
    );
    // Its commit marker did not reach the disk; everything before it did.
    bytes[tail_end - COMMIT_FRAME_LEN..tail_end].fill(0);
    for offset in synced_end..tail_end - COMMIT_FRAME_LEN {
        let torn = FaultyStorage::new();
        for path in storage.files() {
            torn.put_durable(&path, &storage.durable_contents(&path).unwrap());
        }
        torn.put_durable(&active, &bytes);
        assert!(torn.flip_bit(&active, offset as u64, (offset % 8) as u8));
        expect_state(&torn, &built.full, offset);
    }
}
