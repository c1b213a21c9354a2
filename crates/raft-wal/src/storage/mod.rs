//! The one seam between the log and the file system: every byte the log reads or
//! writes goes through [`Storage`] and [`StorageFile`]. Two backends implement it:
//! [`RealStorage`] (the operating system) and [`FaultyStorage`] (memory, with
//! injectable crashes, torn writes, failed syncs and bit flips, for tests).

mod faulty;
mod map;
mod real;

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

pub use faulty::{CrashMode, FaultyStorage};
pub use real::RealStorage;

/// How [`Storage::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create a new file for reading and writing; fail if it exists.
    CreateNew,
    /// Open an existing file for reading and writing.
    ReadWrite,
    /// Open an existing file for reading only.
    Read,
}

/// An open file. Positional I/O only, so one handle serves many threads.
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Fills `buf` from `offset`; a short file is an `UnexpectedEof` error.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, extending the file if needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the file's data (and the metadata needed to read it) durable
    /// (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// The file's current length in bytes.
    fn len_bytes(&self) -> io::Result<u64>;
    /// The whole file as immutable bytes. The real backend maps it (zero-copy); the
    /// caller promises the file is never written or truncated again while mapped.
    fn map_sealed(&self) -> io::Result<Bytes>;
}

/// Holds a directory lock until dropped.
pub struct LockGuard(#[allow(dead_code)] Box<dyn Send + Sync>);

impl LockGuard {
    /// Wraps whatever keeps the lock alive.
    pub fn new(inner: Box<dyn Send + Sync>) -> LockGuard {
        LockGuard(inner)
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}

/// A file system: directories, files, renames and directory syncs.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Creates `dir` and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names (not paths) of the files in `dir`, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens or creates a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>>;
    /// Removes a file's directory entry (open handles stay usable).
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes the creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path` (created if missing); `None` if someone
    /// else holds it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<LockGuard>>;
}
