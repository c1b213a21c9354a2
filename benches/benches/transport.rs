//! raft-transport over loopback: AppendEntries carrying batches of 256-byte entries,
//! pipelined (every append of a round is sent before any is awaited), from member 1
//! to member 2 over QUIC with mutual TLS; and, in the same run, a plain TCP baseline
//! (tokio, no TLS) moving the same encoded frames through the same codec. Criterion
//! reports MB/s of entry payload; a closing summary prints entries/s, MB/s and the
//! QUIC/TCP ratio.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use raft_core::{AppendRequest, Entry, EntryPayload, LogIndex, Message, MessageBody, NodeId, Term};
use raft_transport::certs::DevCa;
use raft_transport::codec::{
    DEFAULT_MAX_FRAME_BYTES, FrameSplitter, decode_message, encode_message,
};
use raft_transport::{Incoming, TlsIdentity, Transport, TransportConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

const ENTRY_BYTES: usize = 256;
const ENTRIES_PER_APPEND: usize = 64;
const APPENDS_PER_ROUND: usize = 256;
const PAYLOAD_BYTES_PER_ROUND: u64 = (ENTRY_BYTES * ENTRIES_PER_APPEND * APPENDS_PER_ROUND) as u64;
const ENTRIES_PER_ROUND: u64 = (ENTRIES_PER_APPEND * APPENDS_PER_ROUND) as u64;

/// One round of appends: 256 messages of 64 entries of 256 bytes (4 MiB of payload).
fn round_of_appends() -> Vec<Message> {
    (0..APPENDS_PER_ROUND)
        .map(|i| {
            let first = (i * ENTRIES_PER_APPEND) as u64 + 1;
            Message {
                from: NodeId(1),
                to: NodeId(2),
                term: Term(1),
                body: MessageBody::Append(AppendRequest {
                    prev_log_index: LogIndex(first - 1),
                    prev_log_term: Term(1),
                    entries: (0..ENTRIES_PER_APPEND as u64)
                        .map(|k| Entry {
                            term: Term(1),
                            index: LogIndex(first + k),
                            payload: EntryPayload::Command(Bytes::from(vec![
                                (k % 251) as u8;
                                ENTRY_BYTES
                            ])),
                        })
                        .collect(),
                    leader_commit: LogIndex(0),
                }),
            }
        })
        .collect()
}

/// Two members over QUIC.
struct QuicPair {
    sender: Transport,
    _receiver: Transport,
    events: mpsc::Receiver<Incoming>,
}

fn quic_pair(runtime: &Runtime) -> QuicPair {
    runtime.block_on(async {
        let ca = DevCa::generate("bench CA").expect("CA");
        let identity = |id: u64| {
            let pair = ca.member(NodeId(id), &[]).expect("member certificate");
            TlsIdentity::from_pem(&ca.cert_pem(), &pair.cert_pem, &pair.key_pem).expect("identity")
        };
        let localhost: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let start = |id: u64| {
            let config = TransportConfig::new(NodeId(id), localhost, BTreeMap::new(), identity(id));
            Transport::start(config).expect("transport")
        };
        let (sender, _) = start(1);
        let (receiver, events) = start(2);
        let members: BTreeMap<NodeId, SocketAddr> = [
            (NodeId(1), sender.local_addr().expect("bound")),
            (NodeId(2), receiver.local_addr().expect("bound")),
        ]
        .into();
        sender.set_members(members.clone());
        receiver.set_members(members);
        QuicPair {
            sender,
            _receiver: receiver,
            events,
        }
    })
}

impl QuicPair {
    /// Sends a round without waiting, then waits for every append to arrive.
    async fn round(&mut self, appends: &[Message]) {
        for append in appends {
            self.sender.send(append.clone()).expect("queue has room");
        }
        let mut received = 0;
        while received < appends.len() {
            if let Some(Incoming::Message(_)) = self.events.recv().await {
                received += 1;
            }
        }
    }
}

/// The TCP baseline: the same frames, written by one task and decoded by another.
struct TcpPair {
    writer: TcpStream,
    done: mpsc::Receiver<usize>,
}

fn tcp_pair(runtime: &Runtime) -> TcpPair {
    runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("bound");
        let writer = TcpStream::connect(addr).await.expect("connect");
        writer.set_nodelay(true).expect("nodelay");
        let (mut reader, _) = listener.accept().await.expect("accept");
        let (done_tx, done) = mpsc::channel(1024);
        tokio::spawn(async move {
            let splitter = FrameSplitter::new(DEFAULT_MAX_FRAME_BYTES);
            let mut buf = BytesMut::with_capacity(256 * 1024);
            let mut decoded = 0;
            loop {
                while let Some(frame) = splitter.next_frame(&mut buf).expect("valid frame") {
                    decode_message(frame).expect("valid message");
                    decoded += 1;
                    if decoded == APPENDS_PER_ROUND {
                        let _ = done_tx.send(decoded).await;
                        decoded = 0;
                    }
                }
                if buf.capacity() - buf.len() < 4096 {
                    buf.reserve(64 * 1024);
                }
                if reader.read_buf(&mut buf).await.expect("read") == 0 {
                    return;
                }
            }
        });
        TcpPair { writer, done }
    })
}

impl TcpPair {
    async fn round(&mut self, appends: &[Message]) {
        let mut buf = BytesMut::with_capacity(256 * 1024);
        for append in appends {
            encode_message(append, &mut buf).expect("encodable");
            if buf.len() >= 256 * 1024 {
                self.writer.write_all(&buf).await.expect("write");
                buf.clear();
            }
        }
        self.writer.write_all(&buf).await.expect("write");
        self.done.recv().await.expect("reader alive");
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn transport(c: &mut Criterion) {
    let runtime = runtime();
    let appends = round_of_appends();
    let mut quic = quic_pair(&runtime);
    let mut tcp = tcp_pair(&runtime);

    let mut group = c.benchmark_group("transport_append_256B_entries");
    group.throughput(Throughput::Bytes(PAYLOAD_BYTES_PER_ROUND));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("quic_mtls_pipelined", |b| {
        b.iter(|| runtime.block_on(quic.round(&appends)));
    });
    group.bench_function("tcp_plain_baseline", |b| {
        b.iter(|| runtime.block_on(tcp.round(&appends)));
    });
    group.finish();

    // A short side-by-side measurement for the summary line.
    let measure = |rounds: u32, run: &mut dyn FnMut()| {
        let started = Instant::now();
        for _ in 0..rounds {
            run();
        }
        started.elapsed().as_secs_f64() / f64::from(rounds)
    };
    let quic_seconds = measure(20, &mut || runtime.block_on(quic.round(&appends)));
    let tcp_seconds = measure(20, &mut || runtime.block_on(tcp.round(&appends)));
    let report = |name: &str, seconds: f64| {
        println!(
            "{name}: {:.0} entries/s, {:.1} MB/s of entry payload",
            ENTRIES_PER_ROUND as f64 / seconds,
            PAYLOAD_BYTES_PER_ROUND as f64 / seconds / 1e6
        );
    };
    report("quic+mTLS (raft-transport)", quic_seconds);
    report("plain TCP baseline", tcp_seconds);
    println!(
        "QUIC/TCP throughput ratio: {:.2}",
        tcp_seconds / quic_seconds
    );
    let stats = quic.sender.stats();
    if let Some(peer) = stats.peers.get(&NodeId(2)) {
        println!(
            "quic sender: {} messages, {} bytes, rtt {:?}, lost packets {}",
            peer.sent_messages, peer.sent_bytes, peer.round_trip_time, peer.lost_packets
        );
    }
}

criterion_group!(benches, transport);
criterion_main!(benches);
