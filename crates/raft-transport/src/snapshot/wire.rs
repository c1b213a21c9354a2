//! The frames of a snapshot stream (docs/wire-format.md, "Snapshot stream"). Same
//! framing as messages: length prefix, version, tag; its own tag space.

use bytes::{BufMut, Bytes, BytesMut};
use raft_core::{LogIndex, Term};

use super::SnapshotHeader;
use crate::codec::{Reader, WIRE_VERSION, begin_frame, check_version, finish_frame};
use crate::error::TransportError;

const TAG_OFFER: u8 = 1;
const TAG_CHUNK: u8 = 2;
const TAG_RESUME: u8 = 3;
const TAG_ACK: u8 = 4;
const TAG_REFUSE: u8 = 5;

/// Refusal code: the receiver has no snapshot sink configured.
pub(crate) const REFUSE_NO_SINK: u8 = 1;
/// Refusal code: the receiver's sink failed to open, write or sync.
pub(crate) const REFUSE_SINK_FAILED: u8 = 2;

/// Bytes of a chunk frame before its data, length prefix included.
pub(crate) const CHUNK_HEADER_BYTES: usize = 4 + 1 + 1 + 8 + 4 + 4;

/// One frame of a snapshot stream.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum SnapshotFrame {
    /// Sender to receiver, first: what is offered.
    Offer(SnapshotHeader),
    /// Sender to receiver: `data` belongs at `offset`; `crc` is its CRC-32.
    Chunk { offset: u64, crc: u32, data: Bytes },
    /// Receiver to sender, first: send from `offset` on.
    Resume { offset: u64 },
    /// Receiver to sender: every byte below `offset` is persisted.
    Ack { offset: u64 },
    /// Receiver to sender: the snapshot is refused (`code`, see the constants).
    Refuse { code: u8 },
}

impl SnapshotFrame {
    /// Appends the frame to `out`. For chunks, prefer [`encode_chunk_header`] and
    /// writing the data separately, which saves a copy.
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        if let SnapshotFrame::Chunk { offset, crc, data } = self {
            encode_chunk_header(*offset, *crc, data.len() as u32, out);
            out.put_slice(data);
            return;
        }
        let at = begin_frame(out);
        out.put_u8(WIRE_VERSION);
        match self {
            SnapshotFrame::Offer(header) => {
                out.put_u8(TAG_OFFER);
                out.put_u64_le(header.index.0);
                out.put_u64_le(header.term.0);
                out.put_u64_le(header.total_bytes);
                out.put_u32_le(header.metadata.len() as u32);
                out.put_slice(&header.metadata);
            }
            SnapshotFrame::Resume { offset } => {
                out.put_u8(TAG_RESUME);
                out.put_u64_le(*offset);
            }
            SnapshotFrame::Ack { offset } => {
                out.put_u8(TAG_ACK);
                out.put_u64_le(*offset);
            }
            SnapshotFrame::Refuse { code } => {
                out.put_u8(TAG_REFUSE);
                out.put_u8(*code);
            }
            SnapshotFrame::Chunk { .. } => unreachable!("handled above"),
        }
        finish_frame(out, at);
    }

    /// Decodes one frame (length prefix already removed); chunk data is a slice of
    /// `frame`.
    pub(crate) fn decode(frame: Bytes) -> Result<SnapshotFrame, TransportError> {
        let mut reader = Reader::new(frame);
        check_version(reader.u8("version")?)?;
        let frame = match reader.u8("snapshot frame tag")? {
            TAG_OFFER => SnapshotFrame::Offer(SnapshotHeader {
                index: LogIndex(reader.u64("snapshot index")?),
                term: Term(reader.u64("snapshot term")?),
                total_bytes: reader.u64("snapshot size")?,
                metadata: reader.bytes("snapshot metadata")?,
            }),
            TAG_CHUNK => SnapshotFrame::Chunk {
                offset: reader.u64("chunk offset")?,
                crc: reader.u32("chunk crc")?,
                data: reader.bytes("chunk data")?,
            },
            TAG_RESUME => SnapshotFrame::Resume {
                offset: reader.u64("resume offset")?,
            },
            TAG_ACK => SnapshotFrame::Ack {
                offset: reader.u64("ack offset")?,
            },
            TAG_REFUSE => SnapshotFrame::Refuse {
                code: reader.u8("refuse code")?,
            },
            tag => return Err(TransportError::UnknownSnapshotTag { tag }),
        };
        reader.finish("snapshot frame")?;
        Ok(frame)
    }
}

/// Appends a chunk frame's header; exactly `len` data bytes must follow.
pub(crate) fn encode_chunk_header(offset: u64, crc: u32, len: u32, out: &mut BytesMut) {
    let frame_len = (CHUNK_HEADER_BYTES - 4) as u32 + len;
    out.put_u32_le(frame_len);
    out.put_u8(WIRE_VERSION);
    out.put_u8(TAG_CHUNK);
    out.put_u64_le(offset);
    out.put_u32_le(crc);
    out.put_u32_le(len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::FrameSplitter;

    #[test]
    fn every_frame_round_trips() {
        let frames = [
            SnapshotFrame::Offer(SnapshotHeader {
                index: LogIndex(10),
                term: Term(2),
                total_bytes: 1 << 40,
                metadata: Bytes::from_static(b"members 1 2 3"),
            }),
            SnapshotFrame::Chunk {
                offset: 65536,
                crc: 0xdead_beef,
                data: Bytes::from_static(b"data"),
            },
            SnapshotFrame::Resume { offset: 7 },
            SnapshotFrame::Ack { offset: 8 },
            SnapshotFrame::Refuse {
                code: REFUSE_NO_SINK,
            },
        ];
        let splitter = FrameSplitter::new(1024);
        for frame in frames {
            let mut buf = BytesMut::new();
            frame.encode(&mut buf);
            let raw = splitter.next_frame(&mut buf).unwrap().unwrap();
            assert!(buf.is_empty());
            assert_eq!(SnapshotFrame::decode(raw).unwrap(), frame);
        }
    }
}
