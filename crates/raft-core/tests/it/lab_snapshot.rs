//! The MIT 6.824 Raft lab's snapshot scenarios (3D), on the simulator, bounded in
//! ticks instead of wall time.
//!
//! The lab's tester snapshots every server's state machine each `SnapShotInterval`
//! (10) applied entries; here [`Snap::sleep`] does the same after every tick, calling
//! [`Cluster::compact`] on each running member whose applied index crossed a multiple
//! of [`SNAPSHOT_INTERVAL`] since its last snapshot. Time maps as in `lab.rs`: the lab's
//! `RaftElectionTimeout` (1 s) is [`ELECTION_TIMEOUT`] ticks. A new leader appends an
//! empty entry of its term, so command indexes are shifted past those; a crash loses
//! whatever was not yet durable (the snapshot and the acknowledged log survive).
//!
//! Beyond the lab's own checks (agreement through `one()`, the log-size bound, no
//! safety violation), every member's applied entries (snapshot data plus the entries
//! applied since) must be identical through each agreed index, a follower that fell
//! behind the leader's snapshot must have caught up by installing one, and what was
//! committed before a crash must still be applied after it.

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};

use bytes::Bytes;
use raft_core::{EntryPayload, LogIndex, Term};
use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::sim::{Cluster, Faults, TICK};

/// 6.824's `RaftElectionTimeout`, in ticks.
const ELECTION_TIMEOUT: u64 = 20;
/// `one()` gives up after 10 s, one attempt after 2 s.
const ONE_TIMEOUT: u64 = 10 * ELECTION_TIMEOUT;
const ONE_ATTEMPT: u64 = 2 * ELECTION_TIMEOUT;
/// `checkOneLeader` polls for about 5 s.
const LEADER_TIMEOUT: u64 = 5 * ELECTION_TIMEOUT;
/// 6.824's `SnapShotInterval`: the tester snapshots every this many applied entries.
const SNAPSHOT_INTERVAL: u64 = 10;
/// The lab's `MAXLOGSIZE` (2000 bytes of Raft state, some 60 of its entries) as
/// retained log entries. With snapshots every ten entries a member keeps fewer than
/// ten applied entries plus what is not yet applied; without them, `snapcommon` grows
/// the log past 300.
const MAX_LOG_ENTRIES: u64 = 3 * SNAPSHOT_INTERVAL;
/// How long a member that rejoins (reconnected, or restarted from its snapshot and
/// log) may take to apply everything committed without it, snapshot install
/// included: on a reliable network a few round trips (at most 8 ticks over 200
/// seeds); on the lossy one, lost snapshots are resent only after an election
/// timeout (at most 59 ticks over 200 seeds).
const CATCH_UP_RELIABLE: u64 = ELECTION_TIMEOUT / 2;
const CATCH_UP_UNRELIABLE: u64 = 5 * ELECTION_TIMEOUT;

/// How many seeds each scenario runs with; `LAB_SEEDS=n` overrides it (for sweeps).
const SEEDS_PER_SCENARIO: u64 = 8;

/// Runs `scenario` with the seeds `base * 1000 + k`; reports every failing seed.
fn for_seeds(base: u64, scenario: impl Fn(u64)) {
    let count = std::env::var("LAB_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(SEEDS_PER_SCENARIO);
    let failed: Vec<u64> = (0..count)
        .map(|k| base * 1000 + k)
        .filter(|&seed| panic::catch_unwind(AssertUnwindSafe(|| scenario(seed))).is_err())
        .collect();
    assert!(failed.is_empty(), "failed for seeds {failed:?}");
}

/// 6.824's `config` for the 3D tests: a cluster, which members are connected, the
/// snapshotting applier, and the helpers the tests are written in.
struct Snap {
    cluster: Cluster,
    connected: Vec<bool>,
    rng: Pcg64Mcg,
    /// `one()`'s round-robin starting point.
    starts: usize,
    /// Every index `one()` saw agreed, with its command: it must stay applied.
    agreed: BTreeMap<LogIndex, Bytes>,
    /// A rejoining member being timed until it applied what was committed without it.
    catch_up: Option<CatchUp>,
}

/// A member that rejoined at `since` and must apply through `target`; `at` is when it
/// did (checked after every tick).
struct CatchUp {
    member: usize,
    target: LogIndex,
    since: u64,
    at: Option<u64>,
}

impl Snap {
    fn new(servers: usize, seed: u64, unreliable: bool) -> Snap {
        let mut snap = Snap {
            cluster: Cluster::new(servers, seed),
            connected: vec![true; servers],
            rng: Pcg64Mcg::seed_from_u64(seed ^ 0x3d),
            starts: 0,
            agreed: BTreeMap::new(),
            catch_up: None,
        };
        if unreliable {
            snap.cluster.faults = Faults::unreliable();
        }
        snap
    }

    fn n(&self) -> usize {
        self.cluster.size()
    }

    fn rand(&mut self, below: u64) -> u64 {
        self.rng.next_u64() % below
    }

    /// `rand.Int()` as a command.
    fn rand_cmd(&mut self) -> Bytes {
        Bytes::from((self.rng.next_u64() >> 1).to_string())
    }

    fn fail(&self, message: String) -> ! {
        panic!(
            "{message} (seed {}, t={} ticks){}\nviolations: {:#?}",
            self.cluster.seed,
            self.cluster.now / TICK,
            self.cluster.describe(),
            self.cluster.violations
        );
    }

    /// Members can talk exactly when both are connected.
    fn relink(&mut self) {
        self.cluster.heal();
        for i in 0..self.n() {
            if !self.connected[i] {
                self.cluster.isolate(i);
            }
        }
    }

    fn disconnect(&mut self, i: usize) {
        self.connected[i] = false;
        self.relink();
    }

    fn connect(&mut self, i: usize) {
        self.connected[i] = true;
        self.relink();
    }

    /// `crash1`: disconnect and kill; what was not durable is lost.
    fn crash1(&mut self, i: usize) {
        self.disconnect(i);
        self.cluster.crash(i);
    }

    /// `start1(i, applierSnap)`: (kill and) start from the durable snapshot and log.
    fn start1(&mut self, i: usize) {
        self.cluster.crash(i);
        self.cluster.restart(i);
    }

    /// `rf.Start(data)`: proposes if `i` runs and believes it leads.
    fn start(&mut self, i: usize, data: Bytes) -> Option<LogIndex> {
        self.cluster.propose(i, data).map(|id| id.index)
    }

    fn status(&self, i: usize) -> raft_core::Status {
        self.cluster
            .status(i)
            .unwrap_or_else(|| self.fail(format!("node {} is down", i + 1)))
    }

    /// `applierSnap`'s snapshots: every running member whose applied index crossed a
    /// multiple of [`SNAPSHOT_INTERVAL`] since its last snapshot (taken or installed)
    /// snapshots and compacts. (The simulator declines while the applied entries are
    /// not yet durable on the member; it is asked again after the next tick.)
    fn snapshot_due(&mut self) {
        for i in 0..self.n() {
            let Some(status) = self.cluster.status(i) else {
                continue;
            };
            if status.applied_index.0 / SNAPSHOT_INTERVAL
                > status.snapshot_index.0 / SNAPSHOT_INTERVAL
            {
                self.cluster.compact(i);
            }
        }
    }

    /// Lets time pass, one tick at a time, with the tester's applier snapshotting.
    fn sleep(&mut self, ticks: u64) {
        for _ in 0..ticks {
            self.cluster.run_ticks(1);
            self.snapshot_due();
            self.watch_catch_up();
        }
    }

    /// Starts timing how long `member` takes to apply everything committed so far.
    fn time_catch_up(&mut self, member: usize) {
        let target = (0..self.n())
            .filter_map(|i| self.cluster.status(i))
            .map(|s| s.commit_index)
            .max()
            .unwrap_or_default();
        self.catch_up = Some(CatchUp {
            member,
            target,
            since: self.cluster.now,
            at: None,
        });
        self.watch_catch_up();
    }

    fn watch_catch_up(&mut self) {
        let Some(watch) = &self.catch_up else { return };
        if watch.at.is_none()
            && self
                .cluster
                .status(watch.member)
                .is_some_and(|s| s.applied_index >= watch.target)
        {
            let now = self.cluster.now;
            if let Some(watch) = self.catch_up.as_mut() {
                watch.at = Some(now);
            }
        }
    }

    /// How many ticks the timed member took to catch up (it must have by now).
    fn caught_up_ticks(&mut self) -> u64 {
        self.watch_catch_up();
        match self.catch_up.take() {
            Some(CatchUp {
                since,
                at: Some(at),
                ..
            }) => (at - since) / TICK,
            Some(CatchUp { member, target, .. }) => self.fail(format!(
                "node {} has not applied through {target}",
                member + 1
            )),
            None => self.fail("no catch-up was timed".into()),
        }
    }

    /// `checkOneLeader`: a leader among connected members, exactly one in the highest
    /// term that has any; polled every tick for at most [`LEADER_TIMEOUT`] ticks.
    fn check_one_leader(&mut self) -> usize {
        for _ in 0..LEADER_TIMEOUT {
            let mut best: Option<(Term, Vec<usize>)> = None;
            for i in 0..self.n() {
                if !self.connected[i] || !self.cluster.is_leader(i) {
                    continue;
                }
                let term = self.status(i).term;
                match &mut best {
                    Some((t, leaders)) if *t == term => leaders.push(i),
                    Some((t, _)) if *t > term => {}
                    _ => best = Some((term, vec![i])),
                }
            }
            if let Some((term, leaders)) = best {
                if leaders.len() > 1 {
                    self.fail(format!("term {term} has {} leaders", leaders.len()));
                }
                return leaders[0];
            }
            self.sleep(1);
        }
        self.fail("expected one leader, got none".into());
    }

    /// `one()`: proposes `data` at a connected leader (round robin) until at least
    /// `expected` members applied it, retrying at another leader after
    /// [`ONE_ATTEMPT`] ticks (if `retry`); gives up after [`ONE_TIMEOUT`] ticks.
    /// Records the agreed index, and checks every member applied the same entries.
    fn one(&mut self, data: Bytes, expected: usize, retry: bool) -> LogIndex {
        let deadline = self.cluster.now + ONE_TIMEOUT * TICK;
        while self.cluster.now < deadline {
            let mut index = None;
            for _ in 0..self.n() {
                self.starts = (self.starts + 1) % self.n();
                let s = self.starts;
                if self.connected[s]
                    && let Some(i) = self.start(s, data.clone())
                {
                    index = Some(i);
                    break;
                }
            }
            let Some(index) = index else {
                self.sleep(1);
                continue;
            };
            let give_up = self.cluster.now + ONE_ATTEMPT * TICK;
            while self.cluster.now < give_up {
                let (count, payload) = self.cluster.n_applied(index);
                if count > 0
                    && count >= expected
                    && payload == Some(EntryPayload::Command(data.clone()))
                {
                    self.agreed.insert(index, data);
                    self.check_applied_agree(index);
                    return index;
                }
                self.sleep(1);
            }
            if !retry {
                self.fail(format!("one({data:?}) failed to reach agreement"));
            }
        }
        self.fail(format!(
            "one({data:?}) failed to reach agreement within {ONE_TIMEOUT} ticks"
        ));
    }

    /// The tester's `checkLogs`, made stronger: every running member that applied
    /// `through` applied exactly the same entries up to it (snapshot data included),
    /// and every index `one()` saw agreed still holds its command there.
    fn check_applied_agree(&self, through: LogIndex) {
        let n = through.0 as usize;
        let logs: Vec<(usize, &[raft_core::Entry])> = (0..self.n())
            .filter_map(|i| self.cluster.applied_log(i).map(|log| (i, log)))
            .filter(|(_, log)| log.len() >= n)
            .collect();
        let Some(&(first, reference)) = logs.first() else {
            return;
        };
        for &(i, log) in &logs[1..] {
            if log[..n] != reference[..n] {
                let at = (0..n).find(|&k| log[k] != reference[k]).unwrap_or(n);
                self.fail(format!(
                    "nodes {} and {} applied different entries at index {}",
                    first + 1,
                    i + 1,
                    at + 1
                ));
            }
        }
        for (index, data) in self.agreed.range(..=through) {
            let there = &reference[index.0 as usize - 1].payload;
            if *there != EntryPayload::Command(data.clone()) {
                self.fail(format!(
                    "index {index} agreed on {data:?} but node {} applied {there:?}",
                    first + 1
                ));
            }
        }
    }

    /// The tester's `LogSize() < MAXLOGSIZE`: snapshots keep every durable log short.
    fn check_log_size(&self) {
        for i in 0..self.n() {
            let len = self.cluster.durable_log_len(i);
            if len >= MAX_LOG_ENTRIES {
                self.fail(format!(
                    "log size too large: node {} retains {len} entries",
                    i + 1
                ));
            }
        }
    }

    /// Every scenario ends here: the simulator saw no safety violation, and every
    /// proposal acknowledged committed is in every member's log.
    fn assert_safe(&mut self) {
        self.cluster.check_committed_proposals_everywhere();
        assert!(
            self.cluster.violations.is_empty(),
            "seed {}: {:#?}",
            self.cluster.seed,
            self.cluster.violations
        );
    }
}

/// What a `snapcommon` run did, for the scenario's own assertions.
struct SnapRun {
    /// Rejoins where the victim's log ended before the other members' snapshots, so
    /// it could only catch up by installing one.
    rejoins_needing_snapshot: u64,
    snapshots_installed: u64,
    snapshots_taken: u64,
}

/// The lab's `snapcommon`: 30 rounds in which a follower (one round in three, the
/// leader) is cut off or crashed while the others take enough commands to snapshot
/// past it; it must then rejoin and agree again.
fn snapcommon(seed: u64, disconnect: bool, reliable: bool, crash: bool) -> SnapRun {
    let iters = 30;
    let servers = 3;
    let mut lab = Snap::new(servers, seed, !reliable);
    let data = lab.rand_cmd();
    lab.one(data, servers, true);
    let mut leader1 = lab.check_one_leader();
    let mut rejoins_needing_snapshot = 0;
    for i in 0..iters {
        let (mut victim, mut sender) = ((leader1 + 1) % servers, leader1);
        if i % 3 == 1 {
            sender = (leader1 + 1) % servers;
            victim = leader1;
        }
        if disconnect {
            lab.disconnect(victim);
            let data = lab.rand_cmd();
            lab.one(data, servers - 1, true);
        }
        if crash {
            lab.crash1(victim);
            let data = lab.rand_cmd();
            lab.one(data, servers - 1, true);
        }
        // Perhaps send enough to get a snapshot.
        let nn = SNAPSHOT_INTERVAL / 2 + lab.rand(SNAPSHOT_INTERVAL);
        for _ in 0..nn {
            let data = lab.rand_cmd();
            lab.start(sender, data);
        }
        // Let the appliers catch up with the starts. Without failures everyone
        // agrees, so that SnapshotBasic (nearly) never needs an InstallSnapshot.
        let data = lab.rand_cmd();
        if !disconnect && !crash {
            lab.one(data, servers, true);
        } else {
            lab.one(data, servers - 1, true);
        }
        lab.check_log_size();
        if disconnect || crash {
            if crash {
                lab.start1(victim);
            }
            // The victim's log (durable, after a crash) against the snapshots of the
            // members that went on: ending before all of them, whoever leads can only
            // bring it up to date with a snapshot.
            let victim_last = lab.status(victim).last_index;
            let behind = (0..servers)
                .filter(|&j| j != victim)
                .all(|j| victim_last < lab.status(j).snapshot_index);
            let installed = lab.cluster.snapshots_installed;
            let sent = lab.cluster.sent_of("install_snapshot");
            lab.connect(victim);
            lab.time_catch_up(victim);
            let data = lab.rand_cmd();
            let index = lab.one(data, servers, true);
            let ticks = lab.caught_up_ticks();
            let bound = if reliable {
                CATCH_UP_RELIABLE
            } else {
                CATCH_UP_UNRELIABLE
            };
            if ticks > bound {
                lab.fail(format!(
                    "round {i}: node {} took {ticks} ticks to catch up (bound {bound})",
                    victim + 1
                ));
            }
            let sent = lab.cluster.sent_of("install_snapshot") - sent;
            if reliable && sent > 2 {
                lab.fail(format!(
                    "round {i}: {sent} snapshots sent to bring node {} up to date",
                    victim + 1
                ));
            }
            if behind {
                rejoins_needing_snapshot += 1;
                if lab.cluster.snapshots_installed == installed {
                    lab.fail(format!(
                        "round {i}: node {} caught up to {index} past the leader's snapshot without installing one",
                        victim + 1
                    ));
                }
            }
            leader1 = lab.check_one_leader();
        }
    }
    lab.assert_safe();
    SnapRun {
        rejoins_needing_snapshot,
        snapshots_installed: lab.cluster.snapshots_installed,
        snapshots_taken: lab.cluster.snapshots_taken,
    }
}

/// The install scenarios: the victim fell behind the others' snapshots in a good
/// share of the 30 rounds (19 to 28 over 200 seeds), and each such rejoin installed
/// a snapshot.
fn check_installs(seed: u64, run: &SnapRun) {
    assert!(
        run.rejoins_needing_snapshot >= 10,
        "seed {seed}: only {} of 30 rejoins needed a snapshot",
        run.rejoins_needing_snapshot
    );
    assert!(
        run.snapshots_installed >= run.rejoins_needing_snapshot,
        "seed {seed}: {} installs for {} rejoins behind a snapshot",
        run.snapshots_installed,
        run.rejoins_needing_snapshot
    );
}

/// TestSnapshotBasic3D: every member snapshots as it applies, with no failures; the
/// logs stay short, and followers keep up so snapshots need not be sent.
#[test]
fn snapshot_basic() {
    for_seeds(31, |seed| {
        let run = snapcommon(seed, false, true, false);
        // 30 rounds of at least 6 commands on 3 members pass 18 multiples of ten each
        // (a tick that passes two takes one snapshot).
        assert!(
            run.snapshots_taken >= 3 * 10,
            "seed {seed}: only {} snapshots taken",
            run.snapshots_taken
        );
        // The lab only hopes no InstallSnapshot is needed. Here one can be: the
        // starts go out as single-entry appends, reordering makes a follower reject
        // some, it is probed one append per round trip, and the leader snapshots past
        // it meanwhile (seed 31088 of a 200-seed sweep installs one; none of the others).
        assert!(
            run.snapshots_installed <= 1,
            "seed {seed}: {} snapshots installed though no follower was cut off",
            run.snapshots_installed
        );
    });
}

/// TestSnapshotInstall3D: a follower cut off while the others snapshot past it
/// catches up by InstallSnapshot.
#[test]
fn snapshot_install() {
    for_seeds(32, |seed| {
        let run = snapcommon(seed, true, true, false);
        check_installs(seed, &run);
    });
}

/// TestSnapshotInstallUnreliable3D: the same on a lossy network.
#[test]
fn snapshot_install_unreliable() {
    for_seeds(33, |seed| {
        let run = snapcommon(seed, true, false, false);
        check_installs(seed, &run);
    });
}

/// TestSnapshotInstallCrash3D: the follower is crashed instead, and restarts from its
/// own snapshot and log before it needs the leader's.
#[test]
fn snapshot_install_crash() {
    for_seeds(34, |seed| {
        let run = snapcommon(seed, false, true, true);
        check_installs(seed, &run);
    });
}

/// TestSnapshotInstallUnCrash3D: crashes on a lossy network.
#[test]
fn snapshot_install_uncrash() {
    for_seeds(35, |seed| {
        let run = snapcommon(seed, false, false, true);
        check_installs(seed, &run);
    });
}

/// Crashes every member and restarts them all from their durable state; checks that
/// each came back with the snapshot it had made durable.
fn crash_and_revive_all(lab: &mut Snap) {
    let servers = lab.n();
    let snapshots: Vec<LogIndex> = (0..servers)
        .map(|i| lab.cluster.durable_snapshot_index(i))
        .collect();
    for i in 0..servers {
        lab.crash1(i);
    }
    for i in 0..servers {
        lab.start1(i);
        lab.connect(i);
    }
    for (i, &snapshot) in snapshots.iter().enumerate() {
        let status = lab.status(i);
        if status.snapshot_index != snapshot || status.applied_index < snapshot {
            lab.fail(format!(
                "node {} restarted with snapshot {} applied {}, but had snapshot {snapshot}",
                i + 1,
                status.snapshot_index,
                status.applied_index
            ));
        }
    }
}

/// TestSnapshotAllCrash3D: do the members persist their snapshots, and restart from
/// the snapshot plus the log's tail? Five times, everyone crashes after some commands;
/// the next command lands past them, and everything agreed before is still applied.
#[test]
fn snapshot_all_crash() {
    for_seeds(36, snapshot_all_crash_run);
}

fn snapshot_all_crash_run(seed: u64) {
    let servers = 3;
    let iters = 5;
    let mut lab = Snap::new(servers, seed, false);
    let data = lab.rand_cmd();
    lab.one(data, servers, true);
    for round in 0..iters {
        // Perhaps enough to get a snapshot.
        let nn = SNAPSHOT_INTERVAL / 2 + lab.rand(SNAPSHOT_INTERVAL);
        for _ in 0..nn {
            let data = lab.rand_cmd();
            lab.one(data, servers, true);
        }
        let data = lab.rand_cmd();
        let index1 = lab.one(data, servers, true);
        crash_and_revive_all(&mut lab);
        // After the first round at least 16 entries were applied everywhere: every
        // member restarts from a snapshot, not from the whole log.
        if round > 0 {
            for i in 0..servers {
                if lab.status(i).snapshot_index == LogIndex(0) {
                    lab.fail(format!("round {round}: node {} has no snapshot", i + 1));
                }
            }
        }
        let data = lab.rand_cmd();
        let index2 = lab.one(data, servers, true);
        if index2 <= index1 {
            lab.fail(format!("index decreased from {index1} to {index2}"));
        }
    }
    lab.assert_safe();
}

/// TestSnapshotInit3D: do members initialize their in-memory copy of the snapshot on
/// restart, so that later writes do not lose it? Enough commands for a snapshot,
/// everyone crashes, one command, everyone crashes again, another command.
#[test]
fn snapshot_init() {
    for_seeds(37, snapshot_init_run);
}

fn snapshot_init_run(seed: u64) {
    let servers = 3;
    let mut lab = Snap::new(servers, seed, false);
    let data = lab.rand_cmd();
    lab.one(data, servers, true);
    // Enough commands to make a snapshot.
    for _ in 0..=SNAPSHOT_INTERVAL {
        let data = lab.rand_cmd();
        lab.one(data, servers, true);
    }
    crash_and_revive_all(&mut lab);
    let compacted: Vec<LogIndex> = (0..servers).map(|i| lab.status(i).snapshot_index).collect();
    for (i, snapshot) in compacted.iter().enumerate() {
        if *snapshot < LogIndex(SNAPSHOT_INTERVAL) {
            lab.fail(format!(
                "node {} restarted without a snapshot (snapshot index {snapshot})",
                i + 1
            ));
        }
    }
    // A single command, to get something written back to durable state.
    let data = lab.rand_cmd();
    lab.one(data, servers, true);
    crash_and_revive_all(&mut lab);
    // Another command, to trigger a lost snapshot; everything agreed before is still
    // applied everywhere (`one` checks), and the snapshots are not gone.
    let data = lab.rand_cmd();
    lab.one(data, servers, true);
    for (i, snapshot) in compacted.iter().enumerate() {
        let now = lab.status(i).snapshot_index;
        if now < *snapshot {
            lab.fail(format!(
                "node {} lost its snapshot: index {now}, was {snapshot}",
                i + 1
            ));
        }
    }
    lab.assert_safe();
}
