//! A recorder of operations from concurrent clients, for [`super::check`]. Call and
//! return times come from one monotonic clock read under the recorder's lock, so the
//! recorded order of events is an order they really happened in.

use super::{CheckResult, OpKind, Operation, Outcome};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A history being recorded. Cheap to clone: clones share one record, so each client
/// task can hold its own.
///
/// Call [`History::invoke`] right before a request leaves and [`History::complete`]
/// right after its answer arrives. An operation never completed (its client crashed or
/// gave up) stays [`Outcome::Unknown`], which is what it is.
#[derive(Clone, Debug)]
pub struct History {
    shared: Arc<Mutex<Record>>,
}

#[derive(Debug)]
struct Record {
    start: Instant,
    operations: Vec<Operation>,
}

/// An invoked operation waiting for its outcome; [`History::complete`] consumes it.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "complete the operation, or it stays unknown"]
pub struct OpId(usize);

impl History {
    /// An empty history whose clock starts now.
    pub fn new() -> Self {
        let record = Record {
            start: Instant::now(),
            operations: Vec::new(),
        };
        History {
            shared: Arc::new(Mutex::new(record)),
        }
    }

    /// Records the call of an operation; its outcome is unknown until completed.
    pub fn invoke(&self, client: u64, key: impl Into<String>, kind: OpKind) -> OpId {
        let key = key.into();
        let mut record = self.lock();
        let call = nanoseconds(record.start.elapsed());
        record.operations.push(Operation {
            client,
            key,
            call,
            returned: None,
            kind,
            outcome: Outcome::Unknown,
        });
        OpId(record.operations.len() - 1)
    }

    /// Records what the client was told. [`Outcome::Unknown`] (a timeout, a lost
    /// connection) leaves the operation without a return time, so it may take effect
    /// any time after its call. A read that failed may be completed as unknown too: the
    /// checker drops it.
    pub fn complete(&self, id: OpId, outcome: Outcome) {
        let mut record = self.lock();
        let returned = nanoseconds(record.start.elapsed());
        let operation = &mut record.operations[id.0];
        if outcome != Outcome::Unknown {
            operation.returned = Some(returned);
        }
        operation.outcome = outcome;
    }

    /// A copy of the operations recorded so far, in call order.
    pub fn operations(&self) -> Vec<Operation> {
        self.lock().operations.clone()
    }

    /// Checks the operations recorded so far; see [`super::check`].
    pub fn check(&self, budget_per_key: Duration) -> CheckResult {
        super::check(&self.operations(), budget_per_key)
    }

    fn lock(&self) -> MutexGuard<'_, Record> {
        // A client that panicked mid-record leaves a consistent record: each change is
        // one push or one field update.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

fn nanoseconds(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}
