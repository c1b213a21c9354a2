//! Linearizable reads without writing to the log (§6.4 of the paper, §6.4 of Ongaro's
//! thesis): ReadIndex confirms leadership with one heartbeat round that any number of
//! concurrent reads share, and lease reads trust a recent quorum of answers instead.
//! Keeps true: a read index is never handed out by a leader that has not committed
//! an entry of its own term, nor by one whose leadership a quorum has not confirmed
//! after the read arrived (or, for lease reads, in a round sent less than the lease
//! duration ago on the monotonic clock); a deposed leader answers every pending read
//! with "retry".

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::error::{Error, StorageError};
use crate::message::{
    ForwardedReadId, HeartbeatRound, MessageBody, ReadHeartbeat, ReadIndexRequest,
    ReadIndexResponse,
};
use crate::node::{Node, SendAfter};
use crate::quorum::{self, VoteResult};
use crate::status::Role;
use crate::storage::LogStore;
use crate::types::{LogIndex, Monotonic, NodeId, Term};

/// How a read is confirmed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReadMode {
    /// ReadIndex: a quorum confirms leadership after the read arrived. Always safe.
    Quorum,
    /// The leader trusts that a quorum answered a heartbeat round it sent less than
    /// [`Config::lease_duration_micros`](crate::Config::lease_duration_micros) ago on
    /// the monotonic clock, so none of them will vote for another candidate yet.
    /// Safe only if members' clocks advance at nearly the same rate; requires
    /// check-quorum. Followers forward lease reads as quorum reads; a leader
    /// transferring leadership serves them as quorum reads.
    Lease,
}

/// The answer to a read request: once the applied index reaches `index`, the state
/// machine may be read and the result is linearizable.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ReadState {
    /// The caller's id for the read.
    pub request_id: u64,
    /// The read index, or `None` if leadership changed before the read was confirmed;
    /// retry it.
    pub index: Option<LogIndex>,
}

/// Who asked for a read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ReadRequest {
    /// This member's own client, with the caller's id.
    Local { request_id: u64 },
    /// A follower, with its wire id for the read.
    Forwarded { from: NodeId, id: ForwardedReadId },
}

/// On a follower: one read forwarded to the leader and not yet answered.
#[derive(Clone, Copy, Debug)]
struct ForwardedRead {
    /// The caller's id, handed back in the [`ReadState`].
    request_id: u64,
    /// The term the request was sent in: only that term's leader may answer it.
    term: Term,
}

#[derive(Clone, Debug)]
struct PendingRead {
    request: ReadRequest,
    index: LogIndex,
    /// The first round sent after the read arrived: answers to it or a later round
    /// confirm the read.
    sequence: u64,
    acks: BTreeSet<NodeId>,
}

/// How many rounds' send times a leader remembers. Rounds go out once per heartbeat
/// interval plus once per `ready` with new reads, and expire after the lease, so this
/// is only a bound against a driver that never ticks; forgetting a round is safe (an
/// answer to it then extends no lease).
const MAX_ROUNDS: usize = 4096;

/// A leader's heartbeat rounds and reads in progress.
#[derive(Debug, Default)]
pub(crate) struct ReadOnly {
    /// The sequence number of the next heartbeat round (plain or read) this member
    /// sends. Never reset, so a round is never named twice in one term.
    next_sequence: u64,
    /// Rounds of the current term whose answers may still extend the lease: sequence
    /// to send time.
    rounds: BTreeMap<u64, Monotonic>,
    /// Reads waiting for the next read heartbeat's answers, oldest first.
    pending: VecDeque<PendingRead>,
    /// Reads that arrived before this leader committed an entry of its term.
    waiting_for_commit: Vec<(ReadRequest, ReadMode)>,
    broadcast_pending: bool,
    /// On a follower: reads forwarded to the leader and not answered yet, by wire
    /// sequence. An answer is passed on once (the network may duplicate it).
    forwarded: BTreeMap<u64, ForwardedRead>,
    /// The wire sequence of the next forwarded read.
    next_forwarded_sequence: u64,
}

impl<S: LogStore> Node<S> {
    /// Asks for a read index for the caller's read `request_id`. The answer arrives
    /// as a [`ReadState`] in [`Ready::read_states`](crate::Ready::read_states), on
    /// this member: a follower asks its leader. Without a known leader the answer is
    /// [`Error::NotLeader`]; lease reads without check-quorum are refused.
    ///
    /// `now` is the driver's monotonic clock when the read arrived: a lease read is
    /// served at once only if the lease still holds at that moment.
    pub fn read_index(
        &mut self,
        request_id: u64,
        mode: ReadMode,
        now: Monotonic,
    ) -> Result<(), Error> {
        if mode == ReadMode::Lease && !self.config.check_quorum {
            return Err(Error::LeaseReadWithoutCheckQuorum);
        }
        self.observe_time(now);
        let request = ReadRequest::Local { request_id };
        match (self.role, self.leader) {
            (Role::Leader, _) => {
                let result = self.leader_read(request, mode);
                self.record(result)
            }
            (_, Some(leader)) => {
                // The caller's id stays here; the wire carries this process's own id.
                let sequence = self.read_only.next_forwarded_sequence;
                self.read_only.next_forwarded_sequence += 1;
                let forwarded = ForwardedRead {
                    request_id,
                    term: self.term,
                };
                self.read_only.forwarded.insert(sequence, forwarded);
                let id = ForwardedReadId {
                    incarnation: self.config.incarnation,
                    sequence,
                };
                self.send(
                    leader,
                    MessageBody::ReadIndex(ReadIndexRequest { id }),
                    SendAfter::Now,
                );
                Ok(())
            }
            (_, None) => Err(Error::NotLeader { leader: None }),
        }
    }

    pub(crate) fn leader_read(
        &mut self,
        request: ReadRequest,
        mode: ReadMode,
    ) -> Result<(), StorageError> {
        if !self.committed_in_current_term()? {
            // §6.4 step 1: until an entry of its term commits, a new leader may not
            // know the latest commit index.
            self.read_only.waiting_for_commit.push((request, mode));
            return Ok(());
        }
        let committed = self.log.committed();
        if self.config.mutation == crate::config::Mutation::ReadWithoutQuorum {
            self.finish_read(request, Some(committed));
            return Ok(());
        }
        // The lease is judged at the latest clock reading, which is no earlier than
        // the read's arrival: a read that waited (for the term's first commit) is
        // served only if the lease also covered the moment it arrived, when this
        // member was then the only leader.
        if mode == ReadMode::Lease
            && !self.timeout_now_sent
            && self.transfer_target.is_none()
            && self.lease_valid()
        {
            self.finish_read(request, Some(committed));
            return Ok(());
        }
        let sequence = self.read_only.next_sequence;
        let id = self.id();
        self.read_only.pending.push_back(PendingRead {
            request,
            index: committed,
            sequence,
            acks: BTreeSet::from([id]),
        });
        self.read_only.broadcast_pending = true;
        self.resolve_reads();
        Ok(())
    }

    pub(crate) fn committed_in_current_term(&self) -> Result<bool, StorageError> {
        Ok(self.log.term(self.log.committed())? == self.term)
    }

    /// Called at `ready`: starts reads that waited for the first commit of the term,
    /// and sends one read heartbeat for every read registered since the last one.
    pub(crate) fn flush_reads(&mut self) -> Result<(), StorageError> {
        if self.role != Role::Leader {
            return Ok(());
        }
        if !self.read_only.waiting_for_commit.is_empty() && self.committed_in_current_term()? {
            for (request, mode) in std::mem::take(&mut self.read_only.waiting_for_commit) {
                self.leader_read(request, mode)?;
            }
        }
        if std::mem::take(&mut self.read_only.broadcast_pending) {
            let round = self.new_round();
            let committed = self.log.committed();
            let beats: Vec<(NodeId, LogIndex)> = self
                .progress
                .iter()
                .filter(|(id, _)| **id != self.id())
                .map(|(&id, p)| (id, p.match_index.min(committed)))
                .collect();
            for (id, leader_commit) in beats {
                self.send(
                    id,
                    MessageBody::ReadHeartbeat(ReadHeartbeat {
                        leader_commit,
                        round,
                    }),
                    SendAfter::Now,
                );
            }
        }
        Ok(())
    }

    /// A member answered the read heartbeat `round`: it acknowledges this leader
    /// for every read registered before that round left.
    pub(crate) fn handle_read_heartbeat_response(
        &mut self,
        from: NodeId,
        round: HeartbeatRound,
    ) -> Result<(), StorageError> {
        self.handle_heartbeat_response(from, Some(round))?;
        if self.role != Role::Leader || !self.membership.is_voter(from) || round.term != self.term {
            return Ok(());
        }
        for read in self.read_only.pending.iter_mut() {
            if read.sequence <= round.sequence {
                read.acks.insert(from);
            }
        }
        self.resolve_reads();
        Ok(())
    }

    fn resolve_reads(&mut self) {
        while let Some(read) = self.read_only.pending.front() {
            let votes: BTreeMap<NodeId, bool> = read.acks.iter().map(|&id| (id, true)).collect();
            if quorum::vote_result(&self.membership, &votes) != VoteResult::Won {
                break;
            }
            let read = self.read_only.pending.pop_front().expect("front exists");
            self.finish_read(read.request, Some(read.index));
        }
    }

    fn finish_read(&mut self, request: ReadRequest, index: Option<LogIndex>) {
        match request {
            ReadRequest::Local { request_id } => {
                self.read_states.push(ReadState { request_id, index })
            }
            ReadRequest::Forwarded { from, id } => {
                let response = ReadIndexResponse { id, index };
                self.send(
                    from,
                    MessageBody::ReadIndexResponse(response),
                    SendAfter::Now,
                );
            }
        }
    }

    /// A follower forwarded a read.
    pub(crate) fn handle_read_index_request(
        &mut self,
        from: NodeId,
        id: ForwardedReadId,
    ) -> Result<(), StorageError> {
        let request = ReadRequest::Forwarded { from, id };
        if self.role == Role::Leader {
            self.leader_read(request, ReadMode::Quorum)
        } else {
            self.finish_read(request, None);
            Ok(())
        }
    }

    /// The leader answered a forwarded read, in `term`. An answer names this
    /// process's incarnation, or it was meant for an earlier process of this member
    /// and is ignored. An answer from another term than the one the request was
    /// sent in is not that leader's confirmation: the caller retries.
    pub(crate) fn handle_read_index_response(&mut self, term: Term, response: ReadIndexResponse) {
        if response.id.incarnation != self.config.incarnation {
            return;
        }
        let Some(read) = self.read_only.forwarded.remove(&response.id.sequence) else {
            return;
        };
        let index = if read.term == term {
            response.index
        } else {
            None
        };
        self.read_states.push(ReadState {
            request_id: read.request_id,
            index,
        });
    }

    /// A new term began: the leader that forwarded reads went to may never answer.
    pub(crate) fn abandon_forwarded_reads(&mut self) {
        for read in std::mem::take(&mut self.read_only.forwarded).into_values() {
            self.read_states.push(ReadState {
                request_id: read.request_id,
                index: None,
            });
        }
    }

    /// Leadership ended: every read not yet confirmed must be retried elsewhere.
    pub(crate) fn abandon_reads(&mut self) {
        let pending: Vec<ReadRequest> = self
            .read_only
            .pending
            .drain(..)
            .map(|r| r.request)
            .collect();
        let waiting: Vec<ReadRequest> = self
            .read_only
            .waiting_for_commit
            .drain(..)
            .map(|(r, _)| r)
            .collect();
        self.read_only.broadcast_pending = false;
        for request in pending.into_iter().chain(waiting) {
            self.finish_read(request, None);
        }
    }

    /// Whether, at the latest clock reading, a quorum of voters answered a round of
    /// this term sent less than the lease duration ago. Each of them heard from this
    /// leader no earlier than the round's send time and then ignores vote requests
    /// for an election timeout, which the lease duration is configured to stay below:
    /// no other leader can be elected before the lease ends. Counting from the send
    /// time (not the answer's arrival) is what keeps a delayed answer from stretching
    /// the lease; reading the clock at the moment of the read (not the tick count)
    /// is what ends the lease of a leader that was paused.
    fn lease_valid(&self) -> bool {
        let now = self.now;
        let lease = self.config.lease_duration_micros;
        let active = self
            .progress
            .iter()
            .filter(|(id, p)| {
                **id == self.id()
                    || p.lease_acked_at
                        .is_some_and(|sent| now < sent.plus_micros(lease))
            })
            .map(|(&id, _)| id)
            .collect();
        quorum::is_quorum(&self.membership, &active)
    }

    /// Starts a new heartbeat round at the latest clock reading and remembers when it
    /// left.
    pub(crate) fn new_round(&mut self) -> HeartbeatRound {
        let sequence = self.read_only.next_sequence;
        self.read_only.next_sequence += 1;
        if self.read_only.rounds.len() >= MAX_ROUNDS {
            self.read_only.rounds.pop_first();
        }
        self.read_only.rounds.insert(sequence, self.now);
        HeartbeatRound {
            term: self.term,
            sequence,
        }
    }

    /// The send time of round `sequence` of this term, if still remembered.
    pub(crate) fn round_sent_at(&self, sequence: u64) -> Option<Monotonic> {
        self.read_only.rounds.get(&sequence).copied()
    }

    /// A new term of leadership: no earlier round counts any more.
    pub(crate) fn start_rounds(&mut self) {
        self.read_only.rounds.clear();
    }

    /// Forgets rounds too old to extend the lease whatever their answers say.
    pub(crate) fn forget_expired_rounds(&mut self) {
        let now = self.now;
        let lease = self.config.lease_duration_micros;
        self.read_only
            .rounds
            .retain(|_, sent| now < sent.plus_micros(lease));
    }
}

impl<S: LogStore> Node<S> {
    pub(crate) fn read_only_has_broadcast(&self) -> bool {
        self.read_only.broadcast_pending
    }

    pub(crate) fn read_only_waiting(&self) -> bool {
        !self.read_only.waiting_for_commit.is_empty()
    }
}
