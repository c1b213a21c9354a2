//! Development certificates: a cluster CA, one key/cert pair per member carrying its
//! `raft://member/<id>` URI SAN, and a client pair without one. For `raftd certs` and
//! tests; production clusters bring their own CA. Private keys are written with
//! owner-only permissions.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use raft_core::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::TransportError;
use crate::tls::member_uri;

/// A certificate and its private key, PEM encoded.
#[derive(Clone)]
pub struct PemPair {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for PemPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PemPair").finish_non_exhaustive()
    }
}

/// A development certificate authority that can sign member and client certificates.
pub struct DevCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    key_pem: String,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

fn generation(source: rcgen::Error) -> TransportError {
    TransportError::CertGeneration { source }
}

impl DevCa {
    /// Generates a new CA with common name `common_name`.
    pub fn generate(common_name: &str) -> Result<DevCa, TransportError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generation)?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().map_err(generation)?;
        let key_pem = key.serialize_pem();
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(generation)?;
        Ok(DevCa { issuer, key_pem })
    }

    /// The CA certificate, PEM encoded.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA's private key, PEM encoded.
    pub fn key_pem(&self) -> String {
        self.key_pem.clone()
    }

    /// A certificate for member `id`: the URI SAN `raft://member/<id>`, plus `hosts`
    /// as DNS or IP SANs for operators' tools; usable as TLS server and client.
    pub fn member(&self, id: NodeId, hosts: &[String]) -> Result<PemPair, TransportError> {
        let mut sans = vec![SanType::URI(member_uri(id).try_into().map_err(generation)?)];
        for host in hosts {
            sans.push(host_san(host)?);
        }
        self.sign(&format!("raft member {id}"), sans)
    }

    /// A client certificate (for raftctl and HTTP clients): chains to the CA but names
    /// no member, so members refuse it on the peer port.
    pub fn client(&self, common_name: &str) -> Result<PemPair, TransportError> {
        let sans = vec![SanType::DnsName(
            "client.raft".try_into().map_err(generation)?,
        )];
        self.sign(common_name, sans)
    }

    fn sign(&self, common_name: &str, sans: Vec<SanType>) -> Result<PemPair, TransportError> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generation)?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, common_name);
        params.distinguished_name = name;
        params.subject_alt_names = sans;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(generation)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(generation)?;
        Ok(PemPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn host_san(host: &str) -> Result<SanType, TransportError> {
    Ok(match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(host.try_into().map_err(generation)?),
    })
}

/// The files [`write_dev_certs`] wrote.
#[derive(Clone, Debug)]
pub struct DevCertFiles {
    /// `ca.pem`.
    pub ca_cert: PathBuf,
    /// `ca-key.pem` (keep it to sign certificates for members added later).
    pub ca_key: PathBuf,
    /// Per member, in id order: (`nodeI.pem`, `nodeI-key.pem`).
    pub members: Vec<(NodeId, PathBuf, PathBuf)>,
    /// (`client.pem`, `client-key.pem`).
    pub client: (PathBuf, PathBuf),
}

/// Writes a development CA, members `1..=nodes` and a client pair as PEM files to
/// `dir` (created if missing): `ca.pem`, `ca-key.pem`, `node<I>.pem`,
/// `node<I>-key.pem`, `client.pem`, `client-key.pem`. `hosts[i-1]`, when given, is
/// added as a DNS or IP SAN of member `i`; `localhost` and `127.0.0.1` always are.
pub fn write_dev_certs(
    dir: &Path,
    nodes: u64,
    hosts: &[String],
) -> Result<DevCertFiles, TransportError> {
    fs::create_dir_all(dir).map_err(|source| TransportError::File {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca = DevCa::generate("raft development CA")?;
    let ca_cert = write_file(dir, "ca.pem", &ca.cert_pem(), false)?;
    let ca_key = write_file(dir, "ca-key.pem", &ca.key_pem(), true)?;
    let mut members = Vec::new();
    for i in 1..=nodes {
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        if let Some(host) = usize::try_from(i - 1).ok().and_then(|at| hosts.get(at)) {
            names.push(host.clone());
        }
        let pair = ca.member(NodeId(i), &names)?;
        let cert = write_file(dir, &format!("node{i}.pem"), &pair.cert_pem, false)?;
        let key = write_file(dir, &format!("node{i}-key.pem"), &pair.key_pem, true)?;
        members.push((NodeId(i), cert, key));
    }
    let client = ca.client("raft client")?;
    let client = (
        write_file(dir, "client.pem", &client.cert_pem, false)?,
        write_file(dir, "client-key.pem", &client.key_pem, true)?,
    );
    Ok(DevCertFiles {
        ca_cert,
        ca_key,
        members,
        client,
    })
}

fn write_file(
    dir: &Path,
    name: &str,
    contents: &str,
    secret: bool,
) -> Result<PathBuf, TransportError> {
    let path = dir.join(name);
    let error = |source| TransportError::File {
        path: path.clone(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(&path).map_err(error)?;
    file.write_all(contents.as_bytes()).map_err(error)?;
    file.sync_all().map_err(error)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{TlsIdentity, member_id_of};

    #[test]
    fn member_certificates_carry_their_id() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_dev_certs(dir.path(), 3, &["db1.example".to_owned()]).unwrap();
        assert_eq!(files.members.len(), 3);
        for (id, cert, key) in &files.members {
            let identity = TlsIdentity::from_pem_files(&files.ca_cert, cert, key).unwrap();
            assert_eq!(identity.member_id(), Some(*id));
        }
        let client =
            TlsIdentity::from_pem_files(&files.ca_cert, &files.client.0, &files.client.1).unwrap();
        assert_eq!(client.member_id(), None);
    }

    #[test]
    fn member_id_is_read_from_the_uri_san() {
        let ca = DevCa::generate("test").unwrap();
        let pair = ca.member(NodeId(42), &[]).unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(pair.cert_pem.as_bytes());
        use rustls::pki_types::pem::PemObject;
        assert_eq!(member_id_of(&der.unwrap()), Some(NodeId(42)));
    }
}
