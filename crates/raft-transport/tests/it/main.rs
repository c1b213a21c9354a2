//! Integration tests of raft-transport: three members on 127.0.0.1 with generated
//! certificates. Tests assert behaviour (what arrives, what is counted), never
//! timings; timeouts are hang guards.

mod auth;
mod messaging;
mod partition;
mod reconnect;
mod robustness;
mod snapshot;
mod support;
