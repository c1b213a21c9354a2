//! The sending side of a snapshot stream: offer, learn the resume offset, then write
//! checksummed chunks read from the source at offsets, at most `window_bytes` ahead
//! of the receiver's acknowledgements, optionally paced to a bandwidth cap. One chunk
//! buffer is reused for the whole transfer; unacknowledged data is re-read from the
//! source after a reconnect, never kept in memory.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use quinn::{Connection, SendStream};
use tokio::sync::watch;

use super::wire::{CHUNK_HEADER_BYTES, SnapshotFrame, encode_chunk_header};
use super::{SnapshotHeader, SnapshotReport, SnapshotSource};
use crate::codec::{Preamble, StreamKind};
use crate::error::TransportError;
use crate::peer::Peer;
use crate::stats::PeerCounters;
use crate::stream::FrameReader;
use crate::transport::Shared;

/// The largest frame the receiver sends back (resume, ack, refuse).
const MAX_REPLY_FRAME_BYTES: u32 = 64;

/// Runs a transfer to completion, reconnecting as needed.
pub(crate) async fn run(
    shared: Arc<Shared>,
    peer: Arc<Peer>,
    header: SnapshotHeader,
    source: Arc<dyn SnapshotSource>,
) -> Result<SnapshotReport, TransportError> {
    let config = shared.config.snapshot;
    let mut report = SnapshotReport::default();
    let mut chunk = Vec::new();
    // The highest offset acknowledged so far, across attempts.
    let mut acknowledged = 0;
    let wait = shared.config.idle_timeout + shared.config.reconnect_backoff_max;
    while report.attempts < config.max_attempts.max(1) {
        report.attempts += 1;
        let Some(connection) = peer.connection(wait).await else {
            tracing::debug!(peer = %peer.id(), "no connection for the snapshot yet");
            continue;
        };
        match attempt(
            &shared,
            &peer,
            &connection,
            &header,
            &source,
            &mut chunk,
            &mut report,
            &mut acknowledged,
        )
        .await
        {
            Ok(()) => {
                report.acknowledged_bytes = header.total_bytes;
                tracing::info!(peer = %peer.id(), bytes = header.total_bytes, attempts = report.attempts, "snapshot sent");
                return Ok(report);
            }
            Err(
                error
                @ (TransportError::SnapshotRefused { .. } | TransportError::SnapshotIo { .. }),
            ) => {
                return Err(error);
            }
            Err(error) => {
                tracing::warn!(peer = %peer.id(), %error, "snapshot transfer interrupted; will resume");
                tokio::time::sleep(shared.config.reconnect_backoff_min).await;
            }
        }
    }
    Err(TransportError::SnapshotAttemptsExhausted {
        peer: peer.id(),
        attempts: report.attempts,
    })
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    shared: &Shared,
    peer: &Peer,
    connection: &Connection,
    header: &SnapshotHeader,
    source: &Arc<dyn SnapshotSource>,
    chunk: &mut Vec<u8>,
    report: &mut SnapshotReport,
    acknowledged: &mut u64,
) -> Result<(), TransportError> {
    let id = peer.id();
    let stream_error = |source: std::io::Error| TransportError::Stream { peer: id, source };
    let (mut send, recv) = connection
        .open_bi()
        .await
        .map_err(|source| TransportError::Connection { peer: id, source })?;
    let _ = send.set_priority(crate::peer::SNAPSHOT_PRIORITY);
    let mut opening = BytesMut::new();
    Preamble {
        kind: StreamKind::Snapshot,
        sender: shared.local_id,
    }
    .encode(&mut opening);
    SnapshotFrame::Offer(header.clone()).encode(&mut opening);
    send.write_all(&opening)
        .await
        .map_err(|error| stream_error(error.into()))?;

    let mut replies = FrameReader::new(
        recv,
        MAX_REPLY_FRAME_BYTES,
        MAX_REPLY_FRAME_BYTES as usize,
        id,
    );
    let start = match next_reply(&mut replies).await? {
        SnapshotFrame::Resume { offset } if offset <= header.total_bytes => offset,
        SnapshotFrame::Resume { offset } => {
            return Err(TransportError::SnapshotOffset {
                expected: header.total_bytes,
                found: offset,
            });
        }
        SnapshotFrame::Refuse { code } => {
            return Err(TransportError::SnapshotRefused { peer: id, code });
        }
        _ => {
            return Err(TransportError::SnapshotOffset {
                expected: 0,
                found: u64::MAX,
            });
        }
    };
    if report.attempts > 1 {
        report.resumed_from.push(start);
        if start > 0 {
            PeerCounters::add(&peer.counters().snapshot_resumes, 1);
        }
    }
    let (acked_tx, acked_rx) = watch::channel(start);
    let writer = write_chunks(
        shared, peer, &mut send, header, source, chunk, start, acked_rx,
    );
    let acks = read_acks(
        peer,
        &mut replies,
        header.total_bytes,
        start,
        acked_tx,
        acknowledged,
    );
    tokio::try_join!(writer, acks)?;
    let _ = send.finish();
    Ok(())
}

async fn next_reply(replies: &mut FrameReader) -> Result<SnapshotFrame, TransportError> {
    match replies.next().await? {
        Some(frame) => SnapshotFrame::decode(frame),
        None => Err(TransportError::Truncated {
            field: "snapshot reply",
            needed_bytes: 1,
            remaining_bytes: 0,
        }),
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_chunks(
    shared: &Shared,
    peer: &Peer,
    send: &mut SendStream,
    header: &SnapshotHeader,
    source: &Arc<dyn SnapshotSource>,
    chunk: &mut Vec<u8>,
    start: u64,
    mut acked: watch::Receiver<u64>,
) -> Result<(), TransportError> {
    let config = shared.config.snapshot;
    let chunk_bytes = config.chunk_bytes.max(1) as usize;
    let window = config.window_bytes.max(chunk_bytes as u64);
    let paced_from = tokio::time::Instant::now();
    let mut frame_header = BytesMut::with_capacity(CHUNK_HEADER_BYTES);
    let mut offset = start;
    while offset < header.total_bytes {
        acked
            .wait_for(|acked| offset - (*acked).min(offset) < window)
            .await
            .map_err(|_| TransportError::Shutdown)?;
        let len = chunk_bytes.min((header.total_bytes - offset) as usize);
        let mut buffer = std::mem::take(chunk);
        buffer.resize(chunk_bytes, 0);
        peer.counters().record_buffered(buffer.capacity() as u64);
        let source = source.clone();
        let (buffer, read) = tokio::task::spawn_blocking(move || {
            let read = read_exact_at(source.as_ref(), offset, &mut buffer[..len]);
            (buffer, read)
        })
        .await
        .map_err(|_| TransportError::Shutdown)?;
        *chunk = buffer;
        read.map_err(|source| TransportError::SnapshotIo { offset, source })?;
        let data = &chunk[..len];
        frame_header.clear();
        encode_chunk_header(offset, crc32fast::hash(data), len as u32, &mut frame_header);
        let io = |error: quinn::WriteError| TransportError::Stream {
            peer: peer.id(),
            source: error.into(),
        };
        send.write_all(&frame_header).await.map_err(io)?;
        send.write_all(data).await.map_err(io)?;
        offset += len as u64;
        if let Some(rate) = config.bandwidth_bytes_per_second.filter(|rate| *rate > 0) {
            let due = Duration::from_secs_f64((offset - start) as f64 / rate as f64);
            tokio::time::sleep_until(paced_from + due).await;
        }
    }
    Ok(())
}

async fn read_acks(
    peer: &Peer,
    replies: &mut FrameReader,
    total: u64,
    start: u64,
    acked: watch::Sender<u64>,
    acknowledged: &mut u64,
) -> Result<(), TransportError> {
    let mut last = start;
    while last < total {
        match next_reply(replies).await? {
            SnapshotFrame::Ack { offset } if offset >= last && offset <= total => {
                // Count progress once, even if a resumed attempt repeats some bytes.
                PeerCounters::add(
                    &peer.counters().snapshot_sent_bytes,
                    offset.saturating_sub(*acknowledged),
                );
                *acknowledged = (*acknowledged).max(offset);
                last = offset;
                acked.send_replace(offset);
            }
            SnapshotFrame::Ack { offset } => {
                return Err(TransportError::SnapshotOffset {
                    expected: last,
                    found: offset,
                });
            }
            SnapshotFrame::Refuse { code } => {
                return Err(TransportError::SnapshotRefused {
                    peer: peer.id(),
                    code,
                });
            }
            _ => {
                return Err(TransportError::SnapshotOffset {
                    expected: last,
                    found: u64::MAX,
                });
            }
        }
    }
    Ok(())
}

/// Fills `buf` from `offset`; a source shorter than announced is an error.
fn read_exact_at(source: &dyn SnapshotSource, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read_at(offset + filled as u64, &mut buf[filled..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
