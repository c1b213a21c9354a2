//! Scenario scripts in etcd raft's datadriven style (`tests/testdata/*.txt`).
//!
//! Each script drives a small cluster through an interaction harness (after etcd
//! raft's `rafttest.InteractionEnv`): every `Node<MemoryLogStore>` has its own queue of
//! pending persist batches, and one network queue holds the messages in flight. Time,
//! delivery and durability advance only when a script says so, so races such as "the
//! leader's own write completes after a follower's" are written out step by step.
//! Run with `REWRITE=1` to regenerate the expected output; the expected text is the
//! assertion, so read it before committing.
//!
//! Commands (ids are bare numbers; `term/index` names a log position):
//!
//! - `add-nodes 3 [pre-vote=false] [check-quorum=false] [joining=true]`: members 1..=3
//!   on fresh stores. With `joining=true` the new members start outside the
//!   configuration (an empty membership): they never campaign and learn the cluster
//!   only from the leader (its log or its snapshot).
//! - `reset`: forget every member and message (a new cluster in the same script).
//! - `set-log <id> terms=(1,1,2)`: replace the member's durable log with entries of
//!   those terms (hard state term = the last one, no vote), then restart it.
//! - `tick <id> [count=N]`: N ticks (default 1). Each tick is [`TICK_MICROS`] of the
//!   script's monotonic clock: the member ticked sees the clock at the tick's end.
//! - `advance-clock ms=<n>`: the monotonic clock moves on with no tick and no
//!   message (a member paused by SIGSTOP, a stalled process).
//! - `campaign <id>`, `propose <id> <data>`.
//! - `process-ready <id>...`: print the member's `Ready` (messages to send now; the
//!   persist batch with its hard state, entries and the messages held until it is
//!   durable; committed entries, which are applied at once; proposal outcomes), send
//!   the messages and queue the persist batch.
//! - `persist <id> [all]`: complete the oldest pending write (or all): write it to the
//!   store, release its held messages, call `on_persisted`.
//! - `deliver-msgs [<id>...] [drop=(1-2,...)]`: deliver every queued message (to the
//!   given members only), dropping those from-to pairs and anything across a partition.
//! - `stabilize [<id>...]`: repeat process-ready / persist / deliver for everyone (or
//!   only the given members; messages to the others stay queued) until quiet.
//! - `hold-msgs from=<id> to=<id>`: take the queued messages on that link aside (a
//!   slow network path); `release-msgs` puts them back at the end of the queue.
//! - `partition <id>...` / `heal`: the listed members on one side, the rest on the other.
//! - `crash <id>`: lose its pending writes and restart it from its store (the
//!   application restores its state from the store's snapshot, if any), as a new
//!   process: with the next `Config::incarnation`.
//! - `status <id>`, `log <id>` (the durable store: snapshot, hard state and entries),
//!   `membership <id>` (the configuration in effect on the member).
//! - `read-index <id> req=<n> [mode=quorum|lease]`: `Node::read_index`; the answer
//!   shows up in a later `process-ready` as `read <req> at <index>` (or `retry`).
//! - `transfer-leader <id> to=<n>`: `Node::transfer_leadership`.
//! - `add-learner <id> node=<n>`, `promote <id> node=<n>`, `remove <id> node=<n>`,
//!   `replace <id> voters=(...) [learners=(...)]`: `Node::propose_membership_change`.
//! - `compact <id> index=<n>`: the application snapshots its state machine at the
//!   applied index n (with the configuration in effect there) and compacts the store
//!   through it (`MemoryLogStore::compact`).
//!
//! A persist batch that carries a snapshot (`persist: snapshot t/i ...`) is
//! installed into the store (`MemoryLogStore::install_snapshot`) before its hard
//! state and entries are written.
//!
//! Role and term changes caused by a command are printed as `n<id>: <role> term=<t>`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write;

use bytes::Bytes;
use datadriven::TestCase;
use raft_core::{
    AppendResponse, Config, Entry, EntryId, EntryPayload, HardState, HeartbeatRound, LogIndex,
    LogStore, Membership, MembershipChange, MemoryLogStore, Message, MessageBody, Monotonic, Node,
    NodeId, Persist, ProposalResult, ReadMode, Ready, Role, SnapshotMeta, Term,
};

/// How much of the monotonic clock one tick stands for (100 ms, the tick length
/// `Config::new`'s lease default assumes).
const TICK_MICROS: u64 = 100_000;

#[test]
fn scenarios() {
    datadriven::walk("tests/testdata", |file| {
        let mut env = Env::default();
        file.run(|case| env.handle(case));
    });
}

struct Member {
    node: Node<MemoryLogStore>,
    store: MemoryLogStore,
    config: Config,
    pending: VecDeque<Persist>,
}

#[derive(Default)]
struct Env {
    members: BTreeMap<u64, Member>,
    network: Vec<Message>,
    /// One side of a partition (the other side is everybody else).
    partition: Option<BTreeSet<u64>>,
    /// Each member's role and term as last printed.
    roles: BTreeMap<u64, (Role, Term)>,
    /// The script's monotonic clock, in microseconds.
    now_micros: u64,
    /// Messages taken aside by `hold-msgs`.
    held: Vec<Message>,
    out: String,
}

impl Env {
    fn handle(&mut self, case: &mut TestCase) -> String {
        self.out.clear();
        let ids = ids(case);
        match case.directive.as_str() {
            "add-nodes" => self.add_nodes(case, &ids),
            "set-log" => self.set_log(case, &ids),
            "tick" => {
                let count: u32 = named(case, "count").unwrap_or(1);
                // Every member listed ticks through the same stretch of the clock.
                let start = self.now_micros;
                self.now_micros += u64::from(count) * TICK_MICROS;
                for id in &ids {
                    for i in 1..=count {
                        let now = Monotonic(start + u64::from(i) * TICK_MICROS);
                        let result = self.member(*id).node.tick(now);
                        self.report(*id, result);
                        let node = &self.member(*id).node;
                        let now = (node.role(), node.term());
                        if self.roles.get(id) != Some(&now) && count > 1 {
                            let _ = writeln!(self.out, "after tick {i}:");
                        }
                        self.note_role_changes();
                    }
                }
            }
            "advance-clock" => {
                let ms: u64 = named(case, "ms").expect("advance-clock ms=<n>");
                self.now_micros += ms * 1000;
                let _ = writeln!(self.out, "clock at {} ms", self.now_micros / 1000);
            }
            "hold-msgs" => {
                let from: u64 = named(case, "from").expect("from=<id>");
                let to: u64 = named(case, "to").expect("to=<id>");
                let (held, rest): (Vec<Message>, Vec<Message>) = std::mem::take(&mut self.network)
                    .into_iter()
                    .partition(|m| m.from.0 == from && m.to.0 == to);
                self.network = rest;
                for m in &held {
                    let _ = writeln!(self.out, "  held {}", fmt_message(m));
                }
                self.held.extend(held);
            }
            "release-msgs" => {
                for m in &self.held {
                    let _ = writeln!(self.out, "  released {}", fmt_message(m));
                }
                let held = std::mem::take(&mut self.held);
                self.network.extend(held);
            }
            "campaign" => {
                for id in &ids {
                    let result = self.member(*id).node.campaign();
                    self.report(*id, result);
                }
            }
            "propose" => {
                let data = words(case).into_iter().next().expect("propose <id> <data>");
                for id in &ids {
                    let result = self.member(*id).node.propose(data.clone().into());
                    self.report_proposal(result);
                }
            }
            "process-ready" => {
                for id in &ids {
                    self.process_ready(*id, ids.len() > 1);
                }
            }
            "persist" => {
                let all = words(case).iter().any(|w| w == "all");
                for id in &ids {
                    self.persist(*id, all, ids.len() > 1);
                }
            }
            "deliver-msgs" => {
                let drops = drops(case);
                let targets = if ids.is_empty() {
                    self.members.keys().copied().collect()
                } else {
                    ids
                };
                for id in targets {
                    self.deliver(id, &drops, false);
                }
            }
            "stabilize" => {
                let only = if ids.is_empty() {
                    self.members.keys().copied().collect()
                } else {
                    ids
                };
                self.stabilize(&only);
            }
            "partition" => {
                self.partition = Some(ids.iter().copied().collect());
                let rest: Vec<u64> = self
                    .members
                    .keys()
                    .filter(|id| !ids.contains(id))
                    .copied()
                    .collect();
                let _ = writeln!(self.out, "partitioned {ids:?} | {rest:?}");
            }
            "heal" => {
                self.partition = None;
                let _ = writeln!(self.out, "healed");
            }
            "crash" => {
                for id in &ids {
                    self.crash(*id);
                }
            }
            "status" => {
                for id in &ids {
                    self.status(*id);
                }
            }
            "log" => {
                for id in &ids {
                    self.log(*id);
                }
            }
            "membership" => {
                for id in &ids {
                    let membership = fmt_membership(self.member(*id).node.membership());
                    let _ = writeln!(self.out, "n{id}: {membership}");
                }
            }
            "reset" => {
                *self = Env::default();
                let _ = writeln!(self.out, "reset");
            }
            "read-index" => {
                let request_id: u64 = named(case, "req").expect("read-index <id> req=<n>");
                let mode = match named::<String>(case, "mode").as_deref() {
                    None | Some("quorum") => ReadMode::Quorum,
                    Some("lease") => ReadMode::Lease,
                    Some(other) => panic!("unknown read mode {other}"),
                };
                for id in &ids {
                    let now = Monotonic(self.now_micros);
                    let result = self.member(*id).node.read_index(request_id, mode, now);
                    self.report(*id, result);
                }
            }
            "transfer-leader" => {
                let to: u64 = named(case, "to").expect("transfer-leader <id> to=<n>");
                for id in &ids {
                    let result = self.member(*id).node.transfer_leadership(NodeId(to));
                    self.report(*id, result);
                }
            }
            "add-learner" | "promote" | "remove" | "replace" => {
                let directive = case.directive.clone();
                let change = match directive.as_str() {
                    "replace" => {
                        let voters: Vec<u64> = case.take_args("voters").expect("voters=(...)");
                        let learners: Vec<u64> = case
                            .try_take_args("learners")
                            .expect("learners=(...)")
                            .unwrap_or_default();
                        MembershipChange::Replace {
                            voters: voters.into_iter().map(NodeId).collect(),
                            learners: learners.into_iter().map(NodeId).collect(),
                        }
                    }
                    directive => {
                        let node = NodeId(named(case, "node").expect("node=<n>"));
                        match directive {
                            "add-learner" => MembershipChange::AddLearner(node),
                            "promote" => MembershipChange::Promote(node),
                            _ => MembershipChange::Remove(node),
                        }
                    }
                };
                for id in &ids {
                    let result = self
                        .member(*id)
                        .node
                        .propose_membership_change(change.clone(), Bytes::new());
                    self.report_proposal(result);
                }
            }
            "compact" => {
                let index: u64 = named(case, "index").expect("compact <id> index=<n>");
                for id in &ids {
                    self.compact(*id, LogIndex(index));
                }
            }
            other => panic!("unknown command {other}"),
        }
        self.note_role_changes();
        if self.out.is_empty() {
            "ok\n".to_string()
        } else {
            self.out.clone()
        }
    }

    fn member(&mut self, id: u64) -> &mut Member {
        self.members
            .get_mut(&id)
            .unwrap_or_else(|| panic!("no member {id}"))
    }

    /// Prints every member whose role or term changed since last printed.
    fn note_role_changes(&mut self) {
        for (&id, m) in &self.members {
            let now = (m.node.role(), m.node.term());
            if let Some(before) = self.roles.insert(id, now)
                && before != now
            {
                let _ = writeln!(self.out, "n{id}: {:?} term={}", now.0, now.1);
            }
        }
    }

    fn report<T>(&mut self, id: u64, result: Result<T, raft_core::Error>) {
        if let Err(e) = result {
            let _ = writeln!(self.out, "n{id} error: {e}");
        }
    }

    fn report_proposal(&mut self, result: Result<EntryId, raft_core::Error>) {
        match result {
            Ok(entry) => {
                let _ = writeln!(self.out, "proposed {}/{}", entry.term, entry.index);
            }
            Err(e) => {
                let _ = writeln!(self.out, "error: {e}");
            }
        }
    }

    fn add_nodes(&mut self, case: &mut TestCase, ids: &[u64]) {
        let count = *ids.first().expect("add-nodes <count>");
        let pre_vote: bool = named(case, "pre-vote").unwrap_or(true);
        let check_quorum: bool = named(case, "check-quorum").unwrap_or(true);
        let joining: bool = named(case, "joining").unwrap_or(false);
        let first = self.members.len() as u64 + 1;
        let all: Vec<NodeId> = (1..first + count).map(NodeId).collect();
        let membership = if joining {
            Membership::default()
        } else {
            Membership::with_voters(all.iter().copied())
        };
        for id in first..first + count {
            let store = MemoryLogStore::new(membership.clone());
            let mut config = Config::new(NodeId(id));
            config.pre_vote = pre_vote;
            config.check_quorum = check_quorum;
            let node = Node::new(config.clone(), store.clone()).expect("valid config");
            self.members.insert(
                id,
                Member {
                    node,
                    store,
                    config,
                    pending: VecDeque::new(),
                },
            );
        }
        let _ = write!(
            self.out,
            "added {:?} pre-vote={pre_vote} check-quorum={check_quorum}",
            (first..first + count).collect::<Vec<_>>()
        );
        if joining {
            self.out.push_str(" outside the configuration");
        }
        self.out.push('\n');
    }

    fn set_log(&mut self, case: &mut TestCase, ids: &[u64]) {
        let terms: Vec<u64> = case.take_args("terms").expect("set-log <id> terms=(...)");
        for &id in ids {
            let member = self.member(id);
            let entries: Vec<Entry> = terms
                .iter()
                .enumerate()
                .map(|(i, &t)| Entry {
                    term: Term(t),
                    index: LogIndex(i as u64 + 1),
                    payload: EntryPayload::Command(format!("t{t}").into()),
                })
                .collect();
            member.store.append(&entries);
            member.store.set_hard_state(HardState {
                term: Term(terms.last().copied().unwrap_or(0)),
                vote: None,
                commit: LogIndex(0),
            });
            member.pending.clear();
            member.node = Node::new(member.config.clone(), member.store.clone()).expect("restart");
            self.log(id);
        }
    }

    fn process_ready(&mut self, id: u64, header: bool) {
        if header {
            let _ = writeln!(self.out, "> n{id} ready");
        }
        let member = self.member(id);
        if !member.node.has_ready() {
            let _ = writeln!(self.out, "  (nothing ready)");
            return;
        }
        let ready = match member.node.ready() {
            Ok(ready) => ready,
            Err(e) => {
                let _ = writeln!(self.out, "n{id} error: {e}");
                return;
            }
        };
        let Ready {
            messages,
            persist,
            committed_entries,
            proposal_outcomes,
            read_states,
            ..
        } = ready;
        let mut out = String::new();
        if !messages.is_empty() {
            out.push_str("  send now:\n");
            for m in &messages {
                let _ = writeln!(out, "    {}", fmt_message(m));
            }
        }
        if let Some(persist) = persist {
            let hs = persist.hard_state.map_or("-".to_string(), fmt_hard_state);
            let _ = writeln!(
                out,
                "  persist: {}hard-state {hs} entries [{}]",
                fmt_persist_snapshot(persist.snapshot.as_ref()),
                fmt_entries(&persist.entries)
            );
            for m in &persist.messages {
                let _ = writeln!(out, "    after persist: {}", fmt_message(m));
            }
            member.pending.push_back(persist);
        }
        if let Some(last) = committed_entries.last() {
            let _ = writeln!(out, "  apply [{}]", fmt_entries(&committed_entries));
            member.node.on_applied(last.index);
        }
        for outcome in &proposal_outcomes {
            let result = match outcome.result {
                ProposalResult::Committed => "committed",
                ProposalResult::Dropped => "dropped",
                ProposalResult::Unknown => "unknown",
            };
            let _ = writeln!(
                out,
                "  proposal {}/{} {result}",
                outcome.proposal.term, outcome.proposal.index
            );
        }
        for read in &read_states {
            let index = read.index.map_or("retry".to_string(), |i| i.to_string());
            let _ = writeln!(out, "  read {} at {index}", read.request_id);
        }
        self.network.extend(messages);
        self.out.push_str(&out);
    }

    fn persist(&mut self, id: u64, all: bool, header: bool) {
        if header {
            let _ = writeln!(self.out, "> n{id} persist");
        }
        loop {
            let member = self.member(id);
            let Some(persist) = member.pending.pop_front() else {
                let _ = writeln!(self.out, "  (no pending write)");
                return;
            };
            if let Some(snapshot) = &persist.snapshot {
                member.store.install_snapshot(snapshot);
            }
            if let Some(hard_state) = persist.hard_state {
                member.store.set_hard_state(hard_state);
            }
            member.store.append(&persist.entries);
            let result = member.node.on_persisted(persist.ack);
            let hs = persist.hard_state.map_or("-".to_string(), fmt_hard_state);
            let mut line = format!(
                "  durable: {}hard-state {hs} entries [{}]",
                fmt_persist_snapshot(persist.snapshot.as_ref()),
                fmt_entries(&persist.entries)
            );
            let _ = write!(
                line,
                " -> persisted={}",
                member.node.status().persisted_index
            );
            let _ = writeln!(self.out, "{line}");
            for m in &persist.messages {
                let _ = writeln!(self.out, "    send: {}", fmt_message(m));
            }
            self.network.extend(persist.messages);
            self.report(id, result);
            self.note_role_changes();
            if !all || self.member(id).pending.is_empty() {
                return;
            }
        }
    }

    fn blocked(&self, m: &Message) -> bool {
        self.partition
            .as_ref()
            .is_some_and(|side| side.contains(&m.from.0) != side.contains(&m.to.0))
    }

    /// Delivers every queued message to `id`. Returns whether any was taken off the queue.
    fn deliver(&mut self, id: u64, drops: &BTreeSet<(u64, u64)>, header: bool) -> bool {
        let (mine, rest): (Vec<Message>, Vec<Message>) = std::mem::take(&mut self.network)
            .into_iter()
            .partition(|m| m.to.0 == id);
        self.network = rest;
        if mine.is_empty() {
            return false;
        }
        if header {
            let _ = writeln!(self.out, "> deliver to n{id}");
        }
        for m in mine {
            let line = fmt_message(&m);
            if drops.contains(&(m.from.0, m.to.0)) || self.blocked(&m) {
                let _ = writeln!(self.out, "  dropped {line}");
                continue;
            }
            let _ = writeln!(self.out, "  {line}");
            let result = self.member(id).node.step(m);
            self.report(id, result);
            self.note_role_changes();
        }
        true
    }

    /// Runs `ids` until none of them has anything to do; messages to others stay queued.
    fn stabilize(&mut self, ids: &[u64]) {
        for _ in 0..100 {
            let mut busy = false;
            for &id in ids {
                if self.member(id).node.has_ready() {
                    self.process_ready(id, true);
                    busy = true;
                }
            }
            for &id in ids {
                if !self.member(id).pending.is_empty() {
                    self.persist(id, true, true);
                    busy = true;
                }
            }
            for &id in ids {
                busy |= self.deliver(id, &BTreeSet::new(), true);
            }
            if !busy {
                return;
            }
        }
        panic!("stabilize did not settle in 100 rounds");
    }

    fn crash(&mut self, id: u64) {
        let member = self.member(id);
        let lost = member.pending.len();
        member.pending.clear();
        // The application restores its state machine from its snapshot (if any) and
        // applies the committed entries after it again.
        // A new process: a new incarnation (the driver would draw a random one).
        member.config.incarnation += 1;
        let mut config = member.config.clone();
        config.applied_index = member.store.snapshot().expect("memory store").index;
        member.node = Node::new(config, member.store.clone()).expect("restart");
        let _ = writeln!(
            self.out,
            "n{id} restarted from its store ({lost} pending writes lost)"
        );
        self.status(id);
    }

    fn status(&mut self, id: u64) {
        let member = self.member(id);
        let s = member.node.status();
        let pending = member.pending.len();
        let opt = |v: Option<NodeId>| v.map_or("-".to_string(), |n| n.0.to_string());
        let mut out = format!(
            "n{id}: {:?} term={} vote={} leader={} commit={} applied={} last={} persisted={} pending-writes={pending}\n",
            s.role,
            s.term,
            opt(s.vote),
            opt(s.leader),
            s.commit_index,
            s.applied_index,
            s.last_index,
            s.persisted_index,
        );
        if s.snapshot_index > LogIndex(0) {
            out.pop();
            let _ = writeln!(out, " snapshot={}", s.snapshot_index);
        }
        for p in &s.progress {
            let _ = writeln!(
                out,
                "  n{}: match={} next={} {:?} inflight={} active={}",
                p.id, p.match_index, p.next_index, p.state, p.inflight_appends, p.recent_active
            );
        }
        self.out.push_str(&out);
    }

    fn log(&mut self, id: u64) {
        let member = self.member(id);
        let hs = fmt_hard_state(member.store.hard_state());
        let entries = fmt_entries(&member.store.all_entries());
        let snapshot = if member.store.first_index() > LogIndex(1) {
            let meta = member.store.snapshot().expect("memory store");
            fmt_persist_snapshot(Some(&meta))
        } else {
            String::new()
        };
        let _ = writeln!(
            self.out,
            "n{id} durable: {snapshot}hard-state {hs} entries [{entries}]"
        );
    }

    /// The application snapshots its state at the applied `index`, with the
    /// configuration in effect there, and compacts the store through it.
    fn compact(&mut self, id: u64, index: LogIndex) {
        let member = self.member(id);
        let applied = member.node.status().applied_index;
        let store = member.store.clone();
        let base = store.snapshot().expect("memory store");
        if index > applied || index <= base.index {
            let _ = writeln!(
                self.out,
                "n{id} cannot compact through {index} (applied={applied} snapshot={})",
                base.index
            );
            return;
        }
        let mut membership = base.membership;
        let entries = store
            .entries(store.first_index(), index.next(), u64::MAX)
            .expect("applied entries are durable");
        for entry in &entries {
            if let EntryPayload::Membership { membership: m, .. } = &entry.payload {
                membership = m.clone();
            }
        }
        let meta = SnapshotMeta {
            index,
            term: store.term(index).expect("applied entries are durable"),
            membership,
        };
        store.compact(&meta);
        let _ = writeln!(
            self.out,
            "n{id} compacted through {}/{} ({})",
            meta.term,
            meta.index,
            fmt_membership(&meta.membership)
        );
    }
}

/// The bare numeric arguments (member ids, or a count), in ascending order.
fn ids(case: &TestCase) -> Vec<u64> {
    let mut ids: Vec<u64> = case
        .args
        .iter()
        .filter(|(_, v)| v.is_empty())
        .filter_map(|(k, _)| k.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// The bare non-numeric arguments.
fn words(case: &TestCase) -> Vec<String> {
    let mut words: Vec<String> = case
        .args
        .iter()
        .filter(|(k, v)| v.is_empty() && k.parse::<u64>().is_err())
        .map(|(k, _)| k.clone())
        .collect();
    words.sort();
    words
}

fn named<T>(case: &mut TestCase, name: &str) -> Option<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    case.try_take_arg(name).expect("one value")
}

fn drops(case: &mut TestCase) -> BTreeSet<(u64, u64)> {
    let pairs: Vec<String> = case
        .try_take_args("drop")
        .expect("pairs")
        .unwrap_or_default();
    pairs
        .iter()
        .map(|p| {
            let (from, to) = p.split_once('-').expect("drop=from-to");
            (from.parse().expect("id"), to.parse().expect("id"))
        })
        .collect()
}

fn fmt_hard_state(hs: HardState) -> String {
    let vote = hs.vote.map_or("-".to_string(), |n| n.0.to_string());
    format!("term={} vote={vote} commit={}", hs.term, hs.commit)
}

fn fmt_entry(e: &Entry) -> String {
    match &e.payload {
        EntryPayload::Command(data) => {
            format!("{}/{} {}", e.term, e.index, String::from_utf8_lossy(data))
        }
        EntryPayload::Membership { membership, .. } => {
            format!("{}/{} CONF {}", e.term, e.index, fmt_membership(membership))
        }
        _ => format!("{}/{} EMPTY", e.term, e.index),
    }
}

fn fmt_ids(ids: &BTreeSet<NodeId>) -> String {
    let ids: Vec<String> = ids.iter().map(|id| id.0.to_string()).collect();
    format!("({})", ids.join(","))
}

/// `voters=(..)`, then `outgoing=(..)` in a joint configuration and `learners=(..)`
/// if there are any.
fn fmt_membership(m: &Membership) -> String {
    let mut out = format!("voters={}", fmt_ids(&m.voters));
    if !m.voters_outgoing.is_empty() {
        let _ = write!(out, " outgoing={}", fmt_ids(&m.voters_outgoing));
    }
    if !m.learners.is_empty() {
        let _ = write!(out, " learners={}", fmt_ids(&m.learners));
    }
    out
}

fn fmt_snapshot(s: &SnapshotMeta) -> String {
    format!("{}/{} {}", s.term, s.index, fmt_membership(&s.membership))
}

/// `snapshot t/i voters=(..) ` before a persist line's hard state, if it has one.
fn fmt_persist_snapshot(s: Option<&SnapshotMeta>) -> String {
    s.map_or(String::new(), |s| format!("snapshot {} ", fmt_snapshot(s)))
}

fn fmt_entries(entries: &[Entry]) -> String {
    entries.iter().map(fmt_entry).collect::<Vec<_>>().join(", ")
}

/// A heartbeat round as `term.sequence`.
fn fmt_round(round: HeartbeatRound) -> String {
    format!("{}.{}", round.term, round.sequence)
}

fn fmt_message(m: &Message) -> String {
    let body = match &m.body {
        MessageBody::PreVote(r) => {
            format!("PreVote last={}/{}", r.last_log_term, r.last_log_index)
        }
        MessageBody::Vote(r) => format!("Vote last={}/{}", r.last_log_term, r.last_log_index),
        MessageBody::PreVoteResponse(r) => {
            format!(
                "PreVoteResp {}",
                if r.granted { "granted" } else { "rejected" }
            )
        }
        MessageBody::VoteResponse(r) => {
            format!(
                "VoteResp {}",
                if r.granted { "granted" } else { "rejected" }
            )
        }
        MessageBody::Append(a) => format!(
            "App prev={}/{} commit={} [{}]",
            a.prev_log_term,
            a.prev_log_index,
            a.leader_commit,
            fmt_entries(&a.entries)
        ),
        MessageBody::AppendResponse(AppendResponse::Accepted { match_index }) => {
            format!("AppResp match={match_index}")
        }
        MessageBody::AppendResponse(AppendResponse::Rejected {
            rejected_index,
            hint_index,
            hint_term,
        }) => format!("AppResp rejected={rejected_index} hint={hint_term}/{hint_index}"),
        MessageBody::Heartbeat(h) => format!(
            "Heartbeat commit={} round={}",
            h.leader_commit,
            fmt_round(h.round)
        ),
        MessageBody::HeartbeatResponse(r) => match r.round {
            Some(round) => format!("HeartbeatResp round={}", fmt_round(round)),
            None => "HeartbeatResp".to_string(),
        },
        MessageBody::ReadHeartbeat(h) => format!(
            "ReadHeartbeat commit={} round={}",
            h.leader_commit,
            fmt_round(h.round)
        ),
        MessageBody::ReadHeartbeatResponse(r) => {
            format!("ReadHeartbeatResp round={}", fmt_round(r.round))
        }
        MessageBody::ReadIndex(r) => {
            format!("ReadIndex id={}.{}", r.id.incarnation, r.id.sequence)
        }
        MessageBody::ReadIndexResponse(r) => format!(
            "ReadIndexResp id={}.{} index={}",
            r.id.incarnation,
            r.id.sequence,
            r.index.map_or("retry".to_string(), |i| i.to_string())
        ),
        MessageBody::TimeoutNow => "TimeoutNow".to_string(),
        MessageBody::TransferVote(r) => {
            format!("TransferVote last={}/{}", r.last_log_term, r.last_log_index)
        }
        MessageBody::InstallSnapshot(s) => format!("InstallSnapshot {}", fmt_snapshot(s)),
        other => format!("{other:?}"),
    };
    format!("{}->{} term={} {body}", m.from.0, m.to.0, m.term)
}
