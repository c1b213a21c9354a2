//! Helpers shared by the integration tests: opening logs on the faulty backend,
//! building entries, and reading a whole log back for comparison.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use raft_wal::storage::FaultyStorage;
use raft_wal::{AppendUnit, Entry, HardState, SegmentPreparation, Wal, WalOptions};

/// The data directory used on the faulty backend.
pub(crate) fn data_dir() -> PathBuf {
    PathBuf::from("/data")
}

/// Small segments so that a few appends rotate, prepared inline for determinism.
pub(crate) fn small_options() -> WalOptions {
    WalOptions {
        segment_size_bytes: 1024,
        segment_preparation: SegmentPreparation::Inline,
    }
}

pub(crate) fn open(storage: &FaultyStorage, options: WalOptions) -> raft_wal::Result<Wal> {
    Wal::open_with(Arc::new(storage.clone()), data_dir(), options)
}

/// A recognisable payload for (index, term), never containing long zero runs.
pub(crate) fn payload(index: u64, term: u64, len: usize) -> Bytes {
    let seed = index.wrapping_mul(31).wrapping_add(term.wrapping_mul(7)) as u8;
    Bytes::from(
        (0..len)
            .map(|i| seed.wrapping_add(i as u8) | 1)
            .collect::<Vec<u8>>(),
    )
}

pub(crate) fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        payload: payload(index, term, 40),
    }
}

pub(crate) fn unit(
    range: std::ops::RangeInclusive<u64>,
    term: u64,
    hard_state: Option<HardState>,
) -> AppendUnit {
    AppendUnit {
        hard_state,
        entries: range.map(|index| entry(index, term)).collect(),
    }
}

/// Everything observable about a log, for comparing with a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    pub(crate) first_index: u64,
    pub(crate) last_index: u64,
    pub(crate) prev_term: u64,
    pub(crate) entries: Vec<(u64, u64, Bytes)>,
    pub(crate) hard_state: HardState,
    pub(crate) snapshot_index: u64,
}

pub(crate) fn observe(wal: &Wal) -> Observed {
    let first_index = wal.first_index();
    let last_index = wal.last_index();
    let entries = wal
        .entries(first_index, last_index + 1, u64::MAX)
        .expect("read whole log")
        .into_iter()
        .map(|entry| (entry.index, entry.term, entry.payload))
        .collect();
    Observed {
        first_index,
        last_index,
        prev_term: wal.term(first_index - 1).expect("term before first"),
        entries,
        hard_state: wal.hard_state(),
        snapshot_index: wal.latest_snapshot().map_or(0, |meta| meta.index),
    }
}

/// Segment file paths on the faulty backend, oldest first.
pub(crate) fn segment_files(storage: &FaultyStorage) -> Vec<PathBuf> {
    let wal_dir = data_dir().join("wal");
    storage
        .files()
        .into_iter()
        .filter(|path| {
            path.parent() == Some(Path::new(&wal_dir))
                && path.extension().is_some_and(|e| e == "seg")
        })
        .collect()
}

/// A reference model of the log: what it must contain after each operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModelLog {
    pub(crate) first_index: u64,
    pub(crate) prev_term: u64,
    /// Entries from `first_index` on: (term, payload).
    pub(crate) entries: Vec<(u64, Bytes)>,
    pub(crate) hard_state: HardState,
    pub(crate) snapshot_index: u64,
    /// Term of the latest snapshot's last entry.
    pub(crate) snapshot_term: u64,
}

impl Default for ModelLog {
    fn default() -> ModelLog {
        ModelLog {
            first_index: 1,
            prev_term: 0,
            entries: Vec::new(),
            hard_state: HardState::default(),
            snapshot_index: 0,
            snapshot_term: 0,
        }
    }
}

impl ModelLog {
    pub(crate) fn last_index(&self) -> u64 {
        self.first_index + self.entries.len() as u64 - 1
    }

    pub(crate) fn term(&self, index: u64) -> Option<u64> {
        if index + 1 == self.first_index {
            return Some(self.prev_term);
        }
        let offset = index.checked_sub(self.first_index)? as usize;
        self.entries.get(offset).map(|(term, _)| *term)
    }

    /// Applies a unit the log accepted.
    pub(crate) fn append(&mut self, unit: &AppendUnit) {
        if let Some(first) = unit.entries.first() {
            self.entries
                .truncate((first.index - self.first_index) as usize);
            for entry in &unit.entries {
                self.entries.push((entry.term, entry.payload.clone()));
            }
        }
        if let Some(state) = unit.hard_state {
            self.hard_state = state;
        }
    }

    pub(crate) fn compact(&mut self, first_index: u64) {
        let term = self
            .term(first_index - 1)
            .expect("compaction inside the log");
        self.entries
            .drain(..(first_index - self.first_index) as usize);
        self.first_index = first_index;
        self.prev_term = term;
    }

    /// A durable snapshot became the latest.
    pub(crate) fn take_snapshot(&mut self, index: u64, term: u64) {
        self.snapshot_index = index;
        self.snapshot_term = term;
    }

    pub(crate) fn install(&mut self, index: u64, term: u64) {
        if self.term(index) == Some(term) {
            self.compact(index + 1);
            self.hard_state.commit = self.hard_state.commit.max(index);
        } else {
            // The whole log is discarded; no commit index may stand above it.
            self.entries.clear();
            self.first_index = index + 1;
            self.prev_term = term;
            self.hard_state.commit = index;
        }
    }

    /// The state an open recovers from this one: the open-time install rule
    /// installs a latest snapshot that the log does not match.
    pub(crate) fn reopened(&self) -> ModelLog {
        let mut model = self.clone();
        if model.snapshot_index > 0 && model.term(model.snapshot_index) != Some(model.snapshot_term)
        {
            model.install(model.snapshot_index, model.snapshot_term);
        }
        model
    }

    pub(crate) fn observed(&self) -> Observed {
        Observed {
            first_index: self.first_index,
            last_index: self.last_index(),
            prev_term: self.prev_term,
            entries: self
                .entries
                .iter()
                .enumerate()
                .map(|(offset, (term, payload))| {
                    (self.first_index + offset as u64, *term, payload.clone())
                })
                .collect(),
            hard_state: self.hard_state,
            snapshot_index: self.snapshot_index,
        }
    }
}
