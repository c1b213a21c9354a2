//! The on-disk byte layout of segment files: the segment header, record frames and
//! their checksums. Everything here is pure (bytes in, bytes out) and must stay in
//! step with `docs/wal-format.md`, which is the normative description.

use crate::HardState;

/// Magic bytes at the start of every segment file.
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"RAFTWAL\0";
/// The segment format version this crate writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Length of the segment header; the first frame starts here.
pub(crate) const SEGMENT_HEADER_LEN: usize = 40;
/// Length of a frame header (`len | crc | kind | reserved | index | term`).
pub(crate) const FRAME_HEADER_LEN: usize = 32;
/// Frames start at multiples of this alignment.
pub(crate) const FRAME_ALIGN: usize = 8;
/// Payload length of a hard-state record (`term | vote | commit`).
pub(crate) const HARD_STATE_PAYLOAD_LEN: usize = 24;
/// Payload length of a commit marker (`group_start | record_count | segment_id |
/// end_tag`).
pub(crate) const COMMIT_PAYLOAD_LEN: usize = 32;
/// Last eight bytes of every commit marker. Non-zero, so that the sector holding a
/// group's end is never all zeros when it was written (recovery relies on that to
/// tell a tear from a flipped bit).
pub(crate) const COMMIT_END_TAG: u64 = u64::from_le_bytes(*b"COMMITED");
/// Bytes a commit marker takes on disk.
pub(crate) const COMMIT_FRAME_LEN: usize = FRAME_HEADER_LEN + COMMIT_PAYLOAD_LEN;
/// Largest log index the log accepts or recovers: keeps `last_index + 1` and
/// friends far from overflow whatever a damaged file claims.
pub(crate) const MAX_INDEX: u64 = 1 << 62;
/// `first_index` value of a prepared segment that no group has been written to yet.
pub(crate) const UNASSIGNED_FIRST_INDEX: u64 = 0;

/// The kind byte of a record frame. Zero is never a valid kind: a zero frame header
/// marks the end of the written part of a (zero-filled) segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// A log entry: `index`, `term`, opaque payload.
    Entry = 1,
    /// The durable hard state; payload `term | vote | commit`.
    HardState = 2,
    /// Entries with index `>= index` are removed (a leader overwrote them).
    Truncate = 3,
    /// Entries with index `< index` are removed; `term` is the term of `index - 1`.
    Compact = 4,
    /// End of a commit group; payload `group_start | record_count | segment_id | end_tag`.
    Commit = 5,
}

impl RecordKind {
    pub(crate) fn from_byte(byte: u8) -> Option<RecordKind> {
        Some(match byte {
            1 => RecordKind::Entry,
            2 => RecordKind::HardState,
            3 => RecordKind::Truncate,
            4 => RecordKind::Compact,
            5 => RecordKind::Commit,
            _ => return None,
        })
    }
}

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// Seeds every frame checksum in this segment, so frames from another segment
    /// (or copied into a payload) never validate here.
    pub(crate) salt: u32,
    pub(crate) segment_id: u64,
    /// Log index that followed the log's last index when the segment was activated,
    /// or [`UNASSIGNED_FIRST_INDEX`] for a prepared, unused segment.
    pub(crate) first_index: u64,
}

/// Why a segment header does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderError {
    BadMagic,
    UnsupportedVersion,
    BadChecksum,
}

impl SegmentHeader {
    /// Encodes the header into its 40 bytes.
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut out = [0u8; SEGMENT_HEADER_LEN];
        out[0..8].copy_from_slice(&SEGMENT_MAGIC);
        out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&self.salt.to_le_bytes());
        out[16..24].copy_from_slice(&self.segment_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.first_index.to_le_bytes());
        // 32..36 reserved, zero.
        let crc = crc32fast::hash(&out[0..36]);
        out[36..40].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and verifies a header; `bytes` must hold at least 40 bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        assert!(bytes.len() >= SEGMENT_HEADER_LEN);
        if bytes[0..8] != SEGMENT_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        if crc32fast::hash(&bytes[0..36]) != read_u32(bytes, 36) {
            return Err(HeaderError::BadChecksum);
        }
        if read_u32(bytes, 8) != FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion);
        }
        if read_u32(bytes, 32) != 0 {
            return Err(HeaderError::BadChecksum);
        }
        Ok(SegmentHeader {
            salt: read_u32(bytes, 12),
            segment_id: read_u64(bytes, 16),
            first_index: read_u64(bytes, 24),
        })
    }
}

/// Rounds `len` up to the frame alignment.
pub(crate) const fn align_up(len: usize) -> usize {
    (len + FRAME_ALIGN - 1) & !(FRAME_ALIGN - 1)
}

/// Bytes a frame with `payload_len` payload bytes takes on disk, padding included.
pub(crate) const fn frame_len(payload_len: usize) -> usize {
    FRAME_HEADER_LEN + align_up(payload_len)
}

/// Appends one frame to `out`. `out.len()` must be aligned when called; it stays so.
pub(crate) fn encode_frame(
    out: &mut Vec<u8>,
    salt: u32,
    kind: RecordKind,
    index: u64,
    term: u64,
    payload: &[u8],
) {
    assert!(
        out.len().is_multiple_of(FRAME_ALIGN),
        "frames start aligned"
    );
    let len = u32::try_from(payload.len()).expect("payload length fits in u32");
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]); // crc, filled below
    out.push(kind as u8);
    out.extend_from_slice(&[0u8; 7]);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&term.to_le_bytes());
    out.extend_from_slice(payload);
    out.resize(start + frame_len(payload.len()), 0);
    let crc = frame_checksum(salt, &out[start..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The checksum of a whole frame (`frame` spans header, payload and padding): it
/// covers the length, kind, reserved bytes, index, term, payload and padding, seeded
/// with the segment salt. The crc field itself (bytes 4..8) is skipped.
pub(crate) fn frame_checksum(salt: u32, frame: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new_with_initial(salt);
    hasher.update(&frame[0..4]);
    hasher.update(&frame[8..]);
    hasher.finalize()
}

/// The fields of a frame header, before the checksum is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub(crate) payload_len: usize,
    pub(crate) crc: u32,
    pub(crate) kind_byte: u8,
    pub(crate) index: u64,
    pub(crate) term: u64,
}

impl FrameHeader {
    /// Reads the 32 header bytes at the start of `bytes` (at least 32 long).
    pub(crate) fn read(bytes: &[u8]) -> FrameHeader {
        FrameHeader {
            payload_len: read_u32(bytes, 0) as usize,
            crc: read_u32(bytes, 4),
            kind_byte: bytes[8],
            index: read_u64(bytes, 16),
            term: read_u64(bytes, 24),
        }
    }

    /// Whether the reserved bytes 9..16 are zero.
    pub(crate) fn reserved_clear(bytes: &[u8]) -> bool {
        bytes[9..16].iter().all(|&b| b == 0)
    }
}

/// Why a frame does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The frame's length runs past the end of the segment.
    LengthOverrun,
    /// Unknown kind byte or non-zero reserved bytes.
    BadKind,
    /// The checksum does not match.
    BadChecksum,
}

/// A frame that decoded and whose checksum matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) kind: RecordKind,
    pub(crate) index: u64,
    pub(crate) term: u64,
    /// Payload position inside the buffer the frame was decoded from.
    pub(crate) payload_start: usize,
    pub(crate) payload_len: usize,
    /// Offset just past the frame (padding included).
    pub(crate) end: usize,
}

/// Decodes and verifies the frame starting at `pos` in `segment`. The length is
/// checked against what remains before anything is read or allocated.
pub(crate) fn decode_frame(segment: &[u8], pos: usize, salt: u32) -> Result<Frame, FrameError> {
    let remaining = segment.len().saturating_sub(pos);
    if remaining < FRAME_HEADER_LEN {
        return Err(FrameError::LengthOverrun);
    }
    let header = FrameHeader::read(&segment[pos..]);
    if header.payload_len > remaining - FRAME_HEADER_LEN {
        return Err(FrameError::LengthOverrun);
    }
    let total = frame_len(header.payload_len);
    if total > remaining {
        return Err(FrameError::LengthOverrun);
    }
    let kind = match RecordKind::from_byte(header.kind_byte) {
        Some(kind) if FrameHeader::reserved_clear(&segment[pos..]) => kind,
        _ => return Err(FrameError::BadKind),
    };
    let frame = &segment[pos..pos + total];
    if frame_checksum(salt, frame) != header.crc {
        return Err(FrameError::BadChecksum);
    }
    Ok(Frame {
        kind,
        index: header.index,
        term: header.term,
        payload_start: pos + FRAME_HEADER_LEN,
        payload_len: header.payload_len,
        end: pos + total,
    })
}

/// Encodes a hard state as a record payload.
pub(crate) fn encode_hard_state(state: &HardState) -> [u8; HARD_STATE_PAYLOAD_LEN] {
    let mut out = [0u8; HARD_STATE_PAYLOAD_LEN];
    out[0..8].copy_from_slice(&state.term.to_le_bytes());
    out[8..16].copy_from_slice(&state.vote.to_le_bytes());
    out[16..24].copy_from_slice(&state.commit.to_le_bytes());
    out
}

/// Decodes a hard-state payload of exactly 24 bytes.
pub(crate) fn decode_hard_state(payload: &[u8]) -> Option<HardState> {
    (payload.len() == HARD_STATE_PAYLOAD_LEN).then(|| HardState {
        term: read_u64(payload, 0),
        vote: read_u64(payload, 8),
        commit: read_u64(payload, 16),
    })
}

/// The payload of a commit marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CommitMarker {
    /// Offset at which the write carrying this group began (0 when the group's write
    /// also carried the segment header).
    pub(crate) group_start: u64,
    /// Number of records in the group, the marker excluded.
    pub(crate) record_count: u64,
    pub(crate) segment_id: u64,
}

impl CommitMarker {
    pub(crate) fn encode(&self) -> [u8; COMMIT_PAYLOAD_LEN] {
        let mut out = [0u8; COMMIT_PAYLOAD_LEN];
        out[0..8].copy_from_slice(&self.group_start.to_le_bytes());
        out[8..16].copy_from_slice(&self.record_count.to_le_bytes());
        out[16..24].copy_from_slice(&self.segment_id.to_le_bytes());
        out[24..32].copy_from_slice(&COMMIT_END_TAG.to_le_bytes());
        out
    }

    pub(crate) fn decode(payload: &[u8]) -> Option<CommitMarker> {
        (payload.len() == COMMIT_PAYLOAD_LEN && read_u64(payload, 24) == COMMIT_END_TAG).then(
            || CommitMarker {
                group_start: read_u64(payload, 0),
                record_count: read_u64(payload, 8),
                segment_id: read_u64(payload, 16),
            },
        )
    }
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_flips() {
        let header = SegmentHeader {
            salt: 7,
            segment_id: 3,
            first_index: 42,
        };
        let bytes = header.encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
        for bit in 0..SEGMENT_HEADER_LEN * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&flipped).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn frame_round_trips_and_detects_flips() {
        let mut buf = Vec::new();
        encode_frame(&mut buf, 9, RecordKind::Entry, 5, 2, b"hello");
        assert_eq!(buf.len(), frame_len(5));
        let frame = decode_frame(&buf, 0, 9).expect("valid frame");
        assert_eq!(
            (frame.kind, frame.index, frame.term),
            (RecordKind::Entry, 5, 2)
        );
        assert_eq!(&buf[frame.payload_start..][..frame.payload_len], b"hello");
        assert_eq!(decode_frame(&buf, 0, 10), Err(FrameError::BadChecksum));
        for bit in 0..buf.len() * 8 {
            let mut flipped = buf.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_frame(&flipped, 0, 9).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn huge_length_is_rejected_before_reading() {
        let mut buf = vec![0u8; 64];
        buf[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        buf[8] = RecordKind::Entry as u8;
        assert_eq!(decode_frame(&buf, 0, 0), Err(FrameError::LengthOverrun));
    }
}
