//! The crate's only unsafe code: mapping a sealed segment read-only. Everything else
//! in the crate denies `unsafe_code`.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use bytes::Bytes;

/// Maps all of `file` read-only into an owned [`Bytes`].
///
/// The log calls this only for sealed segment files: files that are fully written and fsynced and that nothing writes to, truncates or reuses
/// again (segments are deleted whole; deletion of a mapped file is harmless on Unix
/// because the mapping keeps the inode alive).
pub(crate) fn map_read_only(file: &File) -> io::Result<Bytes> {
    if file.metadata()?.len() == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: a memory map is undefined behaviour only if the underlying file is
    // modified or truncated while mapped. The caller maps only sealed segments, which
    // the log never writes, truncates or reuses after sealing (it only deletes them
    // whole, which leaves an existing mapping intact). The process also holds the
    // data directory's exclusive lock, so no other cooperating process writes them.
    let map = unsafe { memmap2::Mmap::map(file)? };
    Ok(Bytes::from_owner(map))
}
