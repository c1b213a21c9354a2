//! The in-memory index of the log: for every live entry, where its frame lives and
//! its term, plus the first index and the hard state. Recovery and the writer change
//! it through one function, [`LogIndex::apply`], so a replayed log and a live log
//! obey the same rules.

use std::collections::VecDeque;

use crate::HardState;

/// Where an entry's frame lives on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) segment_id: u64,
    /// Offset of the frame header inside the segment file.
    pub(crate) offset: u64,
    pub(crate) term: u64,
    pub(crate) payload_len: u32,
}

/// One change to the log, as recorded in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Appends the entry `index`, which must be `last_index + 1`.
    Entry { index: u64, location: Location },
    /// Removes entries `>= index`; `first_index <= index <= last_index + 1`.
    Truncate { index: u64 },
    /// Removes entries `< index`; `index >= first_index`. If `index` lies past the last
    /// entry the log becomes empty and continues after `index - 1`, whose term is
    /// `term`.
    Compact { index: u64, term: u64 },
    /// Replaces the hard state.
    HardState(HardState),
}

/// A change that does not fit the log it is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutOfSequence;

/// The live entries `first_index..=last_index` and where each one is stored.
#[derive(Debug, Clone)]
pub(crate) struct LogIndex {
    first_index: u64,
    /// Term of `first_index - 1` (0 when `first_index == 1`).
    prev_term: u64,
    entries: VecDeque<Location>,
    hard_state: HardState,
}

impl LogIndex {
    /// An empty log whose next entry will be `first_index`.
    pub(crate) fn new(first_index: u64, prev_term: u64) -> LogIndex {
        assert!(first_index >= 1, "log indexes start at 1");
        LogIndex {
            first_index,
            prev_term,
            entries: VecDeque::new(),
            hard_state: HardState::default(),
        }
    }

    pub(crate) fn first_index(&self) -> u64 {
        self.first_index
    }

    pub(crate) fn last_index(&self) -> u64 {
        self.first_index - 1 + self.entries.len() as u64
    }

    pub(crate) fn prev_term(&self) -> u64 {
        self.prev_term
    }

    pub(crate) fn last_term(&self) -> u64 {
        self.entries
            .back()
            .map_or(self.prev_term, |location| location.term)
    }

    pub(crate) fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The term of `index`, for `first_index - 1 ..= last_index`.
    pub(crate) fn term(&self, index: u64) -> Option<u64> {
        if index + 1 == self.first_index {
            return Some(self.prev_term);
        }
        self.location(index).map(|location| location.term)
    }

    /// Where entry `index` is stored, for `first_index ..= last_index`.
    pub(crate) fn location(&self, index: u64) -> Option<Location> {
        let offset = index.checked_sub(self.first_index)?;
        self.entries.get(usize::try_from(offset).ok()?).copied()
    }

    /// Applies one recorded change, or reports that it does not fit.
    pub(crate) fn apply(&mut self, change: Change) -> Result<(), OutOfSequence> {
        match change {
            Change::Entry { index, location } => {
                if index != self.last_index() + 1 {
                    return Err(OutOfSequence);
                }
                self.entries.push_back(location);
            }
            Change::Truncate { index } => {
                if index < self.first_index || index > self.last_index() + 1 {
                    return Err(OutOfSequence);
                }
                self.entries.truncate((index - self.first_index) as usize);
            }
            Change::Compact { index, term } => {
                if index < self.first_index {
                    return Err(OutOfSequence);
                }
                if index > self.last_index() + 1 {
                    self.entries.clear();
                } else {
                    self.entries.drain(..(index - self.first_index) as usize);
                }
                self.first_index = index;
                self.prev_term = term;
            }
            Change::HardState(state) => self.hard_state = state,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(term: u64) -> Location {
        Location {
            segment_id: 1,
            offset: 0,
            term,
            payload_len: 0,
        }
    }

    #[test]
    fn truncate_and_compact_follow_the_rules() {
        let mut log = LogIndex::new(1, 0);
        for index in 1..=5 {
            log.apply(Change::Entry {
                index,
                location: at(1),
            })
            .unwrap();
        }
        assert_eq!(
            log.apply(Change::Entry {
                index: 7,
                location: at(1)
            }),
            Err(OutOfSequence)
        );
        log.apply(Change::Truncate { index: 4 }).unwrap();
        assert_eq!(log.last_index(), 3);
        log.apply(Change::Compact { index: 3, term: 1 }).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (3, 3));
        assert_eq!(log.term(2), Some(1));
        assert_eq!(log.apply(Change::Truncate { index: 2 }), Err(OutOfSequence));
        log.apply(Change::Compact { index: 10, term: 4 }).unwrap();
        assert_eq!(
            (log.first_index(), log.last_index(), log.last_term()),
            (10, 9, 4)
        );
    }
}
