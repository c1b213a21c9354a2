//! The leader side of log replication (§5.3) and commitment (§5.4.2), with per-member
//! flow control (see `progress.rs`). Keeps true: only entries of the current term are
//! committed by counting replicas; the leader's own log counts once durable; appends
//! to a member never exceed its in-flight window.

use crate::config::Mutation;
use crate::error::StorageError;
use crate::message::{AppendRequest, AppendResponse, Heartbeat, HeartbeatRound, MessageBody};
use crate::node::{Node, SendAfter};
use crate::progress::{Progress, ProgressState};
use crate::quorum;
use crate::status::Role;
use crate::storage::LogStore;
use crate::types::{Entry, EntryPayload, LogIndex, NodeId, Term};

impl<S: LogStore> Node<S> {
    pub(crate) fn become_leader(&mut self) -> Result<(), StorageError> {
        self.role = Role::Leader;
        self.leader = Some(self.id());
        self.votes.clear();
        self.heartbeat_elapsed_ticks = 0;
        self.election_elapsed_ticks = 0;
        self.leader_ticks = 0;
        self.transfer_target = None;
        self.timeout_now_sent = false;
        let next = self.log.last_index().next();
        let max_inflight = self.config.max_inflight_appends;
        self.progress = self
            .membership
            .members()
            .into_iter()
            .map(|id| (id, Progress::new(next, max_inflight)))
            .collect();
        let id = self.id();
        let persisted = self.log.persisted_index();
        let own = self
            .progress
            .entry(id)
            .or_insert_with(|| Progress::new(next, max_inflight));
        own.match_index = persisted;
        own.recent_active = true;
        own.become_replicate();
        // Rounds of an earlier term confirm nothing in this one.
        self.start_rounds();
        // §8: an empty entry of the new term lets earlier terms' entries commit.
        let index = self.log.last_index().next();
        self.log.append(vec![Entry {
            term: self.term,
            index,
            payload: EntryPayload::Empty,
        }]);
        self.append_pending = true;
        // Entries of earlier terms may hold a configuration change not known
        // committed yet: no new change until everything up to here commits.
        self.pending_membership_index = index;
        Ok(())
    }

    pub(crate) fn tick_leader(&mut self) -> Result<(), StorageError> {
        self.leader_ticks += 1;
        self.heartbeat_elapsed_ticks += 1;
        self.forget_expired_rounds();
        if self.transfer_target.is_some() {
            self.transfer_elapsed_ticks += 1;
            if self.transfer_elapsed_ticks >= self.config.election_timeout_ticks_min {
                // §3.10: a transfer that has not completed within an election timeout
                // is abandoned and the leader takes proposals again.
                self.transfer_target = None;
            }
        }
        self.election_elapsed_ticks += 1;
        if self.election_elapsed_ticks >= self.config.election_timeout_ticks_min {
            self.election_elapsed_ticks = 0;
            if self.config.check_quorum {
                if !self.quorum_active() {
                    // Check-quorum: cut off from a majority, this member may no longer
                    // be the leader; stepping down stops it serving as one.
                    self.become_follower(self.term, None);
                    return Ok(());
                }
                let id = self.id();
                for (peer, progress) in &mut self.progress {
                    progress.recent_active = *peer == id;
                }
            }
        }
        if self.heartbeat_elapsed_ticks >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed_ticks = 0;
            self.broadcast_heartbeat();
        }
        Ok(())
    }

    fn quorum_active(&self) -> bool {
        let active = self
            .progress
            .iter()
            .filter(|(_, p)| p.recent_active)
            .map(|(&id, _)| id)
            .collect();
        quorum::is_quorum(&self.membership, &active)
    }

    fn broadcast_heartbeat(&mut self) {
        let committed = self.log.committed();
        let beats: Vec<(NodeId, LogIndex)> = self
            .peers()
            .into_iter()
            .map(|id| (id, self.progress[&id].match_index.min(committed)))
            .collect();
        // One round for the whole broadcast, stamped with this tick's clock.
        let round = self.new_round();
        for (id, leader_commit) in beats {
            self.send(
                id,
                MessageBody::Heartbeat(Heartbeat {
                    leader_commit,
                    round,
                }),
                SendAfter::Now,
            );
        }
    }

    fn peers(&self) -> Vec<NodeId> {
        self.progress
            .keys()
            .copied()
            .filter(|&id| id != self.id())
            .collect()
    }

    /// Sends the entries proposed since the last `ready` call to every member that
    /// can take them: many proposals travel in one append.
    pub(crate) fn send_pending_appends(&mut self) -> Result<(), StorageError> {
        if !std::mem::take(&mut self.append_pending) {
            return Ok(());
        }
        for id in self.peers() {
            // A probing member gets a probe even without new entries (a member just
            // added, or one whose answer was lost), so it is found without waiting for
            // the next heartbeat.
            let probing = self
                .progress
                .get(&id)
                .is_some_and(|p| p.state == ProgressState::Probe);
            if self.send_append(id, probing)? {
                while self.send_append(id, false)? {}
            }
        }
        Ok(())
    }

    /// Sends one append to `to` if its flow control allows; with `allow_empty`, even
    /// one without entries (to carry the commit index or probe). Returns whether sent.
    pub(crate) fn send_append(
        &mut self,
        to: NodeId,
        allow_empty: bool,
    ) -> Result<bool, StorageError> {
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get(&to) else {
            return Ok(false);
        };
        if progress.is_paused() {
            return Ok(false);
        }
        let next = progress.next_index;
        let prev_log_index = next.prev();
        let prev_log_term = match self.log.term(prev_log_index) {
            Ok(term) => term,
            // The member needs entries that were compacted into a snapshot.
            Err(StorageError::Compacted { .. }) => return self.send_snapshot(to),
            Err(e) => return Err(e),
        };
        let entries = match self
            .log
            .entries(next, last_index.next(), self.config.max_append_bytes)
        {
            Ok(entries) => entries,
            Err(StorageError::Compacted { .. }) => return self.send_snapshot(to),
            Err(e) => return Err(e),
        };
        if entries.is_empty() && !allow_empty {
            return Ok(false);
        }
        let last_sent = entries.last().map_or(prev_log_index, |e| e.index);
        let progress = self.progress.get_mut(&to).expect("progress checked above");
        progress.sent_append(last_sent, entries.len());
        let append = AppendRequest {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit: self.log.committed(),
        };
        self.send(to, MessageBody::Append(append), SendAfter::Now);
        Ok(true)
    }

    /// §7: the entries `to` needs are compacted; send the snapshot instead. The
    /// member waits in the snapshot state until it answers or the attempt times out.
    fn send_snapshot(&mut self, to: NodeId) -> Result<bool, StorageError> {
        let snapshot = self.log.snapshot()?;
        let now = self.leader_ticks;
        let Some(progress) = self.progress.get_mut(&to) else {
            return Ok(false);
        };
        progress.become_snapshot(snapshot.index, now);
        self.send(to, MessageBody::InstallSnapshot(snapshot), SendAfter::Now);
        Ok(true)
    }

    /// Where to probe a member from, given the hint in its rejection: the member's
    /// last index, or with a term, the last entry before that term in this log
    /// (fast backtracking, one round trip per term rather than per entry).
    fn probe_start(&self, hint_index: LogIndex, hint_term: Term) -> Result<LogIndex, StorageError> {
        if hint_term > Term(0) {
            Ok(self.log.find_conflict_by_term(hint_index, hint_term)?.0)
        } else {
            Ok(hint_index)
        }
    }

    pub(crate) fn handle_append_response(
        &mut self,
        from: NodeId,
        response: AppendResponse,
    ) -> Result<(), StorageError> {
        if self.role != Role::Leader {
            return Ok(());
        }
        let Some(progress) = self.progress.get_mut(&from) else {
            return Ok(());
        };
        // Check-quorum: the member answered an append of this term (a follower answers
        // appends only in the term they were sent in). Appends carry no round, so
        // they do not extend the lease; heartbeats do.
        progress.recent_active = true;
        match response {
            AppendResponse::RejectedAfterLoss {
                rejected_index,
                hint_index,
                hint_term,
            } => {
                // The member lost entries it had acknowledged: what this leader
                // knew of its log is void. Probe it from scratch (from the hint).
                let probe_from = self.probe_start(hint_index, hint_term)?;
                let progress = self
                    .progress
                    .get_mut(&from)
                    .expect("progress checked above");
                progress.forget_match(probe_from.next().min(rejected_index.max(LogIndex(1))));
                self.send_append(from, true)?;
            }
            AppendResponse::Rejected {
                rejected_index,
                hint_index,
                hint_term,
            } => {
                // Fast backtracking: skip every entry of a term the member does not
                // have, one round trip per term rather than per entry.
                let probe_from = self.probe_start(hint_index, hint_term)?;
                let progress = self
                    .progress
                    .get_mut(&from)
                    .expect("progress checked above");
                if progress.state == ProgressState::Probe
                    && rejected_index == progress.next_index.prev()
                    && rejected_index <= progress.match_index
                    && rejected_index > LogIndex(0)
                {
                    // The probe in flight asked about an entry the member had
                    // acknowledged, and it lacks it: its log lost that entry (an
                    // acknowledgement sent before its WAL cut a torn tail arrived
                    // after the restart). Probing never goes below the match index,
                    // so forget it. (If the answer is merely a reordered old one,
                    // this costs a re-probe, never safety: a lower match index only
                    // counts fewer replicas.)
                    progress.forget_match(probe_from.next().min(rejected_index));
                    self.send_append(from, true)?;
                } else if progress.maybe_decrease_to(rejected_index, probe_from) {
                    if progress.state == ProgressState::Replicate {
                        progress.become_probe();
                    }
                    self.send_append(from, true)?;
                }
            }
            AppendResponse::Accepted { match_index } => {
                if match_index > self.log.last_index() {
                    return Ok(()); // Not a log this leader ever sent.
                }
                if !progress.maybe_update(match_index) {
                    return Ok(());
                }
                match progress.state {
                    ProgressState::Probe => progress.become_replicate(),
                    ProgressState::Replicate => progress.inflights.free_up_to(match_index),
                    ProgressState::Snapshot => {
                        if match_index >= progress.pending_snapshot {
                            progress.become_probe();
                        }
                    }
                }
                // A new commit index travels with the next append or heartbeat; a
                // message just for it would double the messages per write.
                self.maybe_commit()?;
                while self.send_append(from, false)? {}
                if self.transfer_target == Some(from) && match_index == self.log.last_index() {
                    self.timeout_now_sent = true;
                    self.send(from, MessageBody::TimeoutNow, SendAfter::Now);
                }
            }
        }
        Ok(())
    }

    /// A member answered a heartbeat round. Only an answer naming a round of this
    /// term acknowledges this leader: a member answering a heartbeat of an older
    /// term answers with its current term, which may be this one, though it never
    /// heard from this leader in this term.
    pub(crate) fn handle_heartbeat_response(
        &mut self,
        from: NodeId,
        round: Option<HeartbeatRound>,
    ) -> Result<(), StorageError> {
        if self.role != Role::Leader {
            return Ok(());
        }
        let Some(round) = round.filter(|r| r.term == self.term) else {
            return Ok(());
        };
        let sent_at = self.round_sent_at(round.sequence);
        let last_index = self.log.last_index();
        let Some(progress) = self.progress.get_mut(&from) else {
            return Ok(());
        };
        if progress.state == ProgressState::Snapshot
            && self
                .leader_ticks
                .saturating_sub(progress.snapshot_sent_tick)
                >= u64::from(self.config.election_timeout_ticks_min)
        {
            // The snapshot or its answer was lost: try again from probing.
            progress.become_probe();
        }
        progress.recent_active = true;
        if let Some(sent_at) = sent_at {
            progress.lease_acked_at = progress.lease_acked_at.max(Some(sent_at));
        }
        progress.probe_sent = false;
        if progress.state == ProgressState::Replicate && progress.inflights.is_full() {
            progress.inflights.free_first();
        }
        if progress.match_index < last_index {
            self.send_append(from, true)?;
        }
        Ok(())
    }

    /// §5.4.2: advances the commit index to the highest index a quorum holds, if that
    /// entry is of the current term. Returns whether it advanced.
    pub(crate) fn maybe_commit(&mut self) -> Result<bool, StorageError> {
        let acked = self
            .progress
            .iter()
            .map(|(&id, p)| (id, p.match_index))
            .collect();
        let index = quorum::committed_index(&self.membership, &acked);
        if index <= self.log.committed() {
            return Ok(false);
        }
        let current_term = self.log.term(index)? == self.term;
        if current_term || self.config.mutation == Mutation::CommitPriorTermByCount {
            return Ok(self.log.commit_to(index));
        }
        Ok(false)
    }
}

impl<S: LogStore> Node<S> {
    /// Hands leadership to the voter `to` (§3.10 of Ongaro's thesis): brings it up to
    /// date, then tells it to campaign at once. Proposals are refused until the
    /// transfer completes or is abandoned after an election timeout.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), crate::Error> {
        if self.role != Role::Leader {
            return Err(crate::Error::NotLeader {
                leader: self.leader,
            });
        }
        if to == self.id() {
            return Ok(());
        }
        if !self.membership.is_voter(to) || !self.progress.contains_key(&to) {
            return Err(crate::Error::InvalidTransferTarget { to });
        }
        self.transfer_target = Some(to);
        self.transfer_elapsed_ticks = 0;
        // A transfer does not let a stale lease serve reads meanwhile.
        if self.progress[&to].match_index == self.log.last_index() {
            self.timeout_now_sent = true;
            self.send(to, MessageBody::TimeoutNow, SendAfter::Now);
            Ok(())
        } else {
            let result = self.send_append(to, true);
            self.record(result).map(|_| ())
        }
    }

    /// The member leadership is being handed to, if a transfer is in progress.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.transfer_target
    }

    /// Whether reads are waiting to be started or confirmed at the next `ready`.
    pub(crate) fn reads_to_flush(&self) -> bool {
        self.read_only_has_broadcast()
            || (self.read_only_waiting() && self.committed_in_current_term().unwrap_or(false))
    }
}
