//! The stable log, as raft-core sees it: one small synchronous, read-only trait.
//! The application writes what a [`Persist`](crate::Persist) asks for and then tells
//! the node; the node reads back through [`LogStore`] only what it was told is durable.
//! [`MemoryLogStore`] is the in-memory implementation used by tests and benchmarks.

use std::cell::RefCell;
use std::rc::Rc;

use crate::error::StorageError;
use crate::membership::Membership;
use crate::types::{Entry, LogIndex, NodeId, Term};

/// The state that must be durable before a vote or an append is answered (§5.1,
/// Figure 2: "persistent state on all servers").
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct HardState {
    /// The latest term this member has seen.
    pub term: Term,
    /// Whom this member voted for in `term`, if anyone.
    pub vote: Option<NodeId>,
    /// The highest index known to be committed.
    pub commit: LogIndex,
}

/// What a snapshot covers: the log through `index` (whose entry has `term`), and the
/// configuration in effect there. The snapshot's data (the state machine) is the
/// application's; the protocol only needs this.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct SnapshotMeta {
    /// The last log index the snapshot includes.
    pub index: LogIndex,
    /// The term of that entry.
    pub term: Term,
    /// The configuration in effect at `index`.
    pub membership: Membership,
}

/// What a node starts from: its durable hard state and the membership its log
/// (or snapshot) establishes.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct InitialState {
    /// The durable hard state.
    pub hard_state: HardState,
    /// The cluster's membership.
    pub membership: Membership,
    /// The store cut off a damaged tail of the log that may hold entries this
    /// member already acknowledged (a torn last write), or it did so at an earlier
    /// start and no leader has caught the member up since (the store keeps the
    /// flag durable until the driver clears it, see
    /// [`Status::catching_up`](crate::Status::catching_up)). The term and vote must
    /// survive such a cut (they are kept apart from the log). The node then takes
    /// no part in elections until a leader has caught it up.
    pub log_may_have_lost_entries: bool,
}

/// Read access to the durable log. Every entry the node has been told is durable
/// (through [`Node::on_persisted`](crate::Node::on_persisted)) must be readable here,
/// until it is compacted away.
///
/// Implementations use interior mutability if the driver writes to the same store.
/// Index 0 (or the snapshot index, after compaction) has no entry but has a term.
pub trait LogStore {
    /// The durable hard state and membership, read once when a node starts.
    fn initial_state(&self) -> Result<InitialState, StorageError>;

    /// The newest durable snapshot: what the log before [`LogStore::first_index`] was
    /// compacted into. A store never compacted returns index 0, term 0 and the
    /// initial membership.
    fn snapshot(&self) -> Result<SnapshotMeta, StorageError>;

    /// The index of the first retained entry (1 for a log never compacted).
    fn first_index(&self) -> LogIndex;

    /// The index of the last durable entry (`first_index() - 1` when empty).
    fn last_index(&self) -> LogIndex;

    /// The term of the entry at `index`, for `first_index() - 1 ..= last_index()`.
    fn term(&self, index: LogIndex) -> Result<Term, StorageError>;

    /// The entries in `low..high`, stopping early once their total
    /// [`size_bytes`](Entry::size_bytes) would exceed `max_bytes` (but always at least
    /// one entry).
    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError>;
}

/// A durable log kept in memory: what tests, the simulator and the in-memory
/// benchmark use as "the disk". Cloning shares the same log.
#[derive(Clone, Debug, Default)]
pub struct MemoryLogStore {
    inner: Rc<RefCell<MemoryLog>>,
}

#[derive(Debug, Default)]
struct MemoryLog {
    hard_state: HardState,
    log_may_have_lost_entries: bool,
    membership: Membership,
    // The index and term just before `entries[0]`.
    offset: LogIndex,
    offset_term: Term,
    entries: Vec<Entry>,
}

impl MemoryLogStore {
    /// An empty log for a cluster whose members are `membership`.
    pub fn new(membership: Membership) -> MemoryLogStore {
        let store = MemoryLogStore::default();
        store.inner.borrow_mut().membership = membership;
        store
    }

    /// Makes `hard_state` durable.
    pub fn set_hard_state(&self, hard_state: HardState) {
        self.inner.borrow_mut().hard_state = hard_state;
    }

    /// Records durably whether the log may have lost acknowledged entries (see
    /// [`InitialState::log_may_have_lost_entries`]).
    pub fn set_log_may_have_lost_entries(&self, lost: bool) {
        self.inner.borrow_mut().log_may_have_lost_entries = lost;
    }

    /// Drops every stored entry after `last` (a store that cut a damaged tail).
    ///
    /// # Panics
    /// If `last` is before the compacted prefix.
    pub fn truncate_after(&self, last: LogIndex) {
        let mut log = self.inner.borrow_mut();
        assert!(last >= log.offset, "truncation into the compacted prefix");
        let keep = last.distance_from(log.offset) as usize;
        log.entries.truncate(keep);
    }

    /// Makes `entries` durable: they replace any stored entries from the first one's
    /// index on (a leader overwrote a conflicting suffix, §5.3).
    ///
    /// # Panics
    /// If the entries are not contiguous or would leave a gap after the stored log.
    pub fn append(&self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        let mut log = self.inner.borrow_mut();
        assert!(
            first.index > log.offset,
            "append before the compacted prefix"
        );
        let keep = first.index.distance_from(log.offset.next()) as usize;
        assert!(
            keep <= log.entries.len(),
            "append would leave a gap in the log"
        );
        log.entries.truncate(keep);
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.index,
                first.index.plus(i as u64),
                "entries must be contiguous"
            );
        }
        log.entries.extend_from_slice(entries);
    }

    /// Compacts the log into the snapshot `meta` (made durable by the application):
    /// entries through `meta.index` are dropped.
    ///
    /// # Panics
    /// If `meta.index` is beyond the stored log or before the current snapshot.
    pub fn compact(&self, meta: &SnapshotMeta) {
        let mut log = self.inner.borrow_mut();
        let last = log.offset.plus(log.entries.len() as u64);
        assert!(
            meta.index >= log.offset && meta.index <= last,
            "compaction outside the stored log"
        );
        let drop = meta.index.distance_from(log.offset) as usize;
        log.entries.drain(..drop);
        log.offset = meta.index;
        log.offset_term = meta.term;
        log.membership = meta.membership.clone();
    }

    /// Replaces the whole log with the snapshot `meta` (a follower installing a
    /// snapshot from its leader).
    pub fn install_snapshot(&self, meta: &SnapshotMeta) {
        let mut log = self.inner.borrow_mut();
        log.entries.clear();
        log.offset = meta.index;
        log.offset_term = meta.term;
        log.membership = meta.membership.clone();
        log.hard_state.commit = log.hard_state.commit.max(meta.index);
    }

    /// The durable hard state.
    pub fn hard_state(&self) -> HardState {
        self.inner.borrow().hard_state
    }

    /// A copy of every retained entry.
    pub fn all_entries(&self) -> Vec<Entry> {
        self.inner.borrow().entries.clone()
    }

    /// An independent copy of this store (a new `Rc`), for forking a simulation.
    pub fn deep_clone(&self) -> MemoryLogStore {
        let log = self.inner.borrow();
        MemoryLogStore {
            inner: Rc::new(RefCell::new(MemoryLog {
                hard_state: log.hard_state,
                log_may_have_lost_entries: log.log_may_have_lost_entries,
                membership: log.membership.clone(),
                offset: log.offset,
                offset_term: log.offset_term,
                entries: log.entries.clone(),
            })),
        }
    }
}

impl LogStore for MemoryLogStore {
    fn initial_state(&self) -> Result<InitialState, StorageError> {
        let log = self.inner.borrow();
        Ok(InitialState {
            hard_state: log.hard_state,
            membership: log.membership.clone(),
            log_may_have_lost_entries: log.log_may_have_lost_entries,
        })
    }

    fn snapshot(&self) -> Result<SnapshotMeta, StorageError> {
        let log = self.inner.borrow();
        Ok(SnapshotMeta {
            index: log.offset,
            term: log.offset_term,
            membership: log.membership.clone(),
        })
    }

    fn first_index(&self) -> LogIndex {
        self.inner.borrow().offset.next()
    }

    fn last_index(&self) -> LogIndex {
        let log = self.inner.borrow();
        log.offset.plus(log.entries.len() as u64)
    }

    fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        let log = self.inner.borrow();
        if index < log.offset {
            return Err(StorageError::Compacted { index });
        }
        if index == log.offset {
            return Ok(log.offset_term);
        }
        let position = (index.0 - log.offset.0 - 1) as usize;
        log.entries
            .get(position)
            .map(|e| e.term)
            .ok_or(StorageError::Unavailable { index })
    }

    fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let log = self.inner.borrow();
        if low <= log.offset {
            return Err(StorageError::Compacted { index: low });
        }
        let last = log.offset.plus(log.entries.len() as u64);
        if high > last.next() {
            return Err(StorageError::Unavailable { index: high.prev() });
        }
        let start = (low.0 - log.offset.0 - 1) as usize;
        let end = (high.0.max(low.0) - log.offset.0 - 1) as usize;
        Ok(limit_size(&log.entries[start..end], max_bytes).to_vec())
    }
}

/// The longest prefix of `entries` whose total size stays within `max_bytes`, but at
/// least one entry.
pub(crate) fn limit_size(entries: &[Entry], max_bytes: u64) -> &[Entry] {
    let mut total = 0;
    for (i, entry) in entries.iter().enumerate() {
        total += entry.size_bytes();
        if total > max_bytes && i > 0 {
            return &entries[..i];
        }
    }
    entries
}
