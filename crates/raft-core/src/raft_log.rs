//! The node's view of the log: the durable entries in the [`LogStore`], followed by
//! entries not yet acknowledged as durable (the unstable tail), plus the commit and
//! apply positions. Keeps true: the view is always one contiguous log; an entry is
//! read from the store only once the driver has acknowledged it durable, by the
//! acknowledgement of the very write that still holds it; the commit index never
//! passes the last index and never goes back.

use std::collections::VecDeque;

use crate::error::StorageError;
use crate::storage::{LogStore, SnapshotMeta, limit_size};
use crate::types::{Entry, EntryId, LogIndex, Term};

pub(crate) struct RaftLog<S> {
    pub(crate) store: S,
    /// Index of `unstable[0]`. Everything before it is durable and read from the store.
    unstable_offset: LogIndex,
    unstable: Vec<Entry>,
    /// The first unstable index not yet handed out in a `Persist`.
    persist_from: LogIndex,
    committed: LogIndex,
    /// The last index handed out for applying.
    applying: LogIndex,
    applied: LogIndex,
    /// A snapshot from the leader that replaced the log and is not yet durable.
    pending_snapshot: Option<SnapshotMeta>,
    /// Whether `pending_snapshot` still has to be handed out in a `Persist`.
    snapshot_to_persist: bool,
    /// Writes of entries handed out and not yet acknowledged, oldest first.
    writes: VecDeque<EntryWrite>,
}

/// One handed-out write of entries, and how much of the current log it holds.
#[derive(Clone, Copy, Debug)]
struct EntryWrite {
    /// The write's sequence (see [`PersistAck::sequence`](crate::PersistAck::sequence)).
    sequence: u64,
    /// The last index of the current log that this write, once durable, holds:
    /// its last entry, lowered whenever a later write cuts the log below it (the
    /// later write replaces those bytes, so this write no longer vouches for them,
    /// even if the replacement happens to carry the same (term, index) pairs).
    holds_through: LogIndex,
}

/// What [`RaftLog::maybe_append`] did.
pub(crate) enum AppendResult {
    /// No entry matches the append's previous entry.
    Mismatch,
    /// The append would replace a committed entry; nothing was changed.
    OverwritesCommitted,
    /// The log matches the leader's through `last_new_index`; entries from
    /// `written_from` on were newly written.
    Appended {
        last_new_index: LogIndex,
        written_from: Option<LogIndex>,
    },
}

impl<S: LogStore> RaftLog<S> {
    pub(crate) fn new(store: S, committed: LogIndex, applied: LogIndex) -> RaftLog<S> {
        let offset = store.last_index().next();
        // Everything in the snapshot is committed, whatever the stored hard state says.
        let snapshot_index = store.first_index().prev();
        let committed = committed
            .max(applied)
            .max(snapshot_index)
            .min(store.last_index());
        let applied = applied.min(committed);
        RaftLog {
            store,
            unstable_offset: offset,
            unstable: Vec::new(),
            persist_from: offset,
            committed,
            applying: applied,
            applied,
            pending_snapshot: None,
            snapshot_to_persist: false,
            writes: VecDeque::new(),
        }
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        match self.unstable.last() {
            Some(entry) => entry.index,
            None => self.unstable_offset.prev(),
        }
    }

    pub(crate) fn first_index(&self) -> LogIndex {
        match &self.pending_snapshot {
            Some(snapshot) => snapshot.index.next(),
            None => self.store.first_index(),
        }
    }

    /// The index the log was last compacted to (by a snapshot).
    pub(crate) fn snapshot_index(&self) -> LogIndex {
        self.first_index().prev()
    }

    /// The snapshot a lagging follower needs.
    pub(crate) fn snapshot(&self) -> Result<SnapshotMeta, StorageError> {
        match &self.pending_snapshot {
            Some(snapshot) => Ok(snapshot.clone()),
            None => self.store.snapshot(),
        }
    }

    /// Replaces the whole log by a leader's snapshot (§7): everything through its
    /// index is committed and applied once the driver installed it.
    pub(crate) fn restore(&mut self, snapshot: SnapshotMeta) {
        self.unstable.clear();
        self.unstable_offset = snapshot.index.next();
        self.persist_from = self.unstable_offset;
        self.committed = snapshot.index;
        self.applying = snapshot.index;
        self.applied = snapshot.index;
        self.pending_snapshot = Some(snapshot);
        self.snapshot_to_persist = true;
        // The snapshot replaces every entry in flight.
        for write in &mut self.writes {
            write.holds_through = LogIndex(0);
        }
    }

    /// Hands out the snapshot to install, once.
    pub(crate) fn take_snapshot_to_persist(&mut self) -> Option<SnapshotMeta> {
        if !std::mem::take(&mut self.snapshot_to_persist) {
            return None;
        }
        self.pending_snapshot.clone()
    }

    pub(crate) fn has_snapshot_to_persist(&self) -> bool {
        self.snapshot_to_persist
    }

    /// The driver installed the snapshot through `index`: the store holds it now.
    pub(crate) fn snapshot_persisted(&mut self, index: LogIndex) {
        if self
            .pending_snapshot
            .as_ref()
            .is_some_and(|s| s.index == index)
            && !self.snapshot_to_persist
        {
            self.pending_snapshot = None;
        }
    }

    pub(crate) fn committed(&self) -> LogIndex {
        self.committed
    }

    pub(crate) fn applied(&self) -> LogIndex {
        self.applied
    }

    /// The last index known durable on this member.
    pub(crate) fn persisted_index(&self) -> LogIndex {
        self.unstable_offset.prev()
    }

    pub(crate) fn term(&self, index: LogIndex) -> Result<Term, StorageError> {
        if index > self.last_index() {
            return Err(StorageError::Unavailable { index });
        }
        if index >= self.unstable_offset {
            return Ok(self.unstable[index.distance_from(self.unstable_offset) as usize].term);
        }
        if let Some(snapshot) = self.pending_snapshot.as_ref().filter(|s| index <= s.index) {
            if index == snapshot.index {
                return Ok(snapshot.term);
            }
            return Err(StorageError::Compacted { index });
        }
        self.store.term(index)
    }

    pub(crate) fn last_entry_id(&self) -> Result<EntryId, StorageError> {
        let index = self.last_index();
        Ok(EntryId {
            term: self.term(index)?,
            index,
        })
    }

    /// Whether the log holds an entry at `index` written in `term`.
    pub(crate) fn matches(&self, index: LogIndex, term: Term) -> Result<bool, StorageError> {
        match self.term(index) {
            Ok(t) => Ok(t == term),
            Err(StorageError::Unavailable { .. }) => Ok(false),
            // Compacted entries are committed, and committed entries match any leader's.
            Err(StorageError::Compacted { .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// §5.4.1: whether a log ending at (`last_index`, `last_term`) is at least as up to
    /// date as this one.
    pub(crate) fn is_up_to_date(
        &self,
        last_index: LogIndex,
        last_term: Term,
    ) -> Result<bool, StorageError> {
        let mine = self.last_entry_id()?;
        Ok(last_term > mine.term || (last_term == mine.term && last_index >= mine.index))
    }

    /// Entries in `low..high`, at most `max_bytes` of them (but at least one).
    pub(crate) fn entries(
        &self,
        low: LogIndex,
        high: LogIndex,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let high = high.min(self.last_index().next());
        if low >= high {
            return Ok(Vec::new());
        }
        if self
            .pending_snapshot
            .as_ref()
            .is_some_and(|s| low <= s.index)
        {
            return Err(StorageError::Compacted { index: low });
        }
        let mut out = Vec::new();
        if low < self.unstable_offset {
            out = self
                .store
                .entries(low, high.min(self.unstable_offset), max_bytes)?;
            let stored_high = high.min(self.unstable_offset);
            if out.last().map(|e| e.index.next()) != Some(stored_high) {
                return Ok(out); // Stopped by the byte limit.
            }
        }
        if high > self.unstable_offset {
            let start = low
                .max(self.unstable_offset)
                .distance_from(self.unstable_offset) as usize;
            let end = high.distance_from(self.unstable_offset) as usize;
            let used: u64 = out.iter().map(Entry::size_bytes).sum();
            let tail = &self.unstable[start..end];
            if out.is_empty() {
                out.extend_from_slice(limit_size(tail, max_bytes));
            } else {
                let mut total = used;
                for entry in tail {
                    total += entry.size_bytes();
                    if total > max_bytes {
                        break;
                    }
                    out.push(entry.clone());
                }
            }
        }
        Ok(out)
    }

    /// Appends entries created by this member as leader; they follow the last index.
    pub(crate) fn append(&mut self, entries: Vec<Entry>) {
        if let Some(first) = entries.first() {
            assert_eq!(
                first.index,
                self.last_index().next(),
                "leader append must follow the log"
            );
            self.unstable.extend(entries);
        }
    }

    /// §5.3: appends a leader's entries that follow (`prev_index`, `prev_term`), cutting
    /// off any conflicting suffix. Returns the index of the last entry the append
    /// covered, or `None` if the log has no matching previous entry.
    pub(crate) fn maybe_append(
        &mut self,
        prev_index: LogIndex,
        prev_term: Term,
        leader_commit: LogIndex,
        entries: &[Entry],
    ) -> Result<AppendResult, StorageError> {
        if !self.matches(prev_index, prev_term)? {
            return Ok(AppendResult::Mismatch);
        }
        let last_new_index = prev_index.plus(entries.len() as u64);
        // The first entry that is not already in the log (a retransmission carries
        // entries the log holds; those must not be cut and rewritten).
        let mut first_new = entries.len();
        for (i, entry) in entries.iter().enumerate() {
            if !self.matches(entry.index, entry.term)? {
                first_new = i;
                break;
            }
        }
        let mut written_from = None;
        if first_new < entries.len() {
            let from = entries[first_new].index;
            if from <= self.committed {
                // Committed entries never change (§5.4): only a broken or malicious
                // peer asks for this, and the message is refused.
                return Ok(AppendResult::OverwritesCommitted);
            }
            self.truncate_and_append(&entries[first_new..]);
            written_from = Some(from);
        }
        self.commit_to(leader_commit.min(last_new_index));
        Ok(AppendResult::Appended {
            last_new_index,
            written_from,
        })
    }

    fn truncate_and_append(&mut self, entries: &[Entry]) {
        let from = entries[0].index;
        let unstable_end = self.unstable_offset.plus(self.unstable.len() as u64);
        if from == unstable_end {
            self.unstable.extend_from_slice(entries);
        } else if from <= self.unstable_offset {
            // The new entries replace durable ones too; the store keeps the old ones
            // until the replacement is durable, but they are no longer read.
            self.unstable_offset = from;
            self.unstable.clear();
            self.unstable.extend_from_slice(entries);
        } else {
            self.unstable
                .truncate(from.distance_from(self.unstable_offset) as usize);
            self.unstable.extend_from_slice(entries);
        }
        self.persist_from = self.persist_from.min(from);
        for write in &mut self.writes {
            write.holds_through = write.holds_through.min(from.prev());
        }
    }

    /// §5.4.2 scaffolding: adopt a higher commit index (never beyond the log).
    pub(crate) fn commit_to(&mut self, index: LogIndex) -> bool {
        let index = index.min(self.last_index());
        if index > self.committed {
            self.committed = index;
            return true;
        }
        false
    }

    /// The driver acknowledged the write `sequence` durable, and with it every
    /// earlier one (writes complete in order). The log becomes durable through what
    /// those writes still hold; an acknowledgement of an unknown or already
    /// acknowledged write changes nothing. Returns whether the durable index moved.
    pub(crate) fn write_persisted(&mut self, sequence: u64) -> bool {
        let mut holds_through = None;
        while let Some(write) = self.writes.front().copied() {
            if write.sequence > sequence {
                break;
            }
            self.writes.pop_front();
            holds_through = holds_through.max(Some(write.holds_through));
        }
        let Some(through) = holds_through else {
            return false;
        };
        if through < self.unstable_offset {
            return false;
        }
        assert!(
            through < self.persist_from,
            "an acknowledged write holds entries never handed out"
        );
        let position = through.distance_from(self.unstable_offset) as usize;
        self.unstable.drain(..=position);
        self.unstable_offset = through.next();
        true
    }

    pub(crate) fn has_unpersisted(&self) -> bool {
        self.persist_from <= self.last_index()
    }

    /// Hands out the entries not yet given to a `Persist`, as the write `sequence`.
    pub(crate) fn take_unpersisted(&mut self, sequence: u64) -> Vec<Entry> {
        let start = self.persist_from.distance_from(self.unstable_offset) as usize;
        let entries = self.unstable[start..].to_vec();
        self.persist_from = self.last_index().next();
        if let Some(last) = entries.last() {
            assert!(
                self.writes.back().is_none_or(|w| w.sequence < sequence),
                "write sequences must grow"
            );
            self.writes.push_back(EntryWrite {
                sequence,
                holds_through: last.index,
            });
        }
        entries
    }

    fn apply_bound(&self) -> LogIndex {
        self.committed.min(self.persisted_index())
    }

    pub(crate) fn has_entries_to_apply(&self) -> bool {
        self.applying < self.apply_bound()
    }

    /// Hands out the next committed, durable entries for applying.
    pub(crate) fn take_entries_to_apply(
        &mut self,
        max_bytes: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        if !self.has_entries_to_apply() {
            return Ok(Vec::new());
        }
        let entries = self.entries(self.applying.next(), self.apply_bound().next(), max_bytes)?;
        if let Some(last) = entries.last() {
            self.applying = last.index;
        }
        Ok(entries)
    }

    /// The application applied everything through `index`.
    pub(crate) fn applied_to(&mut self, index: LogIndex) {
        if index > self.applied && index <= self.applying {
            self.applied = index;
        }
    }

    /// §5.3 fast backtracking: the largest index at or below `index` whose term is at
    /// most `term`, and that term.
    pub(crate) fn find_conflict_by_term(
        &self,
        index: LogIndex,
        term: Term,
    ) -> Result<(LogIndex, Term), StorageError> {
        let mut index = index.min(self.last_index());
        loop {
            match self.term(index) {
                Ok(t) if t <= term => return Ok((index, t)),
                Ok(_) => index = index.prev(),
                Err(StorageError::Compacted { .. }) => return Ok((index, Term(0))),
                Err(e) => return Err(e),
            }
        }
    }
}
