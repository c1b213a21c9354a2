//! The one output value of a node, split by consumer: what to make durable (and the
//! messages that may leave only after that), what to send now, what to apply, and
//! how proposals ended.

use crate::message::Message;
use crate::read_only::ReadState;
use crate::storage::{HardState, SnapshotMeta};
use crate::types::{Entry, EntryId, LogIndex};

/// Everything the driver must do since the last [`Node::ready`](crate::Node::ready).
/// More fields may be added (snapshots), so match it with `..`.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Ready {
    /// Messages to send now, in any order, before or while persisting.
    pub messages: Vec<Message>,
    /// State to make durable. Persist batches must complete in the order they were
    /// handed out; after each, send its messages and call
    /// [`Node::on_persisted`](crate::Node::on_persisted) with its `ack`.
    pub persist: Option<Persist>,
    /// Committed entries to apply to the state machine, in order; afterwards call
    /// [`Node::on_applied`](crate::Node::on_applied) with the last index.
    pub committed_entries: Vec<Entry>,
    /// How earlier proposals ended. Each proposal is reported exactly once.
    pub proposal_outcomes: Vec<ProposalOutcome>,
    /// Answers to [`Node::read_index`](crate::Node::read_index) requests.
    pub read_states: Vec<ReadState>,
}

impl Ready {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.persist.is_none()
            && self.committed_entries.is_empty()
            && self.proposal_outcomes.is_empty()
            && self.read_states.is_empty()
    }
}

/// One batch to make durable, atomically: the hard state (if it changed) and the
/// entries. The entries replace any stored entries from the first one's index on.
#[derive(Debug)]
pub struct Persist {
    /// A snapshot received from the leader, to install before anything else in this
    /// batch: restore the state machine from its data and replace the stored log by
    /// it (see [`MemoryLogStore::install_snapshot`](crate::MemoryLogStore::install_snapshot)).
    pub snapshot: Option<SnapshotMeta>,
    /// The new hard state, if it changed.
    pub hard_state: Option<HardState>,
    /// Entries to append; the first may overwrite a conflicting stored suffix.
    pub entries: Vec<Entry>,
    /// Messages that may be sent only once this batch (and every earlier one) is
    /// durable: votes, and answers to appends.
    pub messages: Vec<Message>,
    /// What to hand back to [`Node::on_persisted`](crate::Node::on_persisted).
    pub ack: PersistAck,
}

/// The acknowledgement of one [`Persist`] batch. It names the write itself, by its
/// sequence number: the node knows which entries each write in flight still holds
/// (a later write that cut the log below them replaced them), so a late
/// acknowledgement never vouches for entries another write put back at the same
/// (term, index) positions (the model is etcd's storage-append responses, which
/// name the write they answer).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PersistAck {
    /// The batch's sequence number: grows by one with every batch handed out.
    pub sequence: u64,
    /// The index of the snapshot the batch installed, if it carried one.
    pub snapshot_index: Option<LogIndex>,
    /// The hard state the batch made durable, if it carried one.
    pub hard_state: Option<HardState>,
    /// The last entry the batch wrote, if it carried entries (for the driver's
    /// logs and metrics; the node goes by `sequence`).
    pub last_entry: Option<EntryId>,
}

/// How a proposal ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ProposalOutcome {
    /// The proposal, as returned by [`Node::propose`](crate::Node::propose).
    pub proposal: EntryId,
    /// Whether it is committed.
    pub result: ProposalResult,
}

/// The two ends of a proposal.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProposalResult {
    /// Committed at the proposal's index: it will be applied.
    Committed,
    /// The index was taken by another leader's entry: it will never be applied.
    Dropped,
    /// This member replaced its log by a snapshot that covers the index, and the
    /// snapshot does not tell which entry was committed there (it would if its last
    /// entry were of the proposal's term: then the proposal is reported committed).
    /// The caller must find out another way (for example by reading what the
    /// command would have written).
    Unknown,
}
