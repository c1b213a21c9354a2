//! A linearizability checker for histories of per-key register operations, and a
//! recorder for such histories. A history passes only if, for every key, its operations
//! can be put in one order in which each takes effect at an instant between its call and
//! its return (Herlihy & Wing 1990) and every result agrees with a register.
//!
//! The search is Wing & Gong's, with Lowe's memoization of (linearized set, register
//! value) ("Testing for linearizability", 2017), run once per key: linearizability is
//! local (Herlihy & Wing, Theorem 1), so a history of many keys is linearizable exactly
//! when each key's sub-history is. An operation whose outcome is unknown (a timeout, a
//! lost connection) may take effect at any instant after its call, or never.
//!
//! How to use it from a black-box test:
//!
//! ```
//! use raft_server::linearizability::{History, OpKind, Outcome, Verdict};
//! use std::time::Duration;
//!
//! let history = History::new();
//! let id = history.invoke(1, "k", OpKind::Write("a".into()));
//! // ... send the request ...
//! history.complete(id, Outcome::WriteOk);
//! let id = history.invoke(2, "k", OpKind::Read);
//! history.complete(id, Outcome::ReadValue(Some("a".into())));
//!
//! let result = history.check(Duration::from_secs(10));
//! assert_eq!(result.verdict, Verdict::Linearizable);
//! ```
//!
//! A budget-exhausted key gives [`Verdict::Unknown`]; CI treats it as a failure, since a
//! checker that gives up has not shown anything.

mod history;
mod search;
#[cfg(test)]
mod tests;

pub use history::{History, OpId};

use bytes::Bytes;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// One client operation on one key, as the client saw it.
///
/// Times are in nanoseconds (or any logical unit) on one clock shared by all clients
/// of the history; only their order matters. Record the call before the request leaves
/// and the return after the answer arrived.
///
/// A read that failed (an error, no value) tells nothing: record it with
/// [`Outcome::Unknown`] or leave it out; the checker drops unknown-outcome reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The client that issued the operation (only used in explanations).
    pub client: u64,
    /// The key the operation touched.
    pub key: String,
    /// When the operation was called.
    pub call: u64,
    /// When the answer arrived; `None` when no answer arrived.
    ///
    /// An operation with [`Outcome::Unknown`] is treated as never returning whatever
    /// this says. One with a known outcome but no return time must still take effect,
    /// at any instant after its call.
    pub returned: Option<u64>,
    /// What the client asked for.
    pub kind: OpKind,
    /// What the client was told.
    pub outcome: Outcome,
}

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Read the key's value.
    Read,
    /// Write a value (create or overwrite).
    Write(Bytes),
    /// Remove the key.
    Delete,
    /// Write `new` if the key currently holds `expected`.
    CompareAndSwap {
        /// The value the key must hold; `None`: the key must not exist.
        expected: Option<Bytes>,
        /// The value written when the comparison holds.
        new: Bytes,
    },
}

/// What a client was told. Each [`OpKind`] has its own definite outcome; every kind
/// may end [`Outcome::Unknown`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A [`OpKind::Read`] returned this value (`None`: the key did not exist).
    ReadValue(Option<Bytes>),
    /// A [`OpKind::Write`] succeeded.
    WriteOk,
    /// A [`OpKind::Delete`] succeeded (whether or not the key existed).
    DeleteOk,
    /// A [`OpKind::CompareAndSwap`] succeeded (`true`) or found another value (`false`).
    CasResult(bool),
    /// No answer (timeout, lost connection, server error): the operation may have taken
    /// effect at any instant after its call, or never.
    Unknown,
}

/// The checker's answer for a whole history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    /// Linearizable, not, or not decided within the budget.
    pub verdict: Verdict,
    /// How many keys were searched (the search stops at the first violation).
    pub keys_checked: usize,
    /// How many operations the history holds, less the unknown-outcome reads dropped.
    pub ops: usize,
}

impl CheckResult {
    /// Whether the history was shown to be linearizable.
    pub fn is_linearizable(&self) -> bool {
        self.verdict == Verdict::Linearizable
    }
}

/// Whether a history is linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's operations linearize.
    Linearizable,
    /// One key's operations do not (the first such key, in key order).
    NotLinearizable {
        /// The key.
        key: String,
        /// Indices into the checked history of the longest sequence of this key's
        /// operations found to linearize, in linearization order.
        longest_prefix: Vec<usize>,
        /// The index of the operation that could not be placed after that prefix: the
        /// first to return among those left. Nothing called before it returned could
        /// take effect next.
        stuck_op: usize,
        /// A human-readable account of the above, with the register's value.
        explanation: String,
    },
    /// The search of these keys ran out of its budget: nothing is known about them.
    /// Counts as a failure in CI.
    Unknown {
        /// The keys, in key order.
        keys: Vec<String>,
    },
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => f.write_str("linearizable"),
            Verdict::NotLinearizable { explanation, .. } => {
                write!(f, "not linearizable: {explanation}")
            }
            Verdict::Unknown { keys } => {
                write!(f, "unknown: the search ran out of budget on keys {keys:?}")
            }
        }
    }
}

/// Checks a history, one key at a time in key order, giving each key's search
/// `budget_per_key` of wall time. Stops at the first key that is not linearizable.
///
/// Operations of one key may come in any order; clients need not be sequential.
/// Call and return at the same instant count as concurrent (the lenient reading of a
/// coarse clock).
///
/// # Panics
///
/// On a malformed history, which is a bug in the recorder: an outcome that does not
/// belong to its kind (a read told [`Outcome::WriteOk`]), or a return before the call.
pub fn check(history: &[Operation], budget_per_key: Duration) -> CheckResult {
    check_with(history, budget_per_key, search::UnseenWrites::Drop)
}

fn check_with(
    history: &[Operation],
    budget_per_key: Duration,
    unseen_writes: search::UnseenWrites,
) -> CheckResult {
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut ops = 0;
    for (index, operation) in history.iter().enumerate() {
        validate(index, operation);
        if operation.kind == OpKind::Read && operation.outcome == Outcome::Unknown {
            continue;
        }
        ops += 1;
        by_key.entry(&operation.key).or_default().push(index);
    }

    let mut keys_checked = 0;
    let mut unknown_keys = Vec::new();
    for (key, indices) in by_key {
        keys_checked += 1;
        let deadline = Instant::now() + budget_per_key;
        match search::check_key(history, &indices, deadline, unseen_writes) {
            search::KeyVerdict::Linearizable => {}
            search::KeyVerdict::Unknown => unknown_keys.push(key.to_owned()),
            search::KeyVerdict::NotLinearizable {
                longest_prefix,
                stuck_op,
                explanation,
            } => {
                let verdict = Verdict::NotLinearizable {
                    key: key.to_owned(),
                    longest_prefix,
                    stuck_op,
                    explanation,
                };
                return CheckResult {
                    verdict,
                    keys_checked,
                    ops,
                };
            }
        }
    }
    let verdict = if unknown_keys.is_empty() {
        Verdict::Linearizable
    } else {
        Verdict::Unknown { keys: unknown_keys }
    };
    CheckResult {
        verdict,
        keys_checked,
        ops,
    }
}

fn validate(index: usize, operation: &Operation) {
    let fits = matches!(
        (&operation.kind, &operation.outcome),
        (_, Outcome::Unknown)
            | (OpKind::Read, Outcome::ReadValue(_))
            | (OpKind::Write(_), Outcome::WriteOk)
            | (OpKind::Delete, Outcome::DeleteOk)
            | (OpKind::CompareAndSwap { .. }, Outcome::CasResult(_))
    );
    assert!(
        fits,
        "malformed history: operation #{index} is {:?} with outcome {:?}",
        operation.kind, operation.outcome
    );
    if let Some(returned) = operation.returned {
        assert!(
            returned >= operation.call,
            "malformed history: operation #{index} returned at {returned} before its call at {}",
            operation.call
        );
    }
}
