//! Arbitrary sequences of messages, ticks, proposals, reads, transfers, membership
//! changes and persistence acknowledgements fed to one raft-core node: it never
//! panics and never breaks its own invariants (term and commit never go back, commit
//! never passes the log's end, applied never passes commit).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/raft-core/tests/fuzz_ops/mod.rs"]
mod ops;

fuzz_target!(|data: &[u8]| ops::run(data));
