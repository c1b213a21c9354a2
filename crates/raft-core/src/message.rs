//! The messages members exchange. Plain data: raft-transport gives them a wire
//! format, the simulator delivers them in memory. Every message carries the sender's
//! term; the receiver applies the term rules of §5.1 before looking at the body.

use crate::types::{Entry, LogIndex, NodeId, Term};

/// One message between two members.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's term; for a pre-vote request, the term the sender would campaign in.
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of message (Raft paper §5, pre-vote from §9.6 of Ongaro's thesis).
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum MessageBody {
    /// "Would you vote for me in `term`?" Changes no state on either side (§9.6).
    PreVote(VoteRequest),
    /// The answer to a pre-vote request.
    PreVoteResponse(VoteResponse),
    /// RequestVote (§5.2).
    Vote(VoteRequest),
    /// The answer to a vote request.
    VoteResponse(VoteResponse),
    /// AppendEntries carrying entries (§5.3).
    Append(AppendRequest),
    /// The answer to an append.
    AppendResponse(AppendResponse),
    /// An empty AppendEntries that keeps followers from starting elections and carries
    /// the commit index the follower is known to hold.
    Heartbeat(Heartbeat),
    /// The answer to a heartbeat.
    HeartbeatResponse,
}

impl MessageBody {
    /// A short name of the message kind, for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::PreVote(_) => "pre_vote",
            MessageBody::PreVoteResponse(_) => "pre_vote_response",
            MessageBody::Vote(_) => "vote",
            MessageBody::VoteResponse(_) => "vote_response",
            MessageBody::Append(_) => "append",
            MessageBody::AppendResponse(_) => "append_response",
            MessageBody::Heartbeat(_) => "heartbeat",
            MessageBody::HeartbeatResponse => "heartbeat_response",
        }
    }
}

/// A (pre-)vote request: the candidate's last log position, for the up-to-date check
/// of §5.4.1.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VoteRequest {
    /// Index of the candidate's last log entry.
    pub last_log_index: LogIndex,
    /// Term of the candidate's last log entry.
    pub last_log_term: Term,
}

/// A (pre-)vote answer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VoteResponse {
    /// Whether the vote was granted.
    pub granted: bool,
}

/// AppendEntries (§5.3): entries that follow `prev_log_index`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AppendRequest {
    /// Index of the entry just before the carried ones.
    pub prev_log_index: LogIndex,
    /// Term of that entry.
    pub prev_log_term: Term,
    /// Contiguous entries starting at `prev_log_index + 1`; may be empty.
    pub entries: Vec<Entry>,
    /// The leader's commit index.
    pub leader_commit: LogIndex,
}

/// The answer to an append.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AppendResponse {
    /// The follower's log matches the leader's through `match_index`. Sent only after
    /// the entries it covers are durable on the follower.
    Accepted {
        /// The highest index known to match the leader's log.
        match_index: LogIndex,
    },
    /// The follower has no entry matching (`prev_log_index`, `prev_log_term`).
    Rejected {
        /// The `prev_log_index` of the rejected append.
        rejected_index: LogIndex,
        /// The follower's guess of where the logs may agree: the largest index not
        /// beyond `rejected_index` and its last index whose term is at most the
        /// rejected `prev_log_term`. Lets the leader skip a whole term per round trip.
        hint_index: LogIndex,
        /// The term of the follower's entry at `hint_index`.
        hint_term: Term,
    },
}

/// A heartbeat from the leader.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Heartbeat {
    /// The leader's commit index, capped at what the follower is known to hold.
    pub leader_commit: LogIndex,
}
