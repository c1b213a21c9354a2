//! The public handle: opening (lock, recovery, threads), submitting appends,
//! compaction and snapshot install to the writer thread, and reads of durable
//! state. Reads see only what is durable: the writer publishes after each sync.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::acknowledger;
use crate::completion::{self, Completion};
use crate::error::{Result, WalError};
use crate::format::{self, RecordKind};
use crate::hard_state_file::HardStateFile;
use crate::index::Location;
use crate::preparer;
use crate::recovery;
use crate::shared::{Operation, Request, SegmentFile, Shared};
use crate::snapshot::{self, SnapshotMeta, SnapshotReader, SnapshotWriter, StagedSnapshot};
use crate::storage::{LockGuard, RealStorage, Storage};
use crate::writer::Writer;
use crate::{
    AppendUnit, Appended, Entry, HardState, RecoveryReport, SegmentPreparation, WalOptions,
};

/// Smallest accepted segment size.
const MIN_SEGMENT_SIZE_BYTES: u64 = 1024;
/// Largest accepted segment size.
const MAX_SEGMENT_SIZE_BYTES: u64 = 1 << 30;

/// Counters since open, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Commit groups written (each one write and one `fdatasync`).
    pub commit_groups: u64,
    /// Entries made durable.
    pub entries: u64,
    /// Bytes written in commit groups.
    pub bytes_written: u64,
    /// `fdatasync` calls on the commit path.
    pub syncs: u64,
}

/// An open write-ahead log. Share it between threads with an `Arc`; all methods
/// take `&self`. Dropping it stops its threads (queued work still completes).
pub struct Wal {
    shared: Arc<Shared>,
    data_dir: PathBuf,
    writer: Option<JoinHandle<()>>,
    /// The writer's state, shared with the writer thread for the inline fast path.
    writer_state: Arc<Mutex<Writer>>,
    preparer: Option<JoinHandle<()>>,
    acknowledger: Option<JoinHandle<()>>,
    _lock: LockGuard,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

impl Wal {
    /// Opens (or creates) the log in `data_dir` on the real file system.
    pub fn open(data_dir: impl AsRef<Path>, options: WalOptions) -> Result<Wal> {
        Wal::open_with(Arc::new(RealStorage), data_dir, options)
    }

    /// Opens (or creates) the log in `data_dir` on `storage`: takes the directory
    /// lock, finds the newest valid snapshot, recovers the segments and starts the
    /// writer (and, in background mode, the preparer) thread.
    pub fn open_with(
        storage: Arc<dyn Storage>,
        data_dir: impl AsRef<Path>,
        options: WalOptions,
    ) -> Result<Wal> {
        let data_dir = data_dir.as_ref().to_path_buf();
        let size = options.segment_size_bytes;
        if !(MIN_SEGMENT_SIZE_BYTES..=MAX_SEGMENT_SIZE_BYTES).contains(&size)
            || !size.is_multiple_of(8)
        {
            return Err(WalError::InvalidOptions {
                reason: "segment_size_bytes must be a multiple of 8 between 1 KiB and 1 GiB",
            });
        }
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |error| WalError::io(path, error)
        };
        storage
            .create_dir_all(&data_dir)
            .map_err(io_error(&data_dir))?;
        let lock_path = data_dir.join("LOCK");
        let lock = storage
            .try_lock(&lock_path)
            .map_err(io_error(&lock_path))?
            .ok_or_else(|| WalError::Locked {
                path: lock_path.clone(),
            })?;
        let wal_dir = data_dir.join("wal");
        let snap_dir = data_dir.join("snap");
        storage
            .create_dir_all(&wal_dir)
            .map_err(io_error(&wal_dir))?;
        storage
            .create_dir_all(&snap_dir)
            .map_err(io_error(&snap_dir))?;
        storage.sync_dir(&data_dir).map_err(io_error(&data_dir))?;
        // The data directory's own name may be new too.
        if let Some(parent) = data_dir
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            storage.sync_dir(parent).map_err(io_error(parent))?;
        }

        let mut hard_state_file = HardStateFile::open(storage.as_ref(), &data_dir)?;
        let snapshot = snapshot::recover_snapshots(storage.as_ref(), &snap_dir)?;
        let recovered = recovery::recover(
            storage.as_ref(),
            &wal_dir,
            size,
            snapshot.as_ref(),
            &mut hard_state_file,
        )?;
        let shared = Arc::new(Shared::new(
            storage,
            wal_dir,
            snap_dir,
            size,
            options.segment_preparation,
            recovered.view,
            snapshot,
        ));
        *shared.catching_up_after() = hard_state_file.current().catching_up_after;
        let mut prepared = recovered.prepared;
        let preparer = match options.segment_preparation {
            SegmentPreparation::Background => {
                {
                    let mut state = shared.preparer();
                    match prepared.take() {
                        Some(segment) => state.ready = Some(Ok(segment)),
                        None => state.wanted = Some(recovered.next_segment_id),
                    }
                }
                let shared = Arc::clone(&shared);
                Some(spawn("raft-wal-preparer", move || {
                    preparer::run_preparer(shared)
                })?)
            }
            SegmentPreparation::Inline => None,
        };
        let writer = Writer::new(
            Arc::clone(&shared),
            recovered.active,
            recovered.next_segment_id,
            prepared,
            hard_state_file,
        );
        let acknowledger = {
            let shared = Arc::clone(&shared);
            Some(spawn("raft-wal-acknowledger", move || {
                acknowledger::run_acknowledger(shared)
            })?)
        };
        let writer_state = Arc::new(Mutex::new(writer));
        let writer = {
            let (state, shared) = (Arc::clone(&writer_state), Arc::clone(&shared));
            Some(spawn("raft-wal-writer", move || {
                Writer::run(state, shared)
            })?)
        };
        let wal = Wal {
            shared,
            data_dir,
            writer,
            writer_state,
            preparer,
            acknowledger,
            _lock: lock,
        };
        wal.align_with_latest_snapshot()?;
        Ok(wal)
    }

    /// The open-time install rule: if the latest snapshot is not matched by the log
    /// (the log neither holds the snapshot's last entry with the same term nor
    /// starts right after it), a crash interrupted an install after the snapshot
    /// became the latest. Repeat the install: discard the log, which then continues
    /// after the snapshot with commit index = snapshot index.
    fn align_with_latest_snapshot(&self) -> Result<()> {
        let Some(meta) = self.latest_snapshot() else {
            return Ok(());
        };
        if self.shared.view().index.term(meta.index) == Some(meta.term) {
            return Ok(());
        }
        self.submit_install_snapshot(&meta).wait().map(|_| ())
    }

    /// Appends `unit` and returns once it is durable. If the writer is idle and
    /// nothing is queued, the calling thread writes and syncs the group itself
    /// (saving a thread hand-off); otherwise the unit joins the next group.
    pub fn append(&self, unit: AppendUnit) -> Result<Appended> {
        if let Some(error) = self.shared.poison_error() {
            return Err(error);
        }
        let (done, completion) = completion::pair();
        let request = Request {
            operation: Operation::Append(unit),
            done,
        };
        if let Some(request) = Writer::try_process_inline(&self.writer_state, request) {
            self.enqueue_request(request);
        }
        completion.wait()
    }

    /// Queues `unit` for the next commit group and returns at once; the completion
    /// reports `Ok` only after the `fdatasync` covering the unit returned.
    pub fn submit(&self, unit: AppendUnit) -> Completion<Appended> {
        self.enqueue(Operation::Append(unit))
    }

    /// Removes entries before `first_index`, which a durable snapshot must cover
    /// (`first_index - 1 <= snapshot index`). The new first index is recorded
    /// durably first; whole segments before it are deleted afterwards. Blocks until
    /// done: [`Wal::submit_compact`] is the same without waiting.
    pub fn compact(&self, first_index: u64) -> Result<()> {
        self.submit_compact(first_index).wait().map(|_| ())
    }

    /// Queues a compaction to `first_index` (see [`Wal::compact`]) and returns at
    /// once; the completion reports the log's end once the compaction record is
    /// durable. Never waits for a disk, so a node loop may call it.
    pub fn submit_compact(&self, first_index: u64) -> Completion<Appended> {
        self.enqueue(Operation::Compact { first_index })
    }

    /// Makes the log agree with a durable snapshot that is already the latest one
    /// (§7): if the log holds the snapshot's last entry (same index and term),
    /// entries after it are kept; otherwise the whole log is discarded. Either way
    /// the log then starts after the snapshot and the commit index is at least its
    /// index. Blocks until done: [`Wal::submit_install_snapshot`] is the same
    /// without waiting.
    pub fn install_snapshot(&self, meta: &SnapshotMeta) -> Result<Appended> {
        self.submit_install_snapshot(meta).wait()
    }

    /// Queues [`Wal::install_snapshot`] and returns at once; the completion reports
    /// the log's end once the install is durable. Never waits for a disk.
    pub fn submit_install_snapshot(&self, meta: &SnapshotMeta) -> Completion<Appended> {
        self.enqueue(Operation::InstallSnapshot {
            index: meta.index,
            term: meta.term,
        })
    }

    /// Installs a snapshot received from a leader and staged with
    /// [`SnapshotWriter::finish_staged`], in one operation on the writer thread:
    /// the staged file becomes the latest snapshot (renamed, directory synced, older
    /// snapshots removed), then the log is aligned with it as in
    /// [`Wal::install_snapshot`] — entries after the snapshot kept if the log holds
    /// its last entry with the same term, otherwise the whole log discarded — and
    /// the hard state's commit index becomes the snapshot's index (raised if the log
    /// was kept; set, even if lower, if the log was discarded). Term and vote are
    /// unchanged. A crash after the promotion but before the log records are durable
    /// is repaired at the next open (see `docs/wal-format.md`). Rejected with
    /// [`crate::Rejection::StaleSnapshot`] if a snapshot at or after its index is
    /// already the latest, or the log starts after it; the staged file is then
    /// deleted. Blocks until durable: [`Wal::submit_install_staged`] does not.
    pub fn install_staged(&self, staged: StagedSnapshot) -> Result<Appended> {
        self.submit_install_staged(staged).wait()
    }

    /// Queues [`Wal::install_staged`] and returns at once; the completion reports
    /// the log's end once the install is durable. Never waits for a disk.
    pub fn submit_install_staged(&self, staged: StagedSnapshot) -> Completion<Appended> {
        self.enqueue(Operation::InstallStaged(staged))
    }

    /// What recovery found that the Raft layer must act on; see [`RecoveryReport`].
    /// Reflects [`Wal::clear_catching_up`] once its completion reported `Ok`.
    pub fn recovery_report(&self) -> RecoveryReport {
        RecoveryReport {
            catching_up_after: *self.shared.catching_up_after(),
        }
    }

    /// Durably forgets the catching-up mark of [`RecoveryReport::catching_up_after`].
    /// Call it once a leader has caught this member's log up past the reported
    /// index (the member has appended and made durable entries from the current
    /// leader beyond it). The completion reports `Ok` once the cleared mark is
    /// synced; until then (and after a crash before it) the mark stays.
    pub fn clear_catching_up(&self) -> Completion<Appended> {
        self.enqueue(Operation::ClearCatchingUp)
    }

    fn enqueue(&self, operation: Operation) -> Completion<Appended> {
        if let Some(error) = self.shared.poison_error() {
            return Completion::ready(Err(error));
        }
        let (done, completion) = completion::pair();
        self.enqueue_request(Request { operation, done });
        completion
    }

    fn enqueue_request(&self, request: Request) {
        let mut queue = self.shared.queue();
        if queue.closed {
            drop(queue);
            request.done.complete(Err(WalError::Closed));
            return;
        }
        let was_empty = queue.requests.is_empty();
        queue.requests.push(request);
        drop(queue);
        if was_empty {
            self.shared.queue_ready.notify_one();
        }
    }

    /// Starts writing a snapshot of the state up to `index` (whose term is `term`),
    /// with `metadata` (the membership configuration). Stream the data into the
    /// writer and call [`SnapshotWriter::finish`].
    pub fn snapshot_writer(
        &self,
        index: u64,
        term: u64,
        metadata: Bytes,
    ) -> Result<SnapshotWriter> {
        if let Some(error) = self.shared.poison_error() {
            return Err(error);
        }
        SnapshotWriter::create(Arc::clone(&self.shared), index, term, metadata)
    }

    /// The newest durable snapshot, if any.
    pub fn latest_snapshot(&self) -> Option<SnapshotMeta> {
        self.shared.snapshot().clone()
    }

    /// Opens the newest durable snapshot for streaming.
    pub fn open_snapshot(&self) -> Result<Option<SnapshotReader>> {
        let Some(meta) = self.latest_snapshot() else {
            return Ok(None);
        };
        snapshot::open_by_meta(self.shared.storage.as_ref(), &self.shared.snap_dir, &meta).map(Some)
    }

    /// Entries `lo..hi`, stopping once their payloads exceed `max_bytes` (at least
    /// one entry is returned if `lo < hi`). Every frame's checksum is verified.
    pub fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>> {
        let mut wanted: Vec<(u64, Location, Arc<SegmentFile>, bool)> = Vec::new();
        {
            let view = self.shared.view();
            let (first, last) = (view.index.first_index(), view.index.last_index());
            if lo < first {
                return Err(WalError::Compacted {
                    index: lo,
                    first_index: first,
                });
            }
            if hi > last + 1 {
                return Err(WalError::Unavailable {
                    index: hi - 1,
                    last_index: last,
                });
            }
            let mut total = 0u64;
            for index in lo..hi {
                let location = view.index.location(index).expect("index inside the log");
                total += u64::from(location.payload_len);
                if !wanted.is_empty() && total > max_bytes {
                    break;
                }
                let slot = &view.segments[&location.segment_id];
                wanted.push((index, location, Arc::clone(&slot.file), slot.sealed));
            }
        }
        wanted
            .into_iter()
            .map(|(index, location, segment, sealed)| {
                read_entry(index, &location, &segment, sealed)
            })
            .collect()
    }

    /// The term of entry `index` (`first_index - 1` included: the snapshot's term).
    pub fn term(&self, index: u64) -> Result<u64> {
        let view = self.shared.view();
        view.index.term(index).ok_or_else(|| {
            if index < view.index.first_index() {
                WalError::Compacted {
                    index,
                    first_index: view.index.first_index(),
                }
            } else {
                WalError::Unavailable {
                    index,
                    last_index: view.index.last_index(),
                }
            }
        })
    }

    /// Index of the first entry in the log (entries before it are in the snapshot).
    pub fn first_index(&self) -> u64 {
        self.shared.view().index.first_index()
    }

    /// Index of the last durable entry (`first_index - 1` if the log is empty).
    pub fn last_index(&self) -> u64 {
        self.shared.view().index.last_index()
    }

    /// The durable hard state.
    pub fn hard_state(&self) -> HardState {
        self.shared.view().index.hard_state()
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        let counters = &self.shared.counters;
        WalStats {
            commit_groups: counters.groups.load(Ordering::Relaxed),
            entries: counters.entries.load(Ordering::Relaxed),
            bytes_written: counters.bytes.load(Ordering::Relaxed),
            syncs: counters.syncs.load(Ordering::Relaxed),
        }
    }

    /// The data directory this log lives in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map_err(|error| WalError::io(PathBuf::new(), error))
}

/// Reads and verifies one entry's frame: through the map for a sealed segment,
/// with a positional read for the active one.
fn read_entry(
    index: u64,
    location: &Location,
    segment: &SegmentFile,
    sealed: bool,
) -> Result<Entry> {
    let frame_len = format::frame_len(location.payload_len as usize);
    let (bytes, start) = if sealed {
        (segment.sealed_bytes()?, location.offset as usize)
    } else {
        let mut buffer = vec![0u8; frame_len];
        segment
            .file
            .read_exact_at(&mut buffer, location.offset)
            .map_err(|error| WalError::io(&segment.path, error))?;
        (Bytes::from(buffer), 0)
    };
    let corrupt = |reason| WalError::corrupt(&segment.path, location.offset, reason);
    let frame = format::decode_frame(&bytes, start, segment.salt).map_err(|error| {
        corrupt(match error {
            format::FrameError::LengthOverrun => crate::CorruptReason::LengthOverrun,
            format::FrameError::BadKind => crate::CorruptReason::MalformedRecord,
            format::FrameError::BadChecksum => crate::CorruptReason::BadChecksum,
        })
    })?;
    if frame.kind != RecordKind::Entry
        || frame.index != index
        || frame.term != location.term
        || frame.payload_len != location.payload_len as usize
    {
        return Err(corrupt(crate::CorruptReason::MalformedRecord));
    }
    Ok(Entry {
        index,
        term: frame.term,
        payload: bytes.slice(frame.payload_start..frame.payload_start + frame.payload_len),
    })
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.shared.queue().closed = true;
        self.shared.queue_ready.notify_all();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        self.shared.acks().closed = true;
        self.shared.acks_ready.notify_all();
        if let Some(acknowledger) = self.acknowledger.take() {
            let _ = acknowledger.join();
        }
        self.shared.preparer().closed = true;
        self.shared.preparer_ready.notify_all();
        if let Some(preparer) = self.preparer.take() {
            let _ = preparer.join();
        }
    }
}
