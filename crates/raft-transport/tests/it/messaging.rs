//! Messages over the network: every kind arrives intact, appends keep their order,
//! and a full queue drops and reports `Unreachable` instead of growing.

use bytes::Bytes;
use raft_core::{
    AppendRequest, AppendResponse, Entry, EntryPayload, ForwardedReadId, Heartbeat,
    HeartbeatResponse, HeartbeatRound, LogIndex, Membership, Message, MessageBody, NodeId,
    ReadHeartbeat, ReadHeartbeatResponse, ReadIndexRequest, ReadIndexResponse, SnapshotMeta, Term,
    VoteRequest, VoteResponse,
};
use raft_transport::{Incoming, TransportError};

use crate::support::{Cluster, HANG_GUARD, heartbeat, next_message};

fn all_kinds(from: u64, to: u64) -> Vec<Message> {
    let vote = VoteRequest {
        last_log_index: LogIndex(10),
        last_log_term: Term(2),
    };
    let round = HeartbeatRound {
        term: Term(2),
        sequence: 5,
    };
    let bodies = vec![
        MessageBody::PreVote(vote),
        MessageBody::PreVoteResponse(VoteResponse { granted: true }),
        MessageBody::Vote(vote),
        MessageBody::VoteResponse(VoteResponse { granted: false }),
        MessageBody::Append(AppendRequest {
            prev_log_index: LogIndex(10),
            prev_log_term: Term(2),
            entries: vec![
                Entry {
                    term: Term(3),
                    index: LogIndex(11),
                    payload: EntryPayload::Empty,
                },
                Entry {
                    term: Term(3),
                    index: LogIndex(12),
                    payload: EntryPayload::Command(Bytes::from(vec![7u8; 100_000])),
                },
            ],
            leader_commit: LogIndex(10),
        }),
        MessageBody::AppendResponse(AppendResponse::Accepted {
            match_index: LogIndex(12),
        }),
        MessageBody::AppendResponse(AppendResponse::Rejected {
            rejected_index: LogIndex(12),
            hint_index: LogIndex(8),
            hint_term: Term(1),
        }),
        MessageBody::Heartbeat(Heartbeat {
            leader_commit: LogIndex(12),
            round,
        }),
        MessageBody::HeartbeatResponse(HeartbeatResponse { round: Some(round) }),
        MessageBody::ReadHeartbeat(ReadHeartbeat {
            leader_commit: LogIndex(12),
            round,
        }),
        MessageBody::ReadHeartbeatResponse(ReadHeartbeatResponse { round }),
        MessageBody::ReadIndex(ReadIndexRequest {
            id: ForwardedReadId {
                incarnation: 3,
                sequence: 77,
            },
        }),
        MessageBody::ReadIndexResponse(ReadIndexResponse {
            id: ForwardedReadId {
                incarnation: 3,
                sequence: 77,
            },
            index: Some(LogIndex(12)),
        }),
        MessageBody::TimeoutNow,
        MessageBody::TransferVote(vote),
        MessageBody::InstallSnapshot(SnapshotMeta {
            index: LogIndex(9),
            term: Term(2),
            membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
        }),
        MessageBody::Append(AppendRequest {
            prev_log_index: LogIndex(12),
            prev_log_term: Term(3),
            entries: vec![Entry {
                term: Term(3),
                index: LogIndex(13),
                payload: EntryPayload::Membership {
                    membership: Membership::with_voters([NodeId(1), NodeId(2)]),
                    context: Bytes::from_static(b"remove 3"),
                },
            }],
            leader_commit: LogIndex(12),
        }),
    ];
    bodies
        .into_iter()
        .map(|body| Message {
            from: NodeId(from),
            to: NodeId(to),
            term: Term(3),
            body,
        })
        .collect()
}

fn is_append(message: &Message) -> bool {
    matches!(message.body, MessageBody::Append(_))
}

#[tokio::test]
async fn every_message_kind_crosses_the_network_intact() {
    let mut cluster = Cluster::start(3, |_| {});
    let kinds = all_kinds(1, 2).len() as u64;
    for (from, to) in [(1, 2), (2, 3), (3, 1)] {
        let sent = all_kinds(from, to);
        for message in &sent {
            cluster.transport(from).send(message.clone()).unwrap();
        }
        let mut received = Vec::new();
        for _ in 0..sent.len() {
            received.push(next_message(cluster.events(to)).await);
        }
        // Appends and the other kinds travel on separate streams, so only the order
        // within each stream is promised.
        let (sent_appends, sent_other): (Vec<_>, Vec<_>) = sent.into_iter().partition(is_append);
        let (got_appends, got_other): (Vec<_>, Vec<_>) = received.into_iter().partition(is_append);
        assert_eq!(got_appends, sent_appends);
        assert_eq!(got_other, sent_other);
    }
    let stats = cluster.transport(1).stats();
    let to_two = &stats.peers[&NodeId(2)];
    assert_eq!(to_two.sent_messages, kinds);
    assert!(to_two.connected);
    assert!(to_two.round_trip_time.is_some());
    let from_three = &stats.peers[&NodeId(3)];
    assert_eq!(from_three.received_messages, kinds);
    assert_eq!(from_three.decode_errors, 0);
}

#[tokio::test]
async fn appends_arrive_in_send_order() {
    let mut cluster = Cluster::start(3, |_| {});
    const COUNT: u64 = 1000;
    for i in 1..=COUNT {
        let append = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            body: MessageBody::Append(AppendRequest {
                prev_log_index: LogIndex(i - 1),
                prev_log_term: Term(1),
                entries: vec![Entry {
                    term: Term(1),
                    index: LogIndex(i),
                    payload: EntryPayload::Command(Bytes::from(vec![(i % 251) as u8; 256])),
                }],
                leader_commit: LogIndex(0),
            }),
        };
        cluster.transport(1).send(append).unwrap();
        // Heartbeats interleave on the other stream and must not disturb the order.
        if i % 100 == 0 {
            cluster.transport(1).send(heartbeat(1, 2, i)).unwrap();
        }
    }
    let mut next_index = 1;
    while next_index <= COUNT {
        let message = next_message(cluster.events(2)).await;
        if let MessageBody::Append(append) = message.body {
            assert_eq!(append.entries[0].index, LogIndex(next_index));
            assert_eq!(append.prev_log_index, LogIndex(next_index - 1));
            next_index += 1;
        }
    }
    let stats = cluster.transport(2).stats();
    assert_eq!(
        stats.peers[&NodeId(1)].received_messages,
        COUNT + COUNT / 100
    );
}

#[tokio::test]
async fn a_full_queue_drops_and_reports_unreachable() {
    // Member 2's address answers nothing, so the queue can only fill.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cluster = Cluster::start(1, |config| {
        config.send_queue_messages = 8;
        config.idle_timeout = HANG_GUARD;
    });
    cluster
        .transport(1)
        .add_member(NodeId(2), silent.local_addr().unwrap());
    let mut dropped = 0;
    for i in 0..100 {
        match cluster.transport(1).send(heartbeat(1, 2, i)) {
            Ok(()) => {}
            Err(TransportError::QueueFull { peer }) => {
                assert_eq!(peer, NodeId(2));
                dropped += 1;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    // One message may sit with the dialing task, the rest fill the queue.
    assert!(dropped >= 100 - 8 - 1, "only {dropped} dropped");
    let event = tokio::time::timeout(HANG_GUARD, cluster.events(1).recv())
        .await
        .unwrap();
    assert!(matches!(event, Some(Incoming::Unreachable(NodeId(2)))));
    let stats = cluster.transport(1).stats();
    assert_eq!(stats.peers[&NodeId(2)].dropped_queue_full, dropped);
    assert!(!stats.peers[&NodeId(2)].connected);
    // Sending to a non-member is refused outright.
    assert!(matches!(
        cluster.transport(1).send(heartbeat(1, 9, 0)),
        Err(TransportError::UnknownPeer { peer: NodeId(9) })
    ));
    // Only this member's own messages are sent.
    assert!(matches!(
        cluster.transport(1).send(heartbeat(3, 2, 0)),
        Err(TransportError::Misaddressed { .. })
    ));
    // The ~90 drops were reported once, not once each.
    assert!(cluster.events(1).try_recv().is_err());
}

#[tokio::test]
async fn a_heartbeat_is_not_queued_behind_large_appends() {
    let mut cluster = Cluster::start(2, |_| {});
    // Six appends of 8 MiB, then a heartbeat: the heartbeat travels on the control
    // stream (at a higher QUIC priority) and is delivered before the appends are.
    const APPENDS: u64 = 6;
    for i in 1..=APPENDS {
        let append = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            body: MessageBody::Append(AppendRequest {
                prev_log_index: LogIndex(i - 1),
                prev_log_term: Term(1),
                entries: vec![Entry {
                    term: Term(1),
                    index: LogIndex(i),
                    payload: EntryPayload::Command(Bytes::from(vec![1u8; 8 * 1024 * 1024])),
                }],
                leader_commit: LogIndex(0),
            }),
        };
        cluster.transport(1).send(append).unwrap();
    }
    cluster.transport(1).send(heartbeat(1, 2, 1)).unwrap();
    let mut appends_before_heartbeat = 0;
    loop {
        let message = next_message(cluster.events(2)).await;
        if is_append(&message) {
            appends_before_heartbeat += 1;
        } else {
            assert_eq!(message, heartbeat(1, 2, 1));
            break;
        }
    }
    assert!(
        appends_before_heartbeat < APPENDS,
        "the heartbeat waited for every append"
    );
    for _ in appends_before_heartbeat..APPENDS {
        assert!(is_append(&next_message(cluster.events(2)).await));
    }
}

#[tokio::test]
async fn a_message_over_the_frame_limit_is_refused_at_send() {
    let cluster = Cluster::start(2, |config| config.max_frame_bytes = 4096);
    let append = Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(1),
        body: MessageBody::Append(AppendRequest {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(1),
            entries: vec![Entry {
                term: Term(1),
                index: LogIndex(1),
                payload: EntryPayload::Command(Bytes::from(vec![0u8; 5000])),
            }],
            leader_commit: LogIndex(0),
        }),
    };
    assert!(matches!(
        cluster.transport(1).send(append),
        Err(TransportError::FrameTooLarge {
            limit_bytes: 4096,
            ..
        })
    ));
    assert_eq!(cluster.transport(1).stats().peers.get(&NodeId(2)), None);
}
