//! Snapshot files in `<data_dir>/snap/`: streamed to a temporary name with a running
//! checksum, synced, renamed into place, directory synced. A snapshot file is
//! complete and checksummed or it does not have its final name. A snapshot received
//! from a leader is first *staged* (complete and durable under a staging name that
//! open deletes) and only promoted to its final name by the install on the writer
//! thread, together with the log cut.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;

use crate::error::{CorruptReason, Rejection, Result, WalError};
use crate::format::{read_u32, read_u64};
use crate::shared::Shared;
use crate::storage::{OpenMode, Storage, StorageFile};

const SNAPSHOT_MAGIC: [u8; 8] = *b"RAFTSNAP";
const SNAPSHOT_VERSION: u32 = 1;
const HEADER_LEN: u64 = 48;
const TRAILER_LEN: u64 = 16;
const TRAILER_MAGIC: [u8; 4] = *b"SNPE";
const BUFFER_BYTES: usize = 256 * 1024;

/// What a durable snapshot covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// Index of the last entry the snapshot includes.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    /// Opaque metadata (the membership configuration), kept in memory.
    pub metadata: Bytes,
    /// Length of the data section in bytes.
    pub data_len_bytes: u64,
}

/// Suffix of staged snapshot files (`<index>-<term>.snap.<n>.staged`).
const STAGED_SUFFIX: &str = ".staged";
/// Makes every staged file name unique within the process.
static STAGED_COUNTER: AtomicU64 = AtomicU64::new(0);

pub(crate) fn snapshot_name(index: u64, term: u64) -> String {
    format!("{index:020}-{term:020}.snap")
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".snap")?;
    let (index, term) = stem.split_once('-')?;
    if index.len() != 20 || term.len() != 20 {
        return None;
    }
    Some((index.parse().ok()?, term.parse().ok()?))
}

fn encode_header(index: u64, term: u64, metadata_len: u64) -> [u8; HEADER_LEN as usize] {
    let mut out = [0u8; HEADER_LEN as usize];
    out[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    out[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out[16..24].copy_from_slice(&index.to_le_bytes());
    out[24..32].copy_from_slice(&term.to_le_bytes());
    out[32..40].copy_from_slice(&metadata_len.to_le_bytes());
    let crc = crc32fast::hash(&out[0..40]);
    out[40..44].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Streams a snapshot to disk. Write the data with [`Write`], then call
/// [`SnapshotWriter::finish`]; dropping it unfinished leaves only a temporary file,
/// which the next open removes.
pub struct SnapshotWriter {
    shared: Arc<Shared>,
    file: Arc<dyn StorageFile>,
    temporary: PathBuf,
    index: u64,
    term: u64,
    metadata: Bytes,
    hasher: crc32fast::Hasher,
    buffer: Vec<u8>,
    /// File offset where `buffer` starts.
    offset: u64,
    data_len_bytes: u64,
}

impl std::fmt::Debug for SnapshotWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotWriter")
            .field("index", &self.index)
            .field("term", &self.term)
            .field("data_len_bytes", &self.data_len_bytes)
            .finish()
    }
}

impl SnapshotWriter {
    pub(crate) fn create(
        shared: Arc<Shared>,
        index: u64,
        term: u64,
        metadata: Bytes,
    ) -> Result<SnapshotWriter> {
        if let Some(current) = shared.snapshot().as_ref()
            && current.index >= index
        {
            return Err(WalError::Rejected {
                reason: Rejection::StaleSnapshot {
                    index,
                    current_index: current.index,
                },
            });
        }
        let temporary = shared
            .snap_dir
            .join(format!("{}.tmp", snapshot_name(index, term)));
        let storage = Arc::clone(&shared.storage);
        match storage.remove_file(&temporary) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err(WalError::io(&temporary, error));
            }
            _ => {}
        }
        let file = storage
            .open(&temporary, OpenMode::CreateNew)
            .map_err(|error| WalError::io(&temporary, error))?;
        let mut hasher = crc32fast::Hasher::new();
        let mut buffer = Vec::with_capacity(BUFFER_BYTES);
        buffer.extend_from_slice(&encode_header(index, term, metadata.len() as u64));
        buffer.extend_from_slice(&metadata);
        hasher.update(&buffer);
        Ok(SnapshotWriter {
            shared,
            file,
            temporary,
            index,
            term,
            metadata,
            hasher,
            buffer,
            offset: 0,
            data_len_bytes: 0,
        })
    }

    fn flush_buffer(&mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            self.file.write_all_at(&self.buffer, self.offset)?;
            self.offset += self.buffer.len() as u64;
            self.buffer.clear();
        }
        Ok(())
    }

    /// Writes the trailer and syncs the file; returns what it covers.
    fn seal(&mut self) -> Result<SnapshotMeta> {
        let mut trailer = [0u8; TRAILER_LEN as usize];
        trailer[0..8].copy_from_slice(&self.data_len_bytes.to_le_bytes());
        self.hasher.update(&trailer[0..8]);
        let crc = self.hasher.clone().finalize();
        trailer[8..12].copy_from_slice(&crc.to_le_bytes());
        trailer[12..16].copy_from_slice(&TRAILER_MAGIC);
        self.buffer.extend_from_slice(&trailer);
        let temporary = self.temporary.clone();
        let io_error = |error| WalError::io(&temporary, error);
        self.flush_buffer().map_err(io_error)?;
        self.file.sync_data().map_err(io_error)?;
        Ok(SnapshotMeta {
            index: self.index,
            term: self.term,
            metadata: self.metadata.clone(),
            data_len_bytes: self.data_len_bytes,
        })
    }

    /// Writes the trailer, syncs the file, renames it into place and syncs the
    /// directory. When this returns `Ok` the snapshot survives a crash and is the
    /// latest one; older snapshot files are then removed. For a snapshot this member
    /// took of its own applied state; a snapshot received from a leader goes through
    /// [`SnapshotWriter::finish_staged`] instead.
    pub fn finish(mut self) -> Result<SnapshotMeta> {
        let meta = self.seal()?;
        let shared = Arc::clone(&self.shared);
        let path = shared.snap_dir.join(snapshot_name(self.index, self.term));
        let current = shared.snapshot();
        if let Some(existing) = current.as_ref()
            && existing.index >= self.index
        {
            return Err(WalError::Rejected {
                reason: Rejection::StaleSnapshot {
                    index: self.index,
                    current_index: existing.index,
                },
            });
        }
        promote_file(&shared, &self.temporary, &path, &meta, current)?;
        Ok(meta)
    }

    /// Writes the trailer, syncs the file and renames it to a staging name (then
    /// syncs the directory): the snapshot is complete and durable but is *not* the
    /// latest one, and nothing is deleted. Hand it to [`crate::Wal::install_staged`]
    /// (or [`crate::Wal::submit_install_staged`]) once the Raft layer accepted it;
    /// drop or [`StagedSnapshot::discard`] it if refused. A crash before the install
    /// leaves a staged file that the next open deletes.
    pub fn finish_staged(mut self) -> Result<StagedSnapshot> {
        let meta = self.seal()?;
        let shared = Arc::clone(&self.shared);
        let number = STAGED_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = shared.snap_dir.join(format!(
            "{}.{number}{STAGED_SUFFIX}",
            snapshot_name(self.index, self.term)
        ));
        let storage = shared.storage.as_ref();
        storage
            .rename(&self.temporary, &path)
            .map_err(|error| WalError::io(&self.temporary, error))?;
        storage
            .sync_dir(&shared.snap_dir)
            .map_err(|error| WalError::io(&shared.snap_dir, error))?;
        Ok(StagedSnapshot {
            shared,
            path,
            meta,
            promoted: AtomicBool::new(false),
        })
    }
}

/// A received snapshot that is durable but not yet the latest: see
/// [`SnapshotWriter::finish_staged`]. Dropping it un-installed deletes its file.
pub struct StagedSnapshot {
    shared: Arc<Shared>,
    path: PathBuf,
    meta: SnapshotMeta,
    /// Set by the install once the file has its final name.
    promoted: AtomicBool,
}

impl std::fmt::Debug for StagedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedSnapshot")
            .field("meta", &self.meta)
            .finish()
    }
}

impl StagedSnapshot {
    /// What the snapshot covers.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Deletes the staged file (the Raft layer refused the snapshot). Dropping the
    /// value does the same but cannot report a failure; either way the next open
    /// deletes a staged file that is still there.
    pub fn discard(self) -> Result<()> {
        self.promoted.store(true, Ordering::Relaxed);
        self.shared
            .storage
            .remove_file(&self.path)
            .map_err(|error| WalError::io(&self.path, error))
    }

    /// Makes the staged file the latest snapshot: renames it to its final name,
    /// syncs the directory, then removes older snapshot files. Runs on the writer
    /// thread, before the log records of the install are written.
    pub(crate) fn promote(&self) -> Result<()> {
        let path = self
            .shared
            .snap_dir
            .join(snapshot_name(self.meta.index, self.meta.term));
        let current = self.shared.snapshot();
        promote_file(&self.shared, &self.path, &path, &self.meta, current)?;
        self.promoted.store(true, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for StagedSnapshot {
    fn drop(&mut self) {
        if !self.promoted.load(Ordering::Relaxed) {
            // Best effort: open deletes whatever is left.
            let _ = self.shared.storage.remove_file(&self.path);
        }
    }
}

/// Renames a complete, synced snapshot file from `from` to its final name `to`,
/// syncs the directory, records it as the latest (`current` is the held lock on
/// it), and removes older snapshot files. A failure of the removals leaves files
/// that the next open removes, so it is not reported.
fn promote_file(
    shared: &Shared,
    from: &Path,
    to: &Path,
    meta: &SnapshotMeta,
    mut current: std::sync::MutexGuard<'_, Option<SnapshotMeta>>,
) -> Result<()> {
    let storage = shared.storage.as_ref();
    storage
        .rename(from, to)
        .map_err(|error| WalError::io(from, error))?;
    storage
        .sync_dir(&shared.snap_dir)
        .map_err(|error| WalError::io(&shared.snap_dir, error))?;
    *current = Some(meta.clone());
    drop(current);
    if let Ok(names) = storage.list(&shared.snap_dir) {
        for old in names {
            if let Some((index, _)) = parse_name(&old)
                && index < meta.index
            {
                let _ = storage.remove_file(&shared.snap_dir.join(old));
            }
        }
    }
    Ok(())
}

impl Write for SnapshotWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.hasher.update(data);
        self.data_len_bytes += data.len() as u64;
        if self.buffer.len() + data.len() > BUFFER_BYTES {
            self.flush_buffer()?;
        }
        if data.len() >= BUFFER_BYTES {
            self.file.write_all_at(data, self.offset)?;
            self.offset += data.len() as u64;
        } else {
            self.buffer.extend_from_slice(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_buffer()
    }
}

/// Streams a snapshot's data section; the checksum of the whole file is verified
/// when the end is reached (a mismatch is an `InvalidData` error, not a short read).
pub struct SnapshotReader {
    file: Arc<dyn StorageFile>,
    meta: SnapshotMeta,
    position: u64,
    data_end: u64,
    hasher: crc32fast::Hasher,
    expected_crc: u32,
    verified: bool,
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("meta", &self.meta)
            .finish()
    }
}

impl SnapshotReader {
    /// What the snapshot covers.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }
}

impl Read for SnapshotReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.data_end - self.position;
        if remaining == 0 {
            if !self.verified {
                let mut trailer = [0u8; 8];
                trailer.copy_from_slice(&self.meta.data_len_bytes.to_le_bytes());
                self.hasher.update(&trailer);
                if self.hasher.clone().finalize() != self.expected_crc {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "snapshot checksum mismatch",
                    ));
                }
                self.verified = true;
            }
            return Ok(0);
        }
        let len = (buf.len() as u64).min(remaining) as usize;
        self.file.read_exact_at(&mut buf[..len], self.position)?;
        self.hasher.update(&buf[..len]);
        self.position += len as u64;
        Ok(len)
    }
}

/// Opens and checks the framing of a snapshot file (not yet the data checksum).
pub(crate) fn open_snapshot(storage: &dyn Storage, path: &Path) -> Result<SnapshotReader> {
    let corrupt = |offset: u64, reason| WalError::corrupt(path, offset, reason);
    let io_error = |error| WalError::io(path, error);
    let file = storage.open(path, OpenMode::Read).map_err(io_error)?;
    let len = file.len_bytes().map_err(io_error)?;
    if len < HEADER_LEN + TRAILER_LEN {
        return Err(corrupt(0, CorruptReason::BadSize));
    }
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0).map_err(io_error)?;
    if header[0..8] != SNAPSHOT_MAGIC {
        return Err(corrupt(0, CorruptReason::BadMagic));
    }
    if crc32fast::hash(&header[0..40]) != read_u32(&header, 40) {
        return Err(corrupt(40, CorruptReason::BadChecksum));
    }
    if read_u32(&header, 8) != SNAPSHOT_VERSION {
        return Err(corrupt(8, CorruptReason::UnsupportedVersion));
    }
    let (index, term, metadata_len) = (
        read_u64(&header, 16),
        read_u64(&header, 24),
        read_u64(&header, 32),
    );
    if metadata_len > len - HEADER_LEN - TRAILER_LEN {
        return Err(corrupt(32, CorruptReason::LengthOverrun));
    }
    let mut metadata = vec![0u8; metadata_len as usize];
    file.read_exact_at(&mut metadata, HEADER_LEN)
        .map_err(io_error)?;
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.read_exact_at(&mut trailer, len - TRAILER_LEN)
        .map_err(io_error)?;
    let data_len_bytes = len - HEADER_LEN - TRAILER_LEN - metadata_len;
    if trailer[12..16] != TRAILER_MAGIC || read_u64(&trailer, 0) != data_len_bytes {
        return Err(corrupt(len - TRAILER_LEN, CorruptReason::BadSize));
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header);
    hasher.update(&metadata);
    let data_start = HEADER_LEN + metadata_len;
    Ok(SnapshotReader {
        file,
        meta: SnapshotMeta {
            index,
            term,
            metadata: Bytes::from(metadata),
            data_len_bytes,
        },
        position: data_start,
        data_end: data_start + data_len_bytes,
        hasher,
        expected_crc: read_u32(&trailer, 8),
        verified: false,
    })
}

/// Opens the snapshot named by `meta` in `snap_dir`.
pub(crate) fn open_by_meta(
    storage: &dyn Storage,
    snap_dir: &Path,
    meta: &SnapshotMeta,
) -> Result<SnapshotReader> {
    open_snapshot(
        storage,
        &snap_dir.join(snapshot_name(meta.index, meta.term)),
    )
}

/// Verifies a snapshot completely (framing and data checksum).
fn verify(storage: &dyn Storage, path: &Path, index: u64, term: u64) -> Result<SnapshotMeta> {
    let mut reader = open_snapshot(storage, path)?;
    if reader.meta.index != index || reader.meta.term != term {
        return Err(WalError::corrupt(path, 16, CorruptReason::SegmentMismatch));
    }
    let mut buf = vec![0u8; BUFFER_BYTES];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(reader.meta),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                return Err(WalError::corrupt(path, 0, CorruptReason::BadChecksum));
            }
            Err(error) => return Err(WalError::io(path, error)),
        }
    }
}

/// Finds the newest valid snapshot; removes temporary files and snapshots older than
/// it. Newer snapshots that fail verification are left in place for inspection
/// (the log's own checks report if the log needed them).
pub(crate) fn recover_snapshots(
    storage: &dyn Storage,
    snap_dir: &Path,
) -> Result<Option<SnapshotMeta>> {
    let names = storage
        .list(snap_dir)
        .map_err(|error| WalError::io(snap_dir, error))?;
    let mut found: Vec<(u64, u64, String)> = Vec::new();
    for name in names {
        if name.ends_with(".tmp") || name.ends_with(STAGED_SUFFIX) {
            // Never finished, or staged and never installed: not a snapshot.
            let path = snap_dir.join(&name);
            storage
                .remove_file(&path)
                .map_err(|error| WalError::io(&path, error))?;
        } else if let Some((index, term)) = parse_name(&name) {
            found.push((index, term, name));
        }
    }
    found.sort();
    let mut newest = None;
    while let Some((index, term, name)) = found.pop() {
        match verify(storage, &snap_dir.join(&name), index, term) {
            Ok(meta) => {
                newest = Some(meta);
                break;
            }
            Err(WalError::Corrupt { .. }) => continue,
            Err(error) => return Err(error),
        }
    }
    for (_, _, name) in found {
        let path = snap_dir.join(name);
        storage
            .remove_file(&path)
            .map_err(|error| WalError::io(&path, error))?;
    }
    Ok(newest)
}
