//! Integration tests of raft-wal, one binary: behaviour through the public API on
//! the in-memory faulty backend and on real files.

mod basic;
mod catching_up;
mod common;
mod corruption;
mod crash_points;
mod hard_state;
mod model;
mod nonblocking;
mod poison;
mod process_crash;
mod snapshots;
mod staged_snapshots;
