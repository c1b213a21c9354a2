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

impl Membership {
    /// Whether this is a joint configuration (C_old,new).
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }
}

/// A configuration change a leader is asked to make. Every change that alters the
/// voters goes through joint consensus (§6): C_old,new first, then C_new, which the
/// leader proposes by itself once C_old,new is committed. A change that only adds
/// learners takes effect in one step.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MembershipChange {
    /// Add a member that receives the log but does not vote.
    AddLearner(NodeId),
    /// Make a learner a voter.
    Promote(NodeId),
    /// Remove a voter or learner (possibly the leader itself, which steps down once
    /// the configuration without it is committed).
    Remove(NodeId),
    /// Replace the voters and learners wholesale.
    Replace {
        /// The voters of the new configuration.
        voters: BTreeSet<NodeId>,
        /// The learners of the new configuration.
        learners: BTreeSet<NodeId>,
    },
}

impl MembershipChange {
    /// The configuration `current` (not joint) moves through first: joint if the
    /// voters change, else the target itself. Names the rule a bad change breaks.
    pub fn first_step(&self, current: &Membership) -> Result<Membership, &'static str> {
        let mut voters = current.voters.clone();
        let mut learners = current.learners.clone();
        match self {
            MembershipChange::AddLearner(id) => {
                if current.contains(*id) {
                    return Err("the member already belongs to the cluster");
                }
                learners.insert(*id);
            }
            MembershipChange::Promote(id) => {
                if !learners.remove(id) {
                    return Err("only a learner can be promoted");
                }
                voters.insert(*id);
            }
            MembershipChange::Remove(id) => {
                if !voters.remove(id) && !learners.remove(id) {
                    return Err("the member does not belong to the cluster");
                }
            }
            MembershipChange::Replace {
                voters: new_voters,
                learners: new_learners,
            } => {
                if new_voters.intersection(new_learners).next().is_some() {
                    return Err("a member cannot be both voter and learner");
                }
                voters = new_voters.clone();
                learners = new_learners.clone();
            }
        }
        if voters.is_empty() {
            return Err("the configuration must keep at least one voter");
        }
        let voters_outgoing = if voters == current.voters {
            BTreeSet::new()
        } else {
            current.voters.clone()
        };
        Ok(Membership {
            voters,
            voters_outgoing,
            learners,
        })
    }
}
