//! The Raft node: its fields, the verbs the driver calls, the term rules every
//! message passes through (§5.1), and the `Ready` it hands back. Role-specific
//! behaviour lives in `election.rs` (followers and candidates) and `replication.rs`
//! (leaders). Keeps true: at most one vote per term, persisted before it is sent; a
//! leader counts its own log toward a quorum only once durable; every proposal's
//! outcome is reported once.

use std::collections::BTreeMap;

use bytes::Bytes;
use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::config::Config;
use crate::election::Campaign;
use crate::error::{Error, StorageError};
use crate::membership::Membership;
use crate::message::{HeartbeatResponse, Message, MessageBody, ReadHeartbeatResponse};
use crate::progress::{Progress, ProgressState};
use crate::raft_log::RaftLog;
use crate::read_only::{ReadOnly, ReadState};
use crate::ready::{Persist, PersistAck, ProposalOutcome, ProposalResult, Ready};
use crate::status::{PeerProgress, Role, Status};
use crate::storage::{HardState, LogStore};
use crate::types::{Entry, EntryId, EntryPayload, LogIndex, Monotonic, NodeId, Term};

/// One member's Raft state machine. See the crate documentation for the driver loop.
pub struct Node<S: LogStore> {
    pub(crate) config: Config,
    pub(crate) log: RaftLog<S>,
    pub(crate) term: Term,
    pub(crate) vote: Option<NodeId>,
    pub(crate) role: Role,
    pub(crate) leader: Option<NodeId>,
    pub(crate) membership: Membership,
    /// On a leader: every member's progress, this member's own included.
    pub(crate) progress: BTreeMap<NodeId, Progress>,
    /// On a (pre-)candidate: the votes received in this campaign.
    pub(crate) votes: BTreeMap<NodeId, bool>,
    pub(crate) election_elapsed_ticks: u32,
    pub(crate) heartbeat_elapsed_ticks: u32,
    pub(crate) randomized_election_timeout_ticks: u32,
    rng: Pcg64Mcg,
    messages: Vec<Message>,
    messages_after_persist: Vec<Message>,
    /// The hard state most recently handed out for persisting.
    handed_out_hard_state: HardState,
    /// The sequence number of the next persist batch.
    next_persist_sequence: u64,
    /// Proposals made while leader and not yet resolved: index to term.
    pub(crate) pending_proposals: BTreeMap<LogIndex, Term>,
    /// On a leader: new entries to send to followers at the next `ready`.
    pub(crate) append_pending: bool,

    failure: Option<StorageError>,
    pub(crate) read_only: ReadOnly,
    pub(crate) read_states: Vec<ReadState>,
    /// On a leader: the member it is handing leadership to, and for how long.
    pub(crate) transfer_target: Option<NodeId>,
    pub(crate) transfer_elapsed_ticks: u32,
    /// On a leader: ticks since it took office (snapshot retries).
    pub(crate) leader_ticks: u64,
    /// The latest monotonic clock reading the driver passed in. Heartbeat rounds sent
    /// from `ready` are stamped with it: it is no later than the real send time, so
    /// a lease counted from it ends early, never late.
    pub(crate) now: Monotonic,
    /// Configuration entries in the log not yet known committed, by index.
    pub(crate) membership_entries: BTreeMap<LogIndex, Membership>,
    /// On a leader: the index of the last configuration entry it may have to wait for.
    pub(crate) pending_membership_index: LogIndex,
    /// Why the message being stepped was refused, if it was.
    pub(crate) rejected: Option<&'static str>,
    /// Whether this member is in its first election timeout since starting (it then
    /// ignores vote requests as if it had heard from a leader).
    pub(crate) lease_since_start: bool,
    /// On a leader: whether it sent `TimeoutNow` in this term. The target may then
    /// win an election at any time (transfer votes ignore leases), so lease reads
    /// stay off for the rest of the term.
    pub(crate) timeout_now_sent: bool,
    /// Proposal outcomes decided outside `ready` (a snapshot replaced the log).
    pub(crate) resolved_outcomes: Vec<ProposalOutcome>,
    /// Whether this member's log may lack entries it acknowledged, so that its vote
    /// could help elect a leader without them (FAST'18, "Protocol-Aware Recovery").
    /// While set it grants no vote or pre-vote and does not campaign.
    ///
    /// Liveness trade-off: a cluster whose majority is in this state cannot elect a
    /// leader at all (nobody can collect a quorum of votes) until an operator
    /// intervenes; the alternative, voting with a log that lost acknowledged
    /// entries, can elect a leader without a committed entry and lose it.
    pub(crate) catching_up: CatchingUp,
}

/// Where a member that may have lost acknowledged entries is in catching up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CatchingUp {
    /// Its log is trustworthy: it votes and campaigns normally.
    No,
    /// It waits for a leader to bring its log in line.
    WaitingForLeader,
    /// A leader brought its log in line through this index; it is caught up once
    /// the log is durable that far.
    WaitingForDurable(LogIndex),
}

/// Whom a message must wait for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum SendAfter {
    /// May leave at once.
    Now,
    /// May leave only once everything handed out so far is durable.
    Persist,
}

impl<S: LogStore> Node<S> {
    /// Starts (or restarts) a member from what `store` holds. A fresh member of a new
    /// cluster starts from a store whose membership lists the initial voters.
    pub fn new(config: Config, store: S) -> Result<Node<S>, Error> {
        config.validate()?;
        let initial = store.initial_state()?;
        if config.applied_index < store.first_index().prev() {
            // The entries between would have to be applied, but they are compacted.
            return Err(Error::InvalidConfig {
                reason: "applied_index is below the store's snapshot: restore the state machine from the snapshot first",
            });
        }
        let hard_state = initial.hard_state;
        let log = RaftLog::new(store, hard_state.commit, config.applied_index);
        let rng = Pcg64Mcg::seed_from_u64(config.seed);
        let mut node = Node {
            log,
            term: hard_state.term,
            vote: hard_state.vote,
            role: Role::Follower,
            leader: None,
            membership: initial.membership,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed_ticks: 0,
            heartbeat_elapsed_ticks: 0,
            randomized_election_timeout_ticks: config.election_timeout_ticks_min,
            rng,
            messages: Vec::new(),
            messages_after_persist: Vec::new(),
            handed_out_hard_state: hard_state,
            next_persist_sequence: 0,
            pending_proposals: BTreeMap::new(),
            append_pending: false,
            failure: None,
            read_only: ReadOnly::default(),
            read_states: Vec::new(),
            transfer_target: None,
            transfer_elapsed_ticks: 0,
            leader_ticks: 0,
            now: Monotonic::default(),
            membership_entries: BTreeMap::new(),
            pending_membership_index: LogIndex(0),
            rejected: None,
            // A member that never had a term cannot have answered any leader.
            lease_since_start: hard_state.term > Term(0),
            timeout_now_sent: false,
            resolved_outcomes: Vec::new(),
            catching_up: if initial.log_may_have_lost_entries
                && config.mutation != crate::config::Mutation::IgnoreLostEntries
            {
                CatchingUp::WaitingForLeader
            } else {
                CatchingUp::No
            },
            config,
        };
        node.reset_election_timer();
        node.load_membership_entries()?;
        Ok(node)
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// Its current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Its current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The leader it knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The membership it follows.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The log store it reads from.
    pub fn log_store(&self) -> &S {
        &self.log.store
    }

    /// Advances time by one tick: followers and candidates count toward an election,
    /// leaders toward a heartbeat and a check-quorum round. `now` is the driver's
    /// monotonic clock at this tick; ticks pace the protocol's timers, while the
    /// clock measures lease reads (ticks stop when the process is paused, the clock
    /// does not). A reading earlier than one already seen is taken as the later one.
    pub fn tick(&mut self, now: Monotonic) -> Result<(), Error> {
        self.check_failure()?;
        self.observe_time(now);
        let result = match self.role {
            Role::Leader => self.tick_leader(),
            _ => self.tick_election(),
        };
        self.record(result)
    }

    /// Feeds in a message from a peer. Stale and unexpected messages are protocol
    /// events, handled silently; only a malformed message is an error (and is ignored).
    pub fn step(&mut self, message: Message) -> Result<(), Error> {
        self.check_failure()?;
        validate(&message, self.id())?;
        let from = message.from;
        let result = self.step_inner(message);
        self.record(result)?;
        self.activate_membership();
        match self.rejected.take() {
            Some(reason) => Err(Error::MalformedMessage { from, reason }),
            None => Ok(()),
        }
    }

    /// Proposes a command. On the leader the entry is appended and its id returned;
    /// its outcome is reported later in [`Ready::proposal_outcomes`]. Any other member
    /// answers [`Error::NotLeader`] and the caller retries at the leader it names.
    pub fn propose(&mut self, command: Bytes) -> Result<EntryId, Error> {
        self.check_failure()?;
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if let Some(to) = self.transfer_target {
            return Err(Error::TransferInProgress { to });
        }
        let id = EntryId {
            term: self.term,
            index: self.log.last_index().next(),
        };
        self.log.append(vec![Entry {
            term: id.term,
            index: id.index,
            payload: EntryPayload::Command(command),
        }]);
        self.pending_proposals.insert(id.index, id.term);
        self.append_pending = true;
        Ok(id)
    }

    /// Starts an election now, as if the election timeout had passed (with a pre-vote
    /// round first when pre-vote is on). Learners and leaders ignore it.
    pub fn campaign(&mut self) -> Result<(), Error> {
        self.check_failure()?;
        if self.role == Role::Leader {
            return Ok(());
        }
        let campaign = if self.config.pre_vote {
            Campaign::PreVote
        } else {
            Campaign::Election
        };
        let result = self.campaign_with(campaign);
        self.record(result)
    }

    /// The transport could not deliver to `peer` (its queue overflowed or the
    /// connection failed). A leader stops streaming to it and probes instead, so no
    /// more appends pile up behind a gap.
    pub fn report_unreachable(&mut self, peer: NodeId) {
        if self.role != Role::Leader {
            return;
        }
        if let Some(progress) = self.progress.get_mut(&peer)
            && progress.state == ProgressState::Replicate
        {
            progress.become_probe();
        }
    }

    /// The driver could not send the snapshot a leader asked for to `peer` (or the
    /// peer could not install it). The leader retries from probing.
    pub fn report_snapshot_failed(&mut self, peer: NodeId) {
        if self.role != Role::Leader {
            return;
        }
        if let Some(progress) = self.progress.get_mut(&peer)
            && progress.state == ProgressState::Snapshot
        {
            progress.become_probe();
        }
    }

    /// The driver made a [`Persist`] durable (batches are acknowledged in the order
    /// they were handed out). The acknowledgement covers the entries its write still
    /// holds: none that a later write has replaced, and nothing twice.
    pub fn on_persisted(&mut self, ack: PersistAck) -> Result<(), Error> {
        self.check_failure()?;
        if let Some(index) = ack.snapshot_index {
            self.log.snapshot_persisted(index);
        }
        let moved = self.log.write_persisted(ack.sequence);
        self.maybe_finish_catching_up();
        if moved && self.role == Role::Leader {
            let persisted = self.log.persisted_index();
            let id = self.id();
            if let Some(progress) = self.progress.get_mut(&id) {
                progress.maybe_update(persisted);
            }
            let result = self.maybe_commit();
            self.record(result)?;
        }
        if let Some(hard_state) = ack.hard_state
            && self.role == Role::Candidate
            && hard_state.term == self.term
            && hard_state.vote == Some(self.id())
        {
            // The vote for itself is durable: only now may it count (a vote that a
            // crash could forget would let this member vote twice in the term).
            let id = self.id();
            self.votes.insert(id, true);
            let result = self.tally_votes();
            self.record(result)?;
        }
        self.activate_membership();
        Ok(())
    }

    /// The application applied every committed entry through `index`.
    pub fn on_applied(&mut self, index: LogIndex) {
        self.log.applied_to(index);
    }

    /// Whether [`Node::ready`] has anything to hand out.
    pub fn has_ready(&self) -> bool {
        !self.messages.is_empty()
            || !self.messages_after_persist.is_empty()
            || self.hard_state_changed()
            || self.log.has_unpersisted()
            || self.log.has_snapshot_to_persist()
            || !self.resolved_outcomes.is_empty()
            || self.log.has_entries_to_apply()
            || (self.role == Role::Leader && self.append_pending)
            || self
                .pending_proposals
                .first_key_value()
                .is_some_and(|(&i, _)| i <= self.log.committed())
            || !self.read_states.is_empty()
            || (self.role == Role::Leader && self.reads_to_flush())
            || self
                .membership_entries
                .first_key_value()
                .is_some_and(|(&i, _)| i <= self.log.committed())
            || (self.role == Role::Leader
                && self.membership.is_joint()
                && self.pending_membership_index <= self.log.committed()
                && self.transfer_target.is_none())
    }

    /// Hands out everything the driver must do now. See [`Ready`].
    pub fn ready(&mut self) -> Result<Ready, Error> {
        self.check_failure()?;
        let result = self.ready_inner();
        self.record(result)
    }

    /// This member's state as plain data.
    pub fn status(&self) -> Status {
        let progress = if self.role == Role::Leader {
            self.progress
                .iter()
                .filter(|(id, _)| **id != self.id())
                .map(|(&id, p)| PeerProgress {
                    id,
                    match_index: p.match_index,
                    next_index: p.next_index,
                    state: p.state,
                    inflight_appends: p.inflights.len(),
                    recent_active: p.recent_active,
                })
                .collect()
        } else {
            Vec::new()
        };
        Status {
            id: self.id(),
            role: self.role,
            term: self.term,
            vote: self.vote,
            leader: self.leader,
            commit_index: self.log.committed(),
            applied_index: self.log.applied(),
            last_index: self.log.last_index(),
            persisted_index: self.log.persisted_index(),
            snapshot_index: self.log.snapshot_index(),
            progress,
            catching_up: self.catching_up != CatchingUp::No,
        }
    }

    /// Takes in a clock reading; time never goes back.
    pub(crate) fn observe_time(&mut self, now: Monotonic) {
        self.now = self.now.max(now);
    }

    fn ready_inner(&mut self) -> Result<Ready, StorageError> {
        self.activate_membership();
        self.maybe_leave_joint();
        if self.role == Role::Leader {
            self.flush_reads()?;
            self.send_pending_appends()?;
        }
        let mut proposal_outcomes = Vec::new();
        while let Some((&index, &term)) = self.pending_proposals.first_key_value() {
            if index > self.log.committed() {
                break;
            }
            self.pending_proposals.pop_first();
            // The committed entry at the index is final (§5.4): the proposal is in
            // exactly when that entry is the one it created.
            let result = match self.log.term(index) {
                Ok(found) if found == term => ProposalResult::Committed,
                Ok(_) => ProposalResult::Dropped,
                Err(StorageError::Compacted { .. }) => ProposalResult::Unknown,
                Err(e) => return Err(e),
            };
            proposal_outcomes.push(ProposalOutcome {
                proposal: EntryId { term, index },
                result,
            });
        }
        proposal_outcomes.splice(0..0, std::mem::take(&mut self.resolved_outcomes));
        let persist = if self.hard_state_changed()
            || self.log.has_snapshot_to_persist()
            || self.log.has_unpersisted()
            || !self.messages_after_persist.is_empty()
        {
            let hard_state = self.hard_state();
            let hard_state = (hard_state != self.handed_out_hard_state).then_some(hard_state);
            if let Some(hard_state) = hard_state {
                self.handed_out_hard_state = hard_state;
            }
            let snapshot = self.log.take_snapshot_to_persist();
            let sequence = self.next_persist_sequence;
            self.next_persist_sequence += 1;
            let entries = self.log.take_unpersisted(sequence);
            let ack = PersistAck {
                sequence,
                snapshot_index: snapshot.as_ref().map(|s| s.index),
                hard_state,
                last_entry: entries.last().map(Entry::id),
            };
            Some(Persist {
                snapshot,
                hard_state,
                entries,
                messages: std::mem::take(&mut self.messages_after_persist),
                ack,
            })
        } else {
            None
        };
        let committed_entries = self
            .log
            .take_entries_to_apply(self.config.max_apply_bytes)?;
        Ok(Ready {
            messages: std::mem::take(&mut self.messages),
            persist,
            committed_entries,
            proposal_outcomes,
            read_states: std::mem::take(&mut self.read_states),
        })
    }

    fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed(),
        }
    }

    /// Whether the term or vote changed since last handed out. A commit index change
    /// alone does not ask for a write: it rides along with the next one, since the
    /// commit index can always be learned again from the leader.
    fn hard_state_changed(&self) -> bool {
        self.term != self.handed_out_hard_state.term || self.vote != self.handed_out_hard_state.vote
    }

    fn step_inner(&mut self, message: Message) -> Result<(), StorageError> {
        let Message {
            from, term, body, ..
        } = message;
        if term > self.term {
            // A transfer vote was asked for by the leader itself: no lease applies.
            let is_vote_request = matches!(body, MessageBody::PreVote(_) | MessageBody::Vote(_));
            if is_vote_request && self.in_leader_lease() {
                // §9.6 / check-quorum: a member that heard from a leader within the
                // election timeout does not help depose it.
                return Ok(());
            }
            match &body {
                // A pre-vote changes no term.
                MessageBody::PreVote(_) => {}
                // A granted pre-vote carries the term this member would campaign in.
                MessageBody::PreVoteResponse(response) if response.granted => {}
                MessageBody::Append(_)
                | MessageBody::Heartbeat(_)
                | MessageBody::ReadHeartbeat(_)
                | MessageBody::InstallSnapshot(_) => self.become_follower(term, Some(from)),
                _ => self.become_follower(term, None),
            }
        } else if term < self.term {
            match body {
                MessageBody::Append(_)
                | MessageBody::Heartbeat(_)
                | MessageBody::ReadHeartbeat(_)
                | MessageBody::InstallSnapshot(_)
                    if self.config.check_quorum || self.config.pre_vote =>
                {
                    // A stale leader cut off by pre-vote or check-quorum would never
                    // learn the newer term otherwise: tell it so it steps down. The
                    // answer names the old round, so that a member leading a later
                    // term cannot take it for an acknowledgement of that term.
                    let round = match body {
                        MessageBody::Heartbeat(heartbeat) => Some(heartbeat.round),
                        MessageBody::ReadHeartbeat(heartbeat) => Some(heartbeat.round),
                        _ => None,
                    };
                    self.send(
                        from,
                        MessageBody::HeartbeatResponse(HeartbeatResponse { round }),
                        SendAfter::Now,
                    );
                }
                MessageBody::PreVote(_) => {
                    self.send(
                        from,
                        MessageBody::PreVoteResponse(crate::message::VoteResponse {
                            granted: false,
                        }),
                        SendAfter::Now,
                    );
                }
                _ => {}
            }
            return Ok(());
        }
        match body {
            MessageBody::PreVote(request) => self.handle_vote_request(from, term, request, true),
            MessageBody::Vote(request) => self.handle_vote_request(from, term, request, false),
            MessageBody::PreVoteResponse(response) => {
                self.handle_vote_response(from, term, response.granted, true)
            }
            MessageBody::VoteResponse(response) => {
                self.handle_vote_response(from, term, response.granted, false)
            }
            MessageBody::Append(request) => self.handle_append(from, request),
            MessageBody::AppendResponse(response) => self.handle_append_response(from, response),
            MessageBody::Heartbeat(heartbeat) => {
                self.handle_heartbeat(from, heartbeat);
                Ok(())
            }
            MessageBody::HeartbeatResponse(response) => {
                self.handle_heartbeat_response(from, response.round)
            }
            MessageBody::ReadHeartbeat(heartbeat) => {
                if !self.follow_heartbeat(from, heartbeat.leader_commit) {
                    return Ok(());
                }
                let response = ReadHeartbeatResponse {
                    round: heartbeat.round,
                };
                self.send(
                    from,
                    MessageBody::ReadHeartbeatResponse(response),
                    SendAfter::Now,
                );
                Ok(())
            }
            MessageBody::ReadHeartbeatResponse(response) => {
                self.handle_read_heartbeat_response(from, response.round)
            }
            MessageBody::ReadIndex(request) => self.handle_read_index_request(from, request.id),
            MessageBody::ReadIndexResponse(response) => {
                self.handle_read_index_response(term, response);
                Ok(())
            }
            MessageBody::TimeoutNow => self.handle_timeout_now(from),
            MessageBody::InstallSnapshot(snapshot) => self.handle_install_snapshot(from, snapshot),
            MessageBody::TransferVote(request) => {
                self.handle_vote_request(from, term, request, false)
            }
        }
    }

    /// Whether this member heard from a leader within the election timeout (only
    /// meaningful, and only honoured, with check-quorum on).
    ///
    /// A member that just started counts as in a lease for its first election
    /// timeout: before the restart it may have answered a leader that still relies on
    /// it not voting for anyone else (lease reads).
    fn in_leader_lease(&self) -> bool {
        self.config.check_quorum
            && (self.leader.is_some() || self.lease_since_start)
            && self.election_elapsed_ticks < self.config.election_timeout_ticks_min
    }

    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody, after: SendAfter) {
        self.send_with_term(to, self.term, body, after);
    }

    pub(crate) fn send_with_term(
        &mut self,
        to: NodeId,
        term: Term,
        body: MessageBody,
        after: SendAfter,
    ) {
        let message = Message {
            from: self.id(),
            to,
            term,
            body,
        };
        match after {
            SendAfter::Now => self.messages.push(message),
            SendAfter::Persist => self.messages_after_persist.push(message),
        }
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if self.role == Role::Leader {
            self.abandon_reads();
        }
        self.transfer_target = None;
        if term > self.term {
            self.term = term;
            self.vote = None;
            self.abandon_forwarded_reads();
            if let CatchingUp::WaitingForDurable(_) = self.catching_up {
                // The new term's leader may cut the entries that were to count.
                self.catching_up = CatchingUp::WaitingForLeader;
            }
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.progress.clear();
        self.votes.clear();
        self.append_pending = false;
        self.election_elapsed_ticks = 0;
        self.reset_election_timer();
    }

    pub(crate) fn reset_election_timer(&mut self) {
        let min = u64::from(self.config.election_timeout_ticks_min);
        let span = u64::from(self.config.election_timeout_ticks_max) - min;
        self.randomized_election_timeout_ticks = (min + self.rng.next_u64() % span) as u32;
    }

    fn check_failure(&self) -> Result<(), Error> {
        match &self.failure {
            Some(e) => Err(Error::Storage(e.clone())),
            None => Ok(()),
        }
    }

    /// A store failure other than a compacted or missing index leaves the node unable
    /// to continue safely: it refuses all further work.
    pub(crate) fn record<T>(&mut self, result: Result<T, StorageError>) -> Result<T, Error> {
        result.map_err(|e| {
            self.failure = Some(e.clone());
            Error::Storage(e)
        })
    }
}

/// Checks the framing rules a well-behaved peer never breaks.
fn validate(message: &Message, me: NodeId) -> Result<(), Error> {
    let malformed = |reason| {
        Err(Error::MalformedMessage {
            from: message.from,
            reason,
        })
    };
    if message.to != me {
        return malformed("addressed to another member");
    }
    if message.from == me {
        return malformed("sent by this member to itself");
    }
    if let MessageBody::Append(append) = &message.body {
        let mut expected = append.prev_log_index.next();
        let mut previous_term = append.prev_log_term;
        for entry in &append.entries {
            if entry.index != expected {
                return malformed("append entries are not contiguous after prev_log_index");
            }
            if entry.term < previous_term || entry.term > message.term {
                return malformed("append entry terms out of order");
            }
            expected = expected.next();
            previous_term = entry.term;
        }
    }
    Ok(())
}
