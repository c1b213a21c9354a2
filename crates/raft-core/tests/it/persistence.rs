//! Persistence acknowledgements name exactly the write they acknowledge: an
//! acknowledgement of a write whose entries a later write replaced never marks the
//! replacement durable.

use raft_core::{
    AppendRequest, Config, Entry, EntryPayload, HardState, LogIndex, Membership, MemoryLogStore,
    Message, MessageBody, Node, NodeId, Persist, Term,
};

fn entries(terms: &[(u64, u64)]) -> Vec<Entry> {
    terms
        .iter()
        .map(|&(term, index)| Entry {
            term: Term(term),
            index: LogIndex(index),
            payload: EntryPayload::Command(format!("{term}/{index}").into()),
        })
        .collect()
}

fn append(from: u64, term: u64, new: Vec<Entry>) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(3),
        term: Term(term),
        body: MessageBody::Append(AppendRequest {
            prev_log_index: LogIndex(4),
            prev_log_term: Term(1),
            entries: new,
            leader_commit: LogIndex(4),
        }),
    }
}

fn take_persist(node: &mut Node<MemoryLogStore>) -> Persist {
    node.ready()
        .expect("ready")
        .persist
        .expect("a write is handed out")
}

/// Member 3 holds 1..=4 of term 1 (committed). Three writes are handed out before
/// any completes, as they can be with asynchronous writes:
///
/// - A: the term-2 leader (member 1) sends 5..=10 of term 2;
/// - B: the term-3 leader (member 2), which never got them, sends 5..=6 of term 3,
///   cutting A's entries off;
/// - C: the term-4 leader (member 1 again, elected with the votes of members that
///   hold A's entries) sends 5..=10 of term 2 again, plus 11 of term 4.
///
/// C holds the same (term, index) pairs as A through 10. An acknowledgement that
/// names only "the last entry 10 of term 2" cannot tell A's from C's, but A's
/// bytes were cut off by B: if the process crashes after B is durable and before
/// C is, the disk holds B's 5..=6 of term 3. So A's and B's acknowledgements cover
/// nothing past 4, whatever order they come in; only C's covers 5..=11.
fn three_writes() -> (Node<MemoryLogStore>, Persist, Persist, Persist) {
    let store = MemoryLogStore::new(Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]));
    store.append(&entries(&[(1, 1), (1, 2), (1, 3), (1, 4)]));
    store.set_hard_state(HardState {
        term: Term(1),
        vote: None,
        commit: LogIndex(4),
    });
    let mut node = Node::new(Config::new(NodeId(3)), store).expect("node");
    node.step(append(
        1,
        2,
        entries(&[(2, 5), (2, 6), (2, 7), (2, 8), (2, 9), (2, 10)]),
    ))
    .expect("append A");
    let a = take_persist(&mut node);
    node.step(append(2, 3, entries(&[(3, 5), (3, 6)])))
        .expect("append B");
    let b = take_persist(&mut node);
    let c_entries = entries(&[(2, 5), (2, 6), (2, 7), (2, 8), (2, 9), (2, 10), (4, 11)]);
    node.step(append(1, 4, c_entries)).expect("append C");
    let c = take_persist(&mut node);
    assert_eq!(node.status().last_index, LogIndex(11));
    (node, a, b, c)
}

#[test]
fn acks_in_order_cover_only_what_each_write_still_holds() {
    let (mut node, a, b, c) = three_writes();
    node.on_persisted(a.ack).expect("ack A");
    assert_eq!(node.status().persisted_index, LogIndex(4), "after A's ack");
    node.on_persisted(b.ack).expect("ack B");
    assert_eq!(node.status().persisted_index, LogIndex(4), "after B's ack");
    node.on_persisted(c.ack).expect("ack C");
    assert_eq!(node.status().persisted_index, LogIndex(11), "after C's ack");
}

#[test]
fn a_late_ack_of_a_replaced_write_covers_nothing_new() {
    let (mut node, a, b, c) = three_writes();
    node.on_persisted(b.ack).expect("ack B");
    assert_eq!(node.status().persisted_index, LogIndex(4), "after B's ack");
    node.on_persisted(a.ack).expect("ack A, late");
    assert_eq!(
        node.status().persisted_index,
        LogIndex(4),
        "after A's late ack"
    );
    node.on_persisted(c.ack).expect("ack C");
    assert_eq!(node.status().persisted_index, LogIndex(11), "after C's ack");
    node.on_persisted(a.ack).expect("ack A, duplicated");
    assert_eq!(node.status().persisted_index, LogIndex(11));
}
