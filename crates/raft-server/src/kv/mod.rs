//! The key-value state machine: commands, revisions, transactions and snapshots.
//!
//! [`KvStore`] is what every member applies committed log entries to. It must stay
//! deterministic: the same entries applied in the same order give the same state,
//! byte for byte, on every member. The revision of a write is the raft log index of
//! the entry that carried it, so revisions only grow and agree across members.
//!
//! - [`command`]: [`Command`] and its versioned binary encoding (what a log entry
//!   carries).
//! - [`store`]: [`KvStore`], applying commands and serving reads.
//! - [`members`]: the members table (ids and addresses) that membership entries
//!   update, and the encoding of their `context`.
//! - [`snapshot`]: the streaming, checksummed snapshot format.
//! - [`convert`]: conversions between the HTTP API's JSON types and these types.
//! - [`error`]: [`KvError`], the one error type of this module.

pub mod command;
pub mod convert;
pub mod error;
pub mod members;
pub mod snapshot;
pub mod store;
mod wire;

#[cfg(test)]
mod model_tests;

pub use command::{Command, Compare, Condition, MAX_KEY_BYTES, TxnOp, validate_key};
pub use convert::{ApplyResponse, api_key_value};
pub use error::KvError;
pub use members::{MemberAddress, decode_member_context, encode_member_context};
pub use store::{ApplyResult, KvStore, OpResult, Value};
