//! raft-core's view of raft-wal: the [`LogStore`] the node reads the durable log
//! through, and the byte encoding of raft-core entries and memberships inside WAL
//! records and snapshot metadata. Keeps true: decoding never panics and never
//! allocates beyond its input (the disk is input too); a WAL read error that is not
//! "compacted" or "not yet written" surfaces as `StorageError::Io`.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use raft_core::{
    Entry, EntryPayload, HardState, InitialState, LogIndex, LogStore, Membership, NodeId,
    SnapshotMeta, StorageError, Term,
};
use raft_wal::Wal;

/// Payload tags of raft-core entries inside WAL records.
const EMPTY: u8 = 0;
const COMMAND: u8 = 1;
const MEMBERSHIP: u8 = 2;

/// Why stored bytes could not be decoded.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("malformed stored {what}")]
pub struct DecodeError {
    /// What was being decoded.
    pub what: &'static str,
}

/// Encodes an entry's payload for a WAL record.
pub fn encode_payload(payload: &EntryPayload) -> Bytes {
    match payload {
        EntryPayload::Command(command) => {
            let mut out = BytesMut::with_capacity(1 + command.len());
            out.put_u8(COMMAND);
            out.put_slice(command);
            out.freeze()
        }
        EntryPayload::Membership {
            membership,
            context,
        } => {
            let mut out = BytesMut::new();
            out.put_u8(MEMBERSHIP);
            encode_membership_into(membership, &mut out);
            out.put_u32_le(context.len() as u32);
            out.put_slice(context);
            out.freeze()
        }
        _ => Bytes::from_static(&[EMPTY]),
    }
}

/// Decodes a WAL record's payload into an entry payload. Commands are slices of
/// `bytes` (no copy).
pub fn decode_payload(mut bytes: Bytes) -> Result<EntryPayload, DecodeError> {
    let malformed = DecodeError {
        what: "entry payload",
    };
    if bytes.is_empty() {
        return Err(malformed);
    }
    match bytes.get_u8() {
        EMPTY if bytes.is_empty() => Ok(EntryPayload::Empty),
        COMMAND => Ok(EntryPayload::Command(bytes)),
        MEMBERSHIP => {
            let membership = decode_membership_from(&mut bytes)?;
            let context = take_bytes(&mut bytes)?;
            if !bytes.is_empty() {
                return Err(malformed);
            }
            Ok(EntryPayload::Membership {
                membership,
                context,
            })
        }
        _ => Err(malformed),
    }
}

/// Encodes a membership (for snapshot metadata).
pub fn encode_membership(membership: &Membership) -> Bytes {
    let mut out = BytesMut::new();
    encode_membership_into(membership, &mut out);
    out.freeze()
}

/// Decodes what [`encode_membership`] wrote.
pub fn decode_membership(mut bytes: Bytes) -> Result<Membership, DecodeError> {
    let membership = decode_membership_from(&mut bytes)?;
    if !bytes.is_empty() {
        return Err(DecodeError { what: "membership" });
    }
    Ok(membership)
}

fn encode_membership_into(membership: &Membership, out: &mut BytesMut) {
    for set in [
        &membership.voters,
        &membership.voters_outgoing,
        &membership.learners,
    ] {
        out.put_u32_le(set.len() as u32);
        for id in set {
            out.put_u64_le(id.0);
        }
    }
}

fn decode_membership_from(bytes: &mut Bytes) -> Result<Membership, DecodeError> {
    let mut sets: [BTreeSet<NodeId>; 3] = Default::default();
    for set in &mut sets {
        if bytes.remaining() < 4 {
            return Err(DecodeError { what: "membership" });
        }
        let count = bytes.get_u32_le() as usize;
        if count.saturating_mul(8) > bytes.remaining() {
            return Err(DecodeError { what: "membership" });
        }
        for _ in 0..count {
            set.insert(NodeId(bytes.get_u64_le()));
        }
    }
    let [voters, voters_outgoing, learners] = sets;
    Ok(Membership {
        voters,
        voters_outgoing,
        learners,
    })
}

fn take_bytes(bytes: &mut Bytes) -> Result<Bytes, DecodeError> {
    if bytes.remaining() < 4 {
        return Err(DecodeError { what: "length" });
    }
    let len = bytes.get_u32_le() as usize;
    if len > bytes.remaining() {
        return Err(DecodeError { what: "length" });
    }
    Ok(bytes.split_to(len))
}

/// Converts a raft-core entry into a WAL record.
pub fn to_wal_entry(entry: &Entry) -> raft_wal::Entry {
    raft_wal::Entry {
        index: entry.index.0,
        term: entry.term.0,
        payload: encode_payload(&entry.payload),
    }
}

/// The durable log of one member, read by raft-core. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WalStore {
    wal: Arc<Wal>,
    /// The membership before any snapshot: the bootstrap configuration.
    initial_membership: Membership,
}

impl WalStore {
    /// Wraps an open WAL. `initial_membership` is the cluster's bootstrap
    /// configuration (empty for a member that joins later).
    pub fn new(wal: Arc<Wal>, initial_membership: Membership) -> WalStore {
        WalStore {
            wal,
            initial_membership,
        }
    }

    /// The WAL.
    pub fn wal(&self) -> &Arc<Wal> {
        &self.wal
    }
}

fn io_error(error: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        message: error.to_string(),
    }
}

impl LogStore for WalStore {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        let hard_state = self.wal.hard_state();
        let membership = self.snapshot()?.membership;
        Ok(InitialState {
            hard_state: HardState {
                term: Term(hard_state.term),
                vote: (hard_state.vote != 0).then_some(NodeId(hard_state.vote)),
                commit: LogIndex(hard_state.commit),
            },
            membership,
        })
    }

    fn snapshot(&self) -> Result<SnapshotMeta, StorageError> {
        match self.wal.latest_snapshot() {
            Some(meta) => Ok(SnapshotMeta {
                index: LogIndex(meta.index),
                term: Term(meta.term),
                membership: decode_membership(meta.metadata).map_err(io_error)?,
            }),
            None => Ok(SnapshotMeta {
                index: LogIndex(0),
                term: Term(0),
                membership: self.initial_membership.clone(),
            }),
        }
    }

    fn first_index(&self) -> LogIndex {
        LogIndex(self.wal.first_index())
    }

    fn last_index(&self) -> LogIndex {
        LogIndex(self.wal.last_index())
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        if index.0 + 1 < self.wal.first_index() {
            return Err(StorageError::Compacted { index });
        }
        if index.0 > self.wal.last_index() {
            return Err(StorageError::Unavailable { index });
        }
        if index.0 == 0 {
            return Ok(Term(0));
        }
        self.wal.term(index.0).map(Term).map_err(io_error)
    }

    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        if low.0 < self.wal.first_index() {
            return Err(StorageError::Compacted { index: low });
        }
        if high.0 > self.wal.last_index() + 1 {
            return Err(StorageError::Unavailable { index: high.prev() });
        }
        let records = self
            .wal
            .entries(low.0, high.0, max_bytes)
            .map_err(io_error)?;
        records
            .into_iter()
            .map(|record| {
                Ok(Entry {
                    term: Term(record.term),
                    index: LogIndex(record.index),
                    payload: decode_payload(record.payload).map_err(io_error)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let membership = Membership {
            voters: [NodeId(1), NodeId(2)].into(),
            voters_outgoing: [NodeId(3)].into(),
            learners: [NodeId(9)].into(),
        };
        for payload in [
            EntryPayload::Empty,
            EntryPayload::Command(Bytes::from_static(b"put x")),
            EntryPayload::Membership {
                membership,
                context: Bytes::from_static(b"addresses"),
            },
        ] {
            assert_eq!(decode_payload(encode_payload(&payload)), Ok(payload));
        }
    }

    #[test]
    fn truncated_payloads_are_errors_not_panics() {
        let membership = Membership::with_voters([NodeId(1), NodeId(2)]);
        let full = encode_payload(&EntryPayload::Membership {
            membership,
            context: Bytes::from_static(b"ctx"),
        });
        for cut in 0..full.len() {
            assert!(decode_payload(full.slice(..cut)).is_err(), "cut at {cut}");
        }
        assert!(decode_payload(Bytes::from_static(&[7])).is_err());
        assert!(decode_payload(Bytes::from_static(&[MEMBERSHIP, 255, 255, 255, 255])).is_err());
    }
}
