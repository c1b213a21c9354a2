//! The Raft consensus protocol as a deterministic, sans-IO state machine.
#![forbid(unsafe_code)]
