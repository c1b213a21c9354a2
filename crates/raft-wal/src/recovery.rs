//! Opening a log: scan every segment with ordinary reads, decide which damage is a
//! torn tail (cut off) and which is corruption (reported, never skipped), replay the
//! records into the in-memory index, and clean up what a crash left half done.
//! The rules are spelled out in `docs/wal-format.md`; keep the two in step.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::error::{CorruptReason, Result, WalError};
use crate::format::{
    MAX_INDEX, RecordKind, SEGMENT_HEADER_LEN, SegmentHeader, UNASSIGNED_FIRST_INDEX,
};
use crate::hard_state_file::{self, HardStateFile};
use crate::index::{Change, Location, LogIndex};
use crate::scan::{SegmentScan, scan_segment};
use crate::shared::{
    ReadView, SegmentFile, SegmentSlot, prepare_segment, segment_path, write_zeros,
};
use crate::snapshot::SnapshotMeta;
use crate::storage::{OpenMode, Storage};

/// The segment the writer appends to next.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub(crate) file: Arc<SegmentFile>,
    /// Where the next commit group starts.
    pub(crate) write_offset: u64,
    /// Whether the header names the first index yet; if not, the next group's write
    /// rewrites the header too.
    pub(crate) activated: bool,
}

/// Everything the writer and readers start from.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) view: ReadView,
    pub(crate) active: ActiveSegment,
    pub(crate) prepared: Option<Arc<SegmentFile>>,
    pub(crate) next_segment_id: u64,
}

struct Scanned {
    id: u64,
    file: Arc<SegmentFile>,
    scan: SegmentScan,
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Largest segment file recovery will read into memory (a file claiming more is
/// reported as corrupt rather than allocated).
const MAX_SEGMENT_FILE_BYTES: u64 = 1 << 32;

/// Recovers the log in `wal_dir`, given the newest valid snapshot.
pub(crate) fn recover(
    storage: &dyn Storage,
    wal_dir: &Path,
    segment_size_bytes: u64,
    snapshot: Option<&SnapshotMeta>,
    hard_state_file: &mut HardStateFile,
) -> Result<Recovered> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |error| WalError::io(path, error)
    };
    let mut ids = Vec::new();
    let mut removed_any = false;
    for name in storage.list(wal_dir).map_err(io_error(wal_dir))? {
        if name.ends_with(".seg.tmp") {
            let path = wal_dir.join(&name);
            storage.remove_file(&path).map_err(io_error(&path))?;
            removed_any = true;
        } else if let Some(id) = parse_segment_name(&name) {
            ids.push(id);
        }
    }
    if removed_any {
        storage.sync_dir(wal_dir).map_err(io_error(wal_dir))?;
    }
    ids.sort_unstable();

    if ids.is_empty() {
        if snapshot.is_some_and(|meta| meta.index > 0) {
            return Err(WalError::corrupt(wal_dir, 0, CorruptReason::MissingSegment));
        }
        let file = prepare_segment(storage, wal_dir, 1, segment_size_bytes)?;
        let mut log = LogIndex::new(1, 0);
        settle_hard_state(hard_state_file, &mut log, false)?;
        return Ok(fresh(file, log));
    }

    let mut scanned = Vec::with_capacity(ids.len());
    for &id in &ids {
        let path = segment_path(wal_dir, id);
        let file = storage
            .open(&path, OpenMode::ReadWrite)
            .map_err(io_error(&path))?;
        let len = file.len_bytes().map_err(io_error(&path))?;
        if len > MAX_SEGMENT_FILE_BYTES {
            return Err(WalError::corrupt(&path, 0, CorruptReason::BadSize));
        }
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(&mut bytes, 0).map_err(io_error(&path))?;
        let scan =
            scan_segment(&bytes).map_err(|bad| WalError::corrupt(&path, bad.offset, bad.reason))?;
        drop(bytes);
        if scan.header.segment_id != id || scan.header.first_index > MAX_INDEX {
            return Err(WalError::corrupt(&path, 16, CorruptReason::SegmentMismatch));
        }
        let salt = scan.header.salt;
        scanned.push(Scanned {
            id,
            file: Arc::new(SegmentFile::new(id, path, file, salt)),
            scan,
        });
    }

    // The run: the longest stretch of consecutive ids ending at the newest segment.
    // Older segments before a gap can only be compaction leftovers.
    let mut run_start = scanned.len() - 1;
    while run_start > 0 && scanned[run_start - 1].id + 1 == scanned[run_start].id {
        run_start -= 1;
    }
    // Trailing prepared, never-written segments are not part of the log.
    let mut used_end = scanned.len();
    while used_end > run_start && scanned[used_end - 1].scan.is_empty_prepared() {
        used_end -= 1;
    }
    let corrupt_at =
        |entry: &Scanned, offset: u64, reason| WalError::corrupt(&entry.file.path, offset, reason);

    // Every used segment but the last must be complete; the last may end in a tear.
    let mut torn_last = false;
    let mut possibly_acknowledged_cut = false;
    for (position, entry) in scanned[..used_end].iter().enumerate() {
        let last = position + 1 == used_end;
        if entry.scan.is_empty_prepared() {
            return Err(corrupt_at(entry, 24, CorruptReason::SegmentMismatch));
        }
        if let Some(tail) = entry.scan.tail {
            if !last || tail.corrupt {
                return Err(corrupt_at(entry, tail.offset, tail.reason));
            }
            torn_last = true;
            possibly_acknowledged_cut = tail.possibly_acknowledged;
        }
    }

    // Replay the run.
    let used = &scanned[run_start..used_end];
    let mut index: Option<LogIndex> = None;
    let mut base_uncertain = false;
    let mut compacted = false;
    // The segment holding the newest compaction record (and, in the same group, the
    // newest hard state as of that compaction): never a leftover.
    let mut compact_segment = 0;
    let mut max_entry: BTreeMap<u64, u64> = BTreeMap::new();
    for entry in used {
        let header = entry.scan.header;
        if header.first_index == UNASSIGNED_FIRST_INDEX {
            // A torn first write into a prepared segment: nothing in it is durable.
            continue;
        }
        let log = match index.as_mut() {
            None => {
                base_uncertain = entry.id > 1 || header.first_index > 1;
                index.insert(LogIndex::new(header.first_index, 0))
            }
            Some(log) => {
                if header.first_index != log.last_index() + 1 {
                    return Err(corrupt_at(entry, 24, CorruptReason::SegmentMismatch));
                }
                log
            }
        };
        for record in &entry.scan.records {
            let change = match record.kind {
                RecordKind::Entry => Change::Entry {
                    index: record.index,
                    location: Location {
                        segment_id: entry.id,
                        offset: record.offset,
                        term: record.term,
                        payload_len: record.payload_len,
                    },
                },
                RecordKind::Truncate => {
                    if base_uncertain && record.index < log.first_index() {
                        // Segments before this one were compacted away; the log
                        // restarts here and a later compaction record covers it.
                        *log = LogIndex::new(record.index, 0);
                        continue;
                    }
                    Change::Truncate {
                        index: record.index,
                    }
                }
                RecordKind::Compact => {
                    if base_uncertain && record.index < log.first_index() {
                        continue;
                    }
                    base_uncertain = false;
                    compacted = true;
                    compact_segment = entry.id;
                    Change::Compact {
                        index: record.index,
                        term: record.term,
                    }
                }
                RecordKind::HardState => {
                    Change::HardState(record.hard_state.expect("scanned hard state"))
                }
                RecordKind::Commit => unreachable!("commit markers are not listed"),
            };
            log.apply(change)
                .map_err(|_| corrupt_at(entry, record.offset, CorruptReason::IndexOutOfSequence))?;
        }
        max_entry.insert(entry.id, entry.scan.max_entry_index());
    }
    let run_first = &scanned[run_start];
    let mut log = match index {
        Some(log) => {
            let started_late = run_first.id > 1 || run_first.scan.header.first_index > 1;
            if started_late && (!compacted || log.first_index() < run_first.scan.header.first_index)
            {
                return Err(WalError::corrupt(wal_dir, 0, CorruptReason::MissingSegment));
            }
            log
        }
        None => {
            // Only prepared segments: nothing was ever committed. (A snapshot may
            // still exist: it is written before the log records its install.)
            if run_start > 0 || run_first.id > 1 {
                return Err(WalError::corrupt(wal_dir, 0, CorruptReason::MissingSegment));
            }
            LogIndex::new(1, 0)
        }
    };
    let first_index = log.first_index();
    if first_index > 1 && snapshot.is_none_or(|meta| meta.index + 1 < first_index) {
        return Err(WalError::corrupt(
            wal_dir,
            0,
            CorruptReason::MissingSnapshot,
        ));
    }

    // The slot file is settled before anything is deleted or cut, so that what it
    // must remember (a vote, or that acknowledged records may be lost) is durable
    // before the log forgets the evidence.
    settle_hard_state(hard_state_file, &mut log, possibly_acknowledged_cut)?;

    // Segments before a gap must be wholly compacted, or a segment is missing.
    for entry in &scanned[..run_start] {
        if entry.scan.max_entry_index() >= first_index {
            let missing = segment_path(wal_dir, scanned[run_start].id - 1);
            return Err(WalError::corrupt(missing, 0, CorruptReason::MissingSegment));
        }
    }

    // The active segment: the last used one, or the first prepared one.
    let active_position = if used_end > run_start {
        used_end - 1
    } else {
        run_start
    };
    let mut deletions: Vec<&Scanned> = scanned[..run_start].iter().collect();
    for entry in &scanned[run_start..active_position] {
        let wholly_compacted = max_entry.get(&entry.id).copied().unwrap_or(0) < first_index;
        if wholly_compacted
            && entry.id < compact_segment
            && deletions.len() == entry_position(&scanned, entry.id)
        {
            deletions.push(entry);
        }
    }
    // Keep one prepared segment after the active one; remove any others.
    let prepared = scanned
        .get(active_position + 1)
        .map(|entry| Arc::clone(&entry.file));
    for entry in scanned.iter().skip(active_position + 2) {
        deletions.push(entry);
    }
    for entry in &deletions {
        storage
            .remove_file(&entry.file.path)
            .map_err(io_error(&entry.file.path))?;
    }
    if !deletions.is_empty() {
        storage.sync_dir(wal_dir).map_err(io_error(wal_dir))?;
    }

    // Cut a torn tail: zero what follows the durable end so that later writes never
    // sit next to stale bytes, and sync before anything new is written.
    let active_entry = &scanned[active_position];
    let scan = &active_entry.scan;
    let file = &active_entry.file;
    let mut activated = scan.header.first_index != UNASSIGNED_FIRST_INDEX;
    let mut write_offset = scan.durable_end;
    if torn_last {
        let tail = scan.tail.expect("torn tail");
        if scan.records.is_empty() {
            activated = false;
            write_offset = SEGMENT_HEADER_LEN as u64;
            let header = SegmentHeader {
                salt: scan.header.salt,
                segment_id: active_entry.id,
                first_index: UNASSIGNED_FIRST_INDEX,
            };
            file.file
                .write_all_at(&header.encode(), 0)
                .map_err(io_error(&file.path))?;
        }
        write_zeros(file.file.as_ref(), write_offset, tail.nonzero_end)
            .map_err(io_error(&file.path))?;
        file.file.sync_data().map_err(io_error(&file.path))?;
    }

    let deleted: Vec<u64> = deletions.iter().map(|entry| entry.id).collect();
    let mut segments = BTreeMap::new();
    for entry in &scanned[run_start..=active_position] {
        if deleted.contains(&entry.id) {
            continue;
        }
        segments.insert(
            entry.id,
            SegmentSlot {
                file: Arc::clone(&entry.file),
                sealed: entry.id != active_entry.id,
                max_entry_index: max_entry.get(&entry.id).copied().unwrap_or(0),
            },
        );
    }
    Ok(Recovered {
        view: ReadView {
            index: log,
            segments,
        },
        active: ActiveSegment {
            file: Arc::clone(file),
            write_offset,
            activated,
        },
        prepared,
        next_segment_id: active_entry.id + 1,
    })
}

/// Combines the log's hard state with the slot file's (see
/// [`hard_state_file::combine`]) into `log`, and brings the slot file up to date if
/// the log knew a newer term or vote (a crash between the log's sync and the slot's)
/// or if `possibly_acknowledged_cut`: the tail being cut may have held acknowledged
/// records, so the log may lack entries after its (replayed) last index.
fn settle_hard_state(
    hard_state_file: &mut HardStateFile,
    log: &mut LogIndex,
    possibly_acknowledged_cut: bool,
) -> Result<()> {
    let slot = hard_state_file.current();
    let combined = hard_state_file::combine(log.hard_state(), slot);
    log.apply(Change::HardState(combined))
        .expect("a hard state always applies");
    let mut catching_up_after = slot.catching_up_after;
    if possibly_acknowledged_cut {
        let last_index = log.last_index();
        catching_up_after =
            Some(catching_up_after.map_or(last_index, |after| after.min(last_index)));
    }
    if hard_state_file.differs(combined.term, combined.vote, catching_up_after) {
        hard_state_file.write(combined.term, combined.vote, catching_up_after)?;
    }
    Ok(())
}

/// Position of segment `id` in the scanned list (used to delete only a prefix).
fn entry_position(scanned: &[Scanned], id: u64) -> usize {
    scanned
        .iter()
        .position(|entry| entry.id == id)
        .expect("scanned segment")
}

fn fresh(file: Arc<SegmentFile>, index: LogIndex) -> Recovered {
    let mut segments = BTreeMap::new();
    segments.insert(
        file.id,
        SegmentSlot {
            file: Arc::clone(&file),
            sealed: false,
            max_entry_index: 0,
        },
    );
    Recovered {
        view: ReadView { index, segments },
        next_segment_id: file.id + 1,
        active: ActiveSegment {
            file,
            write_offset: SEGMENT_HEADER_LEN as u64,
            activated: false,
        },
        prepared: None,
    }
}
