//! The search for a linearization of one key's operations: Wing & Gong's depth-first
//! search over the operations that may take effect next, pruned with Lowe's cache of
//! (linearized set, register value). It must never accept a history that has no
//! linearization, and never reject one that has.
//!
//! The history becomes a doubly linked list of call and return events in time order.
//! Walking it from the front, a call event is a candidate: its operation may take
//! effect next if the register agrees with its outcome. Linearizing it unlinks its call
//! and return ("lifts" it) and restarts from the front. Meeting a return event means
//! that operation had to be linearized before anything later and no candidate worked
//! here, so the last choice is undone. An unknown-outcome operation returns after
//! everything else: placing it last is the same as it never taking effect, so it is
//! optional. Unknown-outcome writes of values nobody saw are left out before the
//! search (see `unseen_writes_of`): each would otherwise double the sets to explore.

use super::{OpKind, Operation, Outcome};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Instant;

/// The answer for one key; indices point into the whole history.
pub(super) enum KeyVerdict {
    Linearizable,
    NotLinearizable {
        longest_prefix: Vec<usize>,
        stuck_op: usize,
        explanation: String,
    },
    Unknown,
}

/// A register value, interned: 0 is "absent", `v` is `Values::table[v - 1]`.
type Value = u32;

const ABSENT: Value = 0;

/// How many search steps pass between two looks at the clock.
const STEPS_PER_CLOCK_READ: u64 = 1024;

/// The head sentinel of the event list; also "no node".
const HEAD: usize = 0;
const NIL: usize = usize::MAX;

/// What an operation does to the register, given its outcome. `None` from
/// [`Step::apply`]: the outcome cannot have come from this value.
#[derive(Clone, Copy, Debug)]
enum Step {
    Read(Value),
    Write(Value),
    Delete,
    CasSucceeded {
        expected: Value,
        new: Value,
    },
    CasFailed {
        expected: Value,
    },
    /// A compare-and-swap with no answer: if it takes effect, it does what the value
    /// at that instant makes it do.
    CasUnknown {
        expected: Value,
        new: Value,
    },
}

impl Step {
    fn apply(self, value: Value) -> Option<Value> {
        match self {
            Step::Read(read) => (read == value).then_some(value),
            Step::Write(new) => Some(new),
            Step::Delete => Some(ABSENT),
            Step::CasSucceeded { expected, new } => (expected == value).then_some(new),
            Step::CasFailed { expected } => (expected != value).then_some(value),
            Step::CasUnknown { expected, new } => Some(if expected == value { new } else { value }),
        }
    }
}

/// The register values seen on one key, interned so a state is a small integer.
#[derive(Default)]
struct Values {
    ids: HashMap<Bytes, Value>,
    table: Vec<Bytes>,
}

impl Values {
    fn intern(&mut self, value: Option<&Bytes>) -> Value {
        let Some(value) = value else { return ABSENT };
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        self.table.push(value.clone());
        let id = Value::try_from(self.table.len()).expect("fewer than 2^32 distinct values");
        self.ids.insert(value.clone(), id);
        id
    }

    fn show(&self, value: Value) -> String {
        match value {
            ABSENT => "absent".to_owned(),
            id => show_bytes(&self.table[id as usize - 1]),
        }
    }
}

/// One operation of the key, ready for the search.
struct Entry {
    history_index: usize,
    step: Step,
    /// An unknown-outcome operation: it need not take effect.
    optional: bool,
}

/// A set of entries, one bit each.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bitset(Box<[u64]>);

impl Bitset {
    fn new(len: usize) -> Self {
        Bitset(vec![0; len.div_ceil(64)].into_boxed_slice())
    }

    fn set(&mut self, bit: usize) {
        self.0[bit / 64] |= 1 << (bit % 64);
    }

    fn clear(&mut self, bit: usize) {
        self.0[bit / 64] &= !(1 << (bit % 64));
    }
}

/// The call and return events of all entries in time order, as a doubly linked list
/// that entries can be lifted out of and put back into (Knuth's dancing links).
struct Events {
    /// Node 0 is [`HEAD`]; node `1 + 2e` is entry `e`'s call, `2 + 2e` its return.
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Events {
    fn new(order: &[usize]) -> Self {
        let nodes = order.len() + 1;
        let mut next = vec![NIL; nodes];
        let mut prev = vec![NIL; nodes];
        let mut last = HEAD;
        for &node in order {
            next[last] = node;
            prev[node] = last;
            last = node;
        }
        Events { next, prev }
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }

    /// Takes entry `e`'s call and return out of the list.
    fn lift(&mut self, entry: usize) {
        self.unlink(call_node(entry));
        self.unlink(return_node(entry));
    }

    /// Undoes [`Events::lift`]; lifts must be undone in reverse order.
    fn unlift(&mut self, entry: usize) {
        self.relink(return_node(entry));
        self.relink(call_node(entry));
    }
}

fn call_node(entry: usize) -> usize {
    1 + 2 * entry
}

fn return_node(entry: usize) -> usize {
    2 + 2 * entry
}

/// The node's entry, and whether the node is its call.
fn entry_of(node: usize) -> (usize, bool) {
    ((node - 1) / 2, node % 2 == 1)
}

/// Whether [`check_key`] may leave out unknown-outcome writes nobody could have seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum UnseenWrites {
    /// Leave them out (see [`unseen_writes_of`]); the normal mode.
    Drop,
    /// Search with them (tests compare both modes).
    #[cfg_attr(not(test), allow(dead_code))]
    Keep,
}

/// Searches for a linearization of the operations `indices` of `history` (one key's,
/// with unknown-outcome reads already dropped), giving up at `deadline`.
pub(super) fn check_key(
    history: &[Operation],
    indices: &[usize],
    deadline: Instant,
    unseen_writes: UnseenWrites,
) -> KeyVerdict {
    let mut values = Values::default();
    let mut entries: Vec<Entry> = indices
        .iter()
        .map(|&history_index| entry(&history[history_index], history_index, &mut values))
        .collect();
    let total = entries.len();
    if unseen_writes == UnseenWrites::Drop {
        let unseen = unseen_writes_of(&entries);
        entries = entries
            .into_iter()
            .zip(unseen)
            .filter_map(|(entry, unseen)| (!unseen).then_some(entry))
            .collect();
    }
    let order = event_order(history, &entries);
    let mut events = Events::new(&order);

    let mut value = ABSENT;
    let mut linearized = Bitset::new(entries.len());
    let mut cache: HashSet<(Bitset, Value)> = HashSet::new();
    // The linearized entries in order, each with the value before it took effect.
    let mut stack: Vec<(usize, Value)> = Vec::new();
    let mut definite_left = entries.iter().filter(|e| !e.optional).count();
    let mut longest: Vec<usize> = Vec::new();
    let mut node = events.next[HEAD];
    let mut steps: u64 = 0;
    loop {
        // What is left is optional: it may all take effect last, i.e. never.
        if definite_left == 0 {
            return KeyVerdict::Linearizable;
        }
        if steps.is_multiple_of(STEPS_PER_CLOCK_READ) && Instant::now() >= deadline {
            return KeyVerdict::Unknown;
        }
        steps += 1;
        // A definite entry is left, so its return event lies ahead: the walk meets a
        // return before it runs off the list.
        assert_ne!(node, NIL, "the event walk ran past the last return");
        let (e, is_call) = entry_of(node);
        if is_call {
            if let Some(next_value) = entries[e].step.apply(value) {
                linearized.set(e);
                if cache.insert((linearized.clone(), next_value)) {
                    stack.push((e, value));
                    value = next_value;
                    if !entries[e].optional {
                        definite_left -= 1;
                    }
                    events.lift(e);
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|&(e, _)| e).collect();
                    }
                    node = events.next[HEAD];
                    continue;
                }
                // This set with this value was explored before and failed.
                linearized.clear(e);
            }
            node = events.next[node];
        } else {
            // Entry `e` must take effect before anything later, and no candidate before
            // its return worked: undo the last choice and try the next candidate.
            let Some((e, previous)) = stack.pop() else {
                return not_linearizable(history, &entries, total, &values, &order, &longest);
            };
            linearized.clear(e);
            value = previous;
            if !entries[e].optional {
                definite_left += 1;
            }
            events.unlift(e);
            node = events.next[call_node(e)];
        }
    }
}

fn entry(operation: &Operation, history_index: usize, values: &mut Values) -> Entry {
    let optional = operation.outcome == Outcome::Unknown;
    let step = match (&operation.kind, &operation.outcome) {
        (OpKind::Read, Outcome::ReadValue(read)) => Step::Read(values.intern(read.as_ref())),
        (OpKind::Write(new), _) => Step::Write(values.intern(Some(new))),
        (OpKind::Delete, _) => Step::Delete,
        (OpKind::CompareAndSwap { expected, new }, outcome) => {
            let expected = values.intern(expected.as_ref());
            let new = values.intern(Some(new));
            match outcome {
                Outcome::CasResult(true) => Step::CasSucceeded { expected, new },
                Outcome::CasResult(false) => Step::CasFailed { expected },
                _ => Step::CasUnknown { expected, new },
            }
        }
        // `check` validated kinds against outcomes and dropped unknown reads.
        (OpKind::Read, outcome) => unreachable!("a read with outcome {outcome:?}"),
    };
    Entry {
        history_index,
        step,
        optional,
    }
}

/// Which entries are unknown-outcome writes (or compare-and-swaps) of a value that no
/// read returned and no compare-and-swap expected, on a key with no failed
/// compare-and-swap. Leaving them out changes no verdict, and saves the search from
/// trying each of them before every later operation (2^n sets for n of them).
///
/// Why no verdict changes: a linearization without them is one with them placed last.
/// Conversely, remove them from a linearization L of the whole key. While L's register
/// holds a value nobody saw, the reduced register may hold another; no operation in
/// that stretch can tell, since no read returned that value and no compare-and-swap
/// succeeded on it. An unknown compare-and-swap that did nothing in L might now swap:
/// it moves to the end, where an optional operation is always allowed. A failed
/// compare-and-swap could tell (the other value might be the one it expected), hence
/// the condition.
fn unseen_writes_of(entries: &[Entry]) -> Vec<bool> {
    let mut seen = HashSet::new();
    for entry in entries {
        match entry.step {
            Step::Read(value) => {
                seen.insert(value);
            }
            Step::CasSucceeded { expected, .. } | Step::CasUnknown { expected, .. } => {
                seen.insert(expected);
            }
            Step::CasFailed { .. } => return vec![false; entries.len()],
            Step::Write(_) | Step::Delete => {}
        }
    }
    entries
        .iter()
        .map(|entry| match entry.step {
            Step::Write(new) | Step::CasUnknown { new, .. } => {
                entry.optional && !seen.contains(&new)
            }
            _ => false,
        })
        .collect()
}

/// The event nodes in time order. An unknown outcome returns after everything else;
/// at one instant calls come before returns, so operations that touch overlap.
fn event_order(history: &[Operation], entries: &[Entry]) -> Vec<usize> {
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * entries.len());
    for (e, entry) in entries.iter().enumerate() {
        let operation = &history[entry.history_index];
        let returned = match operation.returned {
            Some(returned) if !entry.optional => returned,
            _ => u64::MAX,
        };
        events.push((operation.call, false, call_node(e)));
        events.push((returned, true, return_node(e)));
    }
    events.sort_unstable();
    events.into_iter().map(|(_, _, node)| node).collect()
}

/// Explains the failure from the longest linearized prefix. That prefix is the
/// deepest the search went, so from it no candidate could take effect: the stuck
/// operation is the first left to return, and each operation called before it returned
/// disagrees with the register.
fn not_linearizable(
    history: &[Operation],
    entries: &[Entry],
    total: usize,
    values: &Values,
    order: &[usize],
    longest: &[usize],
) -> KeyVerdict {
    let mut in_prefix = vec![false; entries.len()];
    let mut value = ABSENT;
    for &e in longest {
        in_prefix[e] = true;
        value = entries[e]
            .step
            .apply(value)
            .expect("the longest prefix replays");
    }
    let mut candidates = Vec::new();
    let mut stuck = None;
    for &node in order {
        let (e, is_call) = entry_of(node);
        if in_prefix[e] {
            continue;
        }
        if is_call {
            candidates.push(e);
        } else {
            stuck = Some(e);
            break;
        }
    }
    let stuck = stuck.expect("a definite operation is left after the longest prefix");

    let describe = |e: usize| describe(history, entries[e].history_index);
    let mut explanation = String::new();
    let key = &history[entries[stuck].history_index].key;
    let _ = writeln!(
        explanation,
        "key {key:?}: the longest linearizable prefix holds {} of {} operations",
        longest.len(),
        entries.len()
    );
    if total > entries.len() {
        let _ = writeln!(
            explanation,
            "(left out: {} unknown-outcome writes of values nobody saw)",
            total - entries.len()
        );
    }
    const SHOWN: usize = 10;
    if longest.len() > SHOWN {
        let _ = writeln!(explanation, "  ... {} earlier", longest.len() - SHOWN);
    }
    for &e in &longest[longest.len().saturating_sub(SHOWN)..] {
        let _ = writeln!(explanation, "  {}", describe(e));
    }
    let _ = writeln!(
        explanation,
        "after it the register holds {}, and {} cannot take effect next",
        values.show(value),
        describe(stuck)
    );
    let others: Vec<usize> = candidates.into_iter().filter(|&e| e != stuck).collect();
    if !others.is_empty() {
        let _ = writeln!(
            explanation,
            "nor can any other operation called before it returned:"
        );
        for &e in &others {
            let _ = writeln!(explanation, "  {}", describe(e));
        }
    }
    KeyVerdict::NotLinearizable {
        longest_prefix: longest.iter().map(|&e| entries[e].history_index).collect(),
        stuck_op: entries[stuck].history_index,
        explanation: explanation.trim_end().to_owned(),
    }
}

/// One line about one operation: `#7 client 2: read -> "a" [call 10, return 20]`.
fn describe(history: &[Operation], index: usize) -> String {
    let operation = &history[index];
    let value = |value: &Option<Bytes>| match value {
        None => "absent".to_owned(),
        Some(bytes) => show_bytes(bytes),
    };
    let kind = match &operation.kind {
        OpKind::Read => "read".to_owned(),
        OpKind::Write(new) => format!("write {}", show_bytes(new)),
        OpKind::Delete => "delete".to_owned(),
        OpKind::CompareAndSwap { expected, new } => {
            format!("cas {} -> {}", value(expected), show_bytes(new))
        }
    };
    let outcome = match &operation.outcome {
        Outcome::ReadValue(read) => value(read),
        Outcome::WriteOk | Outcome::DeleteOk => "ok".to_owned(),
        Outcome::CasResult(true) => "swapped".to_owned(),
        Outcome::CasResult(false) => "not swapped".to_owned(),
        Outcome::Unknown => "unknown".to_owned(),
    };
    let returned = match (operation.returned, &operation.outcome) {
        (_, Outcome::Unknown) | (None, _) => "never".to_owned(),
        (Some(returned), _) => returned.to_string(),
    };
    format!(
        "#{index} client {}: {kind} => {outcome} [call {}, return {returned}]",
        operation.client, operation.call
    )
}

/// A value for humans: quoted text, at most 32 bytes of it.
fn show_bytes(bytes: &Bytes) -> String {
    const SHOWN: usize = 32;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(SHOWN)]).into_owned();
    if bytes.len() > SHOWN {
        format!("{text:?}... ({} bytes)", bytes.len())
    } else {
        format!("{text:?}")
    }
}
