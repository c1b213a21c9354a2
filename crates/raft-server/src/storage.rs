//! raft-core's view of raft-wal: the [`LogStore`] the node reads the durable log
//! through, and the byte encoding of raft-core entries and memberships inside WAL
//! records and snapshot metadata. Keeps true: decoding never panics and never
//! allocates beyond its input (the disk is input too); a WAL read error that is not
//! "compacted" or "not yet written" surfaces as `StorageError::Io`.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

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

/// Most entries the in-memory tail of the log holds.
const TAIL_MAX_ENTRIES: usize = 8192;
/// Most bytes (by [`Entry::size_bytes`]) the in-memory tail of the log holds.
const TAIL_MAX_BYTES: u64 = 16 << 20;

/// The newest entries of the log, as they were handed to the WAL, so that a leader
/// sends recent entries to its followers without reading them back from disk
/// (payloads are shared `Bytes`, not copies). Contiguous: `entries[i].index` is
/// `entries[0].index + i`.
#[derive(Debug, Default)]
struct Tail {
    entries: VecDeque<Entry>,
    bytes: u64,
}

impl Tail {
    /// Appends `entries` (contiguous, in log order), replacing any suffix from the
    /// first one's index on, as the WAL does with a conflicting append.
    fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        while self.entries.back().is_some_and(|e| e.index >= first.index) {
            let dropped = self.entries.pop_back().expect("not empty");
            self.bytes -= dropped.size_bytes();
        }
        if self
            .entries
            .back()
            .is_some_and(|e| e.index.next() != first.index)
        {
            self.clear(); // A gap: keep only what is contiguous.
        }
        for entry in entries {
            self.bytes += entry.size_bytes();
            self.entries.push_back(entry.clone());
        }
        while self.entries.len() > TAIL_MAX_ENTRIES
            || (self.bytes > TAIL_MAX_BYTES && self.entries.len() > 1)
        {
            let dropped = self.entries.pop_front().expect("not empty");
            self.bytes -= dropped.size_bytes();
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Entries `low..high` if the tail holds all of them, stopping once they exceed
    /// `max_bytes` (at least one is returned).
    fn get(&self, low: LogIndex, high: LogIndex, max_bytes: u64) -> Option<Vec<Entry>> {
        let first = self.entries.front()?.index;
        let end = self.entries.back()?.index.next();
        if low < first || high > end || low >= high {
            return None;
        }
        let start = low.distance_from(first) as usize;
        let count = high.distance_from(low) as usize;
        let mut out = Vec::with_capacity(count);
        let mut total = 0;
        for entry in self.entries.range(start..start + count) {
            total += entry.size_bytes();
            if total > max_bytes && !out.is_empty() {
                break;
            }
            out.push(entry.clone());
        }
        Some(out)
    }
}

/// The durable log of one member, read by raft-core. Cheap to clone; clones share
/// the in-memory tail.
#[derive(Clone, Debug)]
pub struct WalStore {
    wal: Arc<Wal>,
    /// The membership before any snapshot: the bootstrap configuration.
    initial_membership: Membership,
    /// The newest entries handed to the WAL. Only the driver uses the store, so the
    /// lock is never contended.
    tail: Arc<Mutex<Tail>>,
}

impl WalStore {
    /// Wraps an open WAL. `initial_membership` is the cluster's bootstrap
    /// configuration (empty for a member that joins later).
    pub fn new(wal: Arc<Wal>, initial_membership: Membership) -> WalStore {
        WalStore {
            wal,
            initial_membership,
            tail: Arc::default(),
        }
    }

    /// Records entries just handed to the WAL (contiguous, in log order; they replace
    /// any newer entries the store remembered), so reads of recent entries are served
    /// from memory. Reads still answer only for what the WAL holds.
    pub fn remember(&self, entries: &[Entry]) {
        self.tail.lock().expect("tail lock").append(entries);
    }

    /// Forgets the remembered entries: the log was replaced by a snapshot.
    pub fn forget(&self) {
        self.tail.lock().expect("tail lock").clear();
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
            // The WAL cut a damaged tail that may hold entries this member already
            // acknowledged (or did so at an earlier start, and no leader has caught
            // the member up since): it takes no part in elections until one has.
            log_may_have_lost_entries: self.wal.recovery_report().catching_up_after.is_some(),
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
        if let Some(entries) = self
            .tail
            .lock()
            .expect("tail lock")
            .get(low, high, max_bytes)
        {
            return Ok(entries);
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

    fn command(index: u64, term: u64, text: &str) -> Entry {
        Entry {
            term: Term(term),
            index: LogIndex(index),
            payload: EntryPayload::Command(Bytes::from(format!("{text}{index}"))),
        }
    }

    /// A store over a fresh WAL holding `entries`, made durable and remembered.
    fn store_with(dir: &std::path::Path) -> WalStore {
        let wal = Wal::open(dir, raft_wal::WalOptions::default()).unwrap();
        WalStore::new(Arc::new(wal), Membership::with_voters([NodeId(1)]))
    }

    fn write(store: &WalStore, entries: &[Entry]) {
        store
            .wal()
            .append(raft_wal::AppendUnit {
                hard_state: None,
                entries: entries.iter().map(to_wal_entry).collect(),
            })
            .unwrap();
        store.remember(entries);
    }

    /// The same read answered by the WAL alone.
    fn from_disk(store: &WalStore, low: u64, high: u64, max_bytes: u64) -> Vec<Entry> {
        WalStore::new(Arc::clone(store.wal()), store.initial_membership.clone())
            .entries(LogIndex(low), LogIndex(high), max_bytes)
            .unwrap()
    }

    #[test]
    fn the_remembered_tail_answers_as_the_wal_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path());
        let first: Vec<Entry> = (1..=40).map(|i| command(i, 1, "a")).collect();
        write(&store, &first);
        // A conflicting append from index 30 replaces the suffix, in the WAL and in
        // memory alike.
        let second: Vec<Entry> = (30..=50).map(|i| command(i, 2, "b")).collect();
        write(&store, &second);
        for (low, high) in [(1, 51), (1, 30), (29, 31), (30, 51), (45, 46), (50, 51)] {
            let all = from_disk(&store, low, high, u64::MAX);
            assert_eq!(all.len() as u64, high - low);
            for max_bytes in [0, 60, 200, u64::MAX] {
                let cached = store
                    .entries(LogIndex(low), LogIndex(high), max_bytes)
                    .unwrap();
                // A non-empty prefix of the WAL's answer, within the byte limit
                // (counted as raft-core counts) unless it is a single entry.
                assert!(!cached.is_empty() && all.starts_with(&cached));
                let bytes: u64 = cached.iter().map(Entry::size_bytes).sum();
                assert!(
                    cached.len() == 1 || bytes <= max_bytes,
                    "{bytes} > {max_bytes}"
                );
                if max_bytes == u64::MAX {
                    assert_eq!(cached, all);
                }
            }
        }
        assert_eq!(
            store.entries(LogIndex(35), LogIndex(36), u64::MAX).unwrap()[0],
            command(35, 2, "b")
        );
        // Reads beyond what the WAL holds are refused even though memory has them.
        store.remember(&[command(51, 2, "c")]);
        assert!(matches!(
            store.entries(LogIndex(50), LogIndex(52), u64::MAX),
            Err(StorageError::Unavailable { .. })
        ));
    }

    #[test]
    fn a_gap_or_a_snapshot_empties_the_tail() {
        let mut tail = Tail::default();
        tail.append(&[command(1, 1, "a"), command(2, 1, "a")]);
        assert!(tail.get(LogIndex(1), LogIndex(3), u64::MAX).is_some());
        tail.append(&[command(5, 1, "a")]);
        assert_eq!(tail.get(LogIndex(1), LogIndex(2), u64::MAX), None);
        assert_eq!(
            tail.get(LogIndex(5), LogIndex(6), u64::MAX),
            Some(vec![command(5, 1, "a")])
        );
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path());
        store.remember(&[command(1, 1, "a")]);
        store.forget();
        assert_eq!(store.tail.lock().unwrap().entries.len(), 0);
    }

    #[test]
    fn the_tail_is_bounded() {
        let mut tail = Tail::default();
        let entries: Vec<Entry> = (1..=(TAIL_MAX_ENTRIES as u64 + 10))
            .map(|i| command(i, 1, "x"))
            .collect();
        tail.append(&entries);
        assert_eq!(tail.entries.len(), TAIL_MAX_ENTRIES);
        assert_eq!(tail.entries.front().unwrap().index, LogIndex(11));
        let big = Entry {
            term: Term(1),
            index: LogIndex(TAIL_MAX_ENTRIES as u64 + 11),
            payload: EntryPayload::Command(Bytes::from(vec![0u8; TAIL_MAX_BYTES as usize])),
        };
        tail.append(std::slice::from_ref(&big));
        assert_eq!(tail.entries.len(), 1, "only the newest entry fits");
        assert_eq!(tail.bytes, big.size_bytes());
    }

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
