//! Test support: a CA and three members on 127.0.0.1, raw QUIC clients with any
//! certificate (or none) for the refusal tests, and message builders. Timeouts here
//! are hang guards only; no test asserts a duration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use raft_core::{Heartbeat, HeartbeatRound, LogIndex, Message, MessageBody, NodeId, Term};
use raft_transport::certs::{DevCa, PemPair};
use raft_transport::{Incoming, TlsIdentity, Transport, TransportConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::sync::mpsc;

/// The hang guard for anything awaited in a test.
pub(crate) const HANG_GUARD: Duration = Duration::from_secs(60);

/// A cluster's certificates.
pub(crate) struct Pki {
    pub(crate) ca: DevCa,
    pub(crate) members: BTreeMap<NodeId, PemPair>,
}

impl Pki {
    pub(crate) fn new(ids: &[u64]) -> Pki {
        let ca = DevCa::generate("test CA").unwrap();
        let members = ids
            .iter()
            .map(|id| {
                (
                    NodeId(*id),
                    ca.member(NodeId(*id), &["localhost".to_owned()]).unwrap(),
                )
            })
            .collect();
        Pki { ca, members }
    }

    pub(crate) fn identity(&self, id: NodeId) -> TlsIdentity {
        let pair = &self.members[&id];
        TlsIdentity::from_pem(&self.ca.cert_pem(), &pair.cert_pem, &pair.key_pem).unwrap()
    }
}

pub(crate) fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A member's config on an ephemeral port, with an empty membership (filled in by
/// [`Cluster::start`] once every port is known).
pub(crate) fn config(pki: &Pki, id: NodeId) -> TransportConfig {
    TransportConfig::new(id, localhost(), BTreeMap::new(), pki.identity(id))
}

/// Running members.
pub(crate) struct Cluster {
    pub(crate) pki: Pki,
    pub(crate) transports: BTreeMap<NodeId, Transport>,
    pub(crate) incoming: BTreeMap<NodeId, mpsc::Receiver<Incoming>>,
}

impl Cluster {
    /// Starts members 1..=n, each configured by `tweak`.
    pub(crate) fn start(n: u64, tweak: impl Fn(&mut TransportConfig)) -> Cluster {
        let ids: Vec<u64> = (1..=n).collect();
        let pki = Pki::new(&ids);
        let mut transports = BTreeMap::new();
        let mut incoming = BTreeMap::new();
        for id in &ids {
            let mut config = config(&pki, NodeId(*id));
            tweak(&mut config);
            let (transport, events) = Transport::start(config).unwrap();
            transports.insert(NodeId(*id), transport);
            incoming.insert(NodeId(*id), events);
        }
        let members: BTreeMap<NodeId, SocketAddr> = transports
            .iter()
            .map(|(id, transport)| (*id, transport.local_addr().unwrap()))
            .collect();
        for transport in transports.values() {
            transport.set_members(members.clone());
        }
        Cluster {
            pki,
            transports,
            incoming,
        }
    }

    pub(crate) fn transport(&self, id: u64) -> &Transport {
        &self.transports[&NodeId(id)]
    }

    pub(crate) fn events(&mut self, id: u64) -> &mut mpsc::Receiver<Incoming> {
        self.incoming.get_mut(&NodeId(id)).unwrap()
    }

    pub(crate) fn addr(&self, id: u64) -> SocketAddr {
        self.transport(id).local_addr().unwrap()
    }
}

/// The next message event (other events are skipped), or a panic after the guard.
pub(crate) async fn next_message(events: &mut mpsc::Receiver<Incoming>) -> Message {
    tokio::time::timeout(HANG_GUARD, async {
        loop {
            match events.recv().await.expect("transport stopped") {
                Incoming::Message(message) => return message,
                _ => continue,
            }
        }
    })
    .await
    .expect("no message arrived")
}

/// Whether a message arrives before `wait` passes (for "nothing arrives" checks).
pub(crate) async fn message_within(
    events: &mut mpsc::Receiver<Incoming>,
    wait: Duration,
) -> Option<Message> {
    tokio::time::timeout(wait, next_message(events)).await.ok()
}

pub(crate) fn heartbeat(from: u64, to: u64, commit: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        body: MessageBody::Heartbeat(Heartbeat {
            leader_commit: LogIndex(commit),
            round: HeartbeatRound {
                term: Term(1),
                sequence: 0,
            },
        }),
    }
}

/// Polls `condition` until it holds (hang guard: panics after [`HANG_GUARD`]).
pub(crate) async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + HANG_GUARD;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Accepts any server certificate: raw test clients probe the *server's* checks.
#[derive(Debug)]
struct AcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A raw QUIC client presenting `identity` (or no certificate) with ALPN `alpn`.
pub(crate) fn raw_client(identity: Option<&PemPair>, alpn: &[u8]) -> quinn::Endpoint {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider)));
    let mut crypto = match identity {
        Some(pair) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(pair.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(pair.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    crypto.alpn_protocols = vec![alpn.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    let mut endpoint = quinn::Endpoint::client(localhost()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
}

/// Connects a raw client and asserts the server refuses it: either the handshake
/// fails, or (TLS 1.3 lets the client finish first) the server closes the connection
/// right after. A client that is not refused hangs here until the guard fires.
pub(crate) async fn assert_refused(endpoint: &quinn::Endpoint, server: SocketAddr) {
    let refused = tokio::time::timeout(HANG_GUARD, async {
        if let Ok(connection) = endpoint.connect(server, "member.raft").unwrap().await {
            connection.closed().await;
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "the server kept a connection it should refuse"
    );
}
