//! Raft peer messaging over QUIC with mutual TLS: a versioned wire codec for
//! raft-core's messages, pipelined appends and streamed snapshots.
#![forbid(unsafe_code)]
