//! Reading frames off a QUIC stream. One buffer per stream, grown only to the size
//! of the frame being read (never past the frame limit), and frames handed out as
//! `Bytes` slices of it without copying.

use bytes::{Bytes, BytesMut};
use quinn::{RecvStream, VarInt};
use raft_core::NodeId;
use tokio::io::AsyncReadExt;

use crate::codec::{FrameSplitter, PREAMBLE_BYTES, Preamble};
use crate::error::TransportError;

/// Application error code sent with STOP_SENDING or RESET_STREAM when a stream is
/// closed for bad bytes (docs/wire-format.md, "Error codes").
pub(crate) const CODE_DECODE_ERROR: VarInt = VarInt::from_u32(1);
/// Connection close code: the peer claimed another id than its certificate names.
pub(crate) const CODE_CLAIM_MISMATCH: VarInt = VarInt::from_u32(2);
/// Connection close code: closed on purpose (reset, removal, shutdown).
pub(crate) const CODE_CLOSED: VarInt = VarInt::from_u32(3);

/// The smallest free space worth a read call.
const MIN_READ_BYTES: usize = 4 * 1024;

/// Frames from one receive stream.
pub(crate) struct FrameReader {
    recv: RecvStream,
    buf: BytesMut,
    splitter: FrameSplitter,
    peer: NodeId,
}

impl FrameReader {
    pub(crate) fn new(
        recv: RecvStream,
        max_frame_bytes: u32,
        initial_bytes: usize,
        peer: NodeId,
    ) -> FrameReader {
        FrameReader {
            recv,
            buf: BytesMut::with_capacity(initial_bytes),
            splitter: FrameSplitter::new(max_frame_bytes),
            peer,
        }
    }

    /// Reads the stream preamble.
    pub(crate) async fn preamble(&mut self) -> Result<Preamble, TransportError> {
        let mut bytes = [0u8; PREAMBLE_BYTES];
        self.recv
            .read_exact(&mut bytes)
            .await
            .map_err(|error| TransportError::Stream {
                peer: self.peer,
                source: std::io::Error::other(error),
            })?;
        Preamble::decode(&bytes)
    }

    /// The next frame, or `None` when the peer finished the stream cleanly between
    /// frames.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, TransportError> {
        loop {
            if let Some(frame) = self.splitter.next_frame(&mut self.buf)? {
                return Ok(Some(frame));
            }
            if self.buf.capacity() - self.buf.len() < MIN_READ_BYTES {
                self.buf.reserve(MIN_READ_BYTES);
            }
            let read = self.recv.read_buf(&mut self.buf).await.map_err(|source| {
                TransportError::Stream {
                    peer: self.peer,
                    source,
                }
            })?;
            if read == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(TransportError::Truncated {
                    field: "frame at end of stream",
                    needed_bytes: (self.buf.len() + 1) as u64,
                    remaining_bytes: self.buf.len() as u64,
                });
            }
        }
    }

    /// Bytes this reader holds in memory now (its buffer's capacity).
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// Tells the peer to stop sending: the stream is closed for bad bytes.
    pub(crate) fn stop(&mut self) {
        let _ = self.recv.stop(CODE_DECODE_ERROR);
    }
}
