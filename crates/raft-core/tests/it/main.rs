//! raft-core's integration tests: the simulator under seeded faults, the 6.824 lab
//! scenarios, scenario scripts, and property tests of the quorum math.

#[path = "../sim/mod.rs"]
mod sim;

mod fuzz_ops;
mod lab;
mod lab_snapshot;
mod persistence;
mod quorum;
mod reads;
mod scenario;
mod simulation;
mod single_node;
