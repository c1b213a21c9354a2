//! Benchmarks of the Raft engine. The criterion suites live in `benches/benches/`;
//! `raft-bench`, the load generator for a running cluster, lives in `src/bin/`.
#![forbid(unsafe_code)]

pub mod load;
pub mod local_cluster;
