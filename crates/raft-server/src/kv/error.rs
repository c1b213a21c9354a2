//! [`KvError`]: every way decoding, validating or restoring the state machine fails.
//! Variants carry structured fields, never a message to be matched.

/// An error of the key-value state machine: a malformed command, member context or
/// snapshot, an invalid API request, or snapshot I/O.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// The input is not a valid encoding: `what` names the field or rule broken.
    #[error("malformed input: {what}")]
    Malformed {
        /// The field or rule that is wrong.
        what: &'static str,
    },
    /// The input ends inside `what`: a length or count promises more bytes than follow.
    #[error("truncated input: it ends inside {what}")]
    Truncated {
        /// The field the input ends in.
        what: &'static str,
    },
    /// The encoding's format version is not one this build reads.
    #[error("unsupported {what} format version {version}")]
    UnsupportedVersion {
        /// Which encoding: `command`, `member context` or `snapshot`.
        what: &'static str,
        /// The version found.
        version: u32,
    },
    /// The input does not start with the snapshot magic: it is not a snapshot.
    #[error("not a key-value snapshot: bad magic")]
    BadMagic,
    /// The snapshot's crc32 trailer does not match its contents.
    #[error("snapshot checksum mismatch: trailer {expected:#010x}, contents {actual:#010x}")]
    ChecksumMismatch {
        /// The checksum the trailer records.
        expected: u32,
        /// The checksum of the bytes read.
        actual: u32,
    },
    /// A key outside 1..=[`MAX_KEY_BYTES`](crate::kv::MAX_KEY_BYTES) bytes.
    #[error("key of {length} bytes: keys are 1..=4096 bytes")]
    KeyLength {
        /// The key's length in bytes.
        length: usize,
    },
    /// A transaction compare that does not give exactly one of `value`,
    /// `mod_revision` and `exists`.
    #[error("compare {index}: give exactly one of value, mod_revision, exists")]
    InvalidCompare {
        /// The compare's position in the request.
        index: usize,
    },
    /// A field too long for the encoding's u32 length prefix.
    #[error("{what} of {length} bytes is longer than the encoding allows ({limit})")]
    TooLarge {
        /// The field.
        what: &'static str,
        /// Its length in bytes.
        length: u64,
        /// The largest length allowed.
        limit: u64,
    },
    /// Reading the snapshot failed (other than by ending early, which is
    /// [`KvError::Truncated`]).
    #[error("snapshot I/O failed")]
    Io(#[from] std::io::Error),
}
