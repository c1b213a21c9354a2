//! The crate's one error type. Protocol events (a stale term, a rejected append) are
//! not errors; these are the things a caller must act on.

use crate::types::{LogIndex, NodeId};

/// What can go wrong when calling a [`Node`](crate::Node).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A proposal was made on a member that is not the leader. Proposals are not
    /// forwarded by the core: the caller retries at `leader` (if known).
    #[error("not the leader (leader is {leader:?})")]
    NotLeader {
        /// The leader this member knows of, if any.
        leader: Option<NodeId>,
    },
    /// A lease read was asked for while check-quorum is off: without it a leader
    /// cannot know it still leads.
    #[error("lease reads need check_quorum")]
    LeaseReadWithoutCheckQuorum,
    /// The leader is handing leadership to `to` and takes no proposals meanwhile.
    #[error("leadership transfer to {to} in progress")]
    TransferInProgress {
        /// The member taking over.
        to: NodeId,
    },
    /// Leadership can only be transferred to another voter.
    #[error("member {to} cannot take over leadership (not a voter)")]
    InvalidTransferTarget {
        /// The member asked for.
        to: NodeId,
    },
    /// A configuration change is still in progress (not committed, or the cluster
    /// is in a joint configuration); one change at a time.
    #[error("a membership change is already in progress")]
    MembershipChangeInProgress,
    /// The requested configuration change breaks a rule.
    #[error("invalid membership change: {reason}")]
    InvalidMembershipChange {
        /// Which rule.
        reason: &'static str,
    },
    /// The configuration is invalid.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// Which rule was broken.
        reason: &'static str,
    },
    /// A message broke the protocol's framing rules (for example entries that are
    /// not contiguous); it was ignored.
    #[error("malformed message from {from}: {reason}")]
    MalformedMessage {
        /// The sender.
        from: NodeId,
        /// What was wrong.
        reason: &'static str,
    },
    /// The log store failed; the node refuses further work.
    #[error("log store failed: {0}")]
    Storage(#[from] StorageError),
}

/// What a [`LogStore`](crate::LogStore) can report.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageError {
    /// The index lies before the first retained entry (it is in a snapshot).
    #[error("index {index} is compacted")]
    Compacted {
        /// The index asked for.
        index: LogIndex,
    },
    /// The index lies after the last stored entry.
    #[error("index {index} is not stored yet")]
    Unavailable {
        /// The index asked for.
        index: LogIndex,
    },
    /// The store could not read its data.
    #[error("log store I/O failure: {message}")]
    Io {
        /// A description of the failure, for the operator.
        message: String,
    },
}
