//! Who is in the cluster: voters (possibly a joint configuration of incoming and
//! outgoing voters, §6) and learners, which receive the log but never vote.

use std::collections::BTreeSet;

use crate::types::NodeId;

/// The cluster's membership as one configuration.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Membership {
    /// The voters (in a joint configuration, the incoming ones, C_new).
    pub voters: BTreeSet<NodeId>,
    /// In a joint configuration, the outgoing voters (C_old); empty otherwise.
    pub voters_outgoing: BTreeSet<NodeId>,
    /// Members that receive the log but neither vote nor count toward a quorum.
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
    /// A configuration of the given voters and no learners.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership {
            voters: voters.into_iter().collect(),
            ..Membership::default()
        }
    }

    /// Whether `id` votes in this configuration (in either half of a joint one).
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    /// Whether `id` is a member at all.
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }

    /// Every member, voters first, in id order and without repeats.
    pub fn members(&self) -> BTreeSet<NodeId> {
        let mut all: BTreeSet<NodeId> = self.voters.union(&self.voters_outgoing).copied().collect();
        all.extend(self.learners.iter().copied());
        all
    }

    /// Every voter of either half.
    pub fn all_voters(&self) -> BTreeSet<NodeId> {
        self.voters.union(&self.voters_outgoing).copied().collect()
    }
}
