//! A deterministic cluster simulator for raft-core. One `u64` seed drives everything:
//! message drop, duplication, delay and reordering, symmetric and one-way partitions,
//! crashes that lose whatever was not yet acknowledged durable, restarts, and client
//! proposals, and stalls (a member paused like SIGSTOP: its clock runs on while it
//! gets no ticks, messages or disk completions). After every step it checks the
//! safety invariants of Raft (Figure 3 of the paper) plus this implementation's own
//! promises, linearizable reads included; a failing seed replays exactly.
//!
//! Shared by the `simulate` example and the integration tests (included by path, so
//! the simulator never ships in the library).

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;

use bytes::Bytes;
use raft_core::{
    Config, Entry, EntryId, EntryPayload, HardState, LogIndex, LogStore, Membership,
    MembershipChange, MemoryLogStore, Message, Monotonic, Mutation, Node, NodeId, Persist,
    ProposalResult, ReadMode, ReadState, Role, SnapshotMeta, Term,
};
use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// Time units per tick. Messages and disk writes take a few units.
pub const TICK: u64 = 10;

/// Microseconds of the members' monotonic clock per time unit (a tick is 10 ms).
pub const UNIT_MICROS: u64 = 1000;

/// How hostile the environment is. All probabilities are per mille.
#[derive(Clone, Debug)]
pub struct Faults {
    /// Chance a message is lost.
    pub drop_per_mille: u64,
    /// Chance a message is delivered twice.
    pub duplicate_per_mille: u64,
    /// Shortest and longest usual message delay, in time units.
    pub delay_units: (u64, u64),
    /// Chance a message is held back much longer (reordering past later messages).
    pub long_delay_per_mille: u64,
    /// Longest such hold-back, in time units.
    pub long_delay_units: u64,
    /// Longest disk write, in time units.
    pub disk_delay_units: u64,
    /// Per tick: chance of a new partition (symmetric or one-way).
    pub partition_per_mille: u64,
    /// Per tick: chance that all partitions heal.
    pub heal_per_mille: u64,
    /// Per tick: chance a running member crashes.
    pub crash_per_mille: u64,
    /// Per tick: chance a crashed member restarts.
    pub restart_per_mille: u64,
    /// Per tick: chance of a burst of client proposals.
    pub propose_per_mille: u64,
    /// Per tick: chance of a burst of linearizable reads at random members.
    pub read_per_mille: u64,
    /// Per tick: chance the leader is asked to hand leadership to a random voter.
    pub transfer_per_mille: u64,
    /// Per tick: chance the leader is asked for a membership change (add a spare as
    /// learner, promote a learner, remove a member).
    pub membership_per_mille: u64,
    /// Per tick: chance a random member snapshots and compacts its log.
    pub snapshot_per_mille: u64,
    /// Per tick: chance a running member (the leader, half the time) is stalled for
    /// one to four election timeouts.
    pub stall_per_mille: u64,
    /// Per restart: chance the member's last acknowledged write is lost (a torn
    /// last group the WAL cuts off at open), all but the term and vote, which live
    /// in a separate durable record. The member restarts flagged as possibly having
    /// lost entries. Only while no other member is so flagged: a majority of
    /// flagged members cannot elect a leader by design.
    pub lose_last_write_per_mille: u64,
    /// Per snapshot received from a leader: chance the member crashes at once, after
    /// the snapshot arrived but before its install was handed out and made durable
    /// (raftd's window between staging a received snapshot and installing it). On
    /// restart nothing of that snapshot remains.
    pub crash_after_snapshot_receive_per_mille: u64,
}

impl Faults {
    /// A perfect network and disk, with client load.
    pub fn none() -> Faults {
        Faults {
            drop_per_mille: 0,
            duplicate_per_mille: 0,
            delay_units: (1, 5),
            long_delay_per_mille: 0,
            long_delay_units: 0,
            disk_delay_units: 3,
            partition_per_mille: 0,
            heal_per_mille: 0,
            crash_per_mille: 0,
            restart_per_mille: 0,
            propose_per_mille: 0,
            read_per_mille: 0,
            transfer_per_mille: 0,
            membership_per_mille: 0,
            snapshot_per_mille: 0,
            stall_per_mille: 0,
            lose_last_write_per_mille: 0,
            crash_after_snapshot_receive_per_mille: 0,
        }
    }

    /// The default chaos of the `simulate` runs.
    pub fn chaos() -> Faults {
        Faults {
            drop_per_mille: 50,
            duplicate_per_mille: 20,
            delay_units: (1, 15),
            long_delay_per_mille: 20,
            long_delay_units: 200,
            disk_delay_units: 8,
            partition_per_mille: 15,
            heal_per_mille: 25,
            crash_per_mille: 8,
            restart_per_mille: 40,
            propose_per_mille: 300,
            read_per_mille: 200,
            transfer_per_mille: 10,
            membership_per_mille: 15,
            snapshot_per_mille: 60,
            stall_per_mille: 8,
            lose_last_write_per_mille: 300,
            crash_after_snapshot_receive_per_mille: 150,
        }
    }

    /// The 6.824 "unreliable" network: 10% loss and short delays.
    pub fn unreliable() -> Faults {
        Faults {
            drop_per_mille: 100,
            delay_units: (1, 27),
            ..Faults::none()
        }
    }
}

#[derive(Clone, Debug)]
enum Event {
    Tick(usize),
    /// A message, with the snapshot data beside it for `InstallSnapshot`.
    Deliver(Message, Option<Vec<Entry>>),
    DiskDone {
        node: usize,
        incarnation: u64,
    },
    /// A stalled member runs again.
    Resume {
        node: usize,
        incarnation: u64,
    },
}

struct SimNode {
    id: NodeId,
    node: Option<Node<MemoryLogStore>>,
    store: MemoryLogStore,
    incarnation: u64,
    disk: VecDeque<Persist>,
    /// The node's log as it was handed out for persisting (durable or not).
    shadow: Vec<Entry>,
    /// Entries applied in this incarnation.
    applied: Vec<Entry>,
    last_term: Term,
    last_commit: LogIndex,
    last_applied: LogIndex,
    was_leader_in: Option<Term>,
    /// The durable snapshot's data: the entries it covers (the state machine).
    snapshot_data: Vec<Entry>,
    /// Snapshot data received with `InstallSnapshot` messages, by snapshot index.
    incoming_snapshots: BTreeMap<LogIndex, Vec<Entry>>,
    /// While stalled: the time it runs again. Its ticks are skipped, and messages
    /// and disk completions wait (in the socket buffer, in the kernel) until then.
    stalled_until: Option<u64>,
    /// How to undo the last completed write (to lose it at a restart); `None` after
    /// a snapshot install or a compaction, which a lost write cannot cross.
    last_write: Option<UndoWrite>,
}

/// What the store held before one write: the entries it replaced and the hard state.
#[derive(Clone, Debug)]
struct UndoWrite {
    /// The index of the write's first entry, if it carried entries.
    first: Option<LogIndex>,
    /// The stored entries from `first` on that the write replaced.
    replaced: Vec<Entry>,
    hard_state: HardState,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum ProposalState {
    Pending(EntryPayload),
    Committed(EntryPayload),
    Dropped(EntryPayload),
    /// The proposer's log was replaced by a snapshot covering it.
    Unknown(EntryPayload),
}

/// One simulated cluster.
pub struct Cluster {
    pub seed: u64,
    rng: Pcg64Mcg,
    pub now: u64,
    seq: u64,
    events: BTreeMap<(u64, u64), Event>,
    nodes: Vec<SimNode>,
    pub faults: Faults,
    /// Links (from, to) that drop everything.
    cut: BTreeSet<(usize, usize)>,
    chaos: bool,
    mutation: Mutation,
    tune: fn(&mut Config),
    // Invariant state.
    leaders: BTreeMap<Term, NodeId>,
    entry_ids: BTreeMap<(LogIndex, Term), (Term, EntryPayload)>,
    committed: Vec<Entry>,
    /// For each committed entry, the term of the member that first reported it
    /// committed: the entry was committed in that term or an earlier one.
    committed_in: Vec<Term>,
    applied: Vec<Entry>,
    proposals: BTreeMap<EntryId, ProposalState>,
    next_command: u64,
    /// The configuration the cluster was started with.
    initial_membership: Membership,
    /// Snapshots taken by members (log compactions).
    pub snapshots_taken: u64,
    /// Snapshots installed by followers from their leader.
    pub snapshots_installed: u64,
    /// Every member that was ever added (ids are never reused).
    ever_members: BTreeSet<NodeId>,
    /// The highest index of a proposal acknowledged committed so far.
    acknowledged_index: LogIndex,
    /// Reads in flight: request id to (member, highest acknowledged index at start).
    reads: BTreeMap<u64, (usize, LogIndex)>,
    next_read: u64,
    /// Reads answered with an index, and answered with "retry".
    pub reads_served: u64,
    pub reads_retried: u64,
    /// Restarts that lost the member's last acknowledged write.
    pub writes_lost: u64,
    /// Members crashed between receiving a snapshot and installing it.
    pub snapshot_receive_crashes: u64,
    /// Members stalled, and lease reads answered with an index.
    pub stalls: u64,
    pub lease_reads_served: u64,
    /// Lease reads in flight (request ids).
    lease_reads: BTreeSet<u64>,
    /// Every violation found, in order. Empty means the run was safe.
    pub violations: Vec<String>,
    /// Events processed.
    pub steps: u64,
    /// Messages handed to the network.
    pub messages_sent: u64,
    /// Entry payload bytes carried by appends.
    pub append_bytes_sent: u64,
    /// Messages handed to the network, by kind ([`raft_core::MessageBody::kind`]).
    pub sent_by_kind: BTreeMap<&'static str, u64>,
}

impl Cluster {
    /// A cluster of `size` voters, all starting empty, on a perfect network.
    pub fn new(size: usize, seed: u64) -> Cluster {
        Cluster::with_mutation(size, seed, Mutation::None)
    }

    /// Like [`Cluster::new`], with a deliberately broken rule in every node.
    pub fn with_mutation(size: usize, seed: u64, mutation: Mutation) -> Cluster {
        Cluster::with_tuning(size, seed, mutation, |_| {})
    }

    /// Like [`Cluster::with_mutation`], with `tune` applied to every member's
    /// configuration (at every start).
    pub fn with_tuning(
        size: usize,
        seed: u64,
        mutation: Mutation,
        tune: fn(&mut Config),
    ) -> Cluster {
        Cluster::with_spares(size, 0, seed, mutation, tune)
    }

    /// A cluster of `voters` initial voters plus `spares` members that start empty,
    /// outside the configuration, and can be added by membership changes.
    pub fn with_spares(
        voters: usize,
        spares: usize,
        seed: u64,
        mutation: Mutation,
        tune: fn(&mut Config),
    ) -> Cluster {
        let size = voters + spares;
        let initial = Membership::with_voters((1..=voters as u64).map(NodeId));
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let mut nodes = Vec::new();
        let mut events = BTreeMap::new();
        for i in 0..size {
            let membership = if i < voters {
                initial.clone()
            } else {
                Membership::default()
            };
            let store = MemoryLogStore::new(membership);
            let id = NodeId(i as u64 + 1);
            nodes.push(SimNode {
                id,
                node: None,
                store,
                incarnation: 0,
                disk: VecDeque::new(),
                shadow: Vec::new(),
                applied: Vec::new(),
                last_term: Term(0),
                last_commit: LogIndex(0),
                last_applied: LogIndex(0),
                was_leader_in: None,
                snapshot_data: Vec::new(),
                incoming_snapshots: BTreeMap::new(),
                stalled_until: None,
                last_write: None,
            });
            // Ticks are staggered so members do not move in lockstep.
            events.insert((rng.next_u64() % TICK, i as u64), Event::Tick(i));
        }
        let mut cluster = Cluster {
            seed,
            rng,
            now: 0,
            seq: size as u64,
            events,
            nodes,
            faults: Faults::none(),
            cut: BTreeSet::new(),
            chaos: false,
            mutation,
            tune,
            leaders: BTreeMap::new(),
            entry_ids: BTreeMap::new(),
            committed: Vec::new(),
            committed_in: Vec::new(),
            applied: Vec::new(),
            proposals: BTreeMap::new(),
            next_command: 0,
            ever_members: BTreeSet::new(),
            initial_membership: initial.clone(),
            snapshots_taken: 0,
            snapshots_installed: 0,
            acknowledged_index: LogIndex(0),
            reads: BTreeMap::new(),
            next_read: 0,
            reads_served: 0,
            reads_retried: 0,
            writes_lost: 0,
            snapshot_receive_crashes: 0,
            stalls: 0,
            lease_reads_served: 0,
            lease_reads: BTreeSet::new(),
            violations: Vec::new(),
            steps: 0,
            messages_sent: 0,
            append_bytes_sent: 0,
            sent_by_kind: BTreeMap::new(),
        };
        for i in 0..size {
            cluster.start_node(i);
        }
        cluster
    }

    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    fn start_node(&mut self, i: usize) {
        let sim = &mut self.nodes[i];
        sim.incarnation += 1;
        let mut config = Config::new(sim.id);
        config.seed = self
            .seed
            .wrapping_mul(1_000_003)
            .wrapping_add(sim.id.0 * 7919 + sim.incarnation);
        config.mutation = self.mutation;
        config.incarnation = sim.incarnation;
        (self.tune)(&mut config);
        // The lease is half the shortest election timeout, in clock time.
        config.lease_duration_micros =
            u64::from(config.election_timeout_ticks_min) * TICK * UNIT_MICROS / 2;
        config.max_inflight_appends = 16;
        config.max_append_bytes = 4096;
        config.applied_index = LogIndex(sim.snapshot_data.len() as u64);
        let node = Node::new(config, sim.store.clone()).expect("valid configuration");
        sim.shadow = sim.snapshot_data.clone();
        sim.shadow.extend(sim.store.all_entries());
        sim.applied = sim.snapshot_data.clone();
        sim.incoming_snapshots.clear();
        sim.last_term = node.term();
        sim.last_commit = LogIndex(0);
        sim.last_applied = LogIndex(0);
        sim.was_leader_in = None;
        sim.disk.clear();
        sim.stalled_until = None;
        sim.node = Some(node);
    }

    /// The members' monotonic clock now (all run at the same rate).
    pub fn clock(&self) -> Monotonic {
        Monotonic(self.now * UNIT_MICROS)
    }

    /// Whether node `i` is stalled now.
    pub fn is_stalled(&self, i: usize) -> bool {
        self.nodes[i].stalled_until.is_some()
    }

    /// Stalls node `i` for `units` time units, like SIGSTOP: its clock keeps running,
    /// but it gets no ticks, and messages and disk completions for it wait.
    pub fn stall(&mut self, i: usize, units: u64) {
        if self.nodes[i].node.is_none() || self.nodes[i].stalled_until.is_some() {
            return;
        }
        let until = self.now + units;
        self.nodes[i].stalled_until = Some(until);
        self.stalls += 1;
        let incarnation = self.nodes[i].incarnation;
        self.schedule(
            until,
            Event::Resume {
                node: i,
                incarnation,
            },
        );
    }

    /// Turns random faults and client load on or off.
    pub fn set_chaos(&mut self, on: bool) {
        self.chaos = on;
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.events.insert((at, self.seq), event);
    }

    fn chance(&mut self, per_mille: u64) -> bool {
        per_mille > 0 && self.rng.next_u64() % 1000 < per_mille
    }

    fn range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            low
        } else {
            low + self.rng.next_u64() % (high - low + 1)
        }
    }

    /// Processes one event. Returns false if there was none.
    pub fn step(&mut self) -> bool {
        let Some(((at, _), event)) = self.events.pop_first() else {
            return false;
        };
        self.now = at;
        self.steps += 1;
        let touched = match event {
            Event::Tick(i) => {
                self.schedule(self.now + TICK, Event::Tick(i));
                if i == 0 && self.chaos {
                    self.chaos_tick();
                }
                let now = self.clock();
                let stalled = self.nodes[i].stalled_until.is_some();
                match self.nodes[i].node.as_mut() {
                    Some(_) if stalled => None,
                    Some(node) => {
                        if let Err(e) = node.tick(now) {
                            self.violation(format!("node {} tick failed: {e}", i + 1));
                        }
                        Some(i)
                    }
                    None => None,
                }
            }
            Event::Deliver(message, snapshot_data) => {
                let to = message.to.0 as usize - 1;
                let from = message.from.0 as usize - 1;
                if let Some(until) = self.nodes[to].stalled_until {
                    // Waits in the stalled member's socket buffer.
                    self.schedule(until + 1, Event::Deliver(message, snapshot_data));
                    None
                } else if self.cut.contains(&(from, to)) {
                    None
                } else {
                    let is_snapshot = snapshot_data.is_some();
                    if let Some(data) = snapshot_data {
                        self.nodes[to]
                            .incoming_snapshots
                            .insert(LogIndex(data.len() as u64), data);
                    }
                    let stepped = match self.nodes[to].node.as_mut() {
                        Some(node) => node.step(message).map(|()| true),
                        None => Ok(false),
                    };
                    match stepped {
                        Err(e) => {
                            self.violation(format!("node {} rejected a message: {e}", to + 1));
                            Some(to)
                        }
                        Ok(false) => None,
                        Ok(true)
                            if is_snapshot
                                && self
                                    .chance(self.faults.crash_after_snapshot_receive_per_mille) =>
                        {
                            self.crash(to);
                            self.snapshot_receive_crashes += 1;
                            None
                        }
                        Ok(true) => Some(to),
                    }
                }
            }
            Event::DiskDone {
                node: i,
                incarnation,
            } if self.nodes[i].stalled_until.is_some() => {
                let until = self.nodes[i].stalled_until.unwrap_or(self.now);
                self.schedule(
                    until + 1,
                    Event::DiskDone {
                        node: i,
                        incarnation,
                    },
                );
                None
            }
            Event::Resume {
                node: i,
                incarnation,
            } => {
                if self.nodes[i].incarnation == incarnation && self.nodes[i].stalled_until.is_some()
                {
                    self.nodes[i].stalled_until = None;
                    // The first thing a resumed leader may do is serve a lease read,
                    // before any tick or message tells it time has passed.
                    if self.is_leader(i) {
                        self.read(i, ReadMode::Lease);
                    }
                    Some(i)
                } else {
                    None
                }
            }
            Event::DiskDone {
                node: i,
                incarnation,
            } => {
                if self.nodes[i].incarnation == incarnation && self.nodes[i].node.is_some() {
                    self.complete_write(i);
                    Some(i)
                } else {
                    None
                }
            }
        };
        if let Some(i) = touched {
            self.drain(i);
        }
        self.check_invariants();
        true
    }

    /// Runs for `ticks` ticks of simulated time.
    pub fn run_ticks(&mut self, ticks: u64) {
        self.run_units(ticks * TICK);
    }

    /// Runs for `units` time units (a tick is [`TICK`] units).
    pub fn run_units(&mut self, units: u64) {
        let until = self.now + units;
        while self
            .events
            .first_key_value()
            .is_some_and(|((at, _), _)| *at <= until)
        {
            self.step();
        }
        self.now = until;
    }

    fn complete_write(&mut self, i: usize) {
        let sim = &mut self.nodes[i];
        let persist = sim.disk.pop_front().expect("a write was in flight");
        sim.last_write = if persist.snapshot.is_some() {
            None
        } else {
            let first = persist.entries.first().map(|e| e.index);
            let replaced = match first {
                Some(first) if first <= sim.store.last_index() => sim
                    .store
                    .entries(first, sim.store.last_index().next(), u64::MAX)
                    .expect("stored entries"),
                _ => Vec::new(),
            };
            Some(UndoWrite {
                first,
                replaced,
                hard_state: sim.store.hard_state(),
            })
        };
        if let Some(meta) = &persist.snapshot {
            // Install: the store takes the snapshot, the state machine its data.
            let data = sim
                .incoming_snapshots
                .get(&meta.index)
                .cloned()
                .unwrap_or_default();
            sim.store.install_snapshot(meta);
            sim.snapshot_data = data.clone();
            sim.applied = data;
            sim.incoming_snapshots
                .retain(|&index, _| index > meta.index);
            self.snapshots_installed += 1;
        }
        if let Some(hard_state) = persist.hard_state {
            sim.store.set_hard_state(hard_state);
        }
        sim.store.append(&persist.entries);
        let node = sim.node.as_mut().expect("running");
        if let Err(e) = node.on_persisted(persist.ack) {
            self.violation(format!("node {} on_persisted failed: {e}", i + 1));
        }
        if !self.nodes[i].disk.is_empty() {
            self.schedule_disk(i);
        }
        for message in persist.messages {
            self.send(message);
        }
    }

    fn schedule_disk(&mut self, i: usize) {
        let delay = self.range(1, self.faults.disk_delay_units.max(1));
        let incarnation = self.nodes[i].incarnation;
        self.schedule(
            self.now + delay,
            Event::DiskDone {
                node: i,
                incarnation,
            },
        );
    }

    fn send(&mut self, message: Message) {
        self.messages_sent += 1;
        *self.sent_by_kind.entry(message.body.kind()).or_default() += 1;
        if let raft_core::MessageBody::Append(append) = &message.body {
            self.append_bytes_sent += append.entries.iter().map(|e| e.size_bytes()).sum::<u64>();
        }
        let from = message.from.0 as usize - 1;
        let to = message.to.0 as usize - 1;
        if self.cut.contains(&(from, to)) || self.chance(self.faults.drop_per_mille) {
            return;
        }
        let snapshot_data = match &message.body {
            raft_core::MessageBody::InstallSnapshot(meta) => {
                let data = self.nodes[from].snapshot_data.clone();
                if data.len() as u64 != meta.index.0 {
                    self.violation(format!(
                        "node {} sent a snapshot it does not have: {meta:?}",
                        from + 1
                    ));
                    return;
                }
                Some(data)
            }
            _ => None,
        };
        let copies = if self.chance(self.faults.duplicate_per_mille) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = self.range(self.faults.delay_units.0, self.faults.delay_units.1);
            if self.chance(self.faults.long_delay_per_mille) {
                delay += self.range(0, self.faults.long_delay_units);
            }
            self.schedule(
                self.now + delay,
                Event::Deliver(message.clone(), snapshot_data.clone()),
            );
        }
    }

    /// Runs the driver loop of node `i` until it has nothing more to hand out.
    fn drain(&mut self, i: usize) {
        loop {
            let Some(node) = self.nodes[i].node.as_mut() else {
                return;
            };
            if !node.has_ready() {
                break;
            }
            let ready = match node.ready() {
                Ok(ready) => ready,
                Err(e) => {
                    self.violation(format!("node {} ready failed: {e}", i + 1));
                    return;
                }
            };
            for message in ready.messages {
                self.send(message);
            }
            if let Some(persist) = ready.persist {
                if let Some(meta) = &persist.snapshot {
                    self.record_snapshot_handed_out(i, meta.index);
                }
                self.record_handed_out(i, &persist.entries);
                self.nodes[i].disk.push_back(persist);
                if self.nodes[i].disk.len() == 1 {
                    self.schedule_disk(i);
                }
            }
            if let Some(last) = ready.committed_entries.last().map(|e| e.index) {
                for entry in ready.committed_entries {
                    self.record_applied(i, entry);
                }
                self.nodes[i]
                    .node
                    .as_mut()
                    .expect("running")
                    .on_applied(last);
            }
            // Update the global committed prefix before judging outcomes.
            self.record_committed(i);
            for outcome in ready.proposal_outcomes {
                self.record_outcome(i, outcome.proposal, outcome.result);
            }
            for read in ready.read_states {
                self.record_read(i, read);
            }
        }
        // The driver clears the durable flag once the node is caught up.
        let caught_up = self.nodes[i]
            .node
            .as_ref()
            .is_some_and(|n| !n.status().catching_up);
        if caught_up && self.store_flagged(i) {
            self.nodes[i].store.set_log_may_have_lost_entries(false);
        }
    }

    /// A follower replaces its log by a leader's snapshot: its data must be exactly the
    /// committed prefix.
    fn record_snapshot_handed_out(&mut self, i: usize, index: LogIndex) {
        let Some(data) = self.nodes[i].incoming_snapshots.get(&index).cloned() else {
            self.violation(format!(
                "node {} installs snapshot {index} it never received",
                i + 1
            ));
            return;
        };
        let n = data.len();
        if n > self.committed.len() || self.committed[..n] != data[..] {
            self.violation(format!(
                "node {} installs snapshot {index} that is not the committed prefix",
                i + 1
            ));
        }
        self.nodes[i].shadow = data;
    }

    /// Node `i` snapshots its state machine at its applied index and compacts its log.
    pub fn compact(&mut self, i: usize) {
        let sim = &self.nodes[i];
        let Some(node) = sim.node.as_ref().filter(|_| sim.stalled_until.is_none()) else {
            return;
        };
        let index = sim.applied.len();
        if index <= sim.snapshot_data.len() || index as u64 > node.status().persisted_index.0 {
            return;
        }
        let term = sim.applied[index - 1].term;
        let membership = sim
            .applied
            .iter()
            .rev()
            .find_map(|e| match &e.payload {
                EntryPayload::Membership { membership, .. } => Some(membership.clone()),
                _ => None,
            })
            .unwrap_or_else(|| self.initial_membership.clone());
        let meta = SnapshotMeta {
            index: LogIndex(index as u64),
            term,
            membership,
        };
        let sim = &mut self.nodes[i];
        sim.store.compact(&meta);
        sim.last_write = None;
        sim.snapshot_data = sim.applied[..index].to_vec();
        self.snapshots_taken += 1;
    }

    fn record_handed_out(&mut self, i: usize, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        let keep = first.index.0 as usize - 1;
        let shadow_len = self.nodes[i].shadow.len();
        if keep > shadow_len {
            self.violation(format!(
                "node {} persisted entry {} past its log end {}",
                i + 1,
                first.index,
                shadow_len
            ));
            return;
        }
        if keep < self.committed.len().min(shadow_len)
            && keep < self.nodes[i].last_commit.0 as usize
        {
            self.violation(format!(
                "node {} rewrote committed entry {}",
                i + 1,
                first.index
            ));
        }
        self.nodes[i].shadow.truncate(keep);
        for entry in entries {
            let prev_term = self.nodes[i].shadow.last().map_or(Term(0), |e| e.term);
            // Log Matching (§5.3): an (index, term) pair names one entry, after one
            // (index - 1, term) pair; by induction the logs before it are identical.
            let key = (entry.index, entry.term);
            match self.entry_ids.get(&key) {
                Some((expected_prev, payload)) => {
                    if *expected_prev != prev_term || *payload != entry.payload {
                        self.violation(format!(
                            "log matching: node {} has entry {}@{} differing from another member's",
                            i + 1,
                            entry.index,
                            entry.term
                        ));
                    }
                }
                None => {
                    self.entry_ids
                        .insert(key, (prev_term, entry.payload.clone()));
                }
            }
            self.nodes[i].shadow.push(entry.clone());
        }
    }

    fn record_applied(&mut self, i: usize, entry: Entry) {
        let sim = &mut self.nodes[i];
        let expected = LogIndex(sim.applied.len() as u64 + 1);
        if entry.index != expected {
            let message = format!(
                "node {} applied {} out of order (expected {})",
                i + 1,
                entry.index,
                expected
            );
            self.violation(message);
            return;
        }
        sim.applied.push(entry.clone());
        let position = entry.index.0 as usize - 1;
        // State machine safety: an index applied anywhere holds the same entry everywhere.
        if position < self.applied.len() {
            if self.applied[position] != entry {
                self.violation(format!(
                    "state machine safety: node {} applied a different entry at {}",
                    i + 1,
                    entry.index
                ));
            }
        } else {
            self.applied.push(entry.clone());
        }
        if position < self.committed.len() && self.committed[position] != entry {
            self.violation(format!(
                "node {} applied {} which differs from the committed entry",
                i + 1,
                entry.index
            ));
        }
    }

    fn record_committed(&mut self, i: usize) {
        let Some(node) = self.nodes[i].node.as_ref() else {
            return;
        };
        let status = node.status();
        let commit = status.commit_index.0 as usize;
        let shadow = &self.nodes[i].shadow;
        if commit > shadow.len() {
            let message = format!(
                "node {} commit index {commit} beyond its log ({})",
                i + 1,
                shadow.len()
            );
            self.violation(message);
            return;
        }
        let mut problems = Vec::new();
        for (position, entry) in shadow.iter().enumerate().take(commit) {
            if position < self.committed.len() {
                // Skip the prefix checked before: committed entries never change, and
                // this member's shadow below its commit index cannot be rewritten.
                if (position as u64) < self.nodes[i].last_commit.0.saturating_sub(1) {
                    continue;
                }
                if self.committed[position] != *entry {
                    problems.push(position + 1);
                }
            } else {
                self.committed.push(entry.clone());
                self.committed_in.push(status.term);
            }
        }
        for index in problems {
            self.violation(format!("committed entry {index} differs on node {}", i + 1));
        }
    }

    fn record_outcome(&mut self, i: usize, proposal: EntryId, result: ProposalResult) {
        let position = proposal.index.0 as usize - 1;
        let state = self.proposals.get(&proposal).cloned();
        let Some(ProposalState::Pending(data)) = state else {
            self.violation(format!(
                "node {} reported proposal {proposal:?} twice or unknown: {state:?}",
                i + 1
            ));
            return;
        };
        let committed_here = self
            .committed
            .get(position)
            .map(|e| e.term == proposal.term && e.payload == data);
        match (result, committed_here) {
            (ProposalResult::Committed, Some(true)) => {
                self.acknowledged_index = self.acknowledged_index.max(proposal.index);
                self.proposals.insert(proposal, ProposalState::Committed(data));
            }
            (ProposalResult::Unknown, Some(_)) => {
                self.proposals.insert(proposal, ProposalState::Unknown(data));
            }
            (ProposalResult::Dropped, Some(false)) => {
                self.proposals.insert(proposal, ProposalState::Dropped(data));
            }
            _ => self.violation(format!(
                "proposal {proposal:?} reported {result:?} but the committed entry says {committed_here:?}"
            )),
        }
    }

    /// Asks node `i` for a read index; returns the request id if it was accepted.
    pub fn read(&mut self, i: usize, mode: ReadMode) -> Option<u64> {
        self.next_read += 1;
        let request_id = self.next_read;
        if self.nodes[i].stalled_until.is_some() {
            return None; // A stopped process takes no requests.
        }
        let now = self.clock();
        let node = self.nodes[i].node.as_mut()?;
        node.read_index(request_id, mode, now).ok()?;
        self.reads.insert(request_id, (i, self.acknowledged_index));
        if mode == ReadMode::Lease {
            self.lease_reads.insert(request_id);
        }
        self.drain(i);
        self.check_invariants();
        Some(request_id)
    }

    /// Linearizable reads: a read index covers every write acknowledged before the
    /// read began, and is itself committed.
    fn record_read(&mut self, i: usize, read: ReadState) {
        let was_lease = self.lease_reads.remove(&read.request_id);
        let Some((member, acknowledged_at_start)) = self.reads.remove(&read.request_id) else {
            self.violation(format!(
                "node {} answered unknown or already answered read {}",
                i + 1,
                read.request_id
            ));
            return;
        };
        if member != i {
            self.violation(format!(
                "read {} of node {} answered on node {}",
                read.request_id,
                member + 1,
                i + 1
            ));
        }
        match read.index {
            None => self.reads_retried += 1,
            Some(index) => {
                self.reads_served += 1;
                if was_lease {
                    self.lease_reads_served += 1;
                }
                if index < acknowledged_at_start {
                    self.violation(format!(
                        "stale read: node {} read at index {index} but write {acknowledged_at_start} was acknowledged before the read began",
                        i + 1
                    ));
                }
                if index.0 as usize > self.committed.len() {
                    self.violation(format!("node {} read at uncommitted index {index}", i + 1));
                }
            }
        }
    }

    /// The members of the configuration the current leader (or, without one, the
    /// first running member) follows, as node indices.
    pub fn current_members(&self) -> Vec<usize> {
        let source = self
            .leader()
            .or_else(|| (0..self.nodes.len()).find(|&i| self.is_up(i)));
        let membership = source
            .and_then(|i| self.nodes[i].node.as_ref())
            .map(|n| n.membership().members())
            .unwrap_or_default();
        (0..self.nodes.len())
            .filter(|&i| membership.contains(&self.nodes[i].id))
            .collect()
    }

    /// Asks the leader for a random membership change: add a spare that was never a
    /// member as a learner, promote a learner, or remove a member (keeping at least
    /// three voters).
    pub fn change_membership(&mut self) {
        let Some(leader) = self.leader() else { return };
        let Some(membership) = self.nodes[leader]
            .node
            .as_ref()
            .map(|n| n.membership().clone())
        else {
            return;
        };
        let fresh: Vec<NodeId> = self
            .nodes
            .iter()
            .map(|sim| sim.id)
            .filter(|id| !membership.contains(*id) && !self.ever_members.contains(id))
            .collect();
        let learners: Vec<NodeId> = membership.learners.iter().copied().collect();
        let removable: Vec<NodeId> = membership
            .members()
            .into_iter()
            .filter(|id| membership.learners.contains(id) || membership.voters.len() > 3)
            .collect();
        let change = match self.range(0, 2) {
            0 if !fresh.is_empty() => {
                MembershipChange::AddLearner(fresh[self.range(0, fresh.len() as u64 - 1) as usize])
            }
            1 if !learners.is_empty() => MembershipChange::Promote(
                learners[self.range(0, learners.len() as u64 - 1) as usize],
            ),
            2 if !removable.is_empty() => MembershipChange::Remove(
                removable[self.range(0, removable.len() as u64 - 1) as usize],
            ),
            _ => return,
        };
        self.propose_membership(leader, change);
    }

    /// Proposes a membership change at node `i`; returns the proposal if accepted.
    pub fn propose_membership(&mut self, i: usize, change: MembershipChange) -> Option<EntryId> {
        let context = self.new_command();
        if self.nodes[i].stalled_until.is_some() {
            return None;
        }
        let node = self.nodes[i].node.as_mut()?;
        let membership = change.first_step(node.membership()).ok()?;
        let id = node
            .propose_membership_change(change.clone(), context.clone())
            .ok()?;
        if let MembershipChange::AddLearner(new) = change {
            self.ever_members.insert(new);
        }
        let payload = EntryPayload::Membership {
            membership,
            context,
        };
        self.proposals.insert(id, ProposalState::Pending(payload));
        self.drain(i);
        self.check_invariants();
        Some(id)
    }

    /// Asks the leader `i` to hand leadership to member `to`.
    pub fn transfer(&mut self, i: usize, to: usize) -> bool {
        if self.nodes[i].stalled_until.is_some() {
            return false;
        }
        let Some(node) = self.nodes[i].node.as_mut() else {
            return false;
        };
        let ok = node.transfer_leadership(NodeId(to as u64 + 1)).is_ok();
        self.drain(i);
        self.check_invariants();
        ok
    }

    fn violation(&mut self, message: String) {
        if self.violations.len() < 20 {
            self.violations
                .push(format!("t={} step={}: {message}", self.now, self.steps));
        }
    }

    fn check_invariants(&mut self) {
        for i in 0..self.nodes.len() {
            let Some(node) = self.nodes[i].node.as_ref() else {
                continue;
            };
            let status = node.status();
            let id = status.id;
            // Monotonic within an incarnation (term also across, through the store).
            if status.term < self.nodes[i].last_term {
                self.violation(format!("node {id} term went back to {}", status.term));
            }
            if status.commit_index < self.nodes[i].last_commit {
                self.violation(format!(
                    "node {id} commit index went back to {}",
                    status.commit_index
                ));
            }
            if status.applied_index < self.nodes[i].last_applied {
                self.violation(format!(
                    "node {id} applied index went back to {}",
                    status.applied_index
                ));
            }
            self.nodes[i].last_term = status.term;
            self.nodes[i].last_commit = status.commit_index;
            self.nodes[i].last_applied = status.applied_index;
            if status.role == Role::Leader {
                // Election safety: at most one leader per term.
                match self.leaders.get(&status.term) {
                    Some(&other) if other != id => {
                        self.violation(format!(
                            "two leaders in term {}: {other} and {id}",
                            status.term
                        ));
                    }
                    _ => {
                        self.leaders.insert(status.term, id);
                    }
                }
                if self.nodes[i].was_leader_in != Some(status.term) {
                    self.nodes[i].was_leader_in = Some(status.term);
                    self.check_leader_completeness(i);
                }
            }
        }
    }

    /// Leader completeness (§5.4): a new leader's log holds every entry committed in
    /// an earlier term, and with it every proposal acknowledged as committed. (A
    /// member may win an old term late, say after a stall delayed the last vote it
    /// needed; it need not hold what later terms committed.)
    fn check_leader_completeness(&mut self, i: usize) {
        let shadow = &self.nodes[i].shadow;
        let term = self.nodes[i].was_leader_in.unwrap_or_default();
        let mut missing = None;
        for (position, entry) in self.committed.iter().enumerate() {
            if self.committed_in[position] >= term {
                continue;
            }
            if shadow.get(position) != Some(entry) {
                missing = Some(position + 1);
                break;
            }
        }
        if let Some(index) = missing {
            let term = self.nodes[i].was_leader_in.unwrap_or_default();
            self.violation(format!(
                "leader completeness: leader {} of term {term} lacks committed entry {index}",
                i + 1
            ));
        }
    }

    fn chaos_tick(&mut self) {
        let n = self.nodes.len();
        if self.chance(self.faults.partition_per_mille) {
            let a = self.range(0, n as u64 - 1) as usize;
            match self.range(0, 2) {
                0 => self.isolate(a),
                1 => {
                    // One-way: `a` stops hearing from a random other member.
                    let b = (a + 1 + self.range(0, n as u64 - 2) as usize) % n;
                    self.cut.insert((b, a));
                }
                _ => {
                    // A random split into two sides.
                    let side: Vec<bool> = (0..n).map(|_| self.chance(500)).collect();
                    for x in 0..n {
                        for y in 0..n {
                            if side[x] != side[y] {
                                self.cut.insert((x, y));
                            }
                        }
                    }
                }
            }
        }
        if self.chance(self.faults.heal_per_mille) {
            self.cut.clear();
        }
        if self.chance(self.faults.crash_per_mille) {
            let a = self.range(0, n as u64 - 1) as usize;
            self.crash(a);
        }
        for a in 0..n {
            if self.nodes[a].node.is_none() && self.chance(self.faults.restart_per_mille) {
                self.restart(a);
            }
        }
        if self.chance(self.faults.read_per_mille) {
            let burst = self.range(1, 4);
            for _ in 0..burst {
                let a = self.range(0, n as u64 - 1) as usize;
                let mode = if self.chance(300) {
                    ReadMode::Lease
                } else {
                    ReadMode::Quorum
                };
                self.read(a, mode);
            }
        }
        if self.chance(self.faults.transfer_per_mille)
            && let Some(leader) = self.leader()
        {
            let to = self.range(0, n as u64 - 1) as usize;
            self.transfer(leader, to);
        }
        if self.chance(self.faults.snapshot_per_mille) {
            let a = self.range(0, n as u64 - 1) as usize;
            self.compact(a);
        }
        if self.chance(self.faults.membership_per_mille) && !(0..n).any(|j| self.store_flagged(j)) {
            self.change_membership();
        }
        if self.chance(self.faults.stall_per_mille) {
            let a = match self.leader() {
                Some(leader) if self.chance(500) => leader,
                _ => self.range(0, n as u64 - 1) as usize,
            };
            let timeouts = self.range(1, 4);
            self.stall(a, timeouts * 10 * TICK);
        }
        if self.chance(self.faults.propose_per_mille) {
            let burst = self.range(1, 8);
            for _ in 0..burst {
                let a = self.range(0, n as u64 - 1) as usize;
                self.propose_any(a);
            }
        }
    }

    /// Cuts every link to and from node `i`.
    pub fn isolate(&mut self, i: usize) {
        for other in 0..self.nodes.len() {
            if other != i {
                self.cut.insert((i, other));
                self.cut.insert((other, i));
            }
        }
    }

    /// Restores every link to and from node `i`.
    pub fn reconnect(&mut self, i: usize) {
        self.cut.retain(|&(a, b)| a != i && b != i);
    }

    /// Cuts only the link from `from` to `to`.
    pub fn cut_one_way(&mut self, from: usize, to: usize) {
        self.cut.insert((from, to));
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Whether node `i` can talk to node `j` both ways.
    pub fn connected(&self, i: usize, j: usize) -> bool {
        !self.cut.contains(&(i, j)) && !self.cut.contains(&(j, i))
    }

    /// Crashes node `i`: everything not acknowledged durable is lost.
    pub fn crash(&mut self, i: usize) {
        let sim = &mut self.nodes[i];
        if sim.node.is_none() {
            return;
        }
        sim.node = None;
        sim.disk.clear();
        sim.stalled_until = None;
        sim.incarnation += 1;
    }

    /// Restarts a crashed node `i` from its durable state (sometimes losing its last
    /// acknowledged write, see [`Faults::lose_last_write_per_mille`]).
    pub fn restart(&mut self, i: usize) {
        if self.nodes[i].node.is_some() {
            return;
        }
        let others_flagged = (0..self.nodes.len()).any(|j| j != i && self.store_flagged(j));
        if !others_flagged
            && self.configuration_settled()
            && self.nodes[i].last_write.is_some()
            && self.chance(self.faults.lose_last_write_per_mille)
        {
            self.lose_last_write(i);
        }
        self.start_node(i);
        self.drain(i);
    }

    /// The WAL of node `i` cut its last write at open: the entries it wrote and its
    /// commit index are gone; the term and vote (a separate durable record) stay.
    pub fn lose_last_write(&mut self, i: usize) {
        let sim = &mut self.nodes[i];
        let Some(undo) = sim.last_write.take() else {
            return;
        };
        if let Some(first) = undo.first {
            sim.store.truncate_after(first.prev());
            sim.store.append(&undo.replaced);
        }
        let now = sim.store.hard_state();
        sim.store.set_hard_state(HardState {
            term: now.term,
            vote: now.vote,
            commit: undo.hard_state.commit.min(now.commit),
        });
        sim.store.set_log_may_have_lost_entries(true);
        self.writes_lost += 1;
    }

    /// Whether every running member that belongs to its own configuration sees the
    /// same, non-joint configuration. A lost log tail is injected only then, and no
    /// membership change starts while a member is flagged: a flagged member must not
    /// be the vote a joint majority cannot do without (the documented liveness cost,
    /// which needs an operator).
    fn configuration_settled(&self) -> bool {
        let mut views = self
            .nodes
            .iter()
            .filter_map(|sim| sim.node.as_ref())
            .filter(|node| node.membership().contains(node.id()))
            .map(|node| node.membership());
        let Some(first) = views.next() else {
            return true;
        };
        !first.is_joint() && views.all(|m| m == first)
    }

    /// Whether node `i`'s store carries the "may have lost entries" flag.
    fn store_flagged(&self, i: usize) -> bool {
        self.nodes[i]
            .store
            .initial_state()
            .is_ok_and(|s| s.log_may_have_lost_entries)
    }

    /// How many messages of `kind` ([`raft_core::MessageBody::kind`]) were sent.
    pub fn sent_of(&self, kind: &str) -> u64 {
        self.sent_by_kind.get(kind).copied().unwrap_or(0)
    }

    /// The match index the leader `leader` holds for member `peer` (0 if `leader`
    /// does not lead or is down).
    pub fn match_index_of(&self, leader: usize, peer: usize) -> LogIndex {
        self.status(leader)
            .and_then(|s| {
                s.progress
                    .iter()
                    .find(|p| p.id == NodeId(peer as u64 + 1))
                    .map(|p| p.match_index)
            })
            .unwrap_or_default()
    }

    /// Whether node `i` is running.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].node.is_some()
    }

    fn new_command(&mut self) -> Bytes {
        self.next_command += 1;
        Bytes::from(format!("s{}-c{}", self.seed, self.next_command))
    }

    /// Proposes a fresh command at node `i` if it leads; returns the proposal.
    pub fn propose_any(&mut self, i: usize) -> Option<(EntryId, Bytes)> {
        let data = self.new_command();
        self.propose(i, data.clone()).map(|id| (id, data))
    }

    /// Proposes `data` at node `i` if it is running and leads.
    pub fn propose(&mut self, i: usize, data: Bytes) -> Option<EntryId> {
        if self.nodes[i].stalled_until.is_some() {
            return None; // A stopped process takes no requests.
        }
        let node = self.nodes[i].node.as_mut()?;
        match node.propose(data.clone()) {
            Ok(id) => {
                if self
                    .proposals
                    .insert(id, ProposalState::Pending(EntryPayload::Command(data)))
                    .is_some()
                {
                    self.violation(format!("proposal id {id:?} handed out twice"));
                }
                self.drain(i);
                self.check_invariants();
                Some(id)
            }
            Err(_) => None,
        }
    }

    /// The role, term and commit index of node `i`, if running.
    pub fn status(&self, i: usize) -> Option<raft_core::Status> {
        self.nodes[i].node.as_ref().map(|n| n.status())
    }

    /// The running node `i` believes it leads.
    pub fn is_leader(&self, i: usize) -> bool {
        self.status(i).is_some_and(|s| s.role == Role::Leader)
    }

    /// 6.824's checkOneLeader: the leader of the highest term among running members
    /// that can reach each other, if exactly one claims it.
    pub fn leader(&self) -> Option<usize> {
        let mut by_term: BTreeMap<Term, Vec<usize>> = BTreeMap::new();
        for i in 0..self.nodes.len() {
            if let Some(status) = self.status(i)
                && status.role == Role::Leader
            {
                by_term.entry(status.term).or_default().push(i);
            }
        }
        let (_, leaders) = by_term.into_iter().next_back()?;
        (leaders.len() == 1).then(|| leaders[0])
    }

    /// A leader among the given members, who must all reach it.
    pub fn leader_among(&self, members: &[usize]) -> Option<usize> {
        let leader = members
            .iter()
            .copied()
            .filter(|&i| self.is_leader(i))
            .max_by_key(|&i| self.status(i).map(|s| s.term))?;
        members
            .iter()
            .all(|&j| j == leader || self.connected(leader, j))
            .then_some(leader)
    }

    /// The highest term any running member is in.
    pub fn max_term(&self) -> Term {
        (0..self.nodes.len())
            .filter_map(|i| self.status(i))
            .map(|s| s.term)
            .max()
            .unwrap_or_default()
    }

    /// How many running members applied `index`, and the command there.
    pub fn n_applied(&self, index: LogIndex) -> (usize, Option<EntryPayload>) {
        let mut count = 0;
        let mut payload = None;
        for sim in &self.nodes {
            if sim.node.is_none() {
                continue;
            }
            if let Some(entry) = sim.applied.get(index.0 as usize - 1) {
                count += 1;
                payload = Some(entry.payload.clone());
            }
        }
        (count, payload)
    }

    /// 6.824's `one()`: submits `data` at whichever member leads, waiting up to
    /// `timeout_ticks` for `expected` members to apply it; retries at a new leader.
    pub fn one(&mut self, data: Bytes, expected: usize, timeout_ticks: u64) -> Option<LogIndex> {
        let deadline = self.now + timeout_ticks * TICK;
        while self.now < deadline {
            let mut proposed = None;
            for i in 0..self.nodes.len() {
                if self.is_leader(i)
                    && let Some(id) = self.propose(i, data.clone())
                {
                    proposed = Some(id);
                    break;
                }
            }
            match proposed {
                Some(id) => {
                    let give_up = (self.now + 40 * TICK).min(deadline);
                    while self.now < give_up {
                        self.run_ticks(1);
                        let (count, payload) = self.n_applied(id.index);
                        if count >= expected && payload == Some(EntryPayload::Command(data.clone()))
                        {
                            return Some(id.index);
                        }
                    }
                }
                None => self.run_ticks(5),
            }
        }
        None
    }

    /// Whether every member is running and all agree: one leader, identical logs, all
    /// committed and applied to the end.
    pub fn converged(&self) -> bool {
        let Some(leader) = self.leader() else {
            return false;
        };
        let Some(leader_status) = self.status(leader) else {
            return false;
        };
        let last = leader_status.last_index;
        let membership = self.nodes[leader]
            .node
            .as_ref()
            .map(|n| n.membership().clone())
            .unwrap_or_default();
        if membership.is_joint() {
            return false;
        }
        let members = membership.members();
        self.nodes
            .iter()
            .filter(|sim| members.contains(&sim.id))
            .all(|sim| {
                let Some(node) = sim.node.as_ref() else {
                    return false;
                };
                let status = node.status();
                status.last_index == last
                    && status.commit_index == last
                    && status.applied_index == last
                    && status.leader == Some(leader_status.id)
                    && sim.shadow == self.nodes[leader].shadow
            })
    }

    /// Stops every fault, restarts everyone, and requires a leader and convergence
    /// (including one fresh proposal) within `bound_ticks`.
    pub fn check_liveness(&mut self, bound_ticks: u64) -> Result<u64, String> {
        self.chaos = false;
        self.faults = Faults {
            delay_units: self.faults.delay_units,
            ..Faults::none()
        };
        self.heal();
        for i in 0..self.nodes.len() {
            self.restart(i);
        }
        // Stalls end on their own (their resume events are queued).
        let start = self.now;
        let deadline = self.now + bound_ticks * TICK;
        let mut final_proposal: Option<EntryId> = None;
        while self.now < deadline {
            self.run_ticks(1);
            if final_proposal.is_none()
                && let Some(leader) = self.leader()
            {
                final_proposal = self.propose_any(leader).map(|(id, _)| id);
            }
            if let Some(id) = final_proposal {
                let done = matches!(self.proposals.get(&id), Some(ProposalState::Committed(_)));
                if done && self.converged() {
                    return Ok((self.now - start) / TICK);
                }
                // A proposal made at a leader that was then deposed stays pending until
                // the log grows past its index: propose again at the new leader.
                let superseded = self
                    .leader()
                    .and_then(|l| self.status(l))
                    .is_some_and(|s| s.term > id.term);
                if superseded
                    || matches!(
                        self.proposals.get(&id),
                        Some(ProposalState::Dropped(_) | ProposalState::Unknown(_))
                    )
                {
                    final_proposal = None;
                }
            }
        }
        let state = final_proposal.map(|id| (id, self.proposals.get(&id).cloned()));
        Err(format!(
            "no convergence within {bound_ticks} ticks after faults stopped (final proposal {state:?}): {}",
            self.describe()
        ))
    }

    /// Every committed proposal is in every member's log (after convergence).
    pub fn check_committed_proposals_everywhere(&mut self) {
        let members = self.current_members();
        let committed: Vec<(EntryId, EntryPayload)> = self
            .proposals
            .iter()
            .filter_map(|(id, state)| match state {
                ProposalState::Committed(data) => Some((*id, data.clone())),
                _ => None,
            })
            .collect();
        for (id, data) in committed {
            for &i in &members {
                let entry = self.nodes[i].shadow.get(id.index.0 as usize - 1);
                let ok = entry.is_some_and(|e| e.term == id.term && e.payload == data);
                if !ok {
                    self.violation(format!(
                        "acknowledged proposal {id:?} missing on node {}",
                        i + 1
                    ));
                }
            }
        }
    }

    /// How many configuration entries are committed (auto-leave entries included).
    pub fn membership_entries_committed(&self) -> usize {
        self.committed
            .iter()
            .filter(|e| matches!(e.payload, EntryPayload::Membership { .. }))
            .count()
    }

    /// How many proposals were acknowledged committed.
    pub fn committed_proposals(&self) -> usize {
        self.proposals
            .values()
            .filter(|s| matches!(s, ProposalState::Committed(_)))
            .count()
    }

    /// A one-line-per-member summary for failure reports.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, sim) in self.nodes.iter().enumerate() {
            match sim.node.as_ref() {
                Some(node) => {
                    let s = node.status();
                    let _ = write!(
                        out,
                        "\n  node {}: {:?} term {} vote {:?} leader {:?} last {} commit {} applied {} persisted {}{}{} voters {:?}",
                        i + 1,
                        s.role,
                        s.term,
                        s.vote.map(|v| v.0),
                        s.leader.map(|l| l.0),
                        s.last_index,
                        s.commit_index,
                        s.applied_index,
                        s.persisted_index,
                        if s.catching_up { " catching-up" } else { "" },
                        if sim.stalled_until.is_some() {
                            " stalled"
                        } else {
                            ""
                        },
                        node.membership()
                            .voters
                            .iter()
                            .map(|v| v.0)
                            .collect::<Vec<_>>(),
                    );
                    for p in &s.progress {
                        let _ = write!(
                            out,
                            "\n    peer {}: match {} next {} {:?} inflight {} active {}",
                            p.id,
                            p.match_index,
                            p.next_index,
                            p.state,
                            p.inflight_appends,
                            p.recent_active
                        );
                    }
                }
                None => {
                    let _ = write!(
                        out,
                        "\n  node {}: down (durable last {})",
                        i + 1,
                        sim.store.last_index()
                    );
                }
            }
        }
        let _ = write!(out, "\n  cut links: {:?}", self.cut);
        out
    }
}

/// The outcome of one seeded run.
pub struct RunReport {
    pub steps: u64,
    pub committed: usize,
    pub reads_served: u64,
    pub membership_changes: usize,
    pub snapshots_installed: u64,
    pub lease_reads_served: u64,
    pub stalls: u64,
    pub writes_lost: u64,
    pub snapshot_receive_crashes: u64,
    pub violations: Vec<String>,
}

/// One full simulation: a chaos phase of `fault_ticks`, then the liveness phase.
/// Panics inside raft-core (its release-mode assertions) are reported as violations.
pub fn run_seed(nodes: usize, seed: u64, fault_ticks: u64, mutation: Mutation) -> RunReport {
    let result = std::panic::catch_unwind(|| {
        let mut cluster = Cluster::with_spares(nodes, 2, seed, mutation, |_| {});
        cluster.faults = Faults::chaos();
        cluster.set_chaos(true);
        cluster.run_ticks(fault_ticks);
        if let Err(e) = cluster.check_liveness(1500) {
            cluster.violations.push(e);
        }
        cluster.check_committed_proposals_everywhere();
        RunReport {
            steps: cluster.steps,
            committed: cluster.committed_proposals(),
            reads_served: cluster.reads_served,
            membership_changes: cluster.membership_entries_committed(),
            snapshots_installed: cluster.snapshots_installed,
            lease_reads_served: cluster.lease_reads_served,
            stalls: cluster.stalls,
            writes_lost: cluster.writes_lost,
            snapshot_receive_crashes: cluster.snapshot_receive_crashes,
            violations: cluster.violations,
        }
    });
    result.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        RunReport {
            steps: 0,
            committed: 0,
            reads_served: 0,
            membership_changes: 0,
            snapshots_installed: 0,
            lease_reads_served: 0,
            stalls: 0,
            writes_lost: 0,
            snapshot_receive_crashes: 0,
            violations: vec![format!("panic: {message}")],
        }
    })
}

/// Read-only views for the snapshot scenarios.
impl Cluster {
    /// The entries node `i` has applied, from index 1 on: its state machine, restored
    /// from its snapshot's data after a restart or an install. `None` if it is down.
    pub fn applied_log(&self, i: usize) -> Option<&[Entry]> {
        let sim = &self.nodes[i];
        sim.node.as_ref().map(|_| sim.applied.as_slice())
    }

    /// How many entries node `i`'s durable log retains past its snapshot (what the
    /// 6.824 tester's `LogSize` bounds); readable while the node is down too.
    pub fn durable_log_len(&self, i: usize) -> u64 {
        let store = &self.nodes[i].store;
        store.last_index().distance_from(store.first_index().prev())
    }

    /// The index of node `i`'s durable snapshot (0 if never compacted); readable while
    /// the node is down too.
    pub fn durable_snapshot_index(&self, i: usize) -> LogIndex {
        self.nodes[i].store.first_index().prev()
    }
}
