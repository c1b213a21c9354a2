//! Snapshot streaming: 256 MiB in constant memory, cut in the middle and resumed
//! from the last persisted offset, with the checksum of what arrived verified; a
//! file-to-file transfer; a receiver without a sink refuses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use bytes::Bytes;
use raft_core::{LogIndex, NodeId, Term};
use raft_transport::{
    FileSnapshotSinkFactory, Incoming, SnapshotHeader, SnapshotSink, SnapshotSinkFactory,
    SnapshotSource, TransportError,
};
use tokio::sync::Notify;

use crate::support::{Cluster, HANG_GUARD};

const MIB: u64 = 1024 * 1024;

/// Deterministic pseudo-random bytes: no 256 MiB buffer or file needed.
struct Generated {
    len: u64,
}

fn word(at: u64) -> u64 {
    // splitmix64
    let mut z = at.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl SnapshotSource for Generated {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        let len = buf.len().min(self.len.saturating_sub(offset) as usize);
        for (i, byte) in buf[..len].iter_mut().enumerate() {
            let at = offset + i as u64;
            *byte = word(at / 8).to_le_bytes()[(at % 8) as usize];
        }
        Ok(len)
    }
}

fn checksum_of(source: &dyn SnapshotSource, len: u64) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; MIB as usize];
    let mut offset = 0;
    while offset < len {
        let read = source.read_at(offset, &mut buf).unwrap();
        hasher.update(&buf[..read]);
        offset += read as u64;
    }
    hasher.finalize()
}

/// What the test sink saw. It models durability: bytes written after the last sync
/// are forgotten if writing restarts at the synced offset.
#[derive(Default)]
struct Seen {
    hasher: crc32fast::Hasher,
    written: u64,
    synced_hasher: crc32fast::Hasher,
    synced: u64,
    finished: bool,
}

/// A sink that hashes what arrives and can hold the transfer at an offset until the
/// test releases it.
struct Gate {
    seen: Mutex<Seen>,
    opens: AtomicU64,
    hold_at: u64,
    held: Mutex<bool>,
    released: Condvar,
    reached: Notify,
}

impl Gate {
    fn new(hold_at: u64) -> Arc<Gate> {
        Arc::new(Gate {
            seen: Mutex::default(),
            opens: AtomicU64::new(0),
            hold_at,
            held: Mutex::new(false),
            released: Condvar::new(),
            reached: Notify::new(),
        })
    }

    fn release(&self) {
        *self.held.lock().unwrap() = true;
        self.released.notify_all();
    }
}

struct GateSink(Arc<Gate>);

struct GateFactory(Arc<Gate>);

impl SnapshotSinkFactory for GateFactory {
    fn open(
        &self,
        _from: NodeId,
        _header: &SnapshotHeader,
    ) -> std::io::Result<Box<dyn SnapshotSink>> {
        self.0.opens.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(GateSink(self.0.clone())))
    }
}

impl SnapshotSink for GateSink {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        {
            let mut seen = self.0.seen.lock().unwrap();
            if offset != seen.written {
                assert_eq!(
                    offset, seen.synced,
                    "writes restart only at the synced offset"
                );
                seen.hasher = seen.synced_hasher.clone();
                seen.written = seen.synced;
            }
            seen.hasher.update(data);
            seen.written += data.len() as u64;
        }
        if offset + data.len() as u64 >= self.0.hold_at {
            let mut released = self.0.held.lock().unwrap();
            if !*released {
                self.0.reached.notify_one();
                while !*released {
                    released = self.0.released.wait(released).unwrap();
                }
            }
        }
        Ok(())
    }

    fn sync(&mut self) -> std::io::Result<()> {
        let mut seen = self.0.seen.lock().unwrap();
        seen.synced_hasher = seen.hasher.clone();
        seen.synced = seen.written;
        Ok(())
    }

    fn finish(&mut self) -> std::io::Result<()> {
        let mut seen = self.0.seen.lock().unwrap();
        assert_eq!(seen.synced, seen.written);
        seen.finished = true;
        Ok(())
    }
}

#[tokio::test]
async fn a_large_snapshot_streams_in_constant_memory_and_resumes_after_a_cut() {
    const TOTAL: u64 = 256 * MIB;
    const CHUNK: u64 = 64 * 1024;
    let gate = Gate::new(64 * MIB);
    let factory: Arc<dyn SnapshotSinkFactory> = Arc::new(GateFactory(gate.clone()));
    let mut cluster = Cluster::start(3, |config| {
        config.snapshot.chunk_bytes = CHUNK as u32;
        config.snapshot_sink = Some(factory.clone());
    });
    let source = Arc::new(Generated { len: TOTAL });
    let expected = checksum_of(source.as_ref(), TOTAL);
    let header = SnapshotHeader {
        index: LogIndex(1_000_000),
        term: Term(4),
        total_bytes: TOTAL,
        metadata: Bytes::from_static(b"voters 1 2 3"),
    };
    let transfer = cluster
        .transport(1)
        .send_snapshot(NodeId(2), header.clone(), source)
        .unwrap();

    // Cut the connection while the receiver is in the middle, then let it go on.
    tokio::time::timeout(HANG_GUARD, gate.reached.notified())
        .await
        .expect("transfer never reached the cut");
    cluster.transport(1).reset_peer(NodeId(2));
    gate.release();

    let report = tokio::time::timeout(HANG_GUARD * 5, transfer)
        .await
        .expect("hang")
        .unwrap();
    assert_eq!(report.acknowledged_bytes, TOTAL);
    assert!(report.attempts >= 2, "{report:?}");
    let resumed_at = *report.resumed_from.first().expect("never resumed");
    assert!(
        (64 * MIB - CHUNK..TOTAL).contains(&resumed_at),
        "resumed at {resumed_at}"
    );

    let received = loop {
        match tokio::time::timeout(HANG_GUARD, cluster.events(2).recv())
            .await
            .unwrap()
            .unwrap()
        {
            Incoming::Snapshot(received) => break received,
            _ => continue,
        }
    };
    assert_eq!(received.from, NodeId(1));
    assert_eq!(received.header, header);
    {
        let seen = gate.seen.lock().unwrap();
        assert!(seen.finished);
        assert_eq!(seen.written, TOTAL);
        assert_eq!(seen.hasher.clone().finalize(), expected);
    }
    assert_eq!(
        gate.opens.load(Ordering::Relaxed),
        1,
        "the resumed transfer reused its sink"
    );

    // Memory: each side held about one chunk, whatever the snapshot size.
    let sender = &cluster.transport(1).stats().peers[&NodeId(2)];
    let receiver = &cluster.transport(2).stats().peers[&NodeId(1)];
    assert!(
        sender.snapshot_peak_buffered_bytes <= 2 * CHUNK,
        "{sender:?}"
    );
    assert!(
        receiver.snapshot_peak_buffered_bytes <= 4 * CHUNK,
        "{receiver:?}"
    );
    assert_eq!(sender.snapshot_sent_bytes, TOTAL);
    assert_eq!(sender.snapshot_resumes, 1);
    assert_eq!(receiver.snapshot_received_bytes, TOTAL);
}

#[tokio::test]
async fn a_file_snapshot_arrives_as_a_file() {
    let source_dir = tempfile::tempdir().unwrap();
    let sink_dir = tempfile::tempdir().unwrap();
    let factory = FileSnapshotSinkFactory::new(sink_dir.path());
    let shared_factory: Arc<dyn SnapshotSinkFactory> = Arc::new(factory.clone());
    let mut cluster = Cluster::start(2, |config| {
        config.snapshot.chunk_bytes = 4096;
        config.snapshot.ack_interval_bytes = 16 * 1024;
        config.snapshot.bandwidth_bytes_per_second = Some(64 * MIB);
        config.snapshot_sink = Some(shared_factory.clone());
    });
    let data: Vec<u8> = (0..300_001u32).map(|i| (i % 253) as u8).collect();
    let path = source_dir.path().join("snap");
    std::fs::write(&path, &data).unwrap();
    let header = SnapshotHeader {
        index: LogIndex(10),
        term: Term(2),
        total_bytes: data.len() as u64,
        metadata: Bytes::new(),
    };
    let file = std::fs::File::open(&path).unwrap();
    let report = cluster
        .transport(1)
        .send_snapshot(NodeId(2), header.clone(), Arc::new(file))
        .unwrap()
        .await
        .unwrap();
    assert_eq!(report.attempts, 1);
    assert!(report.resumed_from.is_empty());
    let received = loop {
        if let Incoming::Snapshot(received) = cluster.events(2).recv().await.unwrap() {
            break received;
        }
    };
    assert_eq!(received.header, header);
    assert_eq!(std::fs::read(factory.path_for(&header)).unwrap(), data);
}

#[tokio::test]
async fn a_member_without_a_sink_refuses_snapshots() {
    let cluster = Cluster::start(2, |_| {});
    let header = SnapshotHeader {
        index: LogIndex(1),
        term: Term(1),
        total_bytes: 10,
        metadata: Bytes::new(),
    };
    let outcome = cluster
        .transport(1)
        .send_snapshot(NodeId(2), header, Arc::new(Generated { len: 10 }))
        .unwrap()
        .await;
    assert!(matches!(
        outcome,
        Err(TransportError::SnapshotRefused {
            peer: NodeId(2),
            ..
        })
    ));
}
