//! The writer: group commit. It takes every queued request at once, checks each
//! against the log, encodes them into one commit group, writes it with one write,
//! syncs it with one `fdatasync`, publishes the change to readers and only then
//! acknowledges. While it syncs, the next batch queues up. The writer state sits
//! behind one mutex: the writer thread holds it per batch, and a blocking append
//! that finds the log idle holds it to run its own group. Invariants:
//! at most one written-but-unsynced commit group exists at any instant (recovery
//! relies on it), and nothing is acknowledged or made visible before its sync
//! returned. After any write or sync error the log is poisoned for good.

use std::sync::{Arc, Mutex};

use crate::completion::Completer;
use crate::error::{Rejection, Result, WalError};
use crate::format::{
    self, COMMIT_FRAME_LEN, CommitMarker, HARD_STATE_PAYLOAD_LEN, MAX_INDEX, RecordKind,
    SEGMENT_HEADER_LEN, SegmentHeader,
};
use crate::hard_state_file::HardStateFile;
use crate::index::{Change, Location};
use crate::preparer::delete_segments;
use crate::recovery::ActiveSegment;
use crate::shared::{Operation, Request, SegmentFile, SegmentSlot, Shared, prepare_segment};
use crate::{Appended, HardState, SegmentPreparation};

/// The log as it will be once the records encoded so far are durable.
struct Tentative {
    first_index: u64,
    prev_term: u64,
    last_index: u64,
    last_term: u64,
    hard_state: HardState,
    /// Terms of entries encoded in this batch, from `batch_start` on. Entries below
    /// `batch_start` are unchanged from the published view.
    batch_start: u64,
    batch_terms: Vec<u64>,
}

/// How a validated operation is encoded.
enum Plan {
    Append {
        truncate_from: Option<u64>,
    },
    Compact {
        first_index: u64,
        term: u64,
    },
    Install {
        discard: bool,
        index: u64,
        term: u64,
    },
    /// No log record: the hard-state file's catching-up mark is cleared with the
    /// group.
    ClearCatchingUp,
}

pub(crate) struct Writer {
    shared: Arc<Shared>,
    active: ActiveSegment,
    next_segment_id: u64,
    /// The group being built: encoded bytes (with room for the header if the active
    /// segment is not yet activated), its changes and its waiters.
    buffer: Vec<u8>,
    group_start: u64,
    group_records: u64,
    changes: Vec<Change>,
    waiters: Vec<(Completer<Appended>, Appended)>,
    compacted_to: Option<u64>,
    /// A segment prepared before open (used first in inline preparation mode).
    prepared: Option<Arc<SegmentFile>>,
    /// Term and vote kept apart from the log, synced with every group that changes
    /// them, so that losing the log's last group never loses a vote.
    hard_state_file: HardStateFile,
    /// The current group clears the catching-up mark.
    clear_catching_up: bool,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        active: ActiveSegment,
        next_segment_id: u64,
        prepared: Option<Arc<SegmentFile>>,
        hard_state_file: HardStateFile,
    ) -> Writer {
        Writer {
            shared,
            active,
            next_segment_id,
            buffer: Vec::with_capacity(1 << 20),
            group_start: 0,
            group_records: 0,
            changes: Vec::new(),
            waiters: Vec::new(),
            compacted_to: None,
            prepared,
            hard_state_file,
            clear_catching_up: false,
        }
    }

    /// The writer thread's loop: runs until the queue is closed and drained. The
    /// writer state sits behind a mutex because a blocking `append` that finds the
    /// writer idle and the queue empty runs its own group on its own thread, saving
    /// a thread hand-off on the latency path ([`Writer::try_process_inline`]).
    pub(crate) fn run(writer: Arc<Mutex<Writer>>, shared: Arc<Shared>) {
        let _guard = WriterExit(Arc::clone(&shared));
        let mut batch = Vec::new();
        loop {
            {
                let mut queue = shared.queue();
                while queue.requests.is_empty() && !queue.closed {
                    queue = shared
                        .queue_ready
                        .wait(queue)
                        .unwrap_or_else(|p| p.into_inner());
                }
                if queue.requests.is_empty() {
                    return;
                }
            }
            // Lock order: writer state, then queue.
            let Ok(mut state) = writer.lock() else {
                // A caller panicked mid-group: the state cannot be trusted.
                shared.poison_with(&WalError::Closed);
                return;
            };
            std::mem::swap(&mut batch, &mut shared.queue().requests);
            state.process(&mut batch);
        }
    }

    /// Runs `request` as its own group on the calling thread if the writer is idle
    /// and nothing is queued (which would have to go first); otherwise gives the
    /// request back.
    pub(crate) fn try_process_inline(writer: &Mutex<Writer>, request: Request) -> Option<Request> {
        let Ok(mut state) = writer.try_lock() else {
            return Some(request);
        };
        {
            let queue = state.shared.queue();
            if !queue.requests.is_empty() || queue.closed {
                return Some(request);
            }
        }
        state.process(&mut vec![request]);
        None
    }

    fn process(&mut self, batch: &mut Vec<Request>) {
        if let Some(error) = self.shared.poison_error() {
            for request in batch.drain(..) {
                request.done.complete(Err(error.clone()));
            }
            return;
        }
        let mut tentative = {
            let view = self.shared.view();
            Tentative {
                first_index: view.index.first_index(),
                prev_term: view.index.prev_term(),
                last_index: view.index.last_index(),
                last_term: view.index.last_term(),
                hard_state: view.index.hard_state(),
                batch_start: view.index.last_index() + 1,
                batch_terms: Vec::new(),
            }
        };
        self.start_group();
        let capacity =
            self.shared.segment_size_bytes - SEGMENT_HEADER_LEN as u64 - COMMIT_FRAME_LEN as u64;
        let mut requests = batch.drain(..);
        while let Some(request) = requests.next() {
            let plan = match self.validate(&request.operation, &tentative) {
                Ok(plan) => plan,
                Err(error) => {
                    // Dropped first: a refused staged snapshot's file is gone by the
                    // time the caller learns of the refusal.
                    let Request { operation, done } = request;
                    drop(operation);
                    done.complete(Err(error));
                    continue;
                }
            };
            let size = encoded_size(&request.operation, &plan) as u64;
            if size > capacity {
                request.done.complete(Err(WalError::TooLarge {
                    size_bytes: size,
                    segment_size_bytes: self.shared.segment_size_bytes,
                }));
                continue;
            }
            let end = self.group_start + self.buffer.len() as u64 + size + COMMIT_FRAME_LEN as u64;
            if end > self.shared.segment_size_bytes {
                // This group is full: make it durable, then move to the next segment.
                if let Err(error) = self.flush_group(&tentative).and_then(|()| self.rotate()) {
                    self.fail_all(error, request, requests);
                    return;
                }
                self.start_group();
            }
            if let Operation::InstallStaged(staged) = &request.operation
                && let Err(error) = staged.promote()
            {
                // The snapshot becomes the latest before the log records that align
                // the log with it; a crash in between is repaired at open.
                self.fail_all(error, request, requests);
                return;
            }
            self.encode(&request.operation, &plan, &mut tentative);
            let outcome = Appended {
                last_index: tentative.last_index,
                last_term: tentative.last_term,
            };
            self.waiters.push((request.done, outcome));
        }
        if let Err(error) = self.flush_group(&tentative) {
            self.fail_all(error, None, std::iter::empty());
        }
    }

    /// Poisons the log and fails the current group, `current` and `rest`.
    fn fail_all(
        &mut self,
        error: WalError,
        current: impl Into<Option<Request>>,
        rest: impl Iterator<Item = Request>,
    ) {
        self.shared.poison_with(&error);
        for (done, _) in self.waiters.drain(..) {
            done.complete(Err(error.clone()));
        }
        if let Some(request) = current.into() {
            request.done.complete(Err(error.clone()));
        }
        let poisoned = self.shared.poison_error().expect("just poisoned");
        for request in rest {
            request.done.complete(Err(poisoned.clone()));
        }
        // Everything still queued fails too; later submissions see the poison.
        let queued = std::mem::take(&mut self.shared.queue().requests);
        for request in queued {
            request.done.complete(Err(poisoned.clone()));
        }
    }

    fn start_group(&mut self) {
        self.clear_catching_up = false;
        self.buffer.clear();
        self.changes.clear();
        self.group_records = 0;
        self.compacted_to = None;
        if self.active.activated {
            self.group_start = self.active.write_offset;
        } else {
            // The first group of a segment rewrites the header in the same write.
            self.group_start = 0;
            self.buffer.resize(SEGMENT_HEADER_LEN, 0);
        }
    }

    fn term_at(&self, tentative: &Tentative, index: u64) -> Option<u64> {
        if index > tentative.last_index || index + 1 < tentative.first_index {
            return None;
        }
        if index + 1 == tentative.first_index {
            return Some(tentative.prev_term);
        }
        if index >= tentative.batch_start {
            return tentative
                .batch_terms
                .get((index - tentative.batch_start) as usize)
                .copied();
        }
        self.shared.view().index.term(index)
    }

    /// Plans installing a snapshot through `index` (of `term`) once its own checks
    /// passed: refused if the log already starts after it. §7: the entries after
    /// the snapshot are kept if the log agrees with it at its index; otherwise the
    /// whole log is discarded.
    fn plan_install(&self, tentative: &Tentative, index: u64, term: u64) -> Result<Plan> {
        if index + 1 < tentative.first_index {
            return Err(WalError::Rejected {
                reason: Rejection::StaleSnapshot {
                    index,
                    current_index: tentative.first_index - 1,
                },
            });
        }
        let discard = self.term_at(tentative, index) != Some(term);
        Ok(Plan::Install {
            discard,
            index,
            term,
        })
    }

    fn validate(&self, operation: &Operation, tentative: &Tentative) -> Result<Plan> {
        let reject = |reason| Err(WalError::Rejected { reason });
        let index = match operation {
            Operation::Append(unit) => unit.entries.last().map_or(0, |entry| entry.index),
            &Operation::Compact { first_index } => first_index,
            &Operation::InstallSnapshot { index, .. } => index + 1,
            Operation::InstallStaged(staged) => staged.meta().index.saturating_add(1),
            Operation::ClearCatchingUp => 0,
        };
        if index > MAX_INDEX {
            return reject(Rejection::IndexOutOfRange { index });
        }
        match operation {
            Operation::ClearCatchingUp => Ok(Plan::ClearCatchingUp),
            Operation::InstallStaged(staged) => {
                let (index, term) = (staged.meta().index, staged.meta().term);
                let latest = self.shared.snapshot().as_ref().map_or(0, |meta| meta.index);
                if latest >= index {
                    return reject(Rejection::StaleSnapshot {
                        index,
                        current_index: latest,
                    });
                }
                self.plan_install(tentative, index, term)
            }
            Operation::Append(unit) => {
                let mut truncate_from = None;
                let mut last_index = tentative.last_index;
                if let Some(first) = unit.entries.first() {
                    if first.index < tentative.first_index {
                        return reject(Rejection::BeforeFirstIndex {
                            index: first.index,
                            first_index: tentative.first_index,
                        });
                    }
                    if first.index > tentative.last_index + 1 {
                        return reject(Rejection::Gap {
                            first: first.index,
                            last_index: tentative.last_index,
                        });
                    }
                    if first.index <= tentative.last_index {
                        if first.index <= tentative.hard_state.commit {
                            return reject(Rejection::TruncatesCommitted {
                                index: first.index,
                                commit: tentative.hard_state.commit,
                            });
                        }
                        truncate_from = Some(first.index);
                    }
                    let mut previous_term = self.term_at(tentative, first.index - 1).unwrap_or(0);
                    let mut previous_index = first.index - 1;
                    for entry in &unit.entries {
                        if entry.index != previous_index + 1 {
                            return reject(Rejection::NotContiguous {
                                previous: previous_index,
                                found: entry.index,
                            });
                        }
                        if entry.term < previous_term {
                            return reject(Rejection::TermRegression {
                                index: entry.index,
                                term: entry.term,
                                previous_term,
                            });
                        }
                        previous_term = entry.term;
                        previous_index = entry.index;
                    }
                    last_index = previous_index;
                }
                if let Some(state) = &unit.hard_state {
                    let current = tentative.hard_state;
                    if state.term < current.term || state.commit < current.commit {
                        return reject(Rejection::HardStateRegression);
                    }
                    if state.term == current.term && current.vote != 0 && state.vote != current.vote
                    {
                        return reject(Rejection::VoteChanged { term: state.term });
                    }
                    if state.commit > last_index {
                        return reject(Rejection::CommitBeyondLastIndex {
                            commit: state.commit,
                            last_index,
                        });
                    }
                }
                Ok(Plan::Append { truncate_from })
            }
            &Operation::Compact { first_index } => {
                let snapshot_index = self.shared.snapshot().as_ref().map_or(0, |meta| meta.index);
                if first_index < tentative.first_index {
                    return reject(Rejection::BeforeFirstIndex {
                        index: first_index,
                        first_index: tentative.first_index,
                    });
                }
                if first_index > tentative.last_index + 1 {
                    return reject(Rejection::Gap {
                        first: first_index,
                        last_index: tentative.last_index,
                    });
                }
                if first_index > snapshot_index + 1 {
                    return reject(Rejection::CompactionBeyondSnapshot {
                        first_index,
                        snapshot_index,
                    });
                }
                let term = self
                    .term_at(tentative, first_index - 1)
                    .expect("term inside the log");
                Ok(Plan::Compact { first_index, term })
            }
            &Operation::InstallSnapshot { index, term } => {
                let durable = self.shared.snapshot().as_ref().map_or(0, |meta| meta.index);
                if durable < index {
                    return reject(Rejection::CompactionBeyondSnapshot {
                        first_index: index + 1,
                        snapshot_index: durable,
                    });
                }
                self.plan_install(tentative, index, term)
            }
        }
    }

    fn frame(&mut self, kind: RecordKind, index: u64, term: u64, payload: &[u8]) -> u64 {
        let offset = self.group_start + self.buffer.len() as u64;
        format::encode_frame(
            &mut self.buffer,
            self.active.file.salt,
            kind,
            index,
            term,
            payload,
        );
        self.group_records += 1;
        offset
    }

    fn encode(&mut self, operation: &Operation, plan: &Plan, tentative: &mut Tentative) {
        match (operation, plan) {
            (Operation::Append(unit), &Plan::Append { truncate_from }) => {
                if let Some(index) = truncate_from {
                    self.frame(RecordKind::Truncate, index, 0, &[]);
                    self.changes.push(Change::Truncate { index });
                    self.truncate(index, tentative);
                }
                for entry in &unit.entries {
                    let offset =
                        self.frame(RecordKind::Entry, entry.index, entry.term, &entry.payload);
                    self.changes.push(Change::Entry {
                        index: entry.index,
                        location: Location {
                            segment_id: self.active.file.id,
                            offset,
                            term: entry.term,
                            payload_len: entry.payload.len() as u32,
                        },
                    });
                    tentative.push(entry.index, entry.term);
                }
                if let Some(state) = unit.hard_state {
                    self.hard_state(state, tentative);
                }
            }
            (_, &Plan::Compact { first_index, term }) => {
                self.compact(first_index, term, tentative);
            }
            (
                _,
                &Plan::Install {
                    discard,
                    index,
                    term,
                },
            ) => {
                if discard && tentative.last_index >= tentative.first_index {
                    let from = tentative.first_index;
                    self.frame(RecordKind::Truncate, from, 0, &[]);
                    self.changes.push(Change::Truncate { index: from });
                    self.truncate(from, tentative);
                }
                self.compact(index + 1, term, tentative);
                // The snapshot holds committed state up to `index`. A discarded log
                // ends at `index`, so no commit index above it may stand.
                let commit = if discard {
                    index
                } else {
                    tentative.hard_state.commit.max(index)
                };
                if tentative.hard_state.commit != commit {
                    let state = HardState {
                        commit,
                        ..tentative.hard_state
                    };
                    self.hard_state(state, tentative);
                }
            }
            (_, Plan::ClearCatchingUp) => self.clear_catching_up = true,
            (_, Plan::Append { .. }) => unreachable!("plans match their operations"),
        }
    }

    fn truncate(&self, index: u64, tentative: &mut Tentative) {
        if index < tentative.batch_start {
            tentative.batch_terms.clear();
            tentative.batch_start = index;
        } else {
            tentative
                .batch_terms
                .truncate((index - tentative.batch_start) as usize);
        }
        tentative.last_index = index - 1;
        tentative.last_term = self
            .term_at(tentative, index - 1)
            .expect("term of the entry before a truncation");
    }

    fn hard_state(&mut self, state: HardState, tentative: &mut Tentative) {
        self.frame(
            RecordKind::HardState,
            0,
            0,
            &format::encode_hard_state(&state),
        );
        self.changes.push(Change::HardState(state));
        tentative.hard_state = state;
    }

    /// A compaction record, followed by the current hard state so that deleting
    /// older segments never deletes the newest hard-state record.
    fn compact(&mut self, first_index: u64, term: u64, tentative: &mut Tentative) {
        self.frame(RecordKind::Compact, first_index, term, &[]);
        self.changes.push(Change::Compact {
            index: first_index,
            term,
        });
        tentative.compact(first_index, term);
        let state = tentative.hard_state;
        self.hard_state(state, tentative);
        self.compacted_to = Some(first_index);
    }

    /// Writes and syncs the current group, then publishes and acknowledges it.
    fn flush_group(&mut self, tentative: &Tentative) -> Result<()> {
        if self.group_records == 0 {
            self.persist_hard_state_file(tentative.hard_state)?;
            for (done, _) in self.waiters.drain(..) {
                // Units with nothing to write (no entries, no hard state).
                let outcome = Appended {
                    last_index: tentative.last_index,
                    last_term: tentative.last_term,
                };
                done.complete(Ok(outcome));
            }
            return Ok(());
        }
        let file = Arc::clone(&self.active.file);
        let marker = CommitMarker {
            group_start: self.group_start,
            record_count: self.group_records,
            segment_id: file.id,
        };
        format::encode_frame(
            &mut self.buffer,
            file.salt,
            RecordKind::Commit,
            tentative.last_index,
            tentative.last_term,
            &marker.encode(),
        );
        if !self.active.activated {
            let header = SegmentHeader {
                salt: file.salt,
                segment_id: file.id,
                first_index: self.header_first_index(),
            };
            self.buffer[..SEGMENT_HEADER_LEN].copy_from_slice(&header.encode());
        }
        let io_error = |error| WalError::io(&file.path, error);
        file.file
            .write_all_at(&self.buffer, self.group_start)
            .map_err(io_error)?;
        file.file.sync_data().map_err(io_error)?;
        self.persist_hard_state_file(tentative.hard_state)?;
        self.active.write_offset = self.group_start + self.buffer.len() as u64;
        self.active.activated = true;
        let entries = self
            .changes
            .iter()
            .filter(|c| matches!(c, Change::Entry { .. }))
            .count() as u64;
        {
            let mut view = self.shared.view_mut();
            let mut max_entry = 0;
            for change in self.changes.drain(..) {
                if let Change::Entry { index, .. } = change {
                    max_entry = index;
                }
                view.index.apply(change).expect("validated changes apply");
            }
            let slot = view
                .segments
                .get_mut(&file.id)
                .expect("active segment is listed");
            slot.max_entry_index = slot.max_entry_index.max(max_entry);
        }
        let counters = &self.shared.counters;
        counters
            .groups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        counters
            .syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        counters
            .entries
            .fetch_add(entries, std::sync::atomic::Ordering::Relaxed);
        counters.bytes.fetch_add(
            self.buffer.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        if let Some(first_index) = self.compacted_to.take() {
            // Inline mode deletes before acknowledging, which keeps the order of I/O
            // deterministic for crash-point tests; background mode hands it off.
            self.delete_compacted(first_index)?;
        }
        let capacity = self.waiters.len();
        let waiters = std::mem::replace(&mut self.waiters, Vec::with_capacity(capacity));
        crate::acknowledger::acknowledge(&self.shared, waiters);
        self.buffer.clear();
        self.group_records = 0;
        Ok(())
    }

    /// Brings the hard-state file up to `state`'s term and vote (and clears the
    /// catching-up mark if asked). §5.2: a vote must outlive the log group that
    /// recorded it. Called after the group's sync (so the file is never ahead of an
    /// intact log) and before anything is published or acknowledged; groups that
    /// change neither term nor vote cost nothing here.
    fn persist_hard_state_file(&mut self, state: HardState) -> Result<()> {
        let mut catching_up_after = self.hard_state_file.current().catching_up_after;
        if std::mem::take(&mut self.clear_catching_up) {
            catching_up_after = None;
        }
        if self
            .hard_state_file
            .differs(state.term, state.vote, catching_up_after)
        {
            self.hard_state_file
                .write(state.term, state.vote, catching_up_after)?;
            self.shared
                .counters
                .syncs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            *self.shared.catching_up_after() = catching_up_after;
        }
        Ok(())
    }

    /// The first index named in a segment's header: the published last index + 1
    /// before this group (the group's own records come after it).
    fn header_first_index(&self) -> u64 {
        self.shared.view().index.last_index() + 1
    }

    /// Drops whole segments that lie before `first_index` from the table, oldest
    /// first, and deletes their files (on the preparer thread in background mode).
    fn delete_compacted(&mut self, first_index: u64) -> Result<()> {
        let mut paths = Vec::new();
        {
            let mut view = self.shared.view_mut();
            while let Some((&id, slot)) = view.segments.first_key_value() {
                if id == self.active.file.id || slot.max_entry_index >= first_index {
                    break;
                }
                paths.push(slot.file.path.clone());
                view.segments.remove(&id);
            }
        }
        if paths.is_empty() {
            return Ok(());
        }
        match self.shared.preparation {
            SegmentPreparation::Background => {
                self.shared.preparer().deletions.extend(paths);
                self.shared.preparer_ready.notify_all();
                Ok(())
            }
            SegmentPreparation::Inline => delete_segments(&self.shared, &paths),
        }
    }

    /// Seals the active segment and switches to the next one, which is prepared
    /// (created, zero-filled, header written, synced, named, directory synced).
    fn rotate(&mut self) -> Result<()> {
        let next = match self.shared.preparation {
            SegmentPreparation::Inline if self.prepared.is_some() => {
                self.prepared.take().expect("checked")
            }
            SegmentPreparation::Inline => prepare_segment(
                self.shared.storage.as_ref(),
                &self.shared.wal_dir,
                self.next_segment_id,
                self.shared.segment_size_bytes,
            )?,
            SegmentPreparation::Background => self.take_prepared()?,
        };
        assert_eq!(next.id, self.next_segment_id, "segments are used in order");
        {
            let mut view = self.shared.view_mut();
            if let Some(slot) = view.segments.get_mut(&self.active.file.id) {
                slot.sealed = true;
            }
            view.segments.insert(
                next.id,
                SegmentSlot {
                    file: Arc::clone(&next),
                    sealed: false,
                    max_entry_index: 0,
                },
            );
        }
        self.active = ActiveSegment {
            file: next,
            write_offset: SEGMENT_HEADER_LEN as u64,
            activated: false,
        };
        self.next_segment_id += 1;
        if self.shared.preparation == SegmentPreparation::Background {
            self.shared.preparer().wanted = Some(self.next_segment_id);
            self.shared.preparer_ready.notify_all();
        }
        Ok(())
    }

    fn take_prepared(&mut self) -> Result<Arc<SegmentFile>> {
        let mut state = self.shared.preparer();
        loop {
            if let Some(ready) = state.ready.take() {
                return ready;
            }
            state = self
                .shared
                .preparer_ready
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Tentative {
    fn push(&mut self, index: u64, term: u64) {
        assert_eq!(
            index,
            self.last_index + 1,
            "validated entries are contiguous"
        );
        if self.batch_terms.is_empty() {
            self.batch_start = index;
        }
        self.batch_terms.push(term);
        self.last_index = index;
        self.last_term = term;
    }

    fn compact(&mut self, first_index: u64, term: u64) {
        if first_index > self.last_index + 1 {
            self.last_index = first_index - 1;
            self.last_term = term;
            self.batch_terms.clear();
            self.batch_start = first_index;
        }
        self.first_index = first_index;
        self.prev_term = term;
    }
}

/// Encoded size of an operation's records (commit marker excluded).
fn encoded_size(operation: &Operation, plan: &Plan) -> usize {
    let hard_state = format::frame_len(HARD_STATE_PAYLOAD_LEN);
    let bare = format::frame_len(0);
    match (operation, plan) {
        (Operation::Append(unit), Plan::Append { truncate_from }) => {
            let entries: usize = unit
                .entries
                .iter()
                .map(|entry| format::frame_len(entry.payload.len()))
                .sum();
            entries
                + usize::from(truncate_from.is_some()) * bare
                + usize::from(unit.hard_state.is_some()) * hard_state
        }
        (_, Plan::Compact { .. }) => bare + hard_state,
        (_, Plan::Install { .. }) => 2 * bare + 2 * hard_state,
        (_, Plan::ClearCatchingUp) => 0,
        _ => unreachable!("plans match their operations"),
    }
}

/// Runs when the writer thread ends, normally or by panic: nothing queued may wait
/// forever, and a writer that died mid-group leaves the log poisoned.
struct WriterExit(Arc<Shared>);

impl Drop for WriterExit {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poison_with(&WalError::Closed);
        }
        let pending = {
            let mut queue = self.0.queue();
            queue.closed = true;
            std::mem::take(&mut queue.requests)
        };
        for request in pending {
            request.done.complete(Err(WalError::Closed));
        }
    }
}
