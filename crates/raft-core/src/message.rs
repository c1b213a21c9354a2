//! The messages members exchange. Plain data: raft-transport gives them a wire
//! format, the simulator delivers them in memory. Every message carries the sender's
//! term; the receiver applies the term rules of §5.1 before looking at the body.

use crate::storage::SnapshotMeta;
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
    /// The answer to a heartbeat (or, naming no round, to an append or snapshot of an
    /// older term: it tells a deposed leader the newer term).
    HeartbeatResponse(HeartbeatResponse),
    /// A heartbeat that also confirms leadership for pending ReadIndex reads (§6.4):
    /// each answer names the round it answers, so only answers to rounds sent after
    /// a read arrived count toward that read's quorum.
    ReadHeartbeat(ReadHeartbeat),
    /// The answer to a read heartbeat.
    ReadHeartbeatResponse(ReadHeartbeatResponse),
    /// A follower asks the leader for a read index on behalf of one of its clients.
    ReadIndex(ReadIndexRequest),
    /// The leader's answer: the read may be served once the follower applied `index`.
    ReadIndexResponse(ReadIndexResponse),
    /// Leader transfer (§3.10 of Ongaro's thesis): the leader tells an up-to-date
    /// member to start an election at once.
    TimeoutNow,
    /// The leader's log before the follower's next entry was compacted: install this
    /// snapshot instead. The snapshot's data travels beside the message (the
    /// transport streams it); the message is stepped into the follower once the data
    /// has arrived. Answered with an [`AppendResponse`].
    InstallSnapshot(SnapshotMeta),
    /// A vote request from a member that the leader told to take over (after
    /// `TimeoutNow`). Answered like [`MessageBody::Vote`], but even by members that
    /// heard from the leader within the election timeout: the leader asked for it.
    TransferVote(VoteRequest),
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
            MessageBody::HeartbeatResponse(_) => "heartbeat_response",
            MessageBody::ReadHeartbeat(_) => "read_heartbeat",
            MessageBody::ReadHeartbeatResponse(_) => "read_heartbeat_response",
            MessageBody::ReadIndex(_) => "read_index",
            MessageBody::ReadIndexResponse(_) => "read_index_response",
            MessageBody::TimeoutNow => "timeout_now",
            MessageBody::TransferVote(_) => "transfer_vote",
            MessageBody::InstallSnapshot(_) => "install_snapshot",
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
    /// Like `Rejected`, from a member that restarted from a log that may have lost
    /// entries it acknowledged (see
    /// [`InitialState::log_may_have_lost_entries`](crate::InitialState::log_may_have_lost_entries)):
    /// the match index the leader holds for it may name entries it no longer has,
    /// so the leader forgets it and probes the member afresh from the hint.
    RejectedAfterLoss {
        /// The `prev_log_index` of the rejected append.
        rejected_index: LogIndex,
        /// As in `Rejected`.
        hint_index: LogIndex,
        /// As in `Rejected`.
        hint_term: Term,
    },
}

/// Names one round of heartbeats (plain or read) of one leader. The answers echo it,
/// so the leader knows exactly which round an answer acknowledges, and so when that
/// round left (the lease runs from the send time of a round a quorum answered). An
/// answer naming another term's round acknowledges nothing in this term.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct HeartbeatRound {
    /// The term of the leader that sent the round.
    pub term: Term,
    /// The round's number; grows with every round the leader sends in its term.
    pub sequence: u64,
}

/// A heartbeat from the leader.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Heartbeat {
    /// The leader's commit index, capped at what the follower is known to hold.
    pub leader_commit: LogIndex,
    /// The round this heartbeat belongs to.
    pub round: HeartbeatRound,
}

/// The answer to a [`Heartbeat`] or [`ReadHeartbeat`] that confirms no read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HeartbeatResponse {
    /// The round answered, copied from the heartbeat; `None` when answering an append
    /// or snapshot of an older term (the answer then only carries the newer term).
    pub round: Option<HeartbeatRound>,
}

/// A heartbeat that also confirms leadership for pending reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReadHeartbeat {
    /// The leader's commit index, capped at what the follower is known to hold.
    pub leader_commit: LogIndex,
    /// The round this heartbeat belongs to.
    pub round: HeartbeatRound,
}

/// The answer to a [`ReadHeartbeat`] of the follower's current term.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReadHeartbeatResponse {
    /// The round answered, copied from the heartbeat.
    pub round: HeartbeatRound,
}

/// The follower's wire id for one forwarded read, distinct from its caller's request
/// id. It names the follower's process incarnation, so an answer meant for an
/// earlier process of the same member (kept queued by the transport across a lost
/// connection) matches no read of the current one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct ForwardedReadId {
    /// The follower's [`Config::incarnation`](crate::Config::incarnation).
    pub incarnation: u64,
    /// Grows with every read the follower forwards in this incarnation.
    pub sequence: u64,
}

/// A follower's request for a read index.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReadIndexRequest {
    /// The follower's id for the request, echoed in the answer.
    pub id: ForwardedReadId,
}

/// The leader's answer to a [`ReadIndexRequest`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReadIndexResponse {
    /// The follower's id for the request.
    pub id: ForwardedReadId,
    /// The read index, or `None` if the leader could not serve the read (it is
    /// transferring leadership or stepped down); the follower retries.
    pub index: Option<LogIndex>,
}
