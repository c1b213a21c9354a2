//! State shared between the public handle, the writer thread, the segment preparer
//! and readers: the read view of the log (index + segment table), the request queue,
//! the poison flag and counters. Only the writer thread changes the read view, and
//! only after the sync that made the change durable returned.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock};

use bytes::Bytes;

use crate::completion::Completer;
use crate::error::{Result, WalError};
use crate::format::{SEGMENT_HEADER_LEN, SegmentHeader, UNASSIGNED_FIRST_INDEX};
use crate::index::LogIndex;
use crate::snapshot::SnapshotMeta;
use crate::storage::{OpenMode, Storage, StorageFile};
use crate::{AppendUnit, Appended, SegmentPreparation};

/// A segment file, shared by the writer and readers.
#[derive(Debug)]
pub(crate) struct SegmentFile {
    pub(crate) id: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn StorageFile>,
    pub(crate) salt: u32,
    /// The read-only map of the sealed segment, made on first read.
    map: OnceLock<Bytes>,
}

impl SegmentFile {
    pub(crate) fn new(
        id: u64,
        path: PathBuf,
        file: Arc<dyn StorageFile>,
        salt: u32,
    ) -> SegmentFile {
        SegmentFile {
            id,
            path,
            file,
            salt,
            map: OnceLock::new(),
        }
    }

    /// The whole sealed segment; callers ensure it is sealed (never written again).
    pub(crate) fn sealed_bytes(&self) -> Result<Bytes> {
        if let Some(map) = self.map.get() {
            return Ok(map.clone());
        }
        let map = self
            .file
            .map_sealed()
            .map_err(|error| WalError::io(&self.path, error))?;
        Ok(self.map.get_or_init(|| map).clone())
    }
}

/// A segment in the segment table.
#[derive(Debug, Clone)]
pub(crate) struct SegmentSlot {
    pub(crate) file: Arc<SegmentFile>,
    /// Fully written and synced; only read from now on (through a map).
    pub(crate) sealed: bool,
    /// Highest entry index stored in the segment (0 if none).
    pub(crate) max_entry_index: u64,
}

/// What readers see: only durable state.
#[derive(Debug)]
pub(crate) struct ReadView {
    pub(crate) index: LogIndex,
    pub(crate) segments: BTreeMap<u64, SegmentSlot>,
}

/// An operation waiting for the writer thread.
pub(crate) enum Operation {
    Append(AppendUnit),
    Compact {
        first_index: u64,
    },
    InstallSnapshot {
        index: u64,
        term: u64,
    },
    /// Promote a staged snapshot to the latest, then install it like
    /// `InstallSnapshot`.
    InstallStaged(crate::snapshot::StagedSnapshot),
    /// Forget the catching-up mark in the hard-state file.
    ClearCatchingUp,
}

pub(crate) struct Request {
    pub(crate) operation: Operation,
    pub(crate) done: Completer<Appended>,
}

#[derive(Default)]
pub(crate) struct Queue {
    pub(crate) requests: Vec<Request>,
    pub(crate) closed: bool,
}

/// Work for the segment preparer thread.
#[derive(Default)]
pub(crate) struct PreparerState {
    /// Segment id the writer will need next, if not yet prepared.
    pub(crate) wanted: Option<u64>,
    /// A prepared segment (or the error preparing it).
    pub(crate) ready: Option<Result<Arc<SegmentFile>>>,
    /// Sealed segments to delete after a compaction, oldest first.
    pub(crate) deletions: Vec<PathBuf>,
    pub(crate) closed: bool,
}

/// Durable groups whose waiters the acknowledger thread is to wake, in order.
#[derive(Default)]
pub(crate) struct Acknowledgements {
    pub(crate) batches: Vec<Vec<(Completer<Appended>, Appended)>>,
    /// The acknowledger is waking a batch it took.
    pub(crate) busy: bool,
    pub(crate) closed: bool,
}

/// Counters since open.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) groups: AtomicU64,
    pub(crate) entries: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) syncs: AtomicU64,
}

pub(crate) struct Shared {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) wal_dir: PathBuf,
    pub(crate) snap_dir: PathBuf,
    pub(crate) segment_size_bytes: u64,
    pub(crate) preparation: SegmentPreparation,
    pub(crate) view: RwLock<ReadView>,
    pub(crate) queue: Mutex<Queue>,
    pub(crate) queue_ready: Condvar,
    pub(crate) preparer: Mutex<PreparerState>,
    pub(crate) preparer_ready: Condvar,
    poisoned: AtomicBool,
    poison: Mutex<Option<Arc<WalError>>>,
    pub(crate) snapshot: Mutex<Option<SnapshotMeta>>,
    /// The durable catching-up mark (see [`crate::RecoveryReport`]).
    pub(crate) catching_up_after: Mutex<Option<u64>>,
    pub(crate) counters: Counters,
    pub(crate) acks: Mutex<Acknowledgements>,
    pub(crate) acks_ready: Condvar,
}

impl Shared {
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        wal_dir: PathBuf,
        snap_dir: PathBuf,
        segment_size_bytes: u64,
        preparation: SegmentPreparation,
        view: ReadView,
        snapshot: Option<SnapshotMeta>,
    ) -> Shared {
        Shared {
            storage,
            wal_dir,
            snap_dir,
            segment_size_bytes,
            preparation,
            view: RwLock::new(view),
            queue: Mutex::new(Queue::default()),
            queue_ready: Condvar::new(),
            preparer: Mutex::new(PreparerState::default()),
            preparer_ready: Condvar::new(),
            poisoned: AtomicBool::new(false),
            poison: Mutex::new(None),
            snapshot: Mutex::new(snapshot),
            catching_up_after: Mutex::new(None),
            counters: Counters::default(),
            acks: Mutex::new(Acknowledgements::default()),
            acks_ready: Condvar::new(),
        }
    }

    pub(crate) fn view(&self) -> std::sync::RwLockReadGuard<'_, ReadView> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn view_mut(&self) -> std::sync::RwLockWriteGuard<'_, ReadView> {
        self.view.write().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn preparer(&self) -> MutexGuard<'_, PreparerState> {
        self.preparer.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn acks(&self) -> MutexGuard<'_, Acknowledgements> {
        self.acks.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn snapshot(&self) -> MutexGuard<'_, Option<SnapshotMeta>> {
        self.snapshot.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn catching_up_after(&self) -> MutexGuard<'_, Option<u64>> {
        self.catching_up_after
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The error that poisoned the log, if any.
    pub(crate) fn poison_error(&self) -> Option<WalError> {
        if !self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        let cause = self
            .poison
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        Some(WalError::Poisoned { cause })
    }

    /// Records the first failure; the log refuses all work from now on.
    pub(crate) fn poison_with(&self, error: &WalError) {
        let mut poison = self.poison.lock().unwrap_or_else(|p| p.into_inner());
        if poison.is_none() {
            *poison = Some(Arc::new(error.clone()));
        }
        self.poisoned.store(true, Ordering::Release);
    }
}

/// `<wal_dir>/<id, 20 digits>.seg`.
pub(crate) fn segment_path(wal_dir: &Path, id: u64) -> PathBuf {
    wal_dir.join(format!("{id:020}.seg"))
}

/// A salt for a new segment: distinct per segment and per process.
pub(crate) fn new_salt(id: u64) -> u32 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(id);
    if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(now.as_nanos());
    }
    hasher.write_u32(std::process::id());
    hasher.finish() as u32
}

/// Writes zeros over `from..to` of `file`.
pub(crate) fn write_zeros(file: &dyn StorageFile, from: u64, to: u64) -> std::io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    if from >= to {
        return Ok(());
    }
    let zeros = vec![0u8; (to - from).min(CHUNK) as usize];
    let mut at = from;
    while at < to {
        let len = (to - at).min(CHUNK) as usize;
        file.write_all_at(&zeros[..len], at)?;
        at += len as u64;
    }
    Ok(())
}

/// Creates segment `id` under a temporary name, fills it with zeros, writes its
/// unassigned header, syncs it, renames it into place and syncs the directory. A
/// crash at any step leaves either no segment or a complete prepared one (plus a
/// temporary file that recovery removes).
pub(crate) fn prepare_segment(
    storage: &dyn Storage,
    wal_dir: &Path,
    id: u64,
    segment_size_bytes: u64,
) -> Result<Arc<SegmentFile>> {
    let path = segment_path(wal_dir, id);
    let temporary = wal_dir.join(format!("{id:020}.seg.tmp"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| WalError::io(path, error)
    };
    match storage.remove_file(&temporary) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(WalError::io(&temporary, error));
        }
        _ => {}
    }
    let file = storage
        .open(&temporary, OpenMode::CreateNew)
        .map_err(io(&temporary))?;
    let salt = new_salt(id);
    let header = SegmentHeader {
        salt,
        segment_id: id,
        first_index: UNASSIGNED_FIRST_INDEX,
    };
    // The header and the first zeros go in one write; the rest in large chunks.
    let first_len = segment_size_bytes.min(1 << 20) as usize;
    let mut first = vec![0u8; first_len];
    first[..SEGMENT_HEADER_LEN].copy_from_slice(&header.encode());
    file.write_all_at(&first, 0).map_err(io(&temporary))?;
    // Large segments are flushed in slices, so that no single huge writeback stalls
    // the commit path's syncs on the same disk.
    const SLICE_BYTES: u64 = 8 << 20;
    let mut written = first_len as u64;
    while written < segment_size_bytes {
        let end = (written + SLICE_BYTES).min(segment_size_bytes);
        write_zeros(file.as_ref(), written, end).map_err(io(&temporary))?;
        written = end;
        if written < segment_size_bytes {
            file.sync_data().map_err(io(&temporary))?;
        }
    }
    file.sync_data().map_err(io(&temporary))?;
    storage.rename(&temporary, &path).map_err(io(&temporary))?;
    storage.sync_dir(wal_dir).map_err(io(wal_dir))?;
    Ok(Arc::new(SegmentFile::new(id, path, file, salt)))
}
