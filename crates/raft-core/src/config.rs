//! A node's configuration: its id, timing in ticks (and the lease, in microseconds of
//! the monotonic clock), flow-control limits and the seed of its randomness.
//! Validated once, when the node is created.

use crate::error::Error;
#[cfg(doc)]
use crate::types::Monotonic;
use crate::types::{LogIndex, NodeId};

/// How a node behaves. Build one with [`Config::new`] and adjust fields.
#[derive(Clone, Debug)]
pub struct Config {
    /// This member's id.
    pub id: NodeId,
    /// Lower bound (inclusive) of the randomized election timeout, in ticks.
    pub election_timeout_ticks_min: u32,
    /// Upper bound (exclusive) of the randomized election timeout, in ticks.
    pub election_timeout_ticks_max: u32,
    /// A leader sends heartbeats every this many ticks. Must be below the election
    /// timeout's lower bound.
    pub heartbeat_interval_ticks: u32,
    /// Run a pre-vote round before a real election (§9.6 of Ongaro's thesis), so a
    /// member that was cut off and rejoins does not depose a healthy leader.
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout steps
    /// down; followers that heard from a leader within one ignore vote requests.
    pub check_quorum: bool,
    /// How long a quorum's acknowledgement of a heartbeat round lets a leader serve
    /// [`ReadMode::Lease`](crate::ReadMode::Lease) reads without a new round, in
    /// microseconds of the [`Monotonic`] clock, counted from the round's *send* time.
    ///
    /// Safe only below the real time a follower waits, after hearing from the leader,
    /// before it will vote for someone else: `election_timeout_ticks_min` ticks
    /// (minus one tick, since the first tick may come at once), less the clock drift
    /// between members. The driver sets it from its tick length; half the minimum
    /// election timeout is the usual choice. The default, 500 ms, is half of 10
    /// ticks of 100 ms.
    pub lease_duration_micros: u64,
    /// Upper bound on the entry bytes of one AppendEntries (at least one entry is sent
    /// even if it alone is larger).
    pub max_append_bytes: u64,
    /// How many appends may be in flight to one follower in the replicate state.
    pub max_inflight_appends: usize,
    /// Upper bound on the entry bytes handed out for applying in one ready.
    pub max_apply_bytes: u64,
    /// The index the application has already applied (after a restart, the index of
    /// its state); committed entries after it are handed out again.
    pub applied_index: LogIndex,
    /// Seed of the node's randomness (election timeouts).
    pub seed: u64,
    /// A number no earlier process of this member used: the driver picks a new one
    /// at every process start (a random `u64`, or a durable counter). Reads this
    /// member forwards to its leader carry it, so that an answer addressed to an
    /// earlier process (the transport may deliver one after a restart) is not taken
    /// for the answer to a new read with the same request id.
    pub incarnation: u64,
    /// Deliberately broken protocol rules, to prove that the simulator catches them.
    /// Always [`Mutation::None`] outside such tests.
    #[doc(hidden)]
    pub mutation: Mutation,
}

/// A deliberately broken protocol rule (the simulator's "teeth" tests). Never set
/// anything but `None` in a real deployment.
#[doc(hidden)]
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Mutation {
    /// The protocol as specified.
    #[default]
    None,
    /// Commit entries of earlier terms by counting replicas (breaks §5.4.2).
    CommitPriorTermByCount,
    /// Grant votes without the up-to-date check (breaks §5.4.1).
    VoteWithoutLogCheck,
    /// Serve ReadIndex reads at once, without the quorum round (breaks §6.4).
    ReadWithoutQuorum,
    /// Start as if the store never reported a lost log tail (breaks the vote of a
    /// member that lost acknowledged entries, FAST'18).
    IgnoreLostEntries,
}

impl Config {
    /// A configuration with etcd-like defaults: election timeout of 10–20 ticks,
    /// heartbeat every 2 ticks, pre-vote and check-quorum on.
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_timeout_ticks_min: 10,
            election_timeout_ticks_max: 20,
            heartbeat_interval_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            lease_duration_micros: 500_000,
            max_append_bytes: 1024 * 1024,
            max_inflight_appends: 256,
            max_apply_bytes: 16 * 1024 * 1024,
            applied_index: LogIndex(0),
            seed: id.0,
            incarnation: 0,
            mutation: Mutation::None,
        }
    }

    /// Checks the configuration, naming the first bad field.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: &'static str| Err(Error::InvalidConfig { reason });
        if self.id.0 == 0 {
            return invalid("id must not be 0");
        }
        if self.heartbeat_interval_ticks == 0 {
            return invalid("heartbeat_interval_ticks must be at least 1");
        }
        if self.election_timeout_ticks_min <= self.heartbeat_interval_ticks {
            return invalid("election_timeout_ticks_min must exceed heartbeat_interval_ticks");
        }
        if self.election_timeout_ticks_max <= self.election_timeout_ticks_min {
            return invalid("election_timeout_ticks_max must exceed election_timeout_ticks_min");
        }
        if self.max_inflight_appends == 0 {
            return invalid("max_inflight_appends must be at least 1");
        }
        if self.max_append_bytes == 0 {
            return invalid("max_append_bytes must be at least 1");
        }
        if self.max_apply_bytes == 0 {
            return invalid("max_apply_bytes must be at least 1");
        }
        Ok(())
    }
}
