//! Term and vote survive the loss of the log group that recorded them: they are
//! also kept in the two-slot hard-state file, synced before the group's completion
//! fires, and recovery never lets the log's older view win. A member that forgot an
//! acknowledged vote could vote twice in one term (§5.2).

use std::path::{Path, PathBuf};

use raft_wal::storage::FaultyStorage;
use raft_wal::{HardState, SegmentPreparation, WalOptions};

use crate::common::{self, unit};

fn options() -> WalOptions {
    WalOptions {
        segment_size_bytes: 4096,
        segment_preparation: SegmentPreparation::Inline,
    }
}

/// One past the last non-zero byte of `path` (the end of its last commit group).
pub(crate) fn written_end(storage: &FaultyStorage, path: &Path) -> usize {
    let bytes = storage.contents(path).expect("file exists");
    bytes.iter().rposition(|&b| b != 0).map_or(0, |at| at + 1)
}

pub(crate) fn active_segment(storage: &FaultyStorage) -> PathBuf {
    common::segment_files(storage).pop().expect("a segment")
}

/// A durable copy of `storage` with `path` replaced by `bytes` (or left out).
pub(crate) fn copy_with(
    storage: &FaultyStorage,
    path: &Path,
    bytes: Option<&[u8]>,
) -> FaultyStorage {
    let copy = FaultyStorage::new();
    for file in storage.files() {
        if file != path {
            copy.put_durable(&file, &storage.durable_contents(&file).unwrap());
        }
    }
    if let Some(bytes) = bytes {
        copy.put_durable(path, bytes);
    }
    copy
}

/// Appends `unit` as the last group and returns its byte range in the active segment.
fn append_last_group(
    storage: &FaultyStorage,
    wal: &raft_wal::Wal,
    unit: raft_wal::AppendUnit,
) -> (PathBuf, usize, usize) {
    let active = active_segment(storage);
    let start = written_end(storage, &active);
    wal.append(unit).unwrap();
    assert_eq!(
        active_segment(storage),
        active,
        "the group stayed in the segment"
    );
    (active.clone(), start, written_end(storage, &active))
}

#[test]
fn an_acknowledged_vote_survives_the_loss_of_its_log_group() {
    let storage = FaultyStorage::new();
    let wal = common::open(&storage, options()).unwrap();
    let hs = |term, vote, commit| Some(HardState { term, vote, commit });
    wal.append(unit(1..=3, 1, hs(1, 1, 2))).unwrap();
    // Term 2, vote for member 7: acknowledged, so the vote may have been sent.
    let voted = HardState {
        term: 2,
        vote: 7,
        commit: 2,
    };
    let (active, start, end) = append_last_group(
        &storage,
        &wal,
        raft_wal::AppendUnit {
            hard_state: Some(voted),
            entries: vec![],
        },
    );
    drop(wal);
    // The disk loses that group: its bytes read back as zeros.
    let mut bytes = storage.durable_contents(&active).unwrap();
    bytes[start..end].fill(0);
    let damaged = copy_with(&storage, &active, Some(&bytes));
    let wal = common::open(&damaged, options()).unwrap();
    let recovered = wal.hard_state();
    assert_eq!((recovered.term, recovered.vote), (2, 7), "{recovered:?}");
    assert!(recovered.commit <= wal.last_index());
    // The vote holds for the rest of the term: a different vote is refused.
    assert!(
        wal.append(raft_wal::AppendUnit {
            hard_state: hs(2, 8, 2),
            entries: vec![],
        })
        .is_err()
    );
    drop(wal);
    // And it survives a further reopen.
    let wal = common::open(&damaged, options()).unwrap();
    assert_eq!((wal.hard_state().term, wal.hard_state().vote), (2, 7));
}

#[test]
fn a_damaged_hard_state_slot_falls_back_to_the_other_one() {
    let storage = FaultyStorage::new();
    let wal = common::open(&storage, options()).unwrap();
    let hs = |term, vote| {
        Some(HardState {
            term,
            vote,
            commit: 0,
        })
    };
    wal.append(unit(1..=3, 1, hs(2, 5))).unwrap();
    let (active, start, end) = append_last_group(&storage, &wal, unit(4..=4, 3, hs(3, 6)));
    drop(wal);
    let file = common::data_dir().join("hardstate");
    // The newer slot is damaged (a torn slot write) and the log's group is lost:
    // the older slot still holds term 2's vote.
    let mut slots = storage.durable_contents(&file).expect("hard-state file");
    let newer = (0..2)
        .map(|slot| slot * 4096)
        .max_by_key(|&at| u64::from_le_bytes(slots[at + 16..at + 24].try_into().unwrap()))
        .unwrap();
    slots[newer + 20] ^= 0x10;
    let mut log = storage.durable_contents(&active).unwrap();
    log[start..end].fill(0);
    let damaged = copy_with(&storage, &active, Some(&log));
    damaged.put_durable(&file, &slots);
    let wal = common::open(&damaged, options()).unwrap();
    assert_eq!((wal.hard_state().term, wal.hard_state().vote), (2, 5));
    assert_eq!(wal.last_index(), 3);
}

#[test]
fn a_data_dir_without_a_hard_state_file_opens_with_the_logs_hard_state() {
    let storage = FaultyStorage::new();
    let wal = common::open(&storage, options()).unwrap();
    let state = HardState {
        term: 4,
        vote: 2,
        commit: 3,
    };
    wal.append(unit(1..=3, 4, Some(state))).unwrap();
    drop(wal);
    // As written by a version without the hard-state file.
    let old = copy_with(&storage, &common::data_dir().join("hardstate"), None);
    let wal = common::open(&old, options()).unwrap();
    assert_eq!(wal.hard_state(), state);
    assert_eq!(wal.last_index(), 3);
    drop(wal);
    assert!(old.files().contains(&common::data_dir().join("hardstate")));
}
