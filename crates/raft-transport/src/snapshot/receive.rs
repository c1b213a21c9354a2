//! The receiving side of a snapshot stream. One transfer per sender is kept between
//! connections, so an offer of the same snapshot after a reconnect resumes at the
//! last synced offset. Offsets are acknowledged only after the sink synced them; the
//! transport holds at most one chunk frame at a time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use quinn::SendStream;
use raft_core::NodeId;

use super::wire::{REFUSE_NO_SINK, REFUSE_SINK_FAILED, SnapshotFrame};
use super::{ReceivedSnapshot, SnapshotHeader, SnapshotSink};
use crate::error::TransportError;
use crate::stats::PeerCounters;
use crate::stream::FrameReader;
use crate::transport::{Incoming, Shared};

/// Transfers in progress, one slot per sender. A slot's async mutex is held by the
/// stream serving it, so a resumed offer waits until the broken stream let go.
#[derive(Default)]
pub(crate) struct Registry {
    slots: Mutex<BTreeMap<NodeId, Arc<tokio::sync::Mutex<Option<InProgress>>>>>,
}

impl Registry {
    fn slot(&self, from: NodeId) -> Arc<tokio::sync::Mutex<Option<InProgress>>> {
        self.slots
            .lock()
            .expect("registry lock")
            .entry(from)
            .or_default()
            .clone()
    }
}

/// A partly received snapshot.
pub(crate) struct InProgress {
    header: SnapshotHeader,
    sink: Box<dyn SnapshotSink>,
    /// Every byte below is written and synced.
    synced: u64,
}

/// Serves one snapshot stream whose preamble was read.
pub(crate) async fn serve(
    shared: &Shared,
    counters: &PeerCounters,
    from: NodeId,
    mut send: SendStream,
    reader: &mut FrameReader,
) -> Result<(), TransportError> {
    let stream_error = |source: std::io::Error| TransportError::Stream { peer: from, source };
    let header = match reader.next().await? {
        Some(frame) => match SnapshotFrame::decode(frame)? {
            SnapshotFrame::Offer(header) => header,
            _ => return Err(protocol_error(0, 1)),
        },
        None => return Ok(()),
    };
    let Some(factory) = shared.config.snapshot_sink.clone() else {
        tracing::warn!(%from, "refusing a snapshot: no snapshot sink configured");
        return refuse(&mut send, REFUSE_NO_SINK)
            .await
            .map_err(stream_error);
    };
    let slot = shared.receiving.slot(from);
    let mut guard = slot.lock().await;
    let resumable = guard
        .as_ref()
        .is_some_and(|progress| progress.header == header);
    if !resumable {
        let opened = {
            let header = header.clone();
            tokio::task::spawn_blocking(move || factory.open(from, &header)).await
        };
        match opened {
            Ok(Ok(sink)) => {
                *guard = Some(InProgress {
                    header: header.clone(),
                    sink,
                    synced: 0,
                });
            }
            Ok(Err(error)) => {
                tracing::warn!(%from, %error, "snapshot sink failed to open");
                *guard = None;
                return refuse(&mut send, REFUSE_SINK_FAILED)
                    .await
                    .map_err(stream_error);
            }
            Err(_) => return Err(TransportError::Shutdown),
        }
    }
    let start = guard.as_ref().map_or(0, |progress| progress.synced);
    if start > 0 {
        tracing::info!(%from, offset = start, "resuming a snapshot transfer");
    }
    write_frame(&mut send, &SnapshotFrame::Resume { offset: start })
        .await
        .map_err(stream_error)?;

    let ack_interval = shared.config.snapshot.ack_interval_bytes.max(1);
    let mut written = start;
    let outcome = async {
        while written < header.total_bytes {
            let frame = reader.next().await?.ok_or(TransportError::Truncated {
                field: "snapshot stream",
                needed_bytes: header.total_bytes - written,
                remaining_bytes: 0,
            })?;
            let (offset, crc, data) = match SnapshotFrame::decode(frame)? {
                SnapshotFrame::Chunk { offset, crc, data } => (offset, crc, data),
                _ => return Err(protocol_error(written, written)),
            };
            if offset != written
                || data.is_empty()
                || data.len() as u64 > header.total_bytes - written
            {
                return Err(protocol_error(written, offset));
            }
            if crc32fast::hash(&data) != crc {
                return Err(TransportError::ChunkChecksum { offset });
            }
            counters.record_buffered((reader.buffered_bytes() + data.len()) as u64);
            let len = data.len() as u64;
            write_chunk(&mut guard, offset, data).await?;
            written += len;
            let synced = guard.as_ref().map_or(0, |progress| progress.synced);
            if written - synced >= ack_interval && written < header.total_bytes {
                sync(&mut guard, written, counters).await?;
                write_frame(&mut send, &SnapshotFrame::Ack { offset: written })
                    .await
                    .map_err(stream_error)?;
            }
        }
        Ok(())
    }
    .await;

    if let Err(error) = outcome {
        // Keep what arrived: sync it so the next offer resumes right here.
        let synced = guard.as_ref().map_or(0, |progress| progress.synced);
        if written > synced && sync(&mut guard, written, counters).await.is_err() {
            *guard = None;
        }
        if matches!(error, TransportError::SnapshotIo { .. }) {
            *guard = None;
            let _ = refuse(&mut send, REFUSE_SINK_FAILED).await;
        }
        return Err(error);
    }

    sync(&mut guard, written, counters).await?;
    let Some(mut progress) = guard.take() else {
        return Err(TransportError::Shutdown);
    };
    let finished = tokio::task::spawn_blocking(move || progress.sink.finish())
        .await
        .map_err(|_| TransportError::Shutdown)?;
    if let Err(source) = finished {
        let _ = refuse(&mut send, REFUSE_SINK_FAILED).await;
        return Err(TransportError::SnapshotIo {
            offset: written,
            source,
        });
    }
    drop(guard);
    tracing::info!(%from, index = %header.index, bytes = written, "snapshot received");
    let _ = shared
        .incoming
        .send(Incoming::Snapshot(ReceivedSnapshot { from, header }))
        .await;
    write_frame(&mut send, &SnapshotFrame::Ack { offset: written })
        .await
        .map_err(stream_error)?;
    let _ = send.finish();
    Ok(())
}

fn protocol_error(expected: u64, found: u64) -> TransportError {
    TransportError::SnapshotOffset { expected, found }
}

async fn write_chunk(
    guard: &mut Option<InProgress>,
    offset: u64,
    data: Bytes,
) -> Result<(), TransportError> {
    let Some(mut progress) = guard.take() else {
        return Err(TransportError::Shutdown);
    };
    let (progress, outcome) = tokio::task::spawn_blocking(move || {
        let outcome = progress.sink.write_at(offset, &data);
        (progress, outcome)
    })
    .await
    .map_err(|_| TransportError::Shutdown)?;
    *guard = Some(progress);
    outcome.map_err(|source| TransportError::SnapshotIo { offset, source })
}

async fn sync(
    guard: &mut Option<InProgress>,
    written: u64,
    counters: &PeerCounters,
) -> Result<(), TransportError> {
    let Some(mut progress) = guard.take() else {
        return Err(TransportError::Shutdown);
    };
    let (mut progress, outcome) = tokio::task::spawn_blocking(move || {
        let outcome = progress.sink.sync();
        (progress, outcome)
    })
    .await
    .map_err(|_| TransportError::Shutdown)?;
    if let Err(source) = outcome {
        *guard = Some(progress);
        return Err(TransportError::SnapshotIo {
            offset: written,
            source,
        });
    }
    PeerCounters::add(&counters.snapshot_received_bytes, written - progress.synced);
    progress.synced = written;
    *guard = Some(progress);
    Ok(())
}

async fn write_frame(send: &mut SendStream, frame: &SnapshotFrame) -> Result<(), std::io::Error> {
    let mut buf = BytesMut::new();
    frame.encode(&mut buf);
    send.write_all(&buf).await.map_err(std::io::Error::from)
}

async fn refuse(send: &mut SendStream, code: u8) -> Result<(), std::io::Error> {
    write_frame(send, &SnapshotFrame::Refuse { code }).await?;
    let _ = send.finish();
    Ok(())
}
