//! The wire codec: length-prefixed, versioned frames and the stream preamble
//! (layouts in docs/wire-format.md). Decoding never panics and never allocates more
//! than the bytes already received: every length is checked against what remains
//! before anything is sized from it, and a frame is bounded by `max_frame_bytes`.

mod message;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use raft_core::{Message, NodeId};

use crate::error::TransportError;

pub use message::{decode_message, encode_message, encoded_len};

/// The wire version this build writes and the only one it reads. It changes only
/// when an existing layout changes; adding a message kind takes a new tag instead
/// (see the compatibility rule in docs/wire-format.md).
pub const WIRE_VERSION: u8 = 2;

/// Bytes of the length prefix in front of every frame.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Bytes of a stream preamble: version, stream kind, sender id.
pub const PREAMBLE_BYTES: usize = 10;

/// The default largest frame accepted (length prefix excluded): 16 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 16 * 1024 * 1024;

/// What a stream carries; announced by the preamble at its start.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum StreamKind {
    /// Unidirectional: `MessageBody::Append` frames only, in send order.
    Append,
    /// Unidirectional: every other message (votes, heartbeats, responses).
    Control,
    /// Bidirectional: one snapshot transfer (offer, chunks; resume and acks back).
    Snapshot,
}

impl StreamKind {
    pub(crate) fn tag(self) -> u8 {
        match self {
            StreamKind::Append => 1,
            StreamKind::Control => 2,
            StreamKind::Snapshot => 3,
        }
    }

    fn from_tag(tag: u8) -> Result<StreamKind, TransportError> {
        match tag {
            1 => Ok(StreamKind::Append),
            2 => Ok(StreamKind::Control),
            3 => Ok(StreamKind::Snapshot),
            kind => Err(TransportError::UnknownStreamKind { kind }),
        }
    }
}

/// The first bytes of every stream: who sends, and what the stream carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Preamble {
    /// What the stream carries.
    pub kind: StreamKind,
    /// The member id the sender claims; must match its certificate.
    pub sender: NodeId,
}

impl Preamble {
    /// Appends the preamble's bytes to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(WIRE_VERSION);
        out.put_u8(self.kind.tag());
        out.put_u64_le(self.sender.get());
    }

    /// Decodes a preamble from exactly [`PREAMBLE_BYTES`] bytes.
    pub fn decode(bytes: &[u8; PREAMBLE_BYTES]) -> Result<Preamble, TransportError> {
        let mut reader = Reader::new(Bytes::copy_from_slice(bytes));
        check_version(reader.u8("version")?)?;
        let kind = StreamKind::from_tag(reader.u8("stream kind")?)?;
        let sender = NodeId(reader.u64("sender")?);
        Ok(Preamble { kind, sender })
    }
}

/// Splits a byte stream into frames. Holds no bytes itself: the caller owns the
/// buffer, so one allocation serves the whole stream.
#[derive(Clone, Copy, Debug)]
pub struct FrameSplitter {
    max_frame_bytes: u32,
}

impl FrameSplitter {
    /// A splitter refusing frames longer than `max_frame_bytes` (prefix excluded).
    pub fn new(max_frame_bytes: u32) -> FrameSplitter {
        FrameSplitter { max_frame_bytes }
    }

    /// Takes the next complete frame (without its length prefix) off the front of
    /// `buf`, or returns `None` when more bytes are needed; then `buf` has been
    /// given the capacity the frame needs (never more than the limit). A length
    /// over the limit is an error before anything is allocated.
    pub fn next_frame(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, TransportError> {
        if buf.len() < LENGTH_PREFIX_BYTES {
            return Ok(None);
        }
        let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if len > self.max_frame_bytes {
            return Err(TransportError::FrameTooLarge {
                len_bytes: u64::from(len),
                limit_bytes: u64::from(self.max_frame_bytes),
            });
        }
        let total = LENGTH_PREFIX_BYTES + len as usize;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mut frame = buf.split_to(total);
        frame.advance(LENGTH_PREFIX_BYTES);
        Ok(Some(frame.freeze()))
    }
}

/// Writes a length prefix placeholder and returns its position, for
/// [`finish_frame`].
pub(crate) fn begin_frame(out: &mut BytesMut) -> usize {
    let at = out.len();
    out.put_u32_le(0);
    at
}

/// Fills in the length prefix written by [`begin_frame`] at `at`.
pub(crate) fn finish_frame(out: &mut BytesMut, at: usize) {
    let len = out.len() - at - LENGTH_PREFIX_BYTES;
    let len = u32::try_from(len).expect("a frame is shorter than 4 GiB by construction");
    out[at..at + LENGTH_PREFIX_BYTES].copy_from_slice(&len.to_le_bytes());
}

/// Rejects any version but [`WIRE_VERSION`].
pub(crate) fn check_version(version: u8) -> Result<(), TransportError> {
    if version == WIRE_VERSION {
        Ok(())
    } else {
        Err(TransportError::UnsupportedVersion {
            version,
            supported: WIRE_VERSION,
        })
    }
}

/// Encodes `messages` as consecutive frames, the inverse of [`decode_all`] (the
/// encoding is canonical: decoding then encoding gives back the same bytes).
pub fn encode_all(messages: &[Message]) -> Result<Vec<u8>, TransportError> {
    let mut out = BytesMut::new();
    for message in messages {
        encode_message(message, &mut out)?;
    }
    Ok(out.to_vec())
}

/// Decodes every frame in `data` as a message, stopping at the first error; for the
/// fuzz target and tests. Returns the messages decoded.
pub fn decode_all(data: &[u8], max_frame_bytes: u32) -> Result<Vec<Message>, TransportError> {
    let splitter = FrameSplitter::new(max_frame_bytes);
    let mut buf = BytesMut::from(data);
    let mut messages = Vec::new();
    while let Some(frame) = splitter.next_frame(&mut buf)? {
        messages.push(decode_message(frame)?);
    }
    if !buf.is_empty() {
        return Err(TransportError::Truncated {
            field: "frame",
            needed_bytes: LENGTH_PREFIX_BYTES as u64,
            remaining_bytes: buf.len() as u64,
        });
    }
    Ok(messages)
}

/// A bounds-checked cursor over one frame. Every read checks the remaining length
/// first, so no input can make it panic or over-allocate.
pub(crate) struct Reader {
    bytes: Bytes,
}

impl Reader {
    pub(crate) fn new(bytes: Bytes) -> Reader {
        Reader { bytes }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    fn need(&self, field: &'static str, needed: usize) -> Result<(), TransportError> {
        if self.bytes.len() < needed {
            return Err(TransportError::Truncated {
                field,
                needed_bytes: needed as u64,
                remaining_bytes: self.bytes.len() as u64,
            });
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, TransportError> {
        self.need(field, 1)?;
        Ok(self.bytes.get_u8())
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, TransportError> {
        self.need(field, 4)?;
        Ok(self.bytes.get_u32_le())
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, TransportError> {
        self.need(field, 8)?;
        Ok(self.bytes.get_u64_le())
    }

    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, TransportError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(TransportError::InvalidField {
                field,
                value: u64::from(value),
            }),
        }
    }

    /// A `u32` length followed by that many bytes, as a slice of the frame (no copy).
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<Bytes, TransportError> {
        let len = self.u32(field)? as usize;
        self.need(field, len)?;
        Ok(self.bytes.split_to(len))
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(self, what: &'static str) -> Result<(), TransportError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(TransportError::TrailingBytes {
                what,
                trailing_bytes: self.bytes.len() as u64,
            })
        }
    }
}
