//! Raft peer messaging over QUIC with mutual TLS: a versioned wire codec for
//! raft-core's messages, pipelined appends and streamed snapshots.
//!
//! # Shape
//!
//! [`Transport::start`] binds a quinn endpoint (ALPN `raft/1`) and returns the handle
//! and a channel of [`Incoming`] events. [`Transport::send`] only enqueues: each peer
//! has a bounded queue for appends and one for every other message, drained by a
//! writer per queue onto its own unidirectional QUIC stream. Appends therefore
//! pipeline in order while votes and heartbeats never wait behind them. When a
//! queue is full the message is dropped and [`Incoming::Unreachable`] reported, so
//! memory stays bounded and the core falls back to probing.
//!
//! Members authenticate each other with certificates signed by the cluster CA that
//! name them in a `raft://member/<id>` URI SAN (see [`tls`]); [`certs`] generates a
//! development CA and member certificates.
//!
//! Snapshots stream on their own bidirectional stream in CRC-checked chunks, in
//! constant memory, resuming from the last acknowledged offset after a reconnect
//! ([`Transport::send_snapshot`], [`SnapshotSinkFactory`]).
//!
//! The wire format is documented in `docs/wire-format.md`.
//!
//! # What this crate never does
//!
//! It never awaits the network in `send`, never holds more than the configured queue
//! and chunk sizes per peer, never panics or allocates beyond the frame limit on bad
//! input, and never depends on raft-wal.
//!
//! ```no_run
//! # async fn example(config: raft_transport::TransportConfig, message: raft_core::Message) {
//! use raft_transport::{Incoming, Transport};
//! let (transport, mut incoming) = Transport::start(config).unwrap();
//! transport.send(message).ok();
//! while let Some(event) = incoming.recv().await {
//!     match event {
//!         Incoming::Message(message) => { /* node.step(message) */ }
//!         Incoming::Unreachable(peer) => { /* node.report_unreachable(peer) */ }
//!         Incoming::Snapshot(snapshot) => { /* restore from the sink's output */ }
//!         _ => {}
//!     }
//! }
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod certs;
pub mod codec;
mod config;
mod error;
mod inbound;
mod peer;
mod snapshot;
mod stats;
mod stream;
pub mod tls;
mod transport;

pub use config::{SnapshotConfig, TransportConfig};
pub use error::TransportError;
pub use snapshot::{
    FileSnapshotSinkFactory, ReceivedSnapshot, SnapshotHeader, SnapshotReport, SnapshotSink,
    SnapshotSinkFactory, SnapshotSource, SnapshotTransfer,
};
pub use stats::{PeerStats, TransportStats};
pub use tls::{RefusalReason, TlsIdentity};
pub use transport::{Incoming, Transport};
