//! Snapshot files: streamed writes and reads, checksums, the newest valid snapshot
//! found on open, temporary files cleaned up, and compaction that depends on them.

use std::io::{Read, Write};
use std::path::PathBuf;

use bytes::Bytes;
use raft_wal::storage::FaultyStorage;
use raft_wal::{CorruptReason, Rejection, Wal, WalError, WalOptions};

use crate::common::{self, unit};

fn snapshot_files(storage: &FaultyStorage) -> Vec<PathBuf> {
    let snap_dir = common::data_dir().join("snap");
    storage
        .files()
        .into_iter()
        .filter(|path| path.parent() == Some(snap_dir.as_path()))
        .collect()
}

#[test]
fn large_snapshots_stream_through_real_files() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    wal.append(unit(1..=10, 2, None)).unwrap();
    let chunk: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    let mut writer = wal
        .snapshot_writer(10, 2, Bytes::from_static(b"voters=1,2,3"))
        .unwrap();
    for _ in 0..5 {
        writer.write_all(&chunk).unwrap();
    }
    writer.write_all(b"tail").unwrap();
    let meta = writer.finish().unwrap();
    assert_eq!(
        (meta.index, meta.term, meta.data_len_bytes),
        (10, 2, 5 * (1 << 20) + 4)
    );
    wal.compact(11).unwrap();
    drop(wal);

    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.latest_snapshot(), Some(meta.clone()));
    assert_eq!((wal.first_index(), wal.term(10).unwrap()), (11, 2));
    let mut reader = wal.open_snapshot().unwrap().unwrap();
    assert_eq!(reader.meta(), &meta);
    assert_eq!(&reader.meta().metadata[..], b"voters=1,2,3");
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    loop {
        let read = reader.read(&mut buffer).unwrap();
        if read == 0 {
            break;
        }
        for (offset, byte) in buffer[..read].iter().enumerate() {
            let at = total + offset;
            let expected = if at < 5 << 20 {
                chunk[at % chunk.len()]
            } else {
                b"tail"[at - (5 << 20)]
            };
            assert_eq!(*byte, expected, "byte {at}");
        }
        total += read;
    }
    assert_eq!(total as u64, meta.data_len_bytes);
}

#[test]
fn a_damaged_snapshot_is_detected_by_the_reader_and_on_open() {
    let storage = FaultyStorage::new();
    let wal = common::open(&storage, common::small_options()).unwrap();
    for start in (1..=20).step_by(5) {
        wal.append(unit(start..=start + 4, 1, None)).unwrap();
    }
    let mut writer = wal.snapshot_writer(5, 1, Bytes::from_static(b"m")).unwrap();
    writer.write_all(&[7u8; 5000]).unwrap();
    writer.finish().unwrap();
    let mut writer = wal
        .snapshot_writer(12, 1, Bytes::from_static(b"m"))
        .unwrap();
    writer.write_all(&[9u8; 5000]).unwrap();
    writer.finish().unwrap();
    let files = snapshot_files(&storage);
    assert_eq!(files.len(), 1, "older snapshots are removed: {files:?}");
    assert!(matches!(
        wal.snapshot_writer(12, 1, Bytes::new()),
        Err(WalError::Rejected {
            reason: Rejection::StaleSnapshot { .. }
        })
    ));
    // A flip in the data section: the streaming reader reports it at the end.
    let mut reader = wal.open_snapshot().unwrap().unwrap();
    assert!(storage.flip_bit(&files[0], 2000, 3));
    let mut data = Vec::new();
    let error = reader.read_to_end(&mut data).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    drop(wal);
    // On open the damaged snapshot is not used; the log was not compacted, so
    // nothing depended on it.
    let wal = common::open(&storage, common::small_options()).unwrap();
    assert_eq!(wal.latest_snapshot(), None);
    assert_eq!(wal.last_index(), 20);
}

#[test]
fn a_log_compacted_past_every_valid_snapshot_is_corrupt() {
    let storage = FaultyStorage::new();
    let wal = common::open(&storage, common::small_options()).unwrap();
    for start in (1..=30).step_by(5) {
        wal.append(unit(start..=start + 4, 1, None)).unwrap();
    }
    let mut writer = wal.snapshot_writer(20, 1, Bytes::new()).unwrap();
    writer.write_all(b"state").unwrap();
    writer.finish().unwrap();
    wal.compact(21).unwrap();
    drop(wal);
    let file = snapshot_files(&storage).pop().unwrap();
    assert!(storage.flip_bit(&file, 50, 0));
    assert!(matches!(
        common::open(&storage, common::small_options()),
        Err(WalError::Corrupt {
            reason: CorruptReason::MissingSnapshot,
            ..
        })
    ));
}

#[test]
fn unfinished_snapshots_leave_nothing_behind() {
    let storage = FaultyStorage::new();
    let wal = common::open(&storage, common::small_options()).unwrap();
    wal.append(unit(1..=5, 1, None)).unwrap();
    let mut writer = wal.snapshot_writer(5, 1, Bytes::new()).unwrap();
    writer.write_all(&[1u8; 300_000]).unwrap();
    drop(writer);
    assert_eq!(snapshot_files(&storage).len(), 1, "only the temporary file");
    drop(wal);
    let wal = common::open(&storage, common::small_options()).unwrap();
    assert!(snapshot_files(&storage).is_empty());
    assert_eq!(wal.latest_snapshot(), None);
    assert!(wal.open_snapshot().unwrap().is_none());
}
