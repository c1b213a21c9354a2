//! Scanning one segment file's bytes at recovery: the header, the records of every
//! complete commit group, and what follows the last commit marker. Pure: it reads a
//! buffer and decides nothing about the other segments.

use crate::error::CorruptReason;
use crate::format::{
    self, COMMIT_PAYLOAD_LEN, CommitMarker, FRAME_ALIGN, FRAME_HEADER_LEN, FrameError, HeaderError,
    MAX_INDEX, RecordKind, SEGMENT_HEADER_LEN, SegmentHeader, UNASSIGNED_FIRST_INDEX,
};

/// One record of a complete commit group (commit markers are not listed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScannedRecord {
    pub(crate) kind: RecordKind,
    pub(crate) index: u64,
    pub(crate) term: u64,
    /// Offset of the frame in the segment.
    pub(crate) offset: u64,
    pub(crate) payload_len: u32,
    /// The hard state, for [`RecordKind::HardState`] records.
    pub(crate) hard_state: Option<crate::HardState>,
}

/// Damage found after the last complete commit group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tail {
    /// Offset of the first damaged or unexpected byte.
    pub(crate) offset: u64,
    pub(crate) reason: CorruptReason,
    /// The damage cannot be a torn write (see [`classify`]): report it.
    pub(crate) corrupt: bool,
    /// The damaged group may have been acknowledged before the damage (its commit
    /// marker, or every sector of it, reached the disk; see [`classify`]).
    pub(crate) possibly_acknowledged: bool,
    /// Offset where the group that the damage belongs to started (0 if that group's
    /// write also carried the header).
    pub(crate) group_start: u64,
    /// One past the last non-zero byte of the file.
    pub(crate) nonzero_end: u64,
}

/// What a segment file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentScan {
    pub(crate) header: SegmentHeader,
    /// Records of the complete commit groups, in file order.
    pub(crate) records: Vec<ScannedRecord>,
    /// Offset just past the last complete commit group (the header's end if none).
    pub(crate) durable_end: u64,
    /// Damage or unfinished data after `durable_end`, if any.
    pub(crate) tail: Option<Tail>,
}

impl SegmentScan {
    /// A prepared segment that was never written to: unassigned header, zero body.
    pub(crate) fn is_empty_prepared(&self) -> bool {
        self.header.first_index == UNASSIGNED_FIRST_INDEX
            && self.records.is_empty()
            && self.tail.is_none()
    }

    /// Highest index of any entry record (0 if none).
    pub(crate) fn max_entry_index(&self) -> u64 {
        self.records
            .iter()
            .filter(|record| record.kind == RecordKind::Entry)
            .map(|record| record.index)
            .max()
            .unwrap_or(0)
    }
}

/// A header that does not decode: the segment is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadHeader {
    pub(crate) offset: u64,
    pub(crate) reason: CorruptReason,
}

/// Scans a whole segment file.
pub(crate) fn scan_segment(bytes: &[u8]) -> Result<SegmentScan, BadHeader> {
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Err(BadHeader {
            offset: 0,
            reason: CorruptReason::BadSize,
        });
    }
    // Sector writes are assumed atomic and the header sector is synced before the
    // segment gets its name, so a header that does not decode is never a tear.
    let header = SegmentHeader::decode(bytes).map_err(|error| BadHeader {
        offset: 0,
        reason: match error {
            HeaderError::BadMagic => CorruptReason::BadMagic,
            HeaderError::UnsupportedVersion => CorruptReason::UnsupportedVersion,
            HeaderError::BadChecksum => CorruptReason::BadChecksum,
        },
    })?;
    let salt = header.salt;
    let assigned = header.first_index != UNASSIGNED_FIRST_INDEX;
    let mut records = Vec::new();
    let mut pending: Vec<ScannedRecord> = Vec::new();
    let mut durable_end = SEGMENT_HEADER_LEN;
    let mut pos = SEGMENT_HEADER_LEN;
    let mut damage: Option<(usize, CorruptReason)> = None;
    // Only a segment whose header names its first index can hold committed groups.
    loop {
        if !assigned {
            break;
        }
        if bytes.len() - pos < FRAME_HEADER_LEN || is_zero(&bytes[pos..pos + FRAME_HEADER_LEN]) {
            break;
        }
        let frame = match format::decode_frame(bytes, pos, salt) {
            Ok(frame) => frame,
            Err(error) => {
                damage = Some((pos, frame_reason(error)));
                break;
            }
        };
        let payload = &bytes[frame.payload_start..frame.payload_start + frame.payload_len];
        let group_start = if records.is_empty() {
            0
        } else {
            durable_end as u64
        };
        let mut record = ScannedRecord {
            kind: frame.kind,
            index: frame.index,
            term: frame.term,
            offset: pos as u64,
            payload_len: frame.payload_len as u32,
            hard_state: None,
        };
        let well_formed = match frame.kind {
            RecordKind::Entry => (1..=MAX_INDEX).contains(&frame.index),
            RecordKind::HardState => {
                record.hard_state = format::decode_hard_state(payload);
                record.hard_state.is_some()
            }
            RecordKind::Truncate | RecordKind::Compact => {
                frame.payload_len == 0 && (1..=MAX_INDEX).contains(&frame.index)
            }
            RecordKind::Commit => CommitMarker::decode(payload).is_some_and(|marker| {
                marker.group_start == group_start
                    && marker.record_count == pending.len() as u64
                    && marker.segment_id == header.segment_id
                    && !pending.is_empty()
            }),
        };
        if !well_formed {
            damage = Some((pos, CorruptReason::MalformedRecord));
            break;
        }
        if frame.kind == RecordKind::Commit {
            records.append(&mut pending);
            durable_end = frame.end;
        } else {
            pending.push(record);
        }
        pos = frame.end;
    }
    let nonzero_end = bytes
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(0, |at| at + 1)
        .max(SEGMENT_HEADER_LEN);
    let group_start = if records.is_empty() {
        0
    } else {
        durable_end as u64
    };
    let tail = match damage {
        Some((offset, reason)) => Some((offset, reason)),
        None if !pending.is_empty() => Some((durable_end, CorruptReason::MissingCommitMarker)),
        None if nonzero_end > durable_end => {
            let first = bytes[durable_end..]
                .iter()
                .position(|&byte| byte != 0)
                .map_or(durable_end, |at| durable_end + at);
            Some((first, CorruptReason::DataAfterEnd))
        }
        None => None,
    };
    let tail = tail.map(|(offset, reason)| {
        let class = classify(bytes, offset, nonzero_end, salt, group_start, assigned);
        Tail {
            offset: offset as u64,
            reason,
            corrupt: class == TailClass::Corrupt,
            possibly_acknowledged: class == TailClass::TornPossiblyAcknowledged,
            group_start,
            nonzero_end: nonzero_end as u64,
        }
    });
    Ok(SegmentScan {
        header,
        records,
        durable_end: durable_end as u64,
        tail,
    })
}

fn frame_reason(error: FrameError) -> CorruptReason {
    match error {
        FrameError::LengthOverrun => CorruptReason::LengthOverrun,
        FrameError::BadKind => CorruptReason::MalformedRecord,
        FrameError::BadChecksum => CorruptReason::BadChecksum,
    }
}

fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&byte| byte == 0)
}

/// What damage after the last complete group is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TailClass {
    /// Cannot be a torn write: reported.
    Corrupt,
    /// A write that never fully reached the disk, whose sync cannot have returned.
    TornUnacknowledged,
    /// Cut like a tear, but the group may have been acknowledged before the disk
    /// lost part of it: reported as catching up.
    TornPossiblyAcknowledged,
}

/// Decides whether damage at `from` (in a group that started at `group_start`) can
/// be a torn write, and whether the damaged group may have been acknowledged.
/// Groups are written one at a time, each into zero-filled space and only after the
/// previous group's sync returned; sector writes are atomic. So:
///
/// - a valid commit marker of a *later* group past the damage proves the damaged
///   group was synced: corruption;
/// - if the damaged group's own commit marker is intact, the group's end reached the
///   disk, so its sync may have returned; a tear must then have left at least one
///   sector of the group unwritten, i.e. all zeros: a tear that may hide an
///   acknowledged group (a disk that lost a synced sector looks the same). If every
///   sector of the group holds data, the damage is a flipped bit: corruption;
/// - a segment whose header is still unassigned never had its first write complete:
///   a tear (unless a later group exists), possibly acknowledged only by the rule
///   above;
/// - otherwise the group's marker is missing or damaged. If every sector from the
///   group's start to the last non-zero byte holds data and that byte ends a commit
///   end tag, the whole group was written and a flipped bit broke its marker: the
///   group may have been acknowledged. Else its end never reached the disk: a tear
///   of a write that was never acknowledged.
fn classify(
    bytes: &[u8],
    from: usize,
    end: usize,
    salt: u32,
    group_start: u64,
    assigned: bool,
) -> TailClass {
    let end = end.min(bytes.len());
    let mut own_marker_end = None;
    let mut pos = from / FRAME_ALIGN * FRAME_ALIGN;
    while pos + FRAME_HEADER_LEN + COMMIT_PAYLOAD_LEN <= end {
        let candidate = bytes[pos + 8] == RecordKind::Commit as u8
            && format::read_u32(bytes, pos) as usize == COMMIT_PAYLOAD_LEN;
        if candidate
            && let Ok(frame) = format::decode_frame(bytes, pos, salt)
            && let Some(marker) = CommitMarker::decode(&bytes[frame.payload_start..frame.end])
        {
            if marker.group_start > group_start {
                return TailClass::Corrupt;
            }
            if marker.group_start == group_start && own_marker_end.is_none() {
                own_marker_end = Some(frame.end);
            }
        }
        pos += FRAME_ALIGN;
    }
    let start = (group_start as usize).max(SEGMENT_HEADER_LEN);
    match own_marker_end {
        Some(_) if !assigned => TailClass::TornPossiblyAcknowledged,
        None if !assigned => TailClass::TornUnacknowledged,
        Some(marker_end) if !has_zero_sector(&bytes[..marker_end], start) => TailClass::Corrupt,
        Some(_) => TailClass::TornPossiblyAcknowledged,
        None if fully_written(bytes, start, end) => TailClass::TornPossiblyAcknowledged,
        None => TailClass::TornUnacknowledged,
    }
}

/// Whether `bytes[start..end]` looks like a whole group: it ends with a commit end
/// tag at an aligned position and none of its sectors is all zeros.
fn fully_written(bytes: &[u8], start: usize, end: usize) -> bool {
    end.is_multiple_of(FRAME_ALIGN)
        && end >= start + FRAME_HEADER_LEN + COMMIT_PAYLOAD_LEN
        && format::read_u64(bytes, end - 8) == format::COMMIT_END_TAG
        && !has_zero_sector(&bytes[..end], start)
}

/// Whether some 512-byte sector's part of `bytes[start..]` is all zeros.
fn has_zero_sector(bytes: &[u8], start: usize) -> bool {
    const SECTOR: usize = 512;
    let mut lo = start;
    while lo < bytes.len() {
        let hi = ((lo / SECTOR + 1) * SECTOR).min(bytes.len());
        if is_zero(&bytes[lo..hi]) {
            return true;
        }
        lo = hi;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{SEGMENT_HEADER_LEN, encode_frame};

    fn segment_with_groups(groups: &[&[u64]]) -> Vec<u8> {
        let header = SegmentHeader {
            salt: 77,
            segment_id: 1,
            first_index: 1,
        };
        let mut bytes = header.encode().to_vec();
        for (number, group) in groups.iter().enumerate() {
            let start = if number == 0 { 0 } else { bytes.len() as u64 };
            for &index in group.iter() {
                encode_frame(
                    &mut bytes,
                    77,
                    RecordKind::Entry,
                    index,
                    1,
                    &[index as u8; 100],
                );
            }
            let marker = CommitMarker {
                group_start: start,
                record_count: group.len() as u64,
                segment_id: 1,
            };
            encode_frame(&mut bytes, 77, RecordKind::Commit, 0, 0, &marker.encode());
        }
        bytes.resize(4096, 0);
        bytes
    }

    #[test]
    fn clean_segment_has_no_tail() {
        let bytes = segment_with_groups(&[&[1, 2], &[3]]);
        let scan = scan_segment(&bytes).unwrap();
        assert_eq!(scan.records.len(), 3);
        assert_eq!(scan.tail, None);
    }

    #[test]
    fn damage_in_last_group_is_a_tear_and_earlier_is_not() {
        let clean = segment_with_groups(&[&[1, 2], &[3, 4]]);
        let scan = scan_segment(&clean).unwrap();
        let second_group = scan.records[2].offset as usize;
        // A bit flip in the last group, whose marker is intact: not a tear.
        let mut flipped = clean.clone();
        flipped[second_group + 40] ^= 1;
        let scan = scan_segment(&flipped).unwrap();
        assert!(scan.tail.unwrap().corrupt);
        assert_eq!(scan.records.len(), 2);
        // The last group's marker is damaged but every sector is there: a flipped
        // bit in a group that may have been acknowledged.
        let marker_at = scan.tail.unwrap().offset as usize + 2 * format::frame_len(100);
        let mut flipped_marker = clean.clone();
        flipped_marker[marker_at + 4] ^= 1;
        let tail = scan_segment(&flipped_marker).unwrap().tail.unwrap();
        assert!(!tail.corrupt && tail.possibly_acknowledged);
        // The last group's marker never reached the disk: a tear.
        let mut torn = clean.clone();
        torn[marker_at..marker_at + format::COMMIT_FRAME_LEN].fill(0);
        torn[second_group + 40] ^= 1;
        let tail = scan_segment(&torn).unwrap().tail.unwrap();
        assert!(!tail.corrupt && !tail.possibly_acknowledged);
        // Damage in an earlier group, with a later group behind it: corruption.
        let mut corrupt = clean;
        corrupt[SEGMENT_HEADER_LEN + 40] ^= 1;
        let tail = scan_segment(&corrupt).unwrap().tail.unwrap();
        assert!(tail.corrupt);
        assert_eq!(tail.offset, SEGMENT_HEADER_LEN as u64);
    }
}
