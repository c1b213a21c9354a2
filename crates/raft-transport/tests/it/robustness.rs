//! Bad bytes from an authenticated member: garbage, oversized frames, unknown
//! versions and misaddressed messages close that stream (counted), never the
//! endpoint. Raw clients use member 1's valid certificate.

use bytes::{BufMut, BytesMut};
use raft_core::NodeId;
use raft_transport::codec::{Preamble, StreamKind, encode_message};
use raft_transport::tls::ALPN;

use crate::support::{Cluster, HANG_GUARD, heartbeat, next_message, raw_client};

/// Opens a stream on a fresh connection from member 1's identity, writes `bytes`,
/// and returns the code the server stopped the stream with.
async fn stop_code_after(cluster: &Cluster, bytes: &[u8]) -> Option<u64> {
    let client = raw_client(Some(&cluster.pki.members[&NodeId(1)]), ALPN);
    let connection = client
        .connect(cluster.addr(2), "member.raft")
        .unwrap()
        .await
        .unwrap();
    let mut stream = connection.open_uni().await.unwrap();
    // The server may stop the stream before everything is written.
    let _ = stream.write_all(bytes).await;
    let stopped = tokio::time::timeout(HANG_GUARD, stream.stopped())
        .await
        .expect("stream never stopped");
    stopped.ok().flatten().map(|code| code.into_inner())
}

fn preamble(kind: StreamKind, sender: u64) -> BytesMut {
    let mut bytes = BytesMut::new();
    Preamble {
        kind,
        sender: NodeId(sender),
    }
    .encode(&mut bytes);
    bytes
}

#[tokio::test]
async fn bad_streams_are_closed_and_the_endpoint_keeps_serving() {
    let mut cluster = Cluster::start(3, |config| config.max_frame_bytes = 1024 * 1024);

    // Undecodable bytes inside a well-framed frame.
    let mut garbage = preamble(StreamKind::Control, 1);
    garbage.put_u32_le(12);
    garbage.put_u8(1); // version
    garbage.put_u8(5); // append, whose body needs far more than ten bytes
    garbage.put_slice(&[0xff; 10]);
    // A frame longer than the limit: refused before anything is allocated.
    let mut oversized = preamble(StreamKind::Append, 1);
    oversized.put_u32_le(u32::MAX);
    oversized.put_slice(&[0; 64]);
    // A valid message with an unknown wire version.
    let mut versioned = preamble(StreamKind::Control, 1);
    let mut frame = BytesMut::new();
    encode_message(&heartbeat(1, 2, 1), &mut frame).unwrap();
    frame[4] = 99;
    versioned.put_slice(&frame);
    // A stream preamble of an unknown version.
    let mut bad_preamble = preamble(StreamKind::Control, 1);
    bad_preamble[0] = 42;
    // A valid frame for another receiver.
    let mut misaddressed = preamble(StreamKind::Control, 1);
    encode_message(&heartbeat(1, 3, 1), &mut misaddressed).unwrap();
    // A frame cut short by the end of the stream is seen when the stream finishes.

    let cases = [garbage, oversized, versioned, bad_preamble, misaddressed];
    for (at, bytes) in cases.iter().enumerate() {
        assert_eq!(stop_code_after(&cluster, bytes).await, Some(1), "case {at}");
    }
    let stats = cluster.transport(2).stats();
    assert_eq!(stats.peers[&NodeId(1)].decode_errors, cases.len() as u64);
    assert_eq!(stats.peers[&NodeId(1)].received_messages, 0);

    // The endpoint still serves real members, in both directions.
    cluster.transport(1).send(heartbeat(1, 2, 7)).unwrap();
    assert_eq!(next_message(cluster.events(2)).await, heartbeat(1, 2, 7));
    cluster.transport(2).send(heartbeat(2, 1, 8)).unwrap();
    assert_eq!(next_message(cluster.events(1)).await, heartbeat(2, 1, 8));
}

#[tokio::test]
async fn an_unknown_message_kind_is_skipped_and_the_stream_goes_on() {
    let mut cluster = Cluster::start(2, |_| {});
    let client = raw_client(Some(&cluster.pki.members[&NodeId(1)]), ALPN);
    let connection = client
        .connect(cluster.addr(2), "member.raft")
        .unwrap()
        .await
        .unwrap();
    let mut stream = connection.open_uni().await.unwrap();
    let mut bytes = preamble(StreamKind::Control, 1);
    let mut future_kind = BytesMut::new();
    encode_message(&heartbeat(1, 2, 1), &mut future_kind).unwrap();
    future_kind[5] = 200; // a tag no message kind uses yet
    bytes.put_slice(&future_kind);
    encode_message(&heartbeat(1, 2, 2), &mut bytes).unwrap();
    stream.write_all(&bytes).await.unwrap();
    stream.finish().unwrap();
    assert_eq!(next_message(cluster.events(2)).await, heartbeat(1, 2, 2));
    let stats = cluster.transport(2).stats();
    assert_eq!(stats.peers[&NodeId(1)].decode_errors, 1);
    assert_eq!(stats.peers[&NodeId(1)].received_messages, 1);
}
