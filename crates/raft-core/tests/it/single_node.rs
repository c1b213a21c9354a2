//! One node driven by hand-made messages from fictional peers: rules that a whole
//! cluster rarely reaches on its own (a TimeoutNow reaching a leader or candidate,
//! a snapshot covering a deposed leader's proposals).

use bytes::Bytes;
use raft_core::{
    AppendRequest, Config, Entry, EntryId, EntryPayload, LogIndex, Membership, MemoryLogStore,
    Message, MessageBody, Monotonic, Node, NodeId, ProposalOutcome, ProposalResult, ReadMode, Role,
    SnapshotMeta, Term, VoteResponse,
};

fn members() -> Membership {
    Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)])
}

fn message(from: u64, term: u64, body: MessageBody) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(1),
        term: Term(term),
        body,
    }
}

/// Persists every handed-out write at once and collects proposal outcomes.
fn drain(node: &mut Node<MemoryLogStore>, store: &MemoryLogStore) -> Vec<ProposalOutcome> {
    let mut outcomes = Vec::new();
    while node.has_ready() {
        let ready = node.ready().expect("ready");
        if let Some(persist) = ready.persist {
            if let Some(snapshot) = &persist.snapshot {
                store.install_snapshot(snapshot);
            }
            if let Some(hard_state) = persist.hard_state {
                store.set_hard_state(hard_state);
            }
            store.append(&persist.entries);
            node.on_persisted(persist.ack).expect("persisted");
        }
        if let Some(last) = ready.committed_entries.last() {
            node.on_applied(last.index);
        }
        outcomes.extend(ready.proposal_outcomes);
    }
    outcomes
}

/// Member 1 as a candidate of term 1, its vote for itself durable.
fn candidate() -> (Node<MemoryLogStore>, MemoryLogStore) {
    let store = MemoryLogStore::new(members());
    let mut node = Node::new(Config::new(NodeId(1)), store.clone()).expect("node");
    node.campaign().expect("campaign");
    let granted = MessageBody::PreVoteResponse(VoteResponse { granted: true });
    node.step(message(2, 1, granted)).expect("pre-vote");
    drain(&mut node, &store);
    assert_eq!((node.role(), node.term()), (Role::Candidate, Term(1)));
    (node, store)
}

/// Member 1 as the leader of term 1, its empty entry 1/1 committed.
fn leader() -> (Node<MemoryLogStore>, MemoryLogStore) {
    let (mut node, store) = candidate();
    let granted = MessageBody::VoteResponse(VoteResponse { granted: true });
    node.step(message(2, 1, granted)).expect("vote");
    drain(&mut node, &store);
    assert_eq!(node.role(), Role::Leader);
    let accepted = MessageBody::AppendResponse(raft_core::AppendResponse::Accepted {
        match_index: LogIndex(1),
    });
    node.step(message(2, 1, accepted)).expect("append answer");
    drain(&mut node, &store);
    assert_eq!(node.status().commit_index, LogIndex(1));
    (node, store)
}

/// A TimeoutNow is the leader's word to one follower. A leader that receives one
/// (from a broken or confused peer) must not start an election: that would skip
/// the step-down path that answers its pending reads with "retry".
#[test]
fn leader_ignores_timeout_now() {
    let (mut node, store) = leader();
    node.read_index(7, ReadMode::Quorum, Monotonic(0))
        .expect("read");
    drain(&mut node, &store);
    let before = node.status();
    let _ = node.step(message(2, 1, MessageBody::TimeoutNow));
    let after = node.status();
    assert_eq!((after.role, after.term), (Role::Leader, Term(1)));
    assert_eq!(after, before, "no state change");
    assert!(!node.has_ready(), "nothing to hand out");
}

/// A candidate that receives a TimeoutNow keeps its election; it does not start
/// another one in a new term.
#[test]
fn candidate_ignores_timeout_now() {
    let (mut node, _store) = candidate();
    let before = node.status();
    let _ = node.step(message(2, 1, MessageBody::TimeoutNow));
    assert_eq!(node.status(), before, "no state change");
    assert_eq!((node.role(), node.term()), (Role::Candidate, Term(1)));
}

/// Member 1 leads term 1 and proposes x at 2 and y at 3. The term-2 leader
/// (member 2) cuts 3 off with its own entry; the term-3 leader (member 3), which
/// holds 1..=3 of term 1, sends a snapshot through 3/1. The snapshot's last entry
/// is member 1's own of term 1, so by log matching everything before it in the
/// committed log is member 1's term-1 log: both proposals are committed.
#[test]
fn snapshot_of_the_proposals_term_proves_them_committed() {
    let (mut node, store) = leader();
    let x = node.propose(Bytes::from("x")).expect("propose x");
    let y = node.propose(Bytes::from("y")).expect("propose y");
    assert_eq!((x.index, y.index), (LogIndex(2), LogIndex(3)));
    drain(&mut node, &store);
    let cut = MessageBody::Append(AppendRequest {
        prev_log_index: LogIndex(2),
        prev_log_term: Term(1),
        entries: vec![Entry {
            term: Term(2),
            index: LogIndex(3),
            payload: EntryPayload::Empty,
        }],
        leader_commit: LogIndex(1),
    });
    node.step(message(2, 2, cut)).expect("append of term 2");
    assert!(drain(&mut node, &store).is_empty());
    let snapshot = MessageBody::InstallSnapshot(SnapshotMeta {
        index: LogIndex(3),
        term: Term(1),
        membership: members(),
    });
    node.step(message(3, 3, snapshot)).expect("snapshot");
    let outcomes = drain(&mut node, &store);
    let result_of = |proposal: EntryId| {
        outcomes
            .iter()
            .find(|o| o.proposal == proposal)
            .map(|o| o.result)
    };
    assert_eq!(result_of(x), Some(ProposalResult::Committed));
    assert_eq!(result_of(y), Some(ProposalResult::Committed));
}

/// The same, but the snapshot ends in an entry of a later term than the
/// proposals': it proves nothing about which entries sit below it, so a proposal
/// below its index is unknown.
#[test]
fn snapshot_of_a_later_term_leaves_proposals_unknown() {
    let (mut node, store) = leader();
    let x = node.propose(Bytes::from("x")).expect("propose x");
    drain(&mut node, &store);
    let snapshot = MessageBody::InstallSnapshot(SnapshotMeta {
        index: LogIndex(4),
        term: Term(2),
        membership: members(),
    });
    node.step(message(2, 2, snapshot)).expect("snapshot");
    let outcomes = drain(&mut node, &store);
    let result = outcomes.iter().find(|o| o.proposal == x).map(|o| o.result);
    assert_eq!(result, Some(ProposalResult::Unknown));
}

/// Member 1 restarts from a store whose WAL cut a damaged last write that may have
/// been acknowledged (FAST'18 "Protocol-Aware Recovery"): its log may lack entries
/// it promised a leader, so its vote could help elect a leader without them. It
/// refuses votes and pre-votes, and does not campaign, until a leader of the
/// current term has brought its log in line (an accepted append through the
/// leader's commit index, in the leader's term) and that log is durable; then it
/// votes normally in a later term.
#[test]
fn member_that_may_have_lost_entries_votes_only_once_caught_up() {
    let store = MemoryLogStore::new(members());
    store.append(&[Entry {
        term: Term(1),
        index: LogIndex(1),
        payload: EntryPayload::Empty,
    }]);
    store.set_hard_state(raft_core::HardState {
        term: Term(1),
        vote: None,
        commit: LogIndex(1),
    });
    store.set_log_may_have_lost_entries(true);
    let mut config = Config::new(NodeId(1));
    config.check_quorum = false; // no leader lease: only the flag refuses votes
    let mut node = Node::new(config, store.clone()).expect("node");
    assert!(node.status().catching_up);

    // A candidate whose log looks at least as up to date: refused, both rounds.
    let request = raft_core::VoteRequest {
        last_log_index: LogIndex(1),
        last_log_term: Term(1),
    };
    node.step(message(2, 2, MessageBody::PreVote(request)))
        .expect("pre-vote");
    node.step(message(2, 2, MessageBody::Vote(request)))
        .expect("vote");
    let answers = answers_to(&mut node, &store, 2);
    assert_eq!(answers, vec![false, false], "pre-vote and vote refused");
    assert_eq!(node.status().vote, None);
    // Nor does it campaign.
    node.campaign().expect("campaign");
    assert_eq!(node.role(), Role::Follower);

    // The term-2 leader (member 2) appends its empty entry 2/2 and says 2 is
    // committed: the log now matches the leader's through its commit index.
    let append = MessageBody::Append(AppendRequest {
        prev_log_index: LogIndex(1),
        prev_log_term: Term(1),
        entries: vec![Entry {
            term: Term(2),
            index: LogIndex(2),
            payload: EntryPayload::Empty,
        }],
        leader_commit: LogIndex(2),
    });
    node.step(message(2, 2, append)).expect("append");
    let ready = node.ready().expect("ready");
    assert!(
        node.status().catching_up,
        "caught up only once the entries are durable"
    );
    let persist = ready.persist.expect("a write");
    if let Some(hard_state) = persist.hard_state {
        store.set_hard_state(hard_state);
    }
    store.append(&persist.entries);
    node.on_persisted(persist.ack).expect("persisted");
    assert!(!node.status().catching_up, "caught up");

    // A vote request of a later term from an up-to-date candidate is granted.
    let request = raft_core::VoteRequest {
        last_log_index: LogIndex(2),
        last_log_term: Term(2),
    };
    node.step(message(3, 3, MessageBody::Vote(request)))
        .expect("vote");
    assert_eq!(answers_to(&mut node, &store, 3), vec![true]);
    assert_eq!(node.status().vote, Some(NodeId(3)));
}

/// The (pre-)vote answers node sent to `to`, persisting what has to be durable first.
fn answers_to(node: &mut Node<MemoryLogStore>, store: &MemoryLogStore, to: u64) -> Vec<bool> {
    let mut answers = Vec::new();
    while node.has_ready() {
        let ready = node.ready().expect("ready");
        let mut messages = ready.messages;
        if let Some(persist) = ready.persist {
            if let Some(hard_state) = persist.hard_state {
                store.set_hard_state(hard_state);
            }
            store.append(&persist.entries);
            node.on_persisted(persist.ack).expect("persisted");
            messages.extend(persist.messages);
        }
        for m in messages.into_iter().filter(|m| m.to == NodeId(to)) {
            match m.body {
                MessageBody::PreVoteResponse(r) | MessageBody::VoteResponse(r) => {
                    answers.push(r.granted)
                }
                _ => {}
            }
        }
    }
    answers
}

/// A member that may not campaign (here a learner) still lets its lease on a
/// silent leader lapse after an election timeout, and answers vote requests again.
/// (It used to start its count over at every timeout, staying "in the lease"
/// forever: a cluster that needed its vote, say while another voter is catching up
/// after a lost log tail, could elect no one.)
#[test]
fn member_that_may_not_campaign_answers_votes_once_the_leader_is_silent() {
    let mut membership = Membership::with_voters([NodeId(2), NodeId(3)]);
    membership.learners.insert(NodeId(1));
    let store = MemoryLogStore::new(membership);
    let mut config = Config::new(NodeId(1));
    config.election_timeout_ticks_max = config.election_timeout_ticks_min + 1;
    let mut node = Node::new(config.clone(), store.clone()).expect("node");
    let heartbeat = MessageBody::Heartbeat(raft_core::Heartbeat {
        leader_commit: LogIndex(0),
        round: raft_core::HeartbeatRound {
            term: Term(1),
            sequence: 0,
        },
    });
    node.step(message(2, 1, heartbeat)).expect("heartbeat");
    drain(&mut node, &store);
    for tick in 1..=u64::from(config.election_timeout_ticks_min) {
        node.tick(Monotonic(tick * 100_000)).expect("tick");
    }
    let request = raft_core::VoteRequest {
        last_log_index: LogIndex(0),
        last_log_term: Term(0),
    };
    node.step(message(3, 2, MessageBody::PreVote(request)))
        .expect("pre-vote");
    assert_eq!(answers_to(&mut node, &store, 3), vec![true]);
}

/// Member 2 acknowledged 1/1, then restarted from a WAL that cut it (the
/// acknowledgement was still on its way). The leader probes from its match index;
/// member 2 rejects the probe at that very index. The leader must look further back
/// (probing never goes below a match index, so it forgets the match) rather than
/// repeat the same probe forever.
#[test]
fn leader_forgets_a_match_index_the_member_denies() {
    let (mut node, store) = leader();
    node.report_unreachable(NodeId(2)); // probe from match + 1 = 2
    node.propose(Bytes::from("x")).expect("propose");
    let probe_prev = |node: &mut Node<MemoryLogStore>| {
        let ready = node.ready().expect("ready");
        let prev = ready.messages.iter().find_map(|m| match &m.body {
            MessageBody::Append(a) if m.to == NodeId(2) => Some(a.prev_log_index),
            _ => None,
        });
        if let Some(persist) = ready.persist {
            store.append(&persist.entries);
            node.on_persisted(persist.ack).expect("persisted");
        }
        prev
    };
    assert_eq!(probe_prev(&mut node), Some(LogIndex(1)));
    let denied = MessageBody::AppendResponse(raft_core::AppendResponse::Rejected {
        rejected_index: LogIndex(1),
        hint_index: LogIndex(0),
        hint_term: Term(0),
    });
    node.step(message(2, 1, denied)).expect("rejection");
    assert_eq!(probe_prev(&mut node), Some(LogIndex(0)), "probes below 1");
    let status = node.status();
    let peer = status.progress.iter().find(|p| p.id == NodeId(2));
    assert_eq!(peer.map(|p| p.match_index), Some(LogIndex(0)));
}
