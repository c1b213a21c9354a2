//! A node's state as plain data, for status endpoints and metrics (which live in the
//! server, not here).

use crate::progress::ProgressState;
use crate::types::{LogIndex, NodeId, Term};

/// The role a member plays in its current term.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking for pre-votes, without having raised its term (§9.6).
    PreCandidate,
    /// Campaigning for votes in its term (§5.2).
    Candidate,
    /// Leads its term.
    Leader,
}

/// A snapshot of one node's state.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Status {
    /// This member.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// Whom it voted for in the current term.
    pub vote: Option<NodeId>,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// The highest index known committed.
    pub commit_index: LogIndex,
    /// The highest index the application reported applied.
    pub applied_index: LogIndex,
    /// The last index of its log (durable or not).
    pub last_index: LogIndex,
    /// The last index known durable on this member.
    pub persisted_index: LogIndex,
    /// The index the log was last compacted to.
    pub snapshot_index: LogIndex,
    /// On a leader, each other member's replication progress, by id.
    pub progress: Vec<PeerProgress>,
    /// The member started from a log that may have lost acknowledged entries
    /// ([`InitialState::log_may_have_lost_entries`](crate::InitialState::log_may_have_lost_entries))
    /// and no leader has caught it up yet: it neither votes nor campaigns. Once this
    /// turns false (the catching-up entries are durable), the driver clears the
    /// store's durable flag.
    pub catching_up: bool,
}

/// A leader's view of one member's replication.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PeerProgress {
    /// The member.
    pub id: NodeId,
    /// The highest index known to match the leader's log.
    pub match_index: LogIndex,
    /// The next index the leader will send.
    pub next_index: LogIndex,
    /// The flow-control state.
    pub state: ProgressState,
    /// Appends sent and not yet acknowledged.
    pub inflight_appends: usize,
    /// Whether the member was heard from in the current check-quorum round.
    pub recent_active: bool,
}
