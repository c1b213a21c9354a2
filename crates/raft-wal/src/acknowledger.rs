//! The acknowledger thread: wakes the waiters of large durable commit groups while
//! the writer already writes and syncs the next group. Acknowledgements are
//! delivered in group order and only for groups whose sync returned.

use std::sync::Arc;

use crate::Appended;
use crate::completion::Completer;
use crate::shared::Shared;

/// Groups with more waiters than this are acknowledged on the acknowledger thread,
/// so that waking them overlaps the next group's write and sync; smaller ones are
/// acknowledged inline, sparing a thread hand-off on the latency path.
const ACKNOWLEDGE_INLINE_MAX: usize = 8;

/// Acknowledges a durable group's waiters, in group order.
pub(crate) fn acknowledge(shared: &Shared, waiters: Vec<(Completer<Appended>, Appended)>) {
    {
        let mut acks = shared.acks();
        // Once anything is queued or in progress there, later groups queue behind
        // it, so acknowledgements never overtake each other.
        if waiters.len() > ACKNOWLEDGE_INLINE_MAX || acks.busy || !acks.batches.is_empty() {
            acks.batches.push(waiters);
            drop(acks);
            shared.acks_ready.notify_one();
            return;
        }
    }
    for (done, outcome) in waiters {
        done.complete(Ok(outcome));
    }
}

/// The acknowledger thread: wakes the waiters of large durable groups.
pub(crate) fn run_acknowledger(shared: Arc<Shared>) {
    loop {
        let batches = {
            let mut acks = shared.acks();
            acks.busy = false;
            while acks.batches.is_empty() && !acks.closed {
                acks = shared
                    .acks_ready
                    .wait(acks)
                    .unwrap_or_else(|p| p.into_inner());
            }
            if acks.batches.is_empty() {
                return;
            }
            acks.busy = true;
            std::mem::take(&mut acks.batches)
        };
        for batch in batches {
            for (done, outcome) in batch {
                done.complete(Ok(outcome));
            }
        }
    }
}
