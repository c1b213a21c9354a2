//! What a leader knows about each follower's log, and the flow control that decides
//! when to send it more (after etcd raft's progress tracking):
//!
//! - `Probe`: the leader does not know where the follower's log matches; it sends one
//!   append and waits for the answer (or the next heartbeat answer) before the next.
//! - `Replicate`: the logs match through `match_index`; the leader streams appends
//!   optimistically, up to a window of `max_inflight_appends` unacknowledged ones.
//! - `Snapshot`: the follower needs a snapshot; appends are paused.

use std::collections::VecDeque;

use crate::types::{LogIndex, Monotonic};

/// The replication state of one follower.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProgressState {
    /// Finding where the logs match, one append per round trip.
    Probe,
    /// Streaming appends, many in flight.
    Replicate,
    /// Waiting for a snapshot to be installed.
    Snapshot,
}

/// A leader's view of one member's log.
#[derive(Clone, Debug)]
pub(crate) struct Progress {
    /// The highest index known to match the leader's log (and be durable there).
    pub(crate) match_index: LogIndex,
    /// The index of the next entry to send.
    pub(crate) next_index: LogIndex,
    pub(crate) state: ProgressState,
    /// In `Probe`, whether an append was sent and not yet answered.
    pub(crate) probe_sent: bool,
    /// Whether the member was heard from since the last check-quorum round.
    pub(crate) recent_active: bool,
    /// The send time of the newest heartbeat round of this term the member answered
    /// (lease reads): it heard from the leader no earlier than that.
    pub(crate) lease_acked_at: Option<Monotonic>,
    /// In `Replicate`, the last index of each unacknowledged append, oldest first.
    pub(crate) inflights: Inflights,
    /// In `Snapshot`, the index of the snapshot sent, and when (leader ticks).
    pub(crate) pending_snapshot: LogIndex,
    pub(crate) snapshot_sent_tick: u64,
}

impl Progress {
    pub(crate) fn new(next_index: LogIndex, max_inflight: usize) -> Progress {
        Progress {
            match_index: LogIndex(0),
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            recent_active: false,
            lease_acked_at: None,
            inflights: Inflights::new(max_inflight),
            pending_snapshot: LogIndex(0),
            snapshot_sent_tick: 0,
        }
    }

    pub(crate) fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.next_index = self.match_index.next();
        self.inflights.clear();
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.probe_sent = false;
        self.next_index = self.match_index.next();
        self.inflights.clear();
    }

    /// The member needs the snapshot through `index`, sent at leader tick `now`.
    pub(crate) fn become_snapshot(&mut self, index: LogIndex, now: u64) {
        self.state = ProgressState::Snapshot;
        self.probe_sent = false;
        self.inflights.clear();
        self.pending_snapshot = index;
        self.snapshot_sent_tick = now;
    }

    /// The member lost entries it had acknowledged: nothing is known to match any
    /// more. Probe it from `next_index` on. (The commit index a quorum of the old
    /// match indexes produced stays: it never goes back.)
    pub(crate) fn forget_match(&mut self, next_index: LogIndex) {
        self.match_index = LogIndex(0);
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflights.clear();
        self.next_index = next_index.max(LogIndex(1));
    }

    /// Whether the leader must hold back appends to this member for now.
    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.is_full(),
            ProgressState::Snapshot => true,
        }
    }

    /// Records that an append ending at `last_index` (carrying `entry_count` entries)
    /// was sent.
    pub(crate) fn sent_append(&mut self, last_index: LogIndex, entry_count: usize) {
        match self.state {
            ProgressState::Replicate => {
                if entry_count > 0 {
                    self.next_index = last_index.next();
                    self.inflights.add(last_index);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => {}
        }
    }

    /// An accepted append says the logs match through `index`. Returns whether that
    /// was news (not a stale or duplicated answer).
    pub(crate) fn maybe_update(&mut self, index: LogIndex) -> bool {
        let updated = index > self.match_index;
        if updated {
            self.match_index = index;
            self.probe_sent = false;
        }
        if index >= self.next_index {
            self.next_index = index.next();
        }
        updated
    }

    /// A rejected append of `rejected_index`; `probe_from` is where the follower's
    /// hint says the logs may match. Returns false if the rejection is stale.
    pub(crate) fn maybe_decrease_to(
        &mut self,
        rejected_index: LogIndex,
        probe_from: LogIndex,
    ) -> bool {
        if self.state == ProgressState::Replicate {
            // In replicate, a rejection at or below the match index is from an old
            // append that was overtaken; anything else means the window broke.
            if rejected_index <= self.match_index {
                return false;
            }
            self.next_index = self.match_index.next();
            return true;
        }
        // In probe, only the answer to the append in flight counts.
        if self.next_index.prev() != rejected_index {
            return false;
        }
        self.next_index = probe_from
            .next()
            .min(rejected_index)
            .max(self.match_index.next());
        self.probe_sent = false;
        true
    }
}

/// A bounded window of in-flight appends, remembered by their last index.
#[derive(Clone, Debug)]
pub(crate) struct Inflights {
    last_indexes: VecDeque<LogIndex>,
    capacity: usize,
}

impl Inflights {
    pub(crate) fn new(capacity: usize) -> Inflights {
        Inflights {
            last_indexes: VecDeque::new(),
            capacity,
        }
    }

    pub(crate) fn add(&mut self, last_index: LogIndex) {
        assert!(!self.is_full(), "inflight window overflow");
        self.last_indexes.push_back(last_index);
    }

    /// Forgets every append that ended at or before `index` (acknowledged).
    pub(crate) fn free_up_to(&mut self, index: LogIndex) {
        while self.last_indexes.front().is_some_and(|&last| last <= index) {
            self.last_indexes.pop_front();
        }
    }

    /// Forgets the oldest append, so that one more may be sent (after a heartbeat
    /// answer shows the member is alive while the window is full).
    pub(crate) fn free_first(&mut self) {
        self.last_indexes.pop_front();
    }

    pub(crate) fn is_full(&self) -> bool {
        self.last_indexes.len() >= self.capacity
    }

    pub(crate) fn len(&self) -> usize {
        self.last_indexes.len()
    }

    pub(crate) fn clear(&mut self) {
        self.last_indexes.clear();
    }
}
