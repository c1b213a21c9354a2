//! Mutual TLS between members: PEM loading, the member-id SAN, and the two
//! certificate verifiers. A peer is accepted only if its certificate chains to the
//! cluster CA *and* names, in exactly one `raft://member/<id>` URI SAN, a member of the
//! current membership; a dialer also checks that the server is the member it dialed.
//! Every refusal is counted by reason.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use raft_core::NodeId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::error::TransportError;

/// The ALPN protocol members speak.
pub const ALPN: &[u8] = b"raft/1";

/// The prefix of the URI SAN naming a member: `raft://member/<id>`, `<id>` in decimal
/// without leading zeros.
pub const MEMBER_URI_PREFIX: &str = "raft://member/";

/// The URI SAN for member `id`.
pub fn member_uri(id: NodeId) -> String {
    format!("{MEMBER_URI_PREFIX}{id}")
}

/// The TLS server name a dialer sends (SNI) for member `id`. Only informational: the
/// server's identity is checked through the URI SAN, not this name.
pub(crate) fn member_server_name(id: NodeId) -> String {
    format!("member-{id}.raft")
}

/// The member id a certificate names, if it carries exactly one well-formed
/// `raft://member/<id>` URI SAN. Zero, several, or a malformed one give `None`.
pub fn member_id_of(certificate: &CertificateDer<'_>) -> Option<NodeId> {
    let parsed = webpki::EndEntityCert::try_from(certificate).ok()?;
    let mut ids = parsed.valid_uri_names().filter_map(|uri| {
        let digits = uri.strip_prefix(MEMBER_URI_PREFIX)?;
        parse_canonical_u64(digits)
    });
    let first = ids.next()?;
    match ids.next() {
        None => Some(NodeId(first)),
        Some(_) => None,
    }
}

fn parse_canonical_u64(digits: &str) -> Option<u64> {
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if canonical { digits.parse().ok() } else { None }
}

/// Why a connection was refused; each reason has its own counter.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[non_exhaustive]
pub enum RefusalReason {
    /// The certificate does not chain to the cluster CA (or is expired, or lacks the
    /// needed key usage).
    UntrustedCertificate,
    /// The client presented no certificate.
    NoCertificate,
    /// The certificate chains to the CA but names no member (or several).
    NoMemberId,
    /// The certificate names a member that is not in the membership.
    UnknownMember,
    /// The certificate names another member than the one dialed.
    WrongMember,
    /// A stream's preamble claims another sender than the certificate names.
    ClaimMismatch,
    /// The peer does not speak ALPN `raft/1`.
    WrongProtocol,
    /// Any other handshake failure.
    HandshakeFailed,
}

impl RefusalReason {
    /// Every reason, in counter order.
    pub const ALL: [RefusalReason; 8] = [
        RefusalReason::UntrustedCertificate,
        RefusalReason::NoCertificate,
        RefusalReason::NoMemberId,
        RefusalReason::UnknownMember,
        RefusalReason::WrongMember,
        RefusalReason::ClaimMismatch,
        RefusalReason::WrongProtocol,
        RefusalReason::HandshakeFailed,
    ];

    /// A stable snake_case name, for metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::UntrustedCertificate => "untrusted_certificate",
            RefusalReason::NoCertificate => "no_certificate",
            RefusalReason::NoMemberId => "no_member_id",
            RefusalReason::UnknownMember => "unknown_member",
            RefusalReason::WrongMember => "wrong_member",
            RefusalReason::ClaimMismatch => "claim_mismatch",
            RefusalReason::WrongProtocol => "wrong_protocol",
            RefusalReason::HandshakeFailed => "handshake_failed",
        }
    }

    fn index(self) -> usize {
        RefusalReason::ALL
            .iter()
            .position(|reason| *reason == self)
            .expect("ALL lists every reason")
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Refusal counters, shared by the verifiers and the accept loop.
#[derive(Debug, Default)]
pub(crate) struct RefusalCounters {
    counts: [AtomicU64; RefusalReason::ALL.len()],
}

impl RefusalCounters {
    pub(crate) fn count(&self, reason: RefusalReason) {
        tracing::warn!(reason = reason.as_str(), "refused a peer connection");
        self.counts[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<RefusalReason, u64> {
        RefusalReason::ALL
            .iter()
            .map(|reason| (*reason, self.counts[reason.index()].load(Ordering::Relaxed)))
            .collect()
    }
}

/// The membership as the verifiers see it: member id to peer address. Shared with the
/// transport, which updates it when members are added or removed.
pub(crate) type SharedMembers = Arc<RwLock<BTreeMap<NodeId, SocketAddr>>>;

/// A member's TLS material: the cluster CA, its certificate chain and its key.
pub struct TlsIdentity {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("member", &self.member_id())
            .finish_non_exhaustive()
    }
}

impl Clone for TlsIdentity {
    fn clone(&self) -> TlsIdentity {
        TlsIdentity {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsIdentity {
    /// Loads the CA certificate, this member's certificate chain and its private key
    /// from PEM files (as `raftd certs` writes them).
    pub fn from_pem_files(
        ca: &Path,
        cert: &Path,
        key: &Path,
    ) -> Result<TlsIdentity, TransportError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TransportError::File {
                path: path.to_path_buf(),
                source,
            })
        };
        TlsIdentity::parse(
            (&read(ca)?, ca.to_path_buf()),
            (&read(cert)?, cert.to_path_buf()),
            (&read(key)?, key.to_path_buf()),
        )
    }

    /// Parses the same three items from PEM text in memory.
    pub fn from_pem(ca: &str, cert: &str, key: &str) -> Result<TlsIdentity, TransportError> {
        let memory = PathBuf::from("<memory>");
        TlsIdentity::parse(
            (ca.as_bytes(), memory.clone()),
            (cert.as_bytes(), memory.clone()),
            (key.as_bytes(), memory),
        )
    }

    fn parse(
        ca: (&[u8], PathBuf),
        cert: (&[u8], PathBuf),
        key: (&[u8], PathBuf),
    ) -> Result<TlsIdentity, TransportError> {
        let certs = |(pem, path): (&[u8], PathBuf)| {
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| TransportError::Pem {
                    path: path.clone(),
                    source,
                })?;
            if certs.is_empty() {
                return Err(TransportError::MissingPem {
                    path,
                    item: "certificate",
                });
            }
            Ok(certs)
        };
        let ca = certs(ca)?.swap_remove(0);
        let chain = certs(cert)?;
        let key = PrivateKeyDer::from_pem_slice(key.0).map_err(|source| match source {
            rustls::pki_types::pem::Error::NoItemsFound => TransportError::MissingPem {
                path: key.1.clone(),
                item: "private key",
            },
            source => TransportError::Pem {
                path: key.1.clone(),
                source,
            },
        })?;
        webpki::anchor_from_trusted_cert(&ca)
            .map_err(|source| TransportError::InvalidCa { source })?;
        Ok(TlsIdentity { ca, chain, key })
    }

    /// The member id this identity's certificate names, if any.
    pub fn member_id(&self) -> Option<NodeId> {
        self.chain.first().and_then(member_id_of)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Checks that `end_entity` chains to the CA for `usage`; maps failures to the
/// rustls error the handshake reports.
fn verify_chain(
    anchor: &rustls::pki_types::TrustAnchor<'static>,
    algorithms: &WebPkiSupportedAlgorithms,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: webpki::KeyUsage,
) -> Result<(), rustls::Error> {
    let cert = webpki::EndEntityCert::try_from(end_entity)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    cert.verify_for_usage(
        algorithms.all,
        std::slice::from_ref(anchor),
        intermediates,
        now,
        usage,
        None,
        None,
    )
    .map(|_| ())
    .map_err(|error| {
        rustls::Error::InvalidCertificate(match error {
            webpki::Error::CertExpired { .. } => CertificateError::Expired,
            webpki::Error::CertNotValidYet { .. } => CertificateError::NotValidYet,
            webpki::Error::InvalidSignatureForPublicKey => CertificateError::BadSignature,
            webpki::Error::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
            _ => CertificateError::UnknownIssuer,
        })
    })
}

fn refused(reason: RefusalReason, counters: &RefusalCounters) -> rustls::Error {
    counters.count(reason);
    rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
}

/// The acceptor's check of a dialing member.
#[derive(Debug)]
struct MemberClientVerifier {
    anchor: rustls::pki_types::TrustAnchor<'static>,
    subjects: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
    members: SharedMembers,
    refusals: Arc<RefusalCounters>,
}

impl ClientCertVerifier for MemberClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.subjects
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let usage = webpki::KeyUsage::client_auth();
        if let Err(error) = verify_chain(
            &self.anchor,
            &self.algorithms,
            end_entity,
            intermediates,
            now,
            usage,
        ) {
            self.refusals.count(RefusalReason::UntrustedCertificate);
            return Err(error);
        }
        let Some(id) = member_id_of(end_entity) else {
            return Err(refused(RefusalReason::NoMemberId, &self.refusals));
        };
        let known = self
            .members
            .read()
            .expect("membership lock is never poisoned")
            .contains_key(&id);
        if !known {
            return Err(refused(RefusalReason::UnknownMember, &self.refusals));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The dialer's check of the member it dialed.
#[derive(Debug)]
struct MemberServerVerifier {
    anchor: rustls::pki_types::TrustAnchor<'static>,
    algorithms: WebPkiSupportedAlgorithms,
    expected: NodeId,
    refusals: Arc<RefusalCounters>,
}

impl ServerCertVerifier for MemberServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let usage = webpki::KeyUsage::server_auth();
        if let Err(error) = verify_chain(
            &self.anchor,
            &self.algorithms,
            end_entity,
            intermediates,
            now,
            usage,
        ) {
            self.refusals.count(RefusalReason::UntrustedCertificate);
            return Err(error);
        }
        match member_id_of(end_entity) {
            None => Err(refused(RefusalReason::NoMemberId, &self.refusals)),
            Some(id) if id != self.expected => {
                Err(refused(RefusalReason::WrongMember, &self.refusals))
            }
            Some(_) => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Builds rustls configurations for this member: one server configuration, and a
/// client configuration per dialed member (it bakes in the expected id).
pub(crate) struct TlsContext {
    identity: TlsIdentity,
    anchor: rustls::pki_types::TrustAnchor<'static>,
    provider: Arc<CryptoProvider>,
    pub(crate) refusals: Arc<RefusalCounters>,
}

impl TlsContext {
    pub(crate) fn new(
        identity: TlsIdentity,
        refusals: Arc<RefusalCounters>,
    ) -> Result<TlsContext, TransportError> {
        let anchor = webpki::anchor_from_trusted_cert(&identity.ca)
            .map_err(|source| TransportError::InvalidCa { source })?
            .to_owned();
        let provider = provider();
        // Peers would refuse a certificate that does not chain to the CA for both
        // roles: say so at startup instead of through every failed handshake.
        let (end_entity, intermediates) = identity
            .chain
            .split_first()
            .expect("a parsed identity holds at least one certificate");
        for usage in [
            webpki::KeyUsage::server_auth(),
            webpki::KeyUsage::client_auth(),
        ] {
            verify_chain(
                &anchor,
                &provider.signature_verification_algorithms,
                end_entity,
                intermediates,
                UnixTime::now(),
                usage,
            )
            .map_err(|source| TransportError::OwnCertificateUntrusted { source })?;
        }
        Ok(TlsContext {
            identity,
            anchor,
            provider,
            refusals,
        })
    }

    pub(crate) fn server_config(
        &self,
        members: SharedMembers,
    ) -> Result<rustls::ServerConfig, TransportError> {
        let verifier = MemberClientVerifier {
            anchor: self.anchor.clone(),
            subjects: vec![DistinguishedName::from(
                self.anchor.subject.as_ref().to_vec(),
            )],
            algorithms: self.provider.signature_verification_algorithms,
            members,
            refusals: self.refusals.clone(),
        };
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|source| TransportError::Tls { source })?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_single_cert(self.identity.chain.clone(), self.identity.key.clone_key())
            .map_err(|source| TransportError::Tls { source })?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    pub(crate) fn client_config(
        &self,
        expected: NodeId,
    ) -> Result<rustls::ClientConfig, TransportError> {
        let verifier = MemberServerVerifier {
            anchor: self.anchor.clone(),
            algorithms: self.provider.signature_verification_algorithms,
            expected,
            refusals: self.refusals.clone(),
        };
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|source| TransportError::Tls { source })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(self.identity.chain.clone(), self.identity.key.clone_key())
            .map_err(|source| TransportError::Tls { source })?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_ids_parse() {
        assert_eq!(parse_canonical_u64("7"), Some(7));
        assert_eq!(parse_canonical_u64("0"), Some(0));
        assert_eq!(parse_canonical_u64("07"), None);
        assert_eq!(parse_canonical_u64(""), None);
        assert_eq!(parse_canonical_u64("+7"), None);
        assert_eq!(parse_canonical_u64("7/x"), None);
        assert_eq!(parse_canonical_u64("99999999999999999999"), None);
    }
}
