//! The crate's one error type. Every variant carries structured fields (a path, an
//! offset, an enum reason) so callers match on data, never on message text.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in the write-ahead log.
///
/// The type is `Clone` because one failed write or sync is reported to every waiter
/// of the commit group it belonged to (the I/O error is shared through an [`Arc`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// An operating-system I/O call failed on `path`. After a failed write or sync
    /// the log is poisoned.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The data on disk is damaged in a way that is not a torn tail write. The log
    /// never shortens itself past such damage; an operator must decide.
    #[error("corrupt log file {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file (or, for a missing file, the directory).
        path: PathBuf,
        /// Byte offset of the damage inside `path`.
        offset: u64,
        /// What was wrong.
        reason: CorruptReason,
    },
    /// Another process (or another open handle in this one) holds the data
    /// directory's lock.
    #[error("data directory {path} is locked by another process")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// An earlier write or sync failed; the log refuses all work until reopened.
    #[error("the log refuses work after an earlier write or sync failure: {cause}")]
    Poisoned {
        /// The failure that poisoned the log.
        cause: Arc<WalError>,
    },
    /// The requested index lies before the first index (it was compacted into a
    /// snapshot).
    #[error("index {index} is compacted; the log starts at {first_index}")]
    Compacted {
        /// The index asked for.
        index: u64,
        /// The log's first index.
        first_index: u64,
    },
    /// The requested index lies past the last index.
    #[error("index {index} is past the last index {last_index}")]
    Unavailable {
        /// The index asked for.
        index: u64,
        /// The log's last index.
        last_index: u64,
    },
    /// The append unit, compaction or snapshot install breaks a rule of the log; the
    /// log is unchanged and stays usable.
    #[error("rejected operation: {reason}")]
    Rejected {
        /// Which rule.
        reason: Rejection,
    },
    /// One append unit does not fit in a single segment.
    #[error(
        "append unit of {size_bytes} bytes does not fit a segment of {segment_size_bytes} bytes"
    )]
    TooLarge {
        /// Encoded size of the unit.
        size_bytes: u64,
        /// The configured segment size.
        segment_size_bytes: u64,
    },
    /// The options passed to open are not usable.
    #[error("invalid options: {reason}")]
    InvalidOptions {
        /// What is wrong with them.
        reason: &'static str,
    },
    /// The log was closed while the operation was queued.
    #[error("the log is closed")]
    Closed,
}

/// Kinds of on-disk damage, reported in [`WalError::Corrupt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptReason {
    /// A file does not start with the expected magic bytes.
    #[error("bad magic bytes")]
    BadMagic,
    /// A file was written by an unknown format version.
    #[error("unsupported format version")]
    UnsupportedVersion,
    /// A header or record checksum does not match its bytes.
    #[error("checksum mismatch")]
    BadChecksum,
    /// A record length runs past the end of the file.
    #[error("record length exceeds the bytes that remain")]
    LengthOverrun,
    /// A record has an unknown kind or malformed fields.
    #[error("malformed record")]
    MalformedRecord,
    /// A sealed segment (or a group before the last commit marker) lacks its commit
    /// marker.
    #[error("records without a commit marker")]
    MissingCommitMarker,
    /// Non-zero bytes follow the end of a segment's records.
    #[error("data after the end of the records")]
    DataAfterEnd,
    /// The segment sequence has a gap that compaction does not explain.
    #[error("a segment is missing from the sequence")]
    MissingSegment,
    /// A segment's header disagrees with its file name or with the preceding log.
    #[error("segment header disagrees with its name or the preceding segment")]
    SegmentMismatch,
    /// A record's index does not follow the log it is applied to.
    #[error("record index out of sequence")]
    IndexOutOfSequence,
    /// The log was compacted past every valid snapshot.
    #[error("the log is compacted past the newest valid snapshot")]
    MissingSnapshot,
    /// A file is too short or too long to be what its name says.
    #[error("file has an impossible size")]
    BadSize,
}

/// Why an operation was rejected without touching the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// An index beyond the largest the log supports (2^62).
    #[error("index {index} is out of range")]
    IndexOutOfRange {
        /// The offending index.
        index: u64,
    },
    /// The entries' indexes are not consecutive.
    #[error("entry {found} does not follow entry {previous}")]
    NotContiguous {
        /// Index of the entry before.
        previous: u64,
        /// Index found where `previous + 1` was expected.
        found: u64,
    },
    /// The first entry would leave a gap after the last index.
    #[error("first entry {first} leaves a gap after last index {last_index}")]
    Gap {
        /// The unit's first index.
        first: u64,
        /// The log's last index.
        last_index: u64,
    },
    /// The first entry lies before the log's first index.
    #[error("entry {index} lies before the first index {first_index}")]
    BeforeFirstIndex {
        /// The offending index.
        index: u64,
        /// The log's first index.
        first_index: u64,
    },
    /// Entry terms must not decrease along the log (§5.3).
    #[error("entry {index} has term {term} below the preceding term {previous_term}")]
    TermRegression {
        /// Index of the entry.
        index: u64,
        /// Its term.
        term: u64,
        /// The term of the entry before it.
        previous_term: u64,
    },
    /// Committed entries are never overwritten (§5.3, Log Matching).
    #[error("truncating from {index} would remove committed entries (commit {commit})")]
    TruncatesCommitted {
        /// The first index that would be replaced.
        index: u64,
        /// The durable commit index.
        commit: u64,
    },
    /// The hard state's term, or its commit index, went backwards.
    #[error("hard state goes backwards")]
    HardStateRegression,
    /// A second, different vote in the same term (§5.2: one vote per term).
    #[error("vote changed within term {term}")]
    VoteChanged {
        /// The term.
        term: u64,
    },
    /// The commit index lies past the last index.
    #[error("commit index {commit} is past the last index {last_index}")]
    CommitBeyondLastIndex {
        /// The commit index.
        commit: u64,
        /// The last index after the unit.
        last_index: u64,
    },
    /// Compaction past the newest durable snapshot (entries would be lost).
    #[error("cannot compact to {first_index}: newest snapshot covers up to {snapshot_index}")]
    CompactionBeyondSnapshot {
        /// The first index asked for.
        first_index: u64,
        /// Index of the newest durable snapshot (0 if none).
        snapshot_index: u64,
    },
    /// A snapshot older than what the log or the snapshot directory already holds.
    #[error("snapshot at {index} is older than the current state at {current_index}")]
    StaleSnapshot {
        /// The snapshot's index.
        index: u64,
        /// What is already durable.
        current_index: u64,
    },
}

impl WalError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> WalError {
        WalError::Io {
            path: path.into(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: CorruptReason,
    ) -> WalError {
        WalError::Corrupt {
            path: path.into(),
            offset,
            reason,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = WalError> = std::result::Result<T, E>;
