//! A segmented, checksummed write-ahead log for Raft: group commit, crash recovery
//! and snapshot-driven compaction. Nothing here knows the Raft protocol; it stores
//! `(index, term, payload)` records, the durable hard state and snapshot files.
#![forbid(unsafe_code)]
