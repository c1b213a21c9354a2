//! Elections (§5.2, §5.4.1) with pre-vote (§9.6 of Ongaro's thesis): the follower and
//! candidate side of the node. Keeps true: a vote is granted only to a candidate whose
//! log is at least as up to date, at most once per term, and is durable before the
//! answer leaves; learners never campaign.

use crate::config::Mutation;
use crate::error::StorageError;
use crate::message::{
    AppendRequest, AppendResponse, Heartbeat, HeartbeatResponse, MessageBody, VoteRequest,
    VoteResponse,
};
use crate::node::{CatchingUp, Node, SendAfter};
use crate::quorum::{self, VoteResult};
use crate::raft_log::AppendResult;
use crate::ready::{ProposalOutcome, ProposalResult};
use crate::status::Role;
use crate::storage::{LogStore, SnapshotMeta};
use crate::types::{NodeId, Term};

/// Which round of an election.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Campaign {
    /// Ask whether an election could be won, without raising the term.
    PreVote,
    /// Raise the term and ask for votes.
    Election,
    /// Like `Election`, but asked for by the leader: skips pre-vote, and voters answer
    /// even inside a leader lease.
    Transfer,
}

impl<S: LogStore> Node<S> {
    pub(crate) fn tick_election(&mut self) -> Result<(), StorageError> {
        self.election_elapsed_ticks = self.election_elapsed_ticks.saturating_add(1);
        if self.election_elapsed_ticks >= self.config.election_timeout_ticks_min {
            self.lease_since_start = false;
        }
        let may_campaign =
            self.membership.is_voter(self.id()) && self.catching_up == CatchingUp::No;
        if !may_campaign {
            // A member that may not campaign (a learner, or a voter in a
            // configuration it has not learned yet, or one catching up) keeps
            // counting: once an election timeout passed without a leader its lease
            // on the old leader lapses and it answers vote requests again. Starting
            // the count over would keep it "in the lease" forever, and a cluster
            // that needs its vote could elect no one.
            return Ok(());
        }
        if self.election_elapsed_ticks >= self.randomized_election_timeout_ticks {
            self.election_elapsed_ticks = 0;
            let campaign = if self.config.pre_vote {
                Campaign::PreVote
            } else {
                Campaign::Election
            };
            self.campaign_with(campaign)?;
        }
        Ok(())
    }

    pub(crate) fn campaign_with(&mut self, campaign: Campaign) -> Result<(), StorageError> {
        if !self.membership.is_voter(self.id()) || self.catching_up != CatchingUp::No {
            // A member whose log may have lost acknowledged entries could win with
            // a log that lacks committed ones.
            return Ok(());
        }
        let last = self.log.last_entry_id()?;
        let request = VoteRequest {
            last_log_index: last.index,
            last_log_term: last.term,
        };
        self.votes.clear();
        self.leader = None;
        // A new round gets a whole election timeout: time spent in the pre-vote
        // round does not count against the election that follows it.
        self.election_elapsed_ticks = 0;
        self.lease_since_start = false;
        self.reset_election_timer();
        let voters: Vec<NodeId> = self
            .membership
            .all_voters()
            .into_iter()
            .filter(|&id| id != self.id())
            .collect();
        match campaign {
            Campaign::PreVote => {
                self.role = Role::PreCandidate;
                let id = self.id();
                self.votes.insert(id, true);
                let term = self.term.next();
                for voter in voters {
                    self.send_with_term(voter, term, MessageBody::PreVote(request), SendAfter::Now);
                }
            }
            Campaign::Election | Campaign::Transfer => {
                self.role = Role::Candidate;
                self.term = self.term.next();
                self.vote = Some(self.id());
                self.abandon_forwarded_reads();
                // The vote for itself counts once durable (see `on_persisted`); the
                // requests leave only after it is, too.
                for voter in voters {
                    let body = if campaign == Campaign::Transfer {
                        MessageBody::TransferVote(request)
                    } else {
                        MessageBody::Vote(request)
                    };
                    self.send(voter, body, SendAfter::Persist);
                }
            }
        }
        self.tally_votes()
    }

    pub(crate) fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        request: VoteRequest,
        pre_vote: bool,
    ) -> Result<(), StorageError> {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre_vote && term > self.term);
        let up_to_date = self.config.mutation == Mutation::VoteWithoutLogCheck
            || self
                .log
                .is_up_to_date(request.last_log_index, request.last_log_term)?;
        // A member whose log may have lost acknowledged entries cannot judge "up to
        // date": its own log may be shorter than what it promised a leader.
        let granted = can_vote && up_to_date && self.catching_up == CatchingUp::No;
        if pre_vote {
            // A granted pre-vote answers in the term asked about, so the candidate can
            // tell it from a rejection of its current term.
            let answer_term = if granted { term } else { self.term };
            self.send_with_term(
                from,
                answer_term,
                MessageBody::PreVoteResponse(VoteResponse { granted }),
                SendAfter::Now,
            );
        } else if granted {
            self.vote = Some(from);
            self.election_elapsed_ticks = 0;
            self.send(
                from,
                MessageBody::VoteResponse(VoteResponse { granted }),
                SendAfter::Persist,
            );
        } else {
            self.send(
                from,
                MessageBody::VoteResponse(VoteResponse { granted }),
                SendAfter::Now,
            );
        }
        Ok(())
    }

    pub(crate) fn handle_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        granted: bool,
        pre_vote: bool,
    ) -> Result<(), StorageError> {
        let expected = if pre_vote {
            self.role == Role::PreCandidate && (term == self.term.next() || !granted)
        } else {
            self.role == Role::Candidate && term == self.term
        };
        if !expected || !self.membership.is_voter(from) {
            return Ok(());
        }
        self.votes.entry(from).or_insert(granted);
        self.tally_votes()
    }

    pub(crate) fn tally_votes(&mut self) -> Result<(), StorageError> {
        if !matches!(self.role, Role::PreCandidate | Role::Candidate) {
            return Ok(());
        }
        match quorum::vote_result(&self.membership, &self.votes) {
            VoteResult::Pending => Ok(()),
            VoteResult::Lost => {
                self.become_follower(self.term, None);
                Ok(())
            }
            VoteResult::Won if self.role == Role::PreCandidate => {
                self.campaign_with(Campaign::Election)
            }
            VoteResult::Won => self.become_leader(),
        }
    }

    /// §5.3 on the follower side.
    pub(crate) fn handle_append(
        &mut self,
        from: NodeId,
        request: AppendRequest,
    ) -> Result<(), StorageError> {
        if !self.follow(from) {
            return Ok(());
        }
        if request.prev_log_index < self.log.committed() {
            // Everything through the commit index matches any leader's log (§5.4).
            let match_index = self.log.committed();
            self.send(
                from,
                MessageBody::AppendResponse(AppendResponse::Accepted { match_index }),
                SendAfter::Persist,
            );
            return Ok(());
        }
        let appended = self.log.maybe_append(
            request.prev_log_index,
            request.prev_log_term,
            request.leader_commit,
            &request.entries,
        )?;
        match appended {
            AppendResult::Appended {
                last_new_index,
                written_from,
            } => {
                if let Some(from_index) = written_from {
                    self.track_membership_entries(from_index, &request.entries);
                }
                self.maybe_caught_up_by(last_new_index, request.leader_commit)?;
                // The answer promises durability: it leaves after the entries are.
                let accepted = AppendResponse::Accepted {
                    match_index: last_new_index,
                };
                self.send(
                    from,
                    MessageBody::AppendResponse(accepted),
                    SendAfter::Persist,
                );
            }
            AppendResult::OverwritesCommitted => {
                self.reject_message("append would overwrite committed entries");
            }
            AppendResult::Mismatch => {
                let guess = request.prev_log_index.min(self.log.last_index());
                let (hint_index, hint_term) = self
                    .log
                    .find_conflict_by_term(guess, request.prev_log_term)?;
                let rejected = if self.catching_up == CatchingUp::No {
                    AppendResponse::Rejected {
                        rejected_index: request.prev_log_index,
                        hint_index,
                        hint_term,
                    }
                } else {
                    // The leader may believe this log holds what was lost.
                    AppendResponse::RejectedAfterLoss {
                        rejected_index: request.prev_log_index,
                        hint_index,
                        hint_term,
                    }
                };
                self.send(from, MessageBody::AppendResponse(rejected), SendAfter::Now);
            }
        }
        Ok(())
    }

    /// §7 on the follower side: the leader's snapshot replaces a log that lacks it.
    pub(crate) fn handle_install_snapshot(
        &mut self,
        from: NodeId,
        snapshot: SnapshotMeta,
    ) -> Result<(), StorageError> {
        if !self.follow(from) {
            return Ok(());
        }
        let index = snapshot.index;
        if index <= self.log.committed() {
            // Already has it: say how far it is committed.
            let match_index = self.log.committed();
            self.send(
                from,
                MessageBody::AppendResponse(AppendResponse::Accepted { match_index }),
                SendAfter::Persist,
            );
            return Ok(());
        }
        let has_entry = matches!(self.log.term(index), Ok(term) if term == snapshot.term);
        if has_entry {
            // The log already holds the snapshot's last entry, so by Log Matching
            // everything before it: only the commit index moves.
            self.log.commit_to(index);
        } else {
            self.log.restore(snapshot.clone());
            self.membership = snapshot.membership.clone();
            self.membership_entries.clear();
            // Proposals the snapshot covers; their entries are gone from this log,
            // but the snapshot's last entry (term t at index S) still tells:
            // - a proposal of term t is committed: entries of a term are created
            //   only by that term's leader, which made this proposal and never
            //   rewrites its own log; the committed (S, t) came from that log, so by
            //   Log Matching (§5.3) the committed entry at the proposal's index is
            //   the proposal itself;
            // - a proposal of a term after t is dropped: terms never decrease along
            //   a log, so every committed entry through S is of term t or earlier;
            // - so is a proposal at S itself of another term than t;
            // - of any other, nothing can be said: it is unknown.
            while let Some((&proposal_index, &term)) = self.pending_proposals.first_key_value() {
                if proposal_index > index {
                    break;
                }
                self.pending_proposals.pop_first();
                let result = if term == snapshot.term {
                    ProposalResult::Committed
                } else if term > snapshot.term || proposal_index == index {
                    ProposalResult::Dropped
                } else {
                    ProposalResult::Unknown
                };
                let proposal = crate::types::EntryId {
                    term,
                    index: proposal_index,
                };
                self.resolved_outcomes
                    .push(ProposalOutcome { proposal, result });
            }
        }
        self.send(
            from,
            MessageBody::AppendResponse(AppendResponse::Accepted { match_index: index }),
            SendAfter::Persist,
        );
        Ok(())
    }

    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, heartbeat: Heartbeat) {
        if self.follow_heartbeat(from, heartbeat.leader_commit) {
            let response = HeartbeatResponse {
                round: Some(heartbeat.round),
            };
            self.send(
                from,
                MessageBody::HeartbeatResponse(response),
                SendAfter::Now,
            );
        }
    }

    /// A (read) heartbeat from the leader: it carries a commit index this member is
    /// known to hold.
    pub(crate) fn follow_heartbeat(
        &mut self,
        from: NodeId,
        leader_commit: crate::types::LogIndex,
    ) -> bool {
        if !self.follow(from) {
            return false;
        }
        // The leader caps the commit index at the match index it holds for this
        // member; after a lost log tail that may name entries this log no longer
        // has (or holds differently), so only appends, which check the log, count.
        if self.catching_up == CatchingUp::No {
            self.log.commit_to(leader_commit);
        }
        true
    }

    /// The leader asks this member to take over (leader transfer). Only a follower
    /// of that very leader acts on it. A leader must not: campaigning would leave
    /// its role without the step-down path (its pending reads would never be
    /// answered) and depose itself at a peer's word. A (pre-)candidate already
    /// campaigns; a second election would only raise the term. Anything else is
    /// stale or from a confused peer, and changes nothing.
    pub(crate) fn handle_timeout_now(&mut self, from: NodeId) -> Result<(), StorageError> {
        if self.role != Role::Follower || self.leader != Some(from) {
            return Ok(());
        }
        self.campaign_with(Campaign::Transfer)
    }

    /// An append from the leader of the current term was accepted: the log matches
    /// the leader's through `last_new_index`. That brings a member that may have
    /// lost entries in line if it reaches the leader's commit index and an entry of
    /// the leader's own term: the leader holds every entry committed before its term
    /// (§5.4, Leader Completeness) and every entry it knew committed, and this log
    /// now holds them too. It counts once durable that far.
    ///
    /// What remains uncovered is an acknowledgement this member sent before losing
    /// the entry and that reaches a leader only afterwards (delayed in the network):
    /// the leader may count it. Keeping that out would take acknowledgements that
    /// name the sender's incarnation.
    fn maybe_caught_up_by(
        &mut self,
        last_new_index: crate::types::LogIndex,
        leader_commit: crate::types::LogIndex,
    ) -> Result<(), StorageError> {
        let of_this_term = matches!(self.log.term(last_new_index), Ok(term) if term == self.term);
        if self.catching_up == CatchingUp::No || last_new_index < leader_commit || !of_this_term {
            return Ok(());
        }
        self.catching_up = CatchingUp::WaitingForDurable(last_new_index);
        self.maybe_finish_catching_up();
        Ok(())
    }

    /// Clears the catching-up state once the log that brought it in line is durable.
    pub(crate) fn maybe_finish_catching_up(&mut self) {
        if let CatchingUp::WaitingForDurable(index) = self.catching_up
            && self.log.persisted_index() >= index
        {
            self.catching_up = CatchingUp::No;
        }
    }

    /// A message from the leader of the current term arrived. Returns false (and
    /// refuses the message) if this member itself leads the term: two leaders in one
    /// term is impossible unless a peer is broken.
    fn follow(&mut self, leader: NodeId) -> bool {
        if self.role == Role::Leader {
            self.reject_message("a second leader in this member's term");
            return false;
        }
        if self.role != Role::Follower {
            self.become_follower(self.term, Some(leader));
        }
        self.leader = Some(leader);
        self.election_elapsed_ticks = 0;
        true
    }
}
