//! Unit and property tests of the message codec: every kind round-trips, payloads
//! are not copied, and no input makes decoding panic or over-allocate.

use super::*;
use crate::codec::{DEFAULT_MAX_FRAME_BYTES, FrameSplitter, decode_all};
use proptest::prelude::*;

fn message(body: MessageBody) -> Message {
    Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(7),
        body,
    }
}

fn round_trip(original: &Message) -> Message {
    let mut buf = BytesMut::new();
    encode_message(original, &mut buf).unwrap();
    assert_eq!(buf.len(), encoded_len(original));
    let frame = FrameSplitter::new(DEFAULT_MAX_FRAME_BYTES)
        .next_frame(&mut buf)
        .unwrap()
        .unwrap();
    assert!(buf.is_empty());
    decode_message(frame).unwrap()
}

#[test]
fn every_kind_round_trips() {
    let vote = VoteRequest {
        last_log_index: LogIndex(9),
        last_log_term: Term(3),
    };
    let round = HeartbeatRound {
        term: Term(7),
        sequence: 41,
    };
    let bodies = [
        MessageBody::PreVote(vote),
        MessageBody::PreVoteResponse(VoteResponse { granted: true }),
        MessageBody::Vote(vote),
        MessageBody::VoteResponse(VoteResponse { granted: false }),
        MessageBody::Append(AppendRequest {
            prev_log_index: LogIndex(4),
            prev_log_term: Term(2),
            entries: vec![
                Entry {
                    term: Term(7),
                    index: LogIndex(5),
                    payload: EntryPayload::Empty,
                },
                Entry {
                    term: Term(7),
                    index: LogIndex(6),
                    payload: EntryPayload::Command(Bytes::from_static(b"put k v")),
                },
            ],
            leader_commit: LogIndex(4),
        }),
        MessageBody::AppendResponse(AppendResponse::Accepted {
            match_index: LogIndex(6),
        }),
        MessageBody::AppendResponse(AppendResponse::Rejected {
            rejected_index: LogIndex(6),
            hint_index: LogIndex(3),
            hint_term: Term(2),
        }),
        MessageBody::AppendResponse(AppendResponse::RejectedAfterLoss {
            rejected_index: LogIndex(6),
            hint_index: LogIndex(3),
            hint_term: Term(2),
        }),
        MessageBody::Heartbeat(Heartbeat {
            leader_commit: LogIndex(6),
            round,
        }),
        MessageBody::HeartbeatResponse(HeartbeatResponse { round: Some(round) }),
        MessageBody::HeartbeatResponse(HeartbeatResponse { round: None }),
        MessageBody::ReadHeartbeat(ReadHeartbeat {
            leader_commit: LogIndex(6),
            round,
        }),
        MessageBody::ReadHeartbeatResponse(ReadHeartbeatResponse { round }),
        MessageBody::ReadIndex(ReadIndexRequest {
            id: ForwardedReadId {
                incarnation: 3,
                sequence: 9,
            },
        }),
        MessageBody::ReadIndexResponse(ReadIndexResponse {
            id: ForwardedReadId {
                incarnation: 3,
                sequence: 9,
            },
            index: Some(LogIndex(6)),
        }),
        MessageBody::ReadIndexResponse(ReadIndexResponse {
            id: ForwardedReadId {
                incarnation: 3,
                sequence: 10,
            },
            index: None,
        }),
        MessageBody::TimeoutNow,
        MessageBody::TransferVote(vote),
        MessageBody::InstallSnapshot(SnapshotMeta {
            index: LogIndex(100),
            term: Term(6),
            membership: sample_membership(),
        }),
        MessageBody::Append(AppendRequest {
            prev_log_index: LogIndex(6),
            prev_log_term: Term(7),
            entries: vec![Entry {
                term: Term(7),
                index: LogIndex(7),
                payload: EntryPayload::Membership {
                    membership: sample_membership(),
                    context: Bytes::from_static(b"4=10.0.0.4:7101"),
                },
            }],
            leader_commit: LogIndex(6),
        }),
    ];
    for body in bodies {
        let original = message(body);
        assert_eq!(round_trip(&original), original);
    }
}

#[test]
fn command_payloads_are_slices_of_the_frame() {
    let original = message(MessageBody::Append(AppendRequest {
        prev_log_index: LogIndex(0),
        prev_log_term: Term(0),
        entries: vec![Entry {
            term: Term(1),
            index: LogIndex(1),
            payload: EntryPayload::Command(Bytes::from(vec![42u8; 1000])),
        }],
        leader_commit: LogIndex(0),
    }));
    let mut buf = BytesMut::new();
    encode_message(&original, &mut buf).unwrap();
    let frame = FrameSplitter::new(DEFAULT_MAX_FRAME_BYTES)
        .next_frame(&mut buf)
        .unwrap()
        .unwrap();
    let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    let decoded = decode_message(frame.clone()).unwrap();
    let MessageBody::Append(append) = decoded.body else {
        panic!("not an append")
    };
    let EntryPayload::Command(data) = &append.entries[0].payload else {
        panic!("not a command")
    };
    assert!(frame_range.contains(&(data.as_ptr() as usize)));
}

#[test]
fn unknown_tag_is_a_typed_error() {
    let mut buf = BytesMut::new();
    encode_message(&message(MessageBody::TimeoutNow), &mut buf).unwrap();
    buf[5] = 200;
    let error = decode_all(&buf, DEFAULT_MAX_FRAME_BYTES).unwrap_err();
    assert!(matches!(
        error,
        TransportError::UnknownMessageTag { tag: 200 }
    ));
}

#[test]
fn unknown_version_is_a_typed_error() {
    let mut buf = BytesMut::new();
    encode_message(&message(MessageBody::TimeoutNow), &mut buf).unwrap();
    buf[4] = 9;
    let error = decode_all(&buf, DEFAULT_MAX_FRAME_BYTES).unwrap_err();
    assert!(matches!(
        error,
        TransportError::UnsupportedVersion { version: 9, .. }
    ));
}

#[test]
fn oversized_frame_is_refused_before_allocating() {
    let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
    let error = FrameSplitter::new(1024).next_frame(&mut buf).unwrap_err();
    assert!(matches!(error, TransportError::FrameTooLarge { .. }));
    assert!(buf.capacity() < 1024);
}

#[test]
fn huge_entry_count_is_refused_before_allocating() {
    let mut buf = BytesMut::new();
    let at = begin_frame(&mut buf);
    buf.put_u8(super::super::WIRE_VERSION);
    buf.put_u8(tag::APPEND);
    buf.put_slice(&[0u8; 24 + 24]);
    buf.put_u32_le(u32::MAX);
    finish_frame(&mut buf, at);
    let error = decode_all(&buf, DEFAULT_MAX_FRAME_BYTES).unwrap_err();
    assert!(matches!(error, TransportError::Truncated { .. }));
}

fn sample_membership() -> Membership {
    Membership {
        voters: [NodeId(1), NodeId(2), NodeId(4)].into(),
        voters_outgoing: [NodeId(1), NodeId(2), NodeId(3)].into(),
        learners: [NodeId(5)].into(),
    }
}

fn arb_membership() -> impl Strategy<Value = Membership> {
    let ids = || proptest::collection::btree_set(any::<u64>().prop_map(NodeId), 0..6);
    (ids(), ids(), ids()).prop_map(|(voters, voters_outgoing, learners)| Membership {
        voters,
        voters_outgoing,
        learners,
    })
}

fn arb_payload() -> impl Strategy<Value = EntryPayload> {
    let data = || proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from);
    prop_oneof![
        Just(EntryPayload::Empty),
        data().prop_map(EntryPayload::Command),
        (arb_membership(), data()).prop_map(|(membership, context)| EntryPayload::Membership {
            membership,
            context
        }),
    ]
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    (any::<u64>(), any::<u64>(), arb_payload()).prop_map(|(term, index, payload)| Entry {
        term: Term(term),
        index: LogIndex(index),
        payload,
    })
}

fn round() -> impl Strategy<Value = HeartbeatRound> {
    (any::<u64>(), any::<u64>()).prop_map(|(term, sequence)| HeartbeatRound {
        term: Term(term),
        sequence,
    })
}

fn arb_body() -> impl Strategy<Value = MessageBody> {
    let vote = (any::<u64>(), any::<u64>()).prop_map(|(index, term)| VoteRequest {
        last_log_index: LogIndex(index),
        last_log_term: Term(term),
    });
    prop_oneof![
        vote.clone().prop_map(MessageBody::PreVote),
        any::<bool>().prop_map(|granted| MessageBody::PreVoteResponse(VoteResponse { granted })),
        vote.prop_map(MessageBody::Vote),
        any::<bool>().prop_map(|granted| MessageBody::VoteResponse(VoteResponse { granted })),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(arb_entry(), 0..8),
            any::<u64>()
        )
            .prop_map(|(index, term, entries, commit)| {
                MessageBody::Append(AppendRequest {
                    prev_log_index: LogIndex(index),
                    prev_log_term: Term(term),
                    entries,
                    leader_commit: LogIndex(commit),
                })
            }),
        any::<u64>().prop_map(
            |index| MessageBody::AppendResponse(AppendResponse::Accepted {
                match_index: LogIndex(index)
            })
        ),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(rejected, hint, term)| {
            MessageBody::AppendResponse(AppendResponse::Rejected {
                rejected_index: LogIndex(rejected),
                hint_index: LogIndex(hint),
                hint_term: Term(term),
            })
        }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(rejected, hint, term)| {
            MessageBody::AppendResponse(AppendResponse::RejectedAfterLoss {
                rejected_index: LogIndex(rejected),
                hint_index: LogIndex(hint),
                hint_term: Term(term),
            })
        }),
        (any::<u64>(), round()).prop_map(|(commit, round)| MessageBody::Heartbeat(Heartbeat {
            leader_commit: LogIndex(commit),
            round,
        })),
        proptest::option::of(round())
            .prop_map(|round| MessageBody::HeartbeatResponse(HeartbeatResponse { round })),
        (any::<u64>(), round()).prop_map(|(commit, round)| {
            MessageBody::ReadHeartbeat(ReadHeartbeat {
                leader_commit: LogIndex(commit),
                round,
            })
        }),
        round().prop_map(|round| {
            MessageBody::ReadHeartbeatResponse(ReadHeartbeatResponse { round })
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(incarnation, sequence)| {
            MessageBody::ReadIndex(ReadIndexRequest {
                id: ForwardedReadId {
                    incarnation,
                    sequence,
                },
            })
        }),
        (
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(any::<u64>())
        )
            .prop_map(
                |(incarnation, sequence, index)| MessageBody::ReadIndexResponse(
                    ReadIndexResponse {
                        id: ForwardedReadId {
                            incarnation,
                            sequence,
                        },
                        index: index.map(LogIndex),
                    }
                ),
            ),
        Just(MessageBody::TimeoutNow),
        (any::<u64>(), any::<u64>()).prop_map(|(index, term)| {
            MessageBody::TransferVote(VoteRequest {
                last_log_index: LogIndex(index),
                last_log_term: Term(term),
            })
        }),
        (any::<u64>(), any::<u64>(), arb_membership()).prop_map(|(index, term, membership)| {
            MessageBody::InstallSnapshot(SnapshotMeta {
                index: LogIndex(index),
                term: Term(term),
                membership,
            })
        }),
    ]
}

proptest! {
    #[test]
    fn any_message_round_trips(
        from in any::<u64>(), to in any::<u64>(), term in any::<u64>(), body in arb_body()
    ) {
        let original = Message { from: NodeId(from), to: NodeId(to), term: Term(term), body };
        prop_assert_eq!(round_trip(&original), original);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_all(&data, 4096);
    }

    #[test]
    fn every_truncation_is_an_error(body in arb_body(), cut in any::<prop::sample::Index>()) {
        let original = message(body);
        let mut buf = BytesMut::new();
        encode_message(&original, &mut buf).unwrap();
        let frame = buf.split_off(crate::codec::LENGTH_PREFIX_BYTES).freeze();
        let cut = cut.index(frame.len());
        prop_assert!(decode_message(frame.slice(..cut)).is_err());
    }
}

#[test]
fn member_ids_out_of_order_are_refused() {
    let mut buf = BytesMut::new();
    let original = message(MessageBody::InstallSnapshot(SnapshotMeta {
        index: LogIndex(1),
        term: Term(1),
        membership: Membership::with_voters([NodeId(1), NodeId(2)]),
    }));
    encode_message(&original, &mut buf).unwrap();
    // Swap the two voter ids (after prefix, header, index, term and count).
    let at = 4 + 26 + 16 + 4;
    let (first, second) = buf[at..at + 16].split_at_mut(8);
    first.swap_with_slice(second);
    let error = decode_all(&buf, DEFAULT_MAX_FRAME_BYTES).unwrap_err();
    assert!(matches!(error, TransportError::InvalidField { .. }));
}
