//! Black-box tests of raftd: real `raftd` processes on 127.0.0.1, driven over the
//! HTTP API, killed with SIGKILL, stopped with SIGTERM, and restarted.

mod cluster;
mod failures;
mod kv;
mod linearizable;
mod membership;
mod metrics;
mod netfault;
mod notify;
mod prometheus;
mod snapshots;
mod tls;
