//! TLS for the peer links (and the PEM reading the admin API shares): mutual TLS under a cluster
//! CA, each node's certificate naming its Raft id, and the certificates to do it with.
//!
//! Why a cluster CA and not certificate pinning: with pinning, every node's config lists every other
//! node's certificate fingerprint, so adding a node, or renewing one certificate, means editing and
//! restarting every node. With a CA, a node added later (`cluster add-node`) needs only its own
//! certificate signed by the CA, and every node checks each peer the same way: the chain ends at the
//! cluster CA, the certificate is within its dates, and it names the id the peer claims. The CA's key
//! is needed only to make certificates; keep it off the nodes.
//!
//! The id is bound to the certificate as a DNS name in its subject alternative names,
//! `node-<id>.leasehold` ([`node_name`]). The dialling node asks for that name (standard server name
//! verification binds the id it dialled); the accepting node checks, after the TLS handshake, that
//! the client's certificate names the id the client then claims in its hello ([`names_node`]). A
//! certificate also needs both the serverAuth and clientAuth extended key usages, since every node
//! is both. Only TLS 1.3 is offered, without session tickets (links are long-lived).
//!
//! Everything is checked at start ([`PeerTls::load`]): files that cannot be read, PEM without a
//! certificate or key, a certificate not signed by the CA, expired or not yet valid, naming another
//! node, lacking a key usage, or a key that does not belong to it; each error names the file.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::ClusterError;

/// The suffix of every node's DNS name: node 3 is `node-3.leasehold`.
pub const NODE_NAME_SUFFIX: &str = ".leasehold";
/// The common name of the CA that `make_ca` makes (and `reissue_ca` rebuilds from its key).
pub const CA_COMMON_NAME: &str = "Leasehold cluster CA";
/// Largest PEM file read (a certificate chain or a key is a few kilobytes).
pub const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;

/// The DNS name node `id`'s certificate carries.
pub fn node_name(id: u64) -> String {
    format!("node-{id}{NODE_NAME_SUFFIX}")
}

/// The crypto all of Leasehold's TLS uses (ring; no process-wide default is installed).
///
/// rustls 0.23.48 deprecates its ring provider because ring has no post-quantum key exchange; the
/// alternative, aws-lc-rs, builds a large C library (CMake and a long compile on the 2-core machines
/// this project is built on). Classical X25519/ECDHE is what etcd's peer TLS uses too; moving to
/// aws-lc-rs is a one-line change here when PQ key exchange is wanted.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(path: &Path, problem: impl Into<String>) -> ClusterError {
    ClusterError::Tls { path: path.display().to_string(), problem: problem.into() }
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, ClusterError> {
    let length = fs::metadata(path).map_err(|e| tls_error(path, format!("cannot read the {what}: {e}")))?.len();
    if length > MAX_PEM_FILE_BYTES {
        return Err(tls_error(path, format!("{length} bytes; a {what} file has at most {MAX_PEM_FILE_BYTES}")));
    }
    fs::read(path).map_err(|e| tls_error(path, format!("cannot read the {what}: {e}")))
}

/// Every certificate in a PEM file, in file order (a node's certificate first, then any chain).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClusterError> {
    let pem = read_pem(path, "certificate")?;
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error(path, format!("not a PEM certificate file: {e}")))?;
    if certificates.is_empty() {
        return Err(tls_error(path, "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
    }
    Ok(certificates)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, ClusterError> {
    let pem = read_pem(path, "private key")?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| tls_error(path, format!("holds no usable PEM private key (-----BEGIN PRIVATE KEY-----): {e}")))
}

/// A certificate error in words an operator can act on.
fn explain(error: &rustls::Error, ca_file: &Path, id: Option<u64>) -> String {
    match error {
        rustls::Error::InvalidCertificate(problem) => match problem {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("the certificate has expired ({problem:?}); make a new one")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("the certificate is not valid yet ({problem:?}); check the clock")
            }
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                format!("the certificate is not signed by the cluster CA in {}", ca_file.display())
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => match id {
                Some(id) => format!(
                    "the certificate does not name node {id} (it needs the DNS name {}): it belongs to another node",
                    node_name(id)
                ),
                None => format!("the certificate does not carry the expected name ({problem:?})"),
            },
            other => format!("the certificate is refused: {other:?}"),
        },
        other => format!("the certificate is refused: {other}"),
    }
}

/// TLS settings of one node's peer links: a client side that presents this node's certificate and
/// checks the dialled peer's, and a server side that requires and checks the dialling peer's.
#[derive(Clone)]
pub struct PeerTls {
    pub client: Arc<ClientConfig>,
    pub server: Arc<ServerConfig>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls { .. }")
    }
}

impl PeerTls {
    /// Reads the cluster CA, this node's certificate and key, checks them all as of `now` (see the
    /// module documentation), and builds both sides' configurations.
    pub fn load(
        ca_file: &Path,
        cert_file: &Path,
        key_file: &Path,
        node_id: u64,
        now: UnixTime,
    ) -> Result<PeerTls, ClusterError> {
        let provider = provider();
        let mut roots = RootCertStore::empty();
        for certificate in read_certificates(ca_file)? {
            roots.add(certificate).map_err(|e| tls_error(ca_file, format!("not a usable CA certificate: {e}")))?;
        }
        let roots = Arc::new(roots);
        let chain = read_certificates(cert_file)?;
        let key = read_private_key(key_file)?;

        let server_verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| tls_error(ca_file, format!("cannot verify with this CA: {e}")))?;
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| tls_error(ca_file, format!("cannot verify with this CA: {e}")))?;
        let (leaf, intermediates) = chain.split_first().expect("read_certificates returns at least one");
        let name = ServerName::try_from(node_name(node_id))
            .map_err(|e| tls_error(cert_file, format!("node id {node_id} makes no DNS name: {e}")))?;
        server_verifier
            .verify_server_cert(leaf, intermediates, &name, &[], now)
            .map_err(|e| tls_error(cert_file, explain(&e, ca_file, Some(node_id))))?;
        client_verifier.verify_client_cert(leaf, intermediates, now).map_err(|e| {
            tls_error(cert_file, format!("{} (it needs the clientAuth key usage too)", explain(&e, ca_file, None)))
        })?;

        let key_mismatch = |e: rustls::Error| match e {
            rustls::Error::InconsistentKeys(_) => {
                tls_error(key_file, format!("this key does not belong to the certificate in {}", cert_file.display()))
            }
            other => tls_error(key_file, format!("cannot use this key: {other}")),
        };
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error(cert_file, e.to_string()))?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(key_mismatch)?;
        server.send_tls13_tickets = 0;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error(cert_file, e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(key_mismatch)?;
        Ok(PeerTls { client: Arc::new(client), server: Arc::new(server) })
    }
}

/// Does `certificate` name node `id` (see [`node_name`])? The chain and dates were checked by the
/// TLS handshake; this binds the certificate to the id a peer claims.
pub fn names_node(certificate: &CertificateDer<'_>, id: u64) -> bool {
    let Ok(name) = ServerName::try_from(node_name(id)) else { return false };
    webpki::EndEntityCert::try_from(certificate).is_ok_and(|cert| cert.verify_is_valid_for_subject_name(&name).is_ok())
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA to sign node certificates with.
pub struct CertificateAuthority {
    certificate: rcgen::Certificate,
    key: KeyPair,
}

fn ca_params(not_before: SystemTime, not_after: SystemTime) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    Ok(params)
}

fn rcgen_error(what: &str, error: rcgen::Error) -> ClusterError {
    ClusterError::Tls { path: what.to_string(), problem: error.to_string() }
}

impl CertificateAuthority {
    /// A new CA (a fresh P-256 key), valid from `not_before` to `not_after`.
    pub fn new(not_before: SystemTime, not_after: SystemTime) -> Result<CertificateAuthority, ClusterError> {
        let key = KeyPair::generate().map_err(|e| rcgen_error("CA key", e))?;
        let params = ca_params(not_before, not_after).map_err(|e| rcgen_error("CA certificate", e))?;
        let certificate = params.self_signed(&key).map_err(|e| rcgen_error("CA certificate", e))?;
        Ok(CertificateAuthority { certificate, key })
    }

    /// The signing side of a CA made by [`CertificateAuthority::new`], from its key (PEM) alone: its
    /// name and key are all a signature needs, so certificates signed now verify under the CA
    /// certificate made then. (Its `pem` is a fresh certificate; keep using the original file.)
    pub fn from_key_pem(key_pem: &str, source: &Path) -> Result<CertificateAuthority, ClusterError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| tls_error(source, format!("not a PEM private key: {e}")))?;
        let now = SystemTime::now();
        let params = ca_params(now, now).map_err(|e| rcgen_error("CA certificate", e))?;
        let certificate = params.self_signed(&key).map_err(|e| tls_error(source, e.to_string()))?;
        Ok(CertificateAuthority { certificate, key })
    }

    pub fn pem(&self) -> PemPair {
        PemPair { cert_pem: self.certificate.pem(), key_pem: self.key.serialize_pem() }
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by this CA, for both ends of a
    /// TLS connection (serverAuth and clientAuth).
    pub fn issue(
        &self,
        names: &[String],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<PemPair, ClusterError> {
        let key = KeyPair::generate().map_err(|e| rcgen_error("key", e))?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(|e| rcgen_error("certificate names", e))?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, names.first().cloned().unwrap_or_default());
        params.distinguished_name = name;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let certificate =
            params.signed_by(&key, &self.certificate, &self.key).map_err(|e| rcgen_error("certificate", e))?;
        Ok(PemPair { cert_pem: certificate.pem(), key_pem: key.serialize_pem() })
    }

    /// Node `id`'s peer certificate: [`node_name`] plus any `extra_names` (addresses an operator
    /// may want to see in it).
    pub fn issue_node(
        &self,
        id: u64,
        extra_names: &[String],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<PemPair, ClusterError> {
        let mut names = vec![node_name(id)];
        names.extend(extra_names.iter().cloned());
        self.issue(&names, not_before, not_after)
    }
}
