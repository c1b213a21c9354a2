//! An interpreter that turns arbitrary bytes into calls on one raft-core `Node`:
//! ticks, messages from fictional peers (any kind, any term, any indexes), proposals,
//! reads, transfers, membership changes, persistence acknowledgements in and out of
//! order of arrival, and compactions. Used by the `core_step` fuzz target and by a
//! property test, so that CI exercises it without libFuzzer.
//!
//! What must hold, whatever the bytes: no panic; and the node's own invariants after
//! every call: term and commit index never go back, the commit index never passes
//! the last index, the applied index never passes the commit index, and the durable
//! index never passes the last index.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;
use raft_core::{
    AppendRequest, AppendResponse, Config, Entry, EntryPayload, ForwardedReadId, Heartbeat,
    HeartbeatResponse, HeartbeatRound, LogIndex, LogStore, Membership, MembershipChange,
    MemoryLogStore, Message, MessageBody, Monotonic, Node, NodeId, Persist, ReadHeartbeat,
    ReadHeartbeatResponse, ReadIndexRequest, ReadIndexResponse, ReadMode, SnapshotMeta, Term,
    VoteRequest, VoteResponse,
};

/// Reads small numbers from the fuzz input; runs dry as zeros.
struct Input<'a> {
    bytes: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    fn small(&mut self, max: u64) -> u64 {
        u64::from(self.byte()) % (max + 1)
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

const ME: NodeId = NodeId(1);

/// Runs the operations encoded in `data` against one node of a 3-voter cluster.
/// Panics (through `assert!`) only if an invariant breaks.
pub fn run(data: &[u8]) {
    let mut input = Input { bytes: data };
    let membership = Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]);
    let store = MemoryLogStore::new(membership);
    // Sometimes the store reports a cut log tail: the node starts catching up.
    store.set_log_may_have_lost_entries(input.byte() & 7 == 0);
    let mut config = Config::new(ME);
    config.seed = u64::from(input.byte());
    config.check_quorum = input.byte() & 1 == 0;
    config.pre_vote = input.byte() & 1 == 0;
    config.max_inflight_appends = 1 + input.small(4) as usize;
    let Ok(mut node) = Node::new(config, store.clone()) else {
        return;
    };
    let mut writes: VecDeque<Persist> = VecDeque::new();
    let mut last = node.status();
    let mut request_id = 0;
    // The driver's monotonic clock: it moves on at every tick, by anything from
    // nothing to several election timeouts (a paused process), never back.
    let mut clock = Monotonic::default();
    while !input.is_empty() {
        let result = match input.byte() % 13 {
            0 | 1 => {
                clock = clock.plus_micros(input.small(255) * 20_000);
                node.tick(clock).map(|_| ())
            }
            2..=5 => node.step(message(&mut input)),
            6 => node
                .propose(Bytes::from(vec![input.byte(); input.small(8) as usize]))
                .map(|_| ()),
            7 => {
                // Take a ready; persist everything handed out so far, in order.
                take_ready(&mut node, &mut writes);
                while let Some(write) = writes.pop_front() {
                    persist(&store, &mut node, write);
                }
                Ok(())
            }
            8 => {
                // Take a ready but leave its write in flight.
                take_ready(&mut node, &mut writes);
                Ok(())
            }
            9 => {
                request_id += 1;
                let mode = if input.byte() & 1 == 0 {
                    ReadMode::Quorum
                } else {
                    ReadMode::Lease
                };
                node.read_index(request_id, mode, clock)
            }
            10 => match input.byte() % 3 {
                0 => node.campaign(),
                1 => node.transfer_leadership(NodeId(input.small(4))),
                _ => {
                    let id = NodeId(input.small(5));
                    let change = match input.byte() % 3 {
                        0 => MembershipChange::AddLearner(id),
                        1 => MembershipChange::Promote(id),
                        _ => MembershipChange::Remove(id),
                    };
                    node.propose_membership_change(change, Bytes::new())
                        .map(|_| ())
                }
            },
            11 => {
                let peer = NodeId(input.small(4));
                if input.byte() & 1 == 0 {
                    node.report_unreachable(peer);
                } else {
                    node.report_snapshot_failed(peer);
                }
                Ok(())
            }
            _ => {
                compact(&store, &node);
                Ok(())
            }
        };
        if let Err(raft_core::Error::Storage(_)) = result {
            return;
        }
        let now = node.status();
        assert!(now.term >= last.term, "term went back");
        assert!(
            now.commit_index >= last.commit_index,
            "commit index went back"
        );
        assert!(
            now.commit_index <= now.last_index,
            "commit index beyond the log"
        );
        assert!(
            now.applied_index <= now.commit_index,
            "applied beyond commit"
        );
        assert!(
            now.persisted_index <= now.last_index,
            "durable beyond the log"
        );
        last = now;
    }
}

fn take_ready(node: &mut Node<MemoryLogStore>, writes: &mut VecDeque<Persist>) {
    if !node.has_ready() {
        return;
    }
    let Ok(ready) = node.ready() else { return };
    if let Some(write) = ready.persist {
        writes.push_back(write);
    }
    if let Some(last) = ready.committed_entries.last() {
        node.on_applied(last.index);
    }
}

fn persist(store: &MemoryLogStore, node: &mut Node<MemoryLogStore>, write: Persist) {
    if let Some(snapshot) = &write.snapshot {
        store.install_snapshot(snapshot);
    }
    if let Some(hard_state) = write.hard_state {
        store.set_hard_state(hard_state);
    }
    store.append(&write.entries);
    let _ = node.on_persisted(write.ack);
}

/// Compacts the store through the applied index (what an application does after a
/// snapshot).
fn compact(store: &MemoryLogStore, node: &Node<MemoryLogStore>) {
    let status = node.status();
    let index = status.applied_index.min(status.persisted_index);
    if index <= store.first_index().prev() || index > store.last_index() {
        return;
    }
    let Ok(term) = store.term(index) else { return };
    store.compact(&SnapshotMeta {
        index,
        term,
        membership: node.membership().clone(),
    });
}

fn forwarded_read_id(input: &mut Input<'_>) -> ForwardedReadId {
    ForwardedReadId {
        incarnation: input.small(1),
        sequence: input.small(4),
    }
}

fn round(input: &mut Input<'_>) -> HeartbeatRound {
    HeartbeatRound {
        term: Term(input.small(4)),
        sequence: input.small(4),
    }
}

fn message(input: &mut Input<'_>) -> Message {
    let from = NodeId(input.small(4));
    let to = if input.byte() & 15 == 0 {
        NodeId(input.small(4))
    } else {
        ME
    };
    let term = Term(input.small(6));
    let index = |input: &mut Input<'_>| LogIndex(input.small(12));
    let body = match input.byte() % 16 {
        0 => MessageBody::PreVote(VoteRequest {
            last_log_index: index(input),
            last_log_term: Term(input.small(6)),
        }),
        1 => MessageBody::Vote(VoteRequest {
            last_log_index: index(input),
            last_log_term: Term(input.small(6)),
        }),
        2 => MessageBody::TransferVote(VoteRequest {
            last_log_index: index(input),
            last_log_term: Term(input.small(6)),
        }),
        3 => MessageBody::PreVoteResponse(VoteResponse {
            granted: input.byte() & 1 == 0,
        }),
        4 => MessageBody::VoteResponse(VoteResponse {
            granted: input.byte() & 1 == 0,
        }),
        5 | 6 => {
            let prev_log_index = index(input);
            let prev_log_term = Term(input.small(6));
            let count = input.small(4);
            let mut entry_term = prev_log_term;
            let entries = (1..=count)
                .map(|i| {
                    entry_term = Term(entry_term.0 + input.small(1));
                    let payload = match input.byte() % 4 {
                        0 => EntryPayload::Empty,
                        1 => EntryPayload::Membership {
                            membership: Membership::with_voters(
                                (1..=1 + input.small(3)).map(NodeId),
                            ),
                            context: Bytes::new(),
                        },
                        _ => EntryPayload::Command(Bytes::from(vec![input.byte()])),
                    };
                    Entry {
                        term: entry_term,
                        index: prev_log_index.plus(i),
                        payload,
                    }
                })
                .collect();
            MessageBody::Append(AppendRequest {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit: index(input),
            })
        }
        7 => MessageBody::AppendResponse(AppendResponse::Accepted {
            match_index: index(input),
        }),
        8 if input.byte() & 3 == 0 => {
            MessageBody::AppendResponse(AppendResponse::RejectedAfterLoss {
                rejected_index: index(input),
                hint_index: index(input),
                hint_term: Term(input.small(6)),
            })
        }
        8 => MessageBody::AppendResponse(AppendResponse::Rejected {
            rejected_index: index(input),
            hint_index: index(input),
            hint_term: Term(input.small(6)),
        }),
        9 => MessageBody::Heartbeat(Heartbeat {
            leader_commit: index(input),
            round: round(input),
        }),
        10 => MessageBody::HeartbeatResponse(HeartbeatResponse {
            round: (input.byte() & 1 == 0).then(|| round(input)),
        }),
        11 => MessageBody::ReadHeartbeat(ReadHeartbeat {
            leader_commit: index(input),
            round: round(input),
        }),
        12 => MessageBody::ReadHeartbeatResponse(ReadHeartbeatResponse {
            round: round(input),
        }),
        13 => MessageBody::ReadIndex(ReadIndexRequest {
            id: forwarded_read_id(input),
        }),
        14 => {
            let index = if input.byte() & 1 == 0 {
                Some(index(input))
            } else {
                None
            };
            match input.byte() % 2 {
                0 => MessageBody::ReadIndexResponse(ReadIndexResponse {
                    id: forwarded_read_id(input),
                    index,
                }),
                _ => MessageBody::TimeoutNow,
            }
        }
        _ => {
            let voters: BTreeSet<NodeId> = (1..=1 + input.small(3)).map(NodeId).collect();
            MessageBody::InstallSnapshot(SnapshotMeta {
                index: index(input),
                term: Term(input.small(6)),
                membership: Membership {
                    voters,
                    ..Membership::default()
                },
            })
        }
    };
    Message {
        from,
        to,
        term,
        body,
    }
}
