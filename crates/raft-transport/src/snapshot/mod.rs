//! Snapshot streaming: the application-facing types. A sender reads from a
//! [`SnapshotSource`] at offsets and the receiver writes into a [`SnapshotSink`]; the
//! transport holds about one chunk on each side, so memory stays constant whatever
//! the snapshot size. The receiver acknowledges an offset only after its sink synced
//! everything below it, and a transfer cut by a reconnect resumes from there.

pub(crate) mod receive;
pub(crate) mod send;
pub(crate) mod wire;

use std::fs::{self, File};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use raft_core::{LogIndex, NodeId, Term};
use tokio::task::JoinHandle;

use crate::error::TransportError;

/// What a snapshot is: its position in the log, its size, and opaque metadata (the
/// membership it includes, say) that travels ahead of the data.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SnapshotHeader {
    /// The last log index the snapshot covers.
    pub index: LogIndex,
    /// The term of that entry.
    pub term: Term,
    /// The size of the snapshot data.
    pub total_bytes: u64,
    /// Application metadata, delivered with the header (bounded by the frame limit).
    pub metadata: Bytes,
}

/// Snapshot data readable at any offset (a file, usually). Called from a blocking
/// thread, so it may do plain blocking I/O.
pub trait SnapshotSource: Send + Sync + 'static {
    /// Reads up to `buf.len()` bytes at `offset` and returns how many were read;
    /// 0 only at or past the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

#[cfg(unix)]
impl SnapshotSource for File {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

/// Where an incoming snapshot's bytes go. Called from a blocking thread, in order:
/// `write_at` with contiguous offsets, `sync` before each acknowledgement, and
/// `finish` once all bytes are synced. After a reconnect, writing resumes at the last
/// synced offset (bytes written but not synced may be written again).
pub trait SnapshotSink: Send + 'static {
    /// Writes `data` at `offset`.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable; the transport acknowledges it next.
    fn sync(&mut self) -> io::Result<()>;
    /// All bytes arrived and are synced: publish the snapshot (rename it in place).
    fn finish(&mut self) -> io::Result<()>;
}

/// Opens a sink for each incoming snapshot.
pub trait SnapshotSinkFactory: Send + Sync + 'static {
    /// A sink for the snapshot `header` offered by member `from`.
    fn open(&self, from: NodeId, header: &SnapshotHeader) -> io::Result<Box<dyn SnapshotSink>>;
}

/// Writes incoming snapshots to `dir/snapshot-<term>-<index>.part`, renamed to
/// [`FileSnapshotSinkFactory::path_for`] by `finish` (after an fsync of the file and
/// of the directory).
#[derive(Clone, Debug)]
pub struct FileSnapshotSinkFactory {
    dir: PathBuf,
}

impl FileSnapshotSinkFactory {
    /// Snapshots go to `dir`, which must exist.
    pub fn new(dir: impl Into<PathBuf>) -> FileSnapshotSinkFactory {
        FileSnapshotSinkFactory { dir: dir.into() }
    }

    /// Where the finished snapshot `header` is found.
    pub fn path_for(&self, header: &SnapshotHeader) -> PathBuf {
        self.dir
            .join(format!("snapshot-{}-{}.snap", header.term, header.index))
    }
}

impl SnapshotSinkFactory for FileSnapshotSinkFactory {
    fn open(&self, _from: NodeId, header: &SnapshotHeader) -> io::Result<Box<dyn SnapshotSink>> {
        let done = self.path_for(header);
        let part = done.with_extension("part");
        let file = File::create(&part)?;
        file.set_len(0)?;
        Ok(Box::new(FileSnapshotSink {
            file,
            part,
            done,
            dir: self.dir.clone(),
        }))
    }
}

struct FileSnapshotSink {
    file: File,
    part: PathBuf,
    done: PathBuf,
    dir: PathBuf,
}

impl SnapshotSink for FileSnapshotSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::write_all_at(&self.file, data, offset)
        }
        #[cfg(not(unix))]
        {
            use std::io::{Seek, SeekFrom, Write};
            self.file.seek(SeekFrom::Start(offset))?;
            self.file.write_all(data)
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn finish(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        fs::rename(&self.part, &self.done)?;
        sync_dir(&self.dir)
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// A snapshot that arrived completely and was published by its sink.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ReceivedSnapshot {
    /// The sender.
    pub from: NodeId,
    /// What was received.
    pub header: SnapshotHeader,
}

/// How a finished transfer went.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct SnapshotReport {
    /// Bytes the receiver acknowledged in the end (the snapshot's size).
    pub acknowledged_bytes: u64,
    /// Connections used (1 when nothing broke).
    pub attempts: u32,
    /// For each attempt after a break, the offset the receiver asked to resume at.
    pub resumed_from: Vec<u64>,
}

/// A snapshot transfer in progress. Await it for the outcome: it completes when the
/// receiver acknowledged every byte as persisted. Dropping it aborts the transfer.
#[derive(Debug)]
pub struct SnapshotTransfer {
    task: JoinHandle<Result<SnapshotReport, TransportError>>,
}

impl SnapshotTransfer {
    pub(crate) fn new(
        task: JoinHandle<Result<SnapshotReport, TransportError>>,
    ) -> SnapshotTransfer {
        SnapshotTransfer { task }
    }

    /// Stops the transfer.
    pub fn abort(&self) {
        self.task.abort();
    }
}

impl Future for SnapshotTransfer {
    type Output = Result<SnapshotReport, TransportError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.task)
            .poll(cx)
            .map(|joined| match joined {
                Ok(outcome) => outcome,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(_) => Err(TransportError::Shutdown),
            })
    }
}

impl Drop for SnapshotTransfer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
