//! An in-memory file system for tests that keeps what was *written* apart from what
//! is *durable*: file data becomes durable at `sync_data`, directory entries at
//! `sync_dir`. It can crash (dropping what was not synced, keeping it, or tearing the
//! last unsynced write sector by sector), fail a write or a sync, stop after the k-th
//! mutating operation, and flip bits.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use bytes::Bytes;

use super::{LockGuard, OpenMode, Storage, StorageFile};

/// Sector size used to tear writes: a torn write keeps some 512-byte sectors.
const SECTOR_BYTES: u64 = 512;

/// What survives a simulated crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Only synced data and synced directory entries survive.
    DropUnsynced,
    /// Everything written survives (the OS flushed it all, but the process died
    /// before it learned so).
    KeepUnsynced,
    /// Every unsynced operation but the last survives; the last one survives in part:
    /// for a write, a subset of its 512-byte sectors chosen by `seed`; for a directory
    /// operation, all or nothing by `seed`.
    TearLast {
        /// Chooses which sectors survive.
        seed: u64,
    },
}

/// The in-memory, fault-injecting backend. Cloning shares the same file system.
#[derive(Clone, Default)]
pub struct FaultyStorage {
    state: Arc<Mutex<State>>,
    /// Wakes syncs waiting while [`FaultyStorage::hold_syncs`] is in force.
    syncs_released: Arc<Condvar>,
}

impl fmt::Debug for FaultyStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("FaultyStorage")
            .field("files", &state.names.keys().collect::<Vec<_>>())
            .field("operations", &state.operations)
            .finish()
    }
}

#[derive(Default)]
struct State {
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    /// Visible namespace: path -> inode.
    names: BTreeMap<PathBuf, u64>,
    /// Namespace as of the last directory syncs.
    durable_names: BTreeMap<PathBuf, u64>,
    /// Directory operations not yet made durable, in order.
    pending_dir_ops: Vec<DirOp>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    /// Mutating operations performed so far.
    operations: u64,
    /// After this many mutating operations every further one fails.
    stop_after: Option<u64>,
    fail_next_sync: bool,
    fail_next_write: bool,
    /// `sync_data` waits while this is set (a slow disk, for tests of who blocks).
    syncs_held: bool,
}

#[derive(Debug, Clone)]
enum DirOp {
    Link {
        path: PathBuf,
        inode: u64,
    },
    Unlink {
        path: PathBuf,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
        inode: u64,
    },
}

impl DirOp {
    fn dir(&self) -> &Path {
        let path = match self {
            DirOp::Link { path, .. } | DirOp::Unlink { path } => path,
            DirOp::Rename { to, .. } => to,
        };
        path.parent().unwrap_or(Path::new(""))
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, u64>) {
        match self {
            DirOp::Link { path, inode } => {
                names.insert(path.clone(), *inode);
            }
            DirOp::Unlink { path } => {
                names.remove(path);
            }
            DirOp::Rename { from, to, inode } => {
                names.remove(from);
                names.insert(to.clone(), *inode);
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Inode {
    written: Vec<u8>,
    durable: Vec<u8>,
    /// Writes since the last sync, in order: (offset, data).
    pending: Vec<(u64, Vec<u8>)>,
}

fn simulated(kind: &str) -> io::Error {
    io::Error::other(format!("simulated {kind}"))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

fn apply_write(target: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = usize::try_from(offset).expect("offset fits in memory");
    if target.len() < start + data.len() {
        target.resize(start + data.len(), 0);
    }
    target[start..start + data.len()].copy_from_slice(data);
}

/// A deterministic 64-bit mix (splitmix64) for choosing torn sectors.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl State {
    /// Counts one mutating operation; fails if the storage has stopped.
    fn tick(&mut self) -> io::Result<()> {
        if let Some(limit) = self.stop_after
            && self.operations >= limit
        {
            return Err(simulated("crash: the process is gone"));
        }
        self.operations += 1;
        Ok(())
    }

    fn inode_of(&self, path: &Path) -> io::Result<u64> {
        self.names.get(path).copied().ok_or_else(|| not_found(path))
    }
}

impl FaultyStorage {
    /// An empty file system.
    pub fn new() -> FaultyStorage {
        FaultyStorage::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Mutating operations (create, write, sync, rename, remove, directory sync)
    /// performed so far.
    pub fn operations(&self) -> u64 {
        self.lock().operations
    }

    /// From now on, after `count` more mutating operations every further one fails,
    /// as if the process had died at that instant. Use [`FaultyStorage::crash`]
    /// afterwards to decide what reached the disk.
    pub fn stop_after(&self, count: u64) {
        let mut state = self.lock();
        state.stop_after = Some(state.operations + count);
    }

    /// Makes the next `sync_data` fail (it does not make anything durable).
    pub fn fail_next_sync(&self) {
        self.lock().fail_next_sync = true;
    }

    /// Makes every `sync_data` from now on wait until [`FaultyStorage::release_syncs`]
    /// (a disk that takes arbitrarily long), so tests can tell which calls block.
    pub fn hold_syncs(&self) {
        self.lock().syncs_held = true;
    }

    /// Lets held and later syncs proceed.
    pub fn release_syncs(&self) {
        self.lock().syncs_held = false;
        self.syncs_released.notify_all();
    }

    /// Makes the next `write_all_at` fail without writing anything.
    pub fn fail_next_write(&self) {
        self.lock().fail_next_write = true;
    }

    /// Simulates a power loss: drops locks and open-file state and keeps, per `mode`,
    /// what was not yet synced. The storage accepts operations again afterwards.
    /// Handles opened before the crash must not be used again.
    pub fn crash(&self, mode: CrashMode) {
        let mut state = self.lock();
        let state = &mut *state;
        let pending = std::mem::take(&mut state.pending_dir_ops);
        let keep = match mode {
            CrashMode::DropUnsynced => 0,
            CrashMode::KeepUnsynced => pending.len(),
            CrashMode::TearLast { seed } => {
                let last_survives = mix(seed ^ 0xD1) & 1 == 1;
                pending.len().saturating_sub(usize::from(!last_survives))
            }
        };
        for op in &pending[..keep] {
            op.apply(&mut state.durable_names);
        }
        state.names = state.durable_names.clone();
        for (&number, inode) in state.inodes.iter_mut() {
            let pending = std::mem::take(&mut inode.pending);
            match mode {
                CrashMode::DropUnsynced => {}
                CrashMode::KeepUnsynced => inode.durable = inode.written.clone(),
                CrashMode::TearLast { seed } => {
                    if let Some(((last_offset, last_data), earlier)) = pending.split_last() {
                        for (offset, data) in earlier {
                            apply_write(&mut inode.durable, *offset, data);
                        }
                        let end = last_offset + last_data.len() as u64;
                        let mut sector_start = *last_offset;
                        while sector_start < end {
                            let sector = sector_start / SECTOR_BYTES;
                            let sector_end = ((sector + 1) * SECTOR_BYTES).min(end);
                            if mix(seed ^ mix(number) ^ sector) & 1 == 1 {
                                let from = (sector_start - last_offset) as usize;
                                let to = (sector_end - last_offset) as usize;
                                apply_write(&mut inode.durable, sector_start, &last_data[from..to]);
                            }
                            sector_start = sector_end;
                        }
                    }
                }
            }
            inode.written = inode.durable.clone();
        }
        state.locks.clear();
        state.stop_after = None;
        state.fail_next_sync = false;
        state.fail_next_write = false;
    }

    /// Flips bit `bit` (0..8) of byte `offset` in `path`, in both the written and the
    /// durable image. Returns false if the file or the byte does not exist.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> bool {
        let mut state = self.lock();
        let Some(&number) = state.names.get(path) else {
            return false;
        };
        let inode = state.inodes.get_mut(&number).expect("named inode exists");
        let at = offset as usize;
        if at >= inode.written.len() || at >= inode.durable.len() {
            return false;
        }
        inode.written[at] ^= 1 << (bit % 8);
        inode.durable[at] ^= 1 << (bit % 8);
        true
    }

    /// The durable bytes of `path`, if it exists in the visible namespace.
    pub fn durable_contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        let number = state.names.get(path)?;
        Some(state.inodes[number].durable.clone())
    }

    /// The written (possibly unsynced) bytes of `path`.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        let number = state.names.get(path)?;
        Some(state.inodes[number].written.clone())
    }

    /// Creates or replaces `path` with `data`, durably (name and bytes), creating its
    /// parent directories. For tests and fuzzing that build files by hand.
    pub fn put_durable(&self, path: &Path, data: &[u8]) {
        let mut state = self.lock();
        let mut dir = path.parent();
        while let Some(parent) = dir {
            state.dirs.insert(parent.to_path_buf());
            dir = parent.parent();
        }
        let number = state.next_inode;
        state.next_inode += 1;
        state.inodes.insert(
            number,
            Inode {
                written: data.to_vec(),
                durable: data.to_vec(),
                pending: Vec::new(),
            },
        );
        state.names.insert(path.to_path_buf(), number);
        state.durable_names.insert(path.to_path_buf(), number);
    }

    /// Paths of all files in the visible namespace.
    pub fn files(&self) -> Vec<PathBuf> {
        self.lock().names.keys().cloned().collect()
    }
}

struct FaultyFile {
    storage: FaultyStorage,
    inode: u64,
    writable: bool,
}

impl fmt::Debug for FaultyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyFile")
            .field("inode", &self.inode)
            .finish()
    }
}

impl StorageFile for FaultyFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let state = self.storage.lock();
        let data = &state.inodes[&self.inode].written;
        let start = usize::try_from(offset).map_err(|_| simulated("offset overflow"))?;
        match start.checked_add(buf.len()) {
            Some(end) if end <= data.len() => {
                buf.copy_from_slice(&data[start..end]);
                Ok(())
            }
            _ => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past end",
            )),
        }
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.storage.lock();
        if !self.writable {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only handle",
            ));
        }
        state.tick()?;
        if std::mem::take(&mut state.fail_next_write) {
            return Err(simulated("write failure"));
        }
        let inode = state
            .inodes
            .get_mut(&self.inode)
            .expect("open inode exists");
        apply_write(&mut inode.written, offset, buf);
        inode.pending.push((offset, buf.to_vec()));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.storage.lock();
        while state.syncs_held {
            state = self
                .storage
                .syncs_released
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        state.tick()?;
        if std::mem::take(&mut state.fail_next_sync) {
            return Err(simulated("fsync failure"));
        }
        let inode = state
            .inodes
            .get_mut(&self.inode)
            .expect("open inode exists");
        inode.durable = inode.written.clone();
        inode.pending.clear();
        Ok(())
    }

    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.storage.lock().inodes[&self.inode].written.len() as u64)
    }

    fn map_sealed(&self) -> io::Result<Bytes> {
        Ok(Bytes::copy_from_slice(
            &self.storage.lock().inodes[&self.inode].written,
        ))
    }
}

struct FaultyLock {
    storage: FaultyStorage,
    path: PathBuf,
}

impl Drop for FaultyLock {
    fn drop(&mut self) {
        self.storage.lock().locks.remove(&self.path);
    }
}

impl Storage for FaultyStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        // Directories are modelled as durable on creation: the log creates them once,
        // before it writes anything that depends on them.
        let mut state = self.lock();
        let mut current = Some(dir);
        while let Some(path) = current {
            state.dirs.insert(path.to_path_buf());
            current = path.parent();
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(state
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        let mut state = self.lock();
        let inode = match mode {
            OpenMode::CreateNew => {
                if state.names.contains_key(path) {
                    return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists"));
                }
                if !path.parent().is_some_and(|dir| state.dirs.contains(dir)) {
                    return Err(not_found(path));
                }
                state.tick()?;
                let number = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(number, Inode::default());
                state.names.insert(path.to_path_buf(), number);
                state.pending_dir_ops.push(DirOp::Link {
                    path: path.to_path_buf(),
                    inode: number,
                });
                number
            }
            OpenMode::ReadWrite | OpenMode::Read => state.inode_of(path)?,
        };
        drop(state);
        Ok(Arc::new(FaultyFile {
            storage: self.clone(),
            inode,
            writable: mode != OpenMode::Read,
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.inode_of(path)?;
        state.tick()?;
        state.names.remove(path);
        state.pending_dir_ops.push(DirOp::Unlink {
            path: path.to_path_buf(),
        });
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let inode = state.inode_of(from)?;
        state.tick()?;
        state.names.remove(from);
        state.names.insert(to.to_path_buf(), inode);
        state.pending_dir_ops.push(DirOp::Rename {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            inode,
        });
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.tick()?;
        let state = &mut *state;
        let (synced, rest): (Vec<DirOp>, Vec<DirOp>) = std::mem::take(&mut state.pending_dir_ops)
            .into_iter()
            .partition(|op| op.dir() == dir);
        for op in &synced {
            op.apply(&mut state.durable_names);
        }
        state.pending_dir_ops = rest;
        Ok(())
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<LockGuard>> {
        let mut state = self.lock();
        if !state.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        Ok(Some(LockGuard::new(Box::new(FaultyLock {
            storage: self.clone(),
            path: path.to_path_buf(),
        }))))
    }
}
