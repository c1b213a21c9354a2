//! The replicated key-value service: `raftd` and `raftctl` join raft-core,
//! raft-wal and raft-transport behind an HTTP API with Prometheus metrics.
#![forbid(unsafe_code)]

pub mod api;
pub mod client;
pub mod config;
mod driver;
pub mod http;
pub mod kv;
pub mod linearizability;
pub mod local_cluster;
pub mod metrics;
mod notify;
pub mod server;
pub mod service;
mod snapshot_manager;
mod snapshots;
pub mod storage;
