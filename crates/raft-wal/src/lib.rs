//! A segmented, checksummed write-ahead log for Raft: group commit, crash recovery
//! and snapshot-driven compaction. Nothing here knows the Raft protocol; it stores
//! `(index, term, payload)` records, the durable hard state and snapshot files.
//!
//! What it keeps true: an append is acknowledged only after the `fdatasync` covering
//! it returned; a crash at any instant recovers exactly a prefix of what was written
//! that contains everything acknowledged; damage that is not a torn tail is reported
//! as [`WalError::Corrupt`], never skipped; after a failed write or sync the log
//! refuses all work until reopened. Term and vote are also kept in a two-slot
//! hard-state file, so an acknowledged vote survives even the loss of the log group
//! that recorded it; a cut tail that may have been acknowledged is reported in
//! [`RecoveryReport`] until the server clears it; a snapshot received from a leader
//! is staged and becomes the latest only through the install that aligns the log
//! with it. The byte layout and every recovery rule are in `docs/wal-format.md`.
//!
//! Threads: a writer thread forms commit groups from everything queued while the
//! previous group was syncing (no timer), writes each with one write and one
//! `fdatasync`, then publishes it to readers; an acknowledger thread wakes the
//! waiters of large groups while the next group is written; a preparer thread
//! creates, zero-fills and syncs the next segment and deletes compacted ones. A
//! blocking [`Wal::append`] that finds the log idle writes its own group on the
//! calling thread. All file I/O goes through [`storage::Storage`]: real files, or
//! the fault-injecting in-memory [`storage::FaultyStorage`] for tests.
//!
//! ```no_run
//! use bytes::Bytes;
//! use raft_wal::{AppendUnit, Entry, HardState, Wal, WalOptions};
//!
//! let wal = Wal::open("/var/lib/raftd", WalOptions::default())?;
//! let unit = AppendUnit {
//!     hard_state: Some(HardState { term: 1, vote: 1, commit: 0 }),
//!     entries: vec![Entry { index: 1, term: 1, payload: Bytes::from_static(b"x") }],
//! };
//! let durable = wal.append(unit)?; // returns once fsynced
//! assert_eq!(durable.last_index, 1);
//! # Ok::<(), raft_wal::WalError>(())
//! ```
#![deny(unsafe_code)]

mod acknowledger;
mod completion;
mod error;
mod format;
mod hard_state_file;
mod index;
mod preparer;
mod recovery;
mod scan;
mod shared;
mod snapshot;
pub mod storage;
mod wal;
mod writer;

use bytes::Bytes;

pub use completion::Completion;
pub use error::{CorruptReason, Rejection, Result, WalError};
pub use snapshot::{SnapshotMeta, SnapshotReader, SnapshotWriter, StagedSnapshot};
pub use wal::{Wal, WalStats};

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log, from 1.
    pub index: u64,
    /// Term of the leader that created it.
    pub term: u64,
    /// Opaque payload.
    pub payload: Bytes,
}

/// The Raft state that must survive a crash (§5.1, Figure 2): current term, vote
/// (0 = none) and commit index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardState {
    /// Latest term this member has seen.
    pub term: u64,
    /// Member voted for in `term`, 0 if none.
    pub vote: u64,
    /// Highest index known to be committed.
    pub commit: u64,
}

/// One atomic append: an optional hard state and a contiguous run of entries.
///
/// If the first entry's index is at or below the last index, the entries from that
/// index on are replaced (a leader overwrote conflicting entries, §5.3). Either all
/// of the unit is durable after a crash, or none of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendUnit {
    /// New hard state, written after the entries.
    pub hard_state: Option<HardState>,
    /// Entries with consecutive indexes.
    pub entries: Vec<Entry>,
}

/// The log position an acknowledged operation left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Last index of the log after the operation.
    pub last_index: u64,
    /// Term of that entry.
    pub last_term: u64,
}

/// What recovery found that the Raft layer must act on. Kept durably (in the
/// hard-state file) until the server clears it, so a second restart, which no
/// longer sees the damage, still reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// `Some(n)`: a damaged tail was cut that may have held acknowledged records, so
    /// entries (and commit-index updates) this member acknowledged after index `n`
    /// may be missing. Until a leader has caught the log up past what it may have
    /// acknowledged, the member must not grant votes (§5.4.1: its log may look less
    /// up to date than what it promised). Clear it with [`Wal::clear_catching_up`].
    pub catching_up_after: Option<u64>,
}

/// Where the next segment file is prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SegmentPreparation {
    /// On a background thread, ahead of time, off the commit path (production).
    #[default]
    Background,
    /// On the writer thread when a segment fills up: deterministic I/O order, for
    /// crash-point enumeration tests.
    Inline,
}

/// How a log is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalOptions {
    /// Size of every segment file; one append unit must fit in one segment.
    pub segment_size_bytes: u64,
    /// Where the next segment is prepared.
    pub segment_preparation: SegmentPreparation,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            segment_size_bytes: 64 << 20,
            segment_preparation: SegmentPreparation::Background,
        }
    }
}
