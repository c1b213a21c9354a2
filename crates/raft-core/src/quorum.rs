//! Quorum arithmetic: which index a majority has reached, and whether an election is
//! won, for a single voter set and for a joint configuration (§6: decisions need a
//! majority of C_old *and* of C_new). Kept free of any node state so that property
//! tests can compare it with a naive reference.

use std::collections::{BTreeMap, BTreeSet};

use crate::membership::Membership;
use crate::types::{LogIndex, NodeId};

/// The outcome of counting votes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VoteResult {
    /// Not decided yet: missing votes could still go either way.
    Pending,
    /// A quorum granted the vote.
    Won,
    /// A quorum can no longer be reached.
    Lost,
}

/// The highest index that a majority of `voters` has reached, where `acked` gives
/// each voter's index (a voter missing from it counts as 0). An empty voter set
/// places no constraint, so it returns `LogIndex(u64::MAX)`; this makes the joint
/// rule a plain minimum.
pub fn majority_committed_index(
    voters: &BTreeSet<NodeId>,
    acked: &BTreeMap<NodeId, LogIndex>,
) -> LogIndex {
    if voters.is_empty() {
        return LogIndex(u64::MAX);
    }
    let mut indexes: Vec<LogIndex> = voters
        .iter()
        .map(|id| acked.get(id).copied().unwrap_or_default())
        .collect();
    // Sorted descending, the entry at position n/2 is held by n/2 + 1 voters: a majority.
    indexes.sort_unstable_by(|a, b| b.cmp(a));
    indexes[voters.len() / 2]
}

/// The committed index of a (possibly joint) configuration: the minimum over its halves.
pub fn committed_index(membership: &Membership, acked: &BTreeMap<NodeId, LogIndex>) -> LogIndex {
    let incoming = majority_committed_index(&membership.voters, acked);
    let outgoing = majority_committed_index(&membership.voters_outgoing, acked);
    let index = incoming.min(outgoing);
    // Both halves empty: no voters at all, nothing can be committed.
    if index == LogIndex(u64::MAX) {
        LogIndex(0)
    } else {
        index
    }
}

/// The result of an election among `voters`, given the votes received so far. An
/// empty voter set counts as won (it places no constraint).
pub fn majority_vote_result(
    voters: &BTreeSet<NodeId>,
    votes: &BTreeMap<NodeId, bool>,
) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let (mut granted, mut missing) = (0, 0);
    for id in voters {
        match votes.get(id) {
            Some(true) => granted += 1,
            Some(false) => {}
            None => missing += 1,
        }
    }
    let quorum = voters.len() / 2 + 1;
    if granted >= quorum {
        VoteResult::Won
    } else if granted + missing >= quorum {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

/// The result of an election in a (possibly joint) configuration: won only if both
/// halves are won, lost if either is lost.
pub fn vote_result(membership: &Membership, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    let incoming = majority_vote_result(&membership.voters, votes);
    let outgoing = majority_vote_result(&membership.voters_outgoing, votes);
    match (incoming, outgoing) {
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        _ => VoteResult::Pending,
    }
}

/// Whether the members in `active` form a quorum of the configuration (used by
/// check-quorum).
pub fn is_quorum(membership: &Membership, active: &BTreeSet<NodeId>) -> bool {
    let votes: BTreeMap<NodeId, bool> = membership
        .all_voters()
        .into_iter()
        .map(|id| (id, active.contains(&id)))
        .collect();
    vote_result(membership, &votes) == VoteResult::Won
}
