//! A one-shot completion (Mutex + Condvar): the writer thread fills it once, one
//! waiter takes the result. No async runtime is involved: a thread blocks in
//! [`Completion::wait`], and an async task awaits the completion as a [`Future`],
//! which the writer thread wakes directly (no thread in between).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::error::{Result, WalError};

struct Slot<T> {
    value: Mutex<State<T>>,
    ready: Condvar,
}

/// The outcome once known, and the task to wake when it becomes known.
struct State<T> {
    outcome: Option<Result<T>>,
    waker: Option<Waker>,
}

impl<T> Slot<T> {
    fn state(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.value.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores the outcome and wakes whoever waits, thread or task.
    fn fill(&self, outcome: Result<T>) {
        let waker = {
            let mut state = self.state();
            state.outcome = Some(outcome);
            state.waker.take()
        };
        self.ready.notify_one();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
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
        value: Mutex::new(State {
            outcome: None,
            waker: None,
        }),
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
        self.slot.take().expect("completed once").fill(outcome);
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.fill(Err(WalError::Closed));
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
        let mut state = self.slot.state();
        loop {
            if let Some(outcome) = state.outcome.take() {
                return outcome;
            }
            state = self
                .slot
                .ready
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Blocks for at most `timeout`; gives the completion back if it is not ready.
    pub fn wait_timeout(self, timeout: Duration) -> Result<Result<T>, Completion<T>> {
        let outcome = {
            let state = self.slot.state();
            let (mut state, _) = self
                .slot
                .ready
                .wait_timeout_while(state, timeout, |state| state.outcome.is_none())
                .unwrap_or_else(|p| p.into_inner());
            state.outcome.take()
        };
        outcome.ok_or(self)
    }

    /// Takes the outcome if it is known, without blocking. The outcome is delivered
    /// once: after this returned `Some`, do not wait on the completion again.
    pub fn try_take(&self) -> Option<Result<T>> {
        self.slot.state().outcome.take()
    }
}

/// Awaiting a completion: ready once the writer filled it; the writer thread wakes
/// the task itself. Like [`Completion::try_take`], the outcome is delivered once.
impl<T> Future for Completion<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut state = self.slot.state();
        match state.outcome.take() {
            Some(outcome) => Poll::Ready(outcome),
            None => {
                match &mut state.waker {
                    Some(waker) => waker.clone_from(cx.waker()),
                    None => state.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl<T> std::fmt::Debug for Completion<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Completion")
    }
}
