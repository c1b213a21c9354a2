//! Fuzzes raft-wal recovery: segment files made of arbitrary bytes, or a valid log
//! with arbitrary bytes flipped and files cut short, must never make `Wal::open`
//! (or reads and appends after it) panic, and no single allocation may exceed a
//! bound far above the files' sizes (recovery allocates at most a file's size).
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use raft_wal::storage::FaultyStorage;
use raft_wal::{AppendUnit, Entry, HardState, SegmentPreparation, Wal, WalOptions};

/// Aborts on any single allocation above this size: the segment files here are a
/// few KiB, so a larger allocation means a length was trusted before it was checked.
const MAX_ALLOCATION_BYTES: usize = 16 << 20;

struct BoundedAllocator;

// SAFETY: forwards to the system allocator unchanged; only adds a size check.
unsafe impl GlobalAlloc for BoundedAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // An allocator must not unwind: abort, and libFuzzer reports the stack.
        if layout.size() > MAX_ALLOCATION_BYTES {
            std::process::abort();
        }
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr was allocated by System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOCATION_BYTES {
            std::process::abort();
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: BoundedAllocator = BoundedAllocator;

const SEGMENT_SIZE_BYTES: u64 = 1024;

fn options() -> WalOptions {
    WalOptions {
        segment_size_bytes: SEGMENT_SIZE_BYTES,
        segment_preparation: SegmentPreparation::Inline,
    }
}

fn data_dir() -> &'static Path {
    Path::new("/data")
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        payload: vec![(index as u8) | 1; 24 + (index % 5) as usize * 8].into(),
    }
}

/// A valid log: several segments, a truncation, a snapshot and a compaction.
fn base_image() -> &'static Vec<(PathBuf, Vec<u8>)> {
    static IMAGE: OnceLock<Vec<(PathBuf, Vec<u8>)>> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let storage = FaultyStorage::new();
        let wal = Wal::open_with(Arc::new(storage.clone()), data_dir(), options()).expect("open");
        let append = |range: std::ops::RangeInclusive<u64>, term, commit| {
            let unit = AppendUnit {
                hard_state: Some(HardState { term, vote: 1, commit }),
                entries: range.map(|index| entry(index, term)).collect(),
            };
            wal.append(unit).expect("append");
        };
        for start in (1..=24).step_by(4) {
            append(start..=start + 3, 1, start / 2);
        }
        append(20..=22, 2, 15);
        append(23..=26, 2, 22);
        let mut writer = wal.snapshot_writer(12, 1, vec![1, 2, 3].into()).expect("snapshot");
        std::io::Write::write_all(&mut writer, &[7u8; 100]).expect("write");
        writer.finish().expect("finish");
        wal.compact(13).expect("compact");
        append(27..=29, 2, 26);
        drop(wal);
        storage
            .files()
            .into_iter()
            .map(|path| {
                let bytes = storage.durable_contents(&path).expect("file");
                (path, bytes)
            })
            .collect()
    })
}

/// A valid segment header for arbitrary content, so the frame scanner is reached.
fn stamp_header(bytes: &mut [u8], segment_id: u64) {
    bytes[0..8].copy_from_slice(b"RAFTWAL\0");
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    bytes[16..24].copy_from_slice(&segment_id.to_le_bytes());
    bytes[32..36].fill(0);
    let crc = crc32(&bytes[0..36]);
    bytes[36..40].copy_from_slice(&crc.to_le_bytes());
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn exercise(storage: &FaultyStorage) {
    let Ok(wal) = Wal::open_with(Arc::new(storage.clone()), data_dir(), options()) else {
        return;
    };
    let (first, last) = (wal.first_index(), wal.last_index());
    assert!(first >= 1 && last + 1 >= first);
    let _ = wal.entries(first, last + 1, u64::MAX);
    let _ = wal.term(first - 1);
    let _ = wal.term(last);
    let term = wal.hard_state().term.max(wal.term(last).unwrap_or(0));
    let _ = wal.append(AppendUnit {
        hard_state: None,
        entries: vec![entry(last + 1, term)],
    });
    if let Ok(Some(mut reader)) = wal.open_snapshot() {
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let storage = FaultyStorage::new();
    if mode % 2 == 0 {
        // A valid log, damaged: (file, offset high, offset low, xor); xor 0 cuts the
        // file at the offset.
        let mut files = base_image().clone();
        for op in rest.chunks_exact(4) {
            let count = files.len();
            let file = &mut files[usize::from(op[0]) % count].1;
            if file.is_empty() {
                continue;
            }
            let offset = (usize::from(op[1]) << 8 | usize::from(op[2])) % file.len();
            if op[3] == 0 {
                file.truncate(offset);
            } else {
                file[offset] ^= op[3];
            }
        }
        for (path, bytes) in &files {
            storage.put_durable(path, bytes);
        }
    } else {
        // Arbitrary bytes as up to three consecutive segment files.
        let Some((&shape, body)) = rest.split_first() else {
            return;
        };
        let count = 1 + usize::from(shape % 3);
        let first_id = 1 + u64::from(shape >> 4);
        let chunk = body.len().div_ceil(count).max(1);
        for (number, part) in body.chunks(chunk).enumerate() {
            let id = first_id + number as u64;
            let mut bytes = part.to_vec();
            if bytes.len() >= 40 && shape & 0b1000 != 0 {
                stamp_header(&mut bytes, id);
            }
            storage.put_durable(&data_dir().join("wal").join(format!("{id:020}.seg")), &bytes);
        }
    }
    exercise(&storage);
});
