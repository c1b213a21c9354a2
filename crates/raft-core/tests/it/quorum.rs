//! Property tests of the quorum and commit-index math against a naive reference.
//!
//! `raft_core::quorum` sorts and indexes; the references here count by definition:
//!
//! - committed index of one voter set: the largest `i` such that more than half the
//!   voters acked `>= i`, found by brute force over every candidate value (0 and each
//!   acked index); a voter missing from `acked` counts as 0. Empty voter set:
//!   `u64::MAX` (no constraint).
//! - joint committed index: both halves must hold it (the minimum), with both halves
//!   empty meaning 0 (no voters, nothing commits).
//! - vote result of one voter set: won when granted votes exceed half, lost when even
//!   every missing vote granted could not exceed half, pending otherwise; votes from
//!   non-voters are ignored. Empty voter set: won.
//! - joint vote result: won if both halves won, lost if either lost.
//! - `is_quorum`: the active members alone win an election in which everybody else
//!   says no.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use raft_core::quorum::{
    VoteResult, committed_index, is_quorum, majority_committed_index, majority_vote_result,
    vote_result,
};
use raft_core::{LogIndex, Membership, NodeId};

/// Ids drawn from a small universe so that voter sets, acks and votes overlap a lot
/// (and sometimes name non-voters).
fn ids() -> impl Strategy<Value = BTreeSet<NodeId>> {
    prop::collection::btree_set((1u64..10).prop_map(NodeId), 0..8)
}

fn acks() -> impl Strategy<Value = BTreeMap<NodeId, LogIndex>> {
    prop::collection::btree_map(
        (1u64..10).prop_map(NodeId),
        (0u64..8).prop_map(LogIndex),
        0..10,
    )
}

fn votes() -> impl Strategy<Value = BTreeMap<NodeId, bool>> {
    prop::collection::btree_map((1u64..10).prop_map(NodeId), any::<bool>(), 0..10)
}

fn membership() -> impl Strategy<Value = Membership> {
    (ids(), ids(), ids()).prop_map(|(voters, voters_outgoing, learners)| Membership {
        voters,
        voters_outgoing,
        learners,
    })
}

fn acked(acked: &BTreeMap<NodeId, LogIndex>, id: NodeId) -> u64 {
    acked.get(&id).map_or(0, |i| i.0)
}

/// The largest index that more than half of `voters` acked, by brute force.
fn reference_majority_index(voters: &BTreeSet<NodeId>, acks: &BTreeMap<NodeId, LogIndex>) -> u64 {
    if voters.is_empty() {
        return u64::MAX;
    }
    let candidates = std::iter::once(0).chain(voters.iter().map(|&id| acked(acks, id)));
    candidates
        .filter(|&i| 2 * voters.iter().filter(|&&id| acked(acks, id) >= i).count() > voters.len())
        .max()
        .expect("index 0 is held by every voter")
}

fn reference_joint_index(m: &Membership, acks: &BTreeMap<NodeId, LogIndex>) -> u64 {
    if m.voters.is_empty() && m.voters_outgoing.is_empty() {
        return 0;
    }
    reference_majority_index(&m.voters, acks)
        .min(reference_majority_index(&m.voters_outgoing, acks))
}

fn reference_vote(voters: &BTreeSet<NodeId>, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    if voters.is_empty() {
        return VoteResult::Won;
    }
    let granted = voters
        .iter()
        .filter(|id| votes.get(id) == Some(&true))
        .count();
    let missing = voters.iter().filter(|id| !votes.contains_key(id)).count();
    let n = voters.len();
    if 2 * granted > n {
        VoteResult::Won
    } else if 2 * (granted + missing) > n {
        VoteResult::Pending
    } else {
        VoteResult::Lost
    }
}

fn reference_joint_vote(m: &Membership, votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    match (
        reference_vote(&m.voters, votes),
        reference_vote(&m.voters_outgoing, votes),
    ) {
        (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
        (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
        _ => VoteResult::Pending,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn majority_committed_index_matches_reference(voters in ids(), acks in acks()) {
        prop_assert_eq!(
            majority_committed_index(&voters, &acks).0,
            reference_majority_index(&voters, &acks)
        );
    }

    /// Acks from non-voters never move the committed index.
    #[test]
    fn non_voter_acks_are_ignored(voters in ids(), acks in acks(), extra in 0u64..100) {
        let mut with_outsider = acks.clone();
        with_outsider.insert(NodeId(100), LogIndex(extra));
        prop_assert_eq!(
            majority_committed_index(&voters, &acks),
            majority_committed_index(&voters, &with_outsider)
        );
    }

    /// Raising one voter's ack never lowers the committed index (monotonicity).
    #[test]
    fn committed_index_is_monotone_in_acks(m in membership(), acks in acks(), who in 1u64..10, by in 0u64..5) {
        let before = committed_index(&m, &acks);
        let mut raised = acks.clone();
        let entry = raised.entry(NodeId(who)).or_default();
        entry.0 += by;
        prop_assert!(committed_index(&m, &raised) >= before);
    }

    #[test]
    fn joint_committed_index_matches_reference(m in membership(), acks in acks()) {
        prop_assert_eq!(committed_index(&m, &acks).0, reference_joint_index(&m, &acks));
    }

    /// A configuration that is not joint commits exactly what its one majority holds.
    #[test]
    fn simple_configuration_is_its_majority(voters in ids(), acks in acks()) {
        prop_assume!(!voters.is_empty());
        let m = Membership::with_voters(voters.iter().copied());
        prop_assert_eq!(committed_index(&m, &acks), majority_committed_index(&voters, &acks));
    }

    #[test]
    fn majority_vote_result_matches_reference(voters in ids(), votes in votes()) {
        prop_assert_eq!(majority_vote_result(&voters, &votes), reference_vote(&voters, &votes));
    }

    #[test]
    fn joint_vote_result_matches_reference(m in membership(), votes in votes()) {
        prop_assert_eq!(vote_result(&m, &votes), reference_joint_vote(&m, &votes));
    }

    /// Pending really means undecided: filling the missing votes one way wins, the
    /// other way loses; and a decided result stays decided whatever the rest say.
    #[test]
    fn vote_result_is_final_once_decided(m in membership(), votes in votes(), fill in any::<bool>()) {
        let mut all_yes = votes.clone();
        let mut all_no = votes.clone();
        let mut filled = votes.clone();
        for id in m.all_voters() {
            all_yes.entry(id).or_insert(true);
            all_no.entry(id).or_insert(false);
            filled.entry(id).or_insert(fill);
        }
        match vote_result(&m, &votes) {
            VoteResult::Pending => {
                prop_assert_eq!(vote_result(&m, &all_yes), VoteResult::Won);
                prop_assert_eq!(vote_result(&m, &all_no), VoteResult::Lost);
            }
            decided => prop_assert_eq!(vote_result(&m, &filled), decided),
        }
    }

    #[test]
    fn is_quorum_matches_reference(m in membership(), active in ids()) {
        let votes: BTreeMap<NodeId, bool> =
            m.all_voters().into_iter().map(|id| (id, active.contains(&id))).collect();
        prop_assert_eq!(is_quorum(&m, &active), reference_joint_vote(&m, &votes) == VoteResult::Won);
        // By definition, too: a strict majority of each non-empty half is active.
        let half_ok = |voters: &BTreeSet<NodeId>| {
            voters.is_empty() || 2 * voters.intersection(&active).count() > voters.len()
        };
        prop_assert_eq!(is_quorum(&m, &active), half_ok(&m.voters) && half_ok(&m.voters_outgoing));
    }
}

/// The documented empty-set conventions, spelled out.
#[test]
fn empty_set_conventions() {
    let none = BTreeSet::new();
    let acks: BTreeMap<NodeId, LogIndex> = [(NodeId(1), LogIndex(5))].into();
    assert_eq!(majority_committed_index(&none, &acks), LogIndex(u64::MAX));
    assert_eq!(
        majority_vote_result(&none, &BTreeMap::new()),
        VoteResult::Won
    );
    // No voters at all: nothing commits, but an election is trivially won.
    let empty = Membership::default();
    assert_eq!(committed_index(&empty, &acks), LogIndex(0));
    assert_eq!(vote_result(&empty, &BTreeMap::new()), VoteResult::Won);
    assert!(is_quorum(&empty, &BTreeSet::new()));
    // Not joint: the empty outgoing half places no constraint.
    let single = Membership::with_voters([NodeId(1)]);
    assert_eq!(committed_index(&single, &acks), LogIndex(5));
    assert_eq!(
        vote_result(&single, &[(NodeId(1), true)].into()),
        VoteResult::Won
    );
    // Joint: {1,2,3} -> {3,4,5}; 1,2,3 acked 7 commits only in C_old.
    let joint = Membership {
        voters: [3, 4, 5].map(NodeId).into(),
        voters_outgoing: [1, 2, 3].map(NodeId).into(),
        learners: BTreeSet::new(),
    };
    let acks: BTreeMap<NodeId, LogIndex> = [(1, 7), (2, 7), (3, 7), (4, 2)]
        .map(|(id, i)| (NodeId(id), LogIndex(i)))
        .into();
    assert_eq!(committed_index(&joint, &acks), LogIndex(2));
}
