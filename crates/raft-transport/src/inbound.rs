//! The accepting side: handshakes (refusals classified and counted), then one reader
//! task per stream. A reader closes its own stream on bad bytes and nothing else: the
//! connection and the endpoint keep serving. A stream claiming another sender than
//! the certificate names closes the whole connection.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use quinn::{Connection, ConnectionError, RecvStream, SendStream, TransportErrorCode};
use raft_core::NodeId;
use rustls::pki_types::CertificateDer;

use crate::codec::{StreamKind, decode_message};
use crate::error::TransportError;
use crate::stats::PeerCounters;
use crate::stream::{CODE_CLAIM_MISMATCH, FrameReader};
use crate::tls::{RefusalReason, member_id_of};
use crate::transport::{Incoming, Shared};

/// The buffer a message stream starts with; it grows to the largest frame seen.
const MESSAGE_READ_BUFFER_BYTES: usize = 64 * 1024;

/// Accepts connections until shutdown.
pub(crate) async fn accept_loop(shared: Arc<Shared>) {
    loop {
        let incoming = tokio::select! {
            incoming = shared.endpoint.accept() => incoming,
            () = shared.stopped() => return,
        };
        let Some(incoming) = incoming else { return };
        tokio::spawn(serve_connection(shared.clone(), incoming));
    }
}

async fn serve_connection(shared: Arc<Shared>, incoming: quinn::Incoming) {
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(error) => {
            if let Some(reason) = classify_handshake_failure(&error) {
                shared.tls.refusals.count(reason);
            }
            tracing::debug!(%error, "handshake failed");
            return;
        }
    };
    // The verifier accepted the certificate, so it names a member; read it back.
    let Some(peer) = peer_member_id(&connection) else {
        shared.tls.refusals.count(RefusalReason::NoMemberId);
        connection.close(CODE_CLAIM_MISMATCH, b"no member id");
        return;
    };
    shared.register_inbound(peer, connection.clone());
    tracing::debug!(%peer, "accepted a member connection");
    loop {
        tokio::select! {
            stream = connection.accept_uni() => match stream {
                Ok(recv) => {
                    tokio::spawn(serve_stream(shared.clone(), connection.clone(), peer, None, recv));
                }
                Err(_) => break,
            },
            stream = connection.accept_bi() => match stream {
                Ok((send, recv)) => {
                    tokio::spawn(serve_stream(shared.clone(), connection.clone(), peer, Some(send), recv));
                }
                Err(_) => break,
            },
            () = shared.stopped() => break,
        }
    }
    shared.unregister_inbound(peer, &connection);
}

/// Maps a failed handshake to the refusal it stands for. Certificate refusals were
/// already counted by the verifier (they surface as the alerts listed here), so only
/// the failures that never reach it are counted now.
fn classify_handshake_failure(error: &ConnectionError) -> Option<RefusalReason> {
    let ConnectionError::TransportError(error) = error else {
        // Timeouts, resets and the peer's own close are not refusals by us.
        return None;
    };
    const BAD_CERTIFICATE: u8 = 42;
    const UNSUPPORTED_CERTIFICATE: u8 = 43;
    const CERTIFICATE_EXPIRED: u8 = 45;
    const CERTIFICATE_UNKNOWN: u8 = 46;
    const UNKNOWN_CA: u8 = 48;
    const ACCESS_DENIED: u8 = 49;
    const DECRYPT_ERROR: u8 = 51;
    const CERTIFICATE_REQUIRED: u8 = 116;
    const NO_APPLICATION_PROTOCOL: u8 = 120;
    let alert = |code: u8| error.code == TransportErrorCode::crypto(code);
    if alert(CERTIFICATE_REQUIRED) {
        return Some(RefusalReason::NoCertificate);
    }
    if alert(NO_APPLICATION_PROTOCOL) {
        return Some(RefusalReason::WrongProtocol);
    }
    let counted_by_verifier = [
        BAD_CERTIFICATE,
        UNSUPPORTED_CERTIFICATE,
        CERTIFICATE_EXPIRED,
        CERTIFICATE_UNKNOWN,
        UNKNOWN_CA,
        ACCESS_DENIED,
        DECRYPT_ERROR,
    ];
    if counted_by_verifier.into_iter().any(alert) {
        return None;
    }
    Some(RefusalReason::HandshakeFailed)
}

fn peer_member_id(connection: &Connection) -> Option<NodeId> {
    let identity = connection.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    chain.first().and_then(member_id_of)
}

async fn serve_stream(
    shared: Arc<Shared>,
    connection: Connection,
    peer: NodeId,
    send: Option<SendStream>,
    recv: RecvStream,
) {
    let counters = shared.counters_for(peer);
    let max_frame_bytes = shared.config.max_frame_bytes;
    let mut reader = FrameReader::new(
        recv,
        max_frame_bytes,
        MESSAGE_READ_BUFFER_BYTES.min(max_frame_bytes as usize),
        peer,
    );
    let preamble = match reader.preamble().await {
        Ok(preamble) => preamble,
        Err(error) => {
            if error.is_decode_error() {
                tracing::warn!(%peer, %error, "closing a stream with a bad preamble");
                PeerCounters::add(&counters.decode_errors, 1);
                reader.stop();
            }
            return;
        }
    };
    if preamble.sender != peer {
        tracing::warn!(%peer, claimed = %preamble.sender, "stream claims another member; closing the connection");
        shared.tls.refusals.count(RefusalReason::ClaimMismatch);
        connection.close(CODE_CLAIM_MISMATCH, b"sender does not match certificate");
        return;
    }
    let outcome = match (preamble.kind, send) {
        (StreamKind::Append | StreamKind::Control, None) => {
            read_messages(&shared, &counters, peer, &mut reader).await
        }
        (StreamKind::Snapshot, Some(send)) => {
            crate::snapshot::receive::serve(&shared, &counters, peer, send, &mut reader).await
        }
        (kind, _) => Err(TransportError::InvalidField {
            field: "stream kind for this stream direction",
            value: u64::from(kind.tag()),
        }),
    };
    if let Err(error) = outcome {
        if error.is_decode_error() {
            tracing::warn!(%peer, %error, "closing a stream with bad bytes");
            PeerCounters::add(&counters.decode_errors, 1);
            reader.stop();
        } else {
            tracing::debug!(%peer, %error, "stream ended");
        }
    }
}

/// Reads message frames and hands them to the application, in stream order.
async fn read_messages(
    shared: &Shared,
    counters: &PeerCounters,
    peer: NodeId,
    reader: &mut FrameReader,
) -> Result<(), TransportError> {
    while let Some(frame) = reader.next().await? {
        let frame_bytes = (frame.len() + crate::codec::LENGTH_PREFIX_BYTES) as u64;
        PeerCounters::add(&counters.received_bytes, frame_bytes);
        let message = match decode_message(frame) {
            Ok(message) => message,
            // Framing is intact: a kind from a newer member is skipped, not fatal.
            Err(TransportError::UnknownMessageTag { tag }) => {
                tracing::warn!(%peer, tag, "skipping a message of unknown kind");
                PeerCounters::add(&counters.decode_errors, 1);
                continue;
            }
            Err(error) => return Err(error),
        };
        if message.from != peer || message.to != shared.local_id {
            return Err(TransportError::Misaddressed {
                from: message.from,
                to: message.to,
                peer,
                local: shared.local_id,
            });
        }
        counters.received_messages.fetch_add(1, Ordering::Relaxed);
        if shared
            .incoming
            .send(Incoming::Message(message))
            .await
            .is_err()
        {
            return Err(TransportError::Shutdown);
        }
    }
    Ok(())
}
