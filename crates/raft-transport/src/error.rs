//! The crate's one error type. Every variant carries structured fields so callers
//! and metrics can tell failures apart without matching on strings.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use raft_core::NodeId;

/// Everything that can go wrong in the transport: decoding, TLS setup, certificates,
/// endpoints and snapshot transfers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A frame's length prefix announces more bytes than the configured limit.
    #[error("frame of {len_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    FrameTooLarge {
        /// The announced length.
        len_bytes: u64,
        /// The configured limit.
        limit_bytes: u64,
    },
    /// A frame or stream preamble carries a wire version this build does not speak.
    #[error("unsupported wire version {version} (this build speaks {supported})")]
    UnsupportedVersion {
        /// The version found on the wire.
        version: u8,
        /// The version this build speaks.
        supported: u8,
    },
    /// A message frame carries a tag no variant of this build uses.
    #[error("unknown message tag {tag}")]
    UnknownMessageTag {
        /// The tag byte found on the wire.
        tag: u8,
    },
    /// An entry carries a payload tag no variant of this build uses.
    #[error("unknown entry payload tag {tag}")]
    UnknownPayloadTag {
        /// The tag byte found on the wire.
        tag: u8,
    },
    /// A stream preamble names a stream kind this build does not know.
    #[error("unknown stream kind {kind}")]
    UnknownStreamKind {
        /// The kind byte found on the wire.
        kind: u8,
    },
    /// A snapshot-stream frame carries a tag this build does not know.
    #[error("unknown snapshot frame tag {tag}")]
    UnknownSnapshotTag {
        /// The tag byte found on the wire.
        tag: u8,
    },
    /// A field needs more bytes than remain in the frame.
    #[error("truncated {field}: needs {needed_bytes} bytes, {remaining_bytes} remain")]
    Truncated {
        /// What was being decoded.
        field: &'static str,
        /// Bytes the field needs.
        needed_bytes: u64,
        /// Bytes left in the frame.
        remaining_bytes: u64,
    },
    /// A frame holds bytes after its last field.
    #[error("{trailing_bytes} unexpected bytes after a {what}")]
    TrailingBytes {
        /// What was decoded.
        what: &'static str,
        /// How many bytes were left over.
        trailing_bytes: u64,
    },
    /// A field holds a value outside its domain (e.g. a boolean byte of 7).
    #[error("invalid value {value} for {field}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// A message kind added to raft-core that this codec version cannot encode yet.
    #[error("message kind {kind} has no wire encoding in this build")]
    UnencodableMessage {
        /// The kind, as `MessageBody::kind` names it.
        kind: &'static str,
    },
    /// A message's sender or receiver does not match the connection it travels on.
    #[error("message from {from} to {to} on a connection between {peer} and {local}")]
    Misaddressed {
        /// The message's `from`.
        from: NodeId,
        /// The message's `to`.
        to: NodeId,
        /// The authenticated peer of the connection.
        peer: NodeId,
        /// This member.
        local: NodeId,
    },
    /// A snapshot chunk's CRC-32C does not match its data.
    #[error("snapshot chunk at offset {offset} failed its checksum")]
    ChunkChecksum {
        /// The chunk's offset in the snapshot.
        offset: u64,
    },
    /// A snapshot stream broke the protocol (offset out of sequence, ack beyond the
    /// data, ...).
    #[error("snapshot protocol violation: expected offset {expected}, got {found}")]
    SnapshotOffset {
        /// The offset the protocol called for.
        expected: u64,
        /// The offset found.
        found: u64,
    },
    /// The receiving member refused a snapshot (it has no snapshot sink, or its sink
    /// failed).
    #[error("member {peer} refused the snapshot (reason code {code})")]
    SnapshotRefused {
        /// The receiver.
        peer: NodeId,
        /// The reason code sent back (see docs/wire-format.md).
        code: u8,
    },
    /// A snapshot transfer gave up after its last attempt.
    #[error("snapshot to {peer} failed after {attempts} attempts")]
    SnapshotAttemptsExhausted {
        /// The receiver.
        peer: NodeId,
        /// How many connections were tried.
        attempts: u32,
    },
    /// Reading or writing snapshot data failed.
    #[error("snapshot I/O at offset {offset}: {source}")]
    SnapshotIo {
        /// Where in the snapshot.
        offset: u64,
        /// The underlying error.
        source: io::Error,
    },
    /// The peer is not (or no longer) in the configured membership.
    #[error("member {peer} is not in the membership")]
    UnknownPeer {
        /// The peer.
        peer: NodeId,
    },
    /// The peer's send queue is full; the message was dropped and `Unreachable`
    /// reported.
    #[error("send queue to {peer} is full; message dropped")]
    QueueFull {
        /// The peer.
        peer: NodeId,
    },
    /// The transport was shut down.
    #[error("the transport is shut down")]
    Shutdown,
    /// A QUIC connection or stream failed.
    #[error("connection to {peer} failed: {source}")]
    Connection {
        /// The peer.
        peer: NodeId,
        /// The underlying error.
        source: quinn::ConnectionError,
    },
    /// Dialing a peer could not even start (bad address, endpoint closed, ...).
    #[error("cannot dial {peer} at {addr}: {source}")]
    Connect {
        /// The peer.
        peer: NodeId,
        /// The address dialed.
        addr: SocketAddr,
        /// The underlying error.
        source: quinn::ConnectError,
    },
    /// Writing to or reading from a QUIC stream failed.
    #[error("stream to {peer} failed: {source}")]
    Stream {
        /// The peer.
        peer: NodeId,
        /// The underlying error.
        source: io::Error,
    },
    /// Binding the UDP socket failed.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A PEM file holds no item of the expected kind.
    #[error("{path}: no {item} found")]
    MissingPem {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// What was looked for ("certificate", "private key").
        item: &'static str,
    },
    /// A PEM file could not be parsed.
    #[error("{path}: invalid PEM: {source}")]
    Pem {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// The parse error.
        source: rustls::pki_types::pem::Error,
    },
    /// The CA certificate cannot serve as a trust anchor.
    #[error("invalid CA certificate: {source}")]
    InvalidCa {
        /// The parse error.
        source: webpki::Error,
    },
    /// This member's own certificate does not carry its configured member id.
    #[error("own certificate names member {found:?}, configured id is {expected}")]
    OwnCertificateId {
        /// The configured id.
        expected: NodeId,
        /// The id the certificate carries, if any.
        found: Option<NodeId>,
    },
    /// This member's own certificate does not chain to the configured CA (or lacks
    /// the server or client authentication usage), so every peer would refuse it.
    #[error("own certificate is not valid under the configured CA: {source}")]
    OwnCertificateUntrusted {
        /// Why the chain was rejected.
        source: rustls::Error,
    },
    /// rustls refused the configuration (key does not match, no cipher suite, ...).
    #[error("TLS configuration: {source}")]
    Tls {
        /// The underlying error.
        source: rustls::Error,
    },
    /// Generating a development certificate failed.
    #[error("certificate generation: {source}")]
    CertGeneration {
        /// The underlying error.
        source: rcgen::Error,
    },
}

impl TransportError {
    /// Whether this error came from bytes on the wire (codec or protocol), as opposed
    /// to configuration, I/O or the network. Those are the ones counted as decode
    /// errors.
    pub fn is_decode_error(&self) -> bool {
        matches!(
            self,
            TransportError::FrameTooLarge { .. }
                | TransportError::UnsupportedVersion { .. }
                | TransportError::UnknownMessageTag { .. }
                | TransportError::UnknownPayloadTag { .. }
                | TransportError::UnknownStreamKind { .. }
                | TransportError::UnknownSnapshotTag { .. }
                | TransportError::Truncated { .. }
                | TransportError::TrailingBytes { .. }
                | TransportError::InvalidField { .. }
                | TransportError::Misaddressed { .. }
                | TransportError::ChunkChecksum { .. }
                | TransportError::SnapshotOffset { .. }
        )
    }
}
