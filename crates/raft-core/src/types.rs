//! Newtypes for the protocol's numbers, and the log entry. Bare `u64`s for terms,
//! indexes, member ids and clock readings are easy to mix up; these make the
//! compiler catch it.

use std::fmt;

use bytes::Bytes;

use crate::membership::Membership;

/// The id of a cluster member. Ids are chosen by the operator and never reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct NodeId(pub u64);

/// A Raft term (§5.1): a logical clock that only grows.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Term(pub u64);

/// A position in the replicated log. The first entry has index 1; index 0 is the
/// empty log (and, after compaction, the index of the snapshot).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct LogIndex(pub u64);

/// A reading of the driver's monotonic clock, in microseconds since an arbitrary
/// origin (the driver converts its `Instant`s against one fixed starting point).
///
/// raft-core never reads a clock: time arrives through [`Node::tick`](crate::Node::tick)
/// and [`Node::read_index`](crate::Node::read_index). The clock must keep running while
/// the process is paused (a suspended process must come back to a later reading, not
/// the one it had), which is what makes lease reads safe across a pause; tick counts
/// stop with the process and cannot measure that.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Monotonic(pub u64);

impl Monotonic {
    /// The reading `micros` microseconds after the origin.
    pub fn from_micros(micros: u64) -> Monotonic {
        Monotonic(micros)
    }

    /// Microseconds since the origin.
    pub fn as_micros(self) -> u64 {
        self.0
    }

    /// The reading `micros` microseconds later (saturating: a clock at the end of
    /// its range stays there).
    pub fn plus_micros(self, micros: u64) -> Monotonic {
        Monotonic(self.0.saturating_add(micros))
    }
}

impl NodeId {
    /// The id as a plain number (for codecs and metrics labels).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl Term {
    /// The term that follows this one.
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

impl LogIndex {
    /// The index after this one.
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    /// The index before this one; index 0 stays 0.
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }

    /// This index moved forward by `n` positions.
    pub fn plus(self, n: u64) -> LogIndex {
        LogIndex(self.0 + n)
    }

    /// How many indexes lie from `earlier` up to this one (0 if `earlier` is later).
    pub fn distance_from(self, earlier: LogIndex) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The identity of one log position as written in one term. Two entries with the
/// same id hold the same payload and are preceded by identical logs (§5.3, Log
/// Matching), so an id is how acknowledgements name what they cover.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct EntryId {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// The entry's position in the log.
    pub index: LogIndex,
}

/// What an entry carries.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum EntryPayload {
    /// The empty entry a new leader appends at the start of its term, so that entries
    /// of earlier terms become committed through it (§5.4.2, §8).
    Empty,
    /// An application command, opaque to the protocol.
    Command(Bytes),
    /// A configuration change (§6): `membership` takes effect on each member when it
    /// learns the entry is committed. `context` is opaque application data that
    /// travels with it (raft-server puts the members' addresses there).
    Membership {
        /// The configuration in effect once the entry is committed.
        membership: Membership,
        /// Application data describing the change.
        context: Bytes,
    },
}

/// One entry of the replicated log.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Entry {
    /// The term of the leader that created the entry.
    pub term: Term,
    /// The entry's position in the log.
    pub index: LogIndex,
    /// What the entry carries.
    pub payload: EntryPayload,
}

impl Entry {
    /// The entry's (term, index) identity.
    pub fn id(&self) -> EntryId {
        EntryId {
            term: self.term,
            index: self.index,
        }
    }

    /// The size used for byte limits on messages and apply batches: the payload plus a
    /// fixed allowance for the term, index and framing.
    pub fn size_bytes(&self) -> u64 {
        const HEADER_BYTES: u64 = 24;
        let payload = match &self.payload {
            EntryPayload::Empty => 0,
            EntryPayload::Command(data) => data.len() as u64,
            EntryPayload::Membership {
                membership,
                context,
            } => {
                8 * membership.members().len() as u64
                    + 8 * membership.voters_outgoing.len() as u64
                    + context.len() as u64
            }
        };
        HEADER_BYTES + payload
    }
}
