//! A one-shot completion (Mutex + Condvar): the writer thread fills it once, one
//! waiter takes the result. No async runtime is involved, so a tokio server can wait
//! on it from a blocking task or poll it with [`Completion::try_take`].

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::error::{Result, WalError};

struct Slot<T> {
    value: Mutex<Option<Result<T>>>,
    ready: Condvar,
}

/// The receiving half: wait for the outcome of a submitted operation.
#[must_use = "an append is only durable once its completion reports Ok"]
pub struct Completion<T> {
    slot: Arc<Slot<T>>,
}

/// The sending half, held by the writer thread. Dropping it unfilled reports
/// [`WalError::Closed`].
pub(crate) struct Completer<T> {
    slot: Option<Arc<Slot<T>>>,
}

/// A linked completer and completion.
pub(crate) fn pair<T>() -> (Completer<T>, Completion<T>) {
    let slot = Arc::new(Slot {
        value: Mutex::new(None),
        ready: Condvar::new(),
    });
    (
        Completer {
            slot: Some(Arc::clone(&slot)),
        },
        Completion { slot },
    )
}

impl<T> Completer<T> {
    /// Delivers the outcome and wakes the waiter.
    pub(crate) fn complete(mut self, outcome: Result<T>) {
        let slot = self.slot.take().expect("completed once");
        *slot.value.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
        slot.ready.notify_one();
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            *slot.value.lock().unwrap_or_else(|p| p.into_inner()) = Some(Err(WalError::Closed));
            slot.ready.notify_one();
        }
    }
}

impl<T> Completion<T> {
    /// A completion that is already filled.
    pub(crate) fn ready(outcome: Result<T>) -> Completion<T> {
        let (completer, completion) = pair();
        completer.complete(outcome);
        completion
    }

    /// Blocks until the outcome is known.
    pub fn wait(self) -> Result<T> {
        let mut value = self.slot.value.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(outcome) = value.take() {
                return outcome;
            }
            value = self
                .slot
                .ready
                .wait(value)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Blocks for at most `timeout`; gives the completion back if it is not ready.
    pub fn wait_timeout(self, timeout: Duration) -> Result<Result<T>, Completion<T>> {
        let outcome = {
            let value = self.slot.value.lock().unwrap_or_else(|p| p.into_inner());
            let (mut value, _) = self
                .slot
                .ready
                .wait_timeout_while(value, timeout, |value| value.is_none())
                .unwrap_or_else(|p| p.into_inner());
            value.take()
        };
        outcome.ok_or(self)
    }

    /// Takes the outcome if it is known, without blocking. The outcome is delivered
    /// once: after this returned `Some`, do not wait on the completion again.
    pub fn try_take(&self) -> Option<Result<T>> {
        self.slot
            .value
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

impl<T> std::fmt::Debug for Completion<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Completion")
    }
}
