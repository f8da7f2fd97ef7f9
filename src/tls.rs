//! TLS for DNS over TLS (RFC 7858, DESIGN section 10): a server's certificate and key from
//! PEM files, server and client configurations on rustls (with ring), the SPKI pins a
//! client may check instead of a CA (RFC 7858 section 4.2; the base64 SHA-256 of the
//! SubjectPublicKeyInfo, as `kdig +tls-pin` and Knot's `cert-key` take them), and the small
//! deployment CA behind `mimi tls` (rcgen). No I/O but reading the files named.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The ALPN protocol of DNS over TLS (RFC 7858, IANA "dot").
pub const ALPN_DOT: &[u8] = b"dot";
/// The DNS-over-TLS port (RFC 7858).
pub const DOT_PORT: u16 = 853;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{file}: {reason}")]
    File { file: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("certificate: {0}")]
    Certificate(String),
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        file: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The crypto provider every configuration here uses: ring, which hickory's TLS uses too
/// and which builds without cmake. rustls marks it deprecated because it lacks the
/// post-quantum key exchange of aws-lc-rs (docs/security.md). Its key-exchange groups
/// are put in the order X25519, P-256, P-384: ring's own list starts with P-384, which a
/// client then offers first and a server accepts, at about four times the CPU of X25519
/// per handshake (tools/bench/tls.sh).
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::kx_group;
    let mut p = rustls::crypto::ring::default_provider();
    p.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    Arc::new(p)
}

/// The certificates of a PEM file, leaf first.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, format!("private key: {e}")))
}

/// A server configuration for DNS over TLS: TLS 1.2 and 1.3, ALPN "dot"; with
/// `ask_client_cert`, a client certificate is asked for but not required, and any is
/// accepted whose key the client proves it holds: who it names is decided by its SPKI
/// pin afterwards ([`peer_pin`]; a DP's `[[client]]` entries).
pub fn server_config(
    cert: &Path,
    key: &Path,
    ask_client_cert: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = if ask_client_cert {
        builder.with_client_cert_verifier(Arc::new(AnyClientKey {
            provider: provider(),
        }))
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(format!("{}: {e}", cert.display())))?;
    config.alpn_protocols = vec![ALPN_DOT.to_vec()];
    Ok(Arc::new(config))
}

/// The SPKI pin of a certificate: base64 of SHA-256 over its SubjectPublicKeyInfo.
pub fn spki_pin(cert: &CertificateDer<'_>) -> Result<String, TlsError> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| TlsError::Certificate(format!("{e:?}")))?;
    let spki = parsed.subject_public_key_info();
    Ok(base64::engine::general_purpose::STANDARD.encode(Sha256::digest(spki.as_ref())))
}

/// The SPKI pin of the certificate a TLS client presented, if it presented one.
pub fn peer_pin(connection: &rustls::ServerConnection) -> Option<String> {
    let leaf = connection.peer_certificates()?.first()?;
    spki_pin(leaf).ok()
}

/// Checks the peer's handshake signature with the provider's algorithms: what proves the
/// peer holds the key of the certificate (or pin) it is taken for.
fn handshake_signature(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    tls13: bool,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let algorithms = &provider.signature_verification_algorithms;
    if tls13 {
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    } else {
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }
}

/// Accepts any client certificate: the handshake still proves the client holds its key,
/// and the key (its pin), not the certificate's names or dates, is the identity, as with
/// Knot's `cert-key`.
#[derive(Debug)]
struct AnyClientKey {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientKey {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        spki_pin(end_entity)
            .map(|_| ClientCertVerified::assertion())
            .map_err(|e| rustls::Error::General(format!("client certificate: {e}")))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.provider, message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.provider, message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// How a client decides that a server is the one it meant.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    /// A certificate chain to one of these CAs, valid now, for the server's name.
    Ca(Vec<CertificateDer<'static>>),
    /// A leaf certificate whose SPKI pin is one of these (RFC 7858 section 4.2); the name
    /// and the dates are not checked, the key is.
    Pins(Vec<String>),
}

/// A certificate chain and private key a client presents to servers that ask for one
/// (mutual TLS: a DP maps the SPKI pin of an app provider's resolver to its identity).
#[derive(Clone)]
pub struct ClientIdentity {
    certs: Vec<CertificateDer<'static>>,
    // PrivateKeyDer is not Clone; the Arc lets configs built from one identity share it.
    key: Arc<PrivateKeyDer<'static>>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("certs", &self.certs.len())
            .finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// Reads a PEM certificate chain (leaf first) and its PEM private key.
    pub fn load(cert: &Path, key: &Path) -> Result<ClientIdentity, TlsError> {
        Ok(ClientIdentity {
            certs: load_certs(cert)?,
            key: Arc::new(load_key(key)?),
        })
    }

    /// From PEM text, as [`issue`] returns it.
    pub fn from_pem(issued: &Issued) -> Result<ClientIdentity, TlsError> {
        let certs = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
            .map_err(|e| TlsError::Certificate(format!("private key: {e}")))?;
        Ok(ClientIdentity {
            certs,
            key: Arc::new(key),
        })
    }

    /// The SPKI pin of the leaf certificate, by which a server knows this client.
    pub fn pin(&self) -> Result<String, TlsError> {
        let leaf = self
            .certs
            .first()
            .ok_or_else(|| TlsError::Certificate("no certificate".into()))?;
        spki_pin(leaf)
    }
}

/// A client configuration for DNS over TLS under `trust` (ALPN "dot", no client
/// certificate).
pub fn client_config(trust: &ServerTrust) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_for(trust, None)
}

/// A client configuration for DNS over TLS under `trust`, presenting `identity` to a
/// server that asks for a client certificate.
pub fn client_config_for(
    trust: &ServerTrust,
    identity: Option<&ClientIdentity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let wants_client_cert = match trust {
        ServerTrust::Ca(cas) => {
            let mut roots = RootCertStore::empty();
            for ca in cas {
                roots
                    .add(ca.clone())
                    .map_err(|e| TlsError::Certificate(format!("CA certificate: {e}")))?;
            }
            builder.with_root_certificates(roots)
        }
        ServerTrust::Pins(pins) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier {
                pins: pins.clone(),
                provider: provider(),
            })),
    };
    let mut config = match identity {
        None => wants_client_cert.with_no_client_auth(),
        Some(id) => wants_client_cert
            .with_client_auth_cert(id.certs.clone(), id.key.clone_key())
            .map_err(|e| TlsError::Config(format!("client certificate: {e}")))?,
    };
    config.alpn_protocols = vec![ALPN_DOT.to_vec()];
    Ok(Arc::new(config))
}

/// Accepts a server whose leaf certificate carries a pinned key; the handshake still
/// proves the server holds that key.
#[derive(Debug)]
struct PinVerifier {
    pins: Vec<String>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pin = spki_pin(end_entity)
            .map_err(|e| rustls::Error::General(format!("server certificate: {e}")))?;
        if self.pins.contains(&pin) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's key (pin {pin}) is not a pinned one"
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.provider, message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        handshake_signature(&self.provider, message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A certificate and its private key, in PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn rcgen_error(e: rcgen::Error) -> TlsError {
    TlsError::Certificate(e.to_string())
}

fn validity(
    params: &mut rcgen::CertificateParams,
    not_before: u64,
    not_after: u64,
) -> Result<(), TlsError> {
    let at = |t: u64| {
        i64::try_from(t)
            .ok()
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .ok_or_else(|| TlsError::Certificate(format!("time {t} out of range")))
    };
    params.not_before = at(not_before)?;
    params.not_after = at(not_after)?;
    Ok(())
}

/// A deployment CA: a self-signed certificate that may sign server and client
/// certificates, valid from `not_before` to `not_after` (unix seconds).
pub fn make_ca(name: &str, not_before: u64, not_after: u64) -> Result<Issued, TlsError> {
    let key = rcgen::KeyPair::generate().map_err(rcgen_error)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, not_before, not_after)?;
    let cert = params.self_signed(&key).map_err(rcgen_error)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A certificate for `names` (DNS names or IP addresses) signed by `ca`, for a server
/// and a client alike (DoT servers, and app providers' resolvers presenting themselves).
pub fn issue(
    ca: &Issued,
    names: &[String],
    not_before: u64,
    not_after: u64,
) -> Result<Issued, TlsError> {
    let ca_key = rcgen::KeyPair::from_pem(&ca.key_pem).map_err(rcgen_error)?;
    let ca_params =
        rcgen::CertificateParams::from_ca_cert_pem(&ca.cert_pem).map_err(rcgen_error)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(rcgen_error)?;
    let key = rcgen::KeyPair::generate().map_err(rcgen_error)?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(rcgen_error)?;
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.as_str());
    }
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    validity(&mut params, not_before, not_after)?;
    let cert = params
        .signed_by(&key, &ca_cert, &ca_key)
        .map_err(rcgen_error)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn issued_certificates_chain_to_the_ca_and_pins_are_stable() {
        let now = crate::sys::unix_now();
        let ca = make_ca("test CA", now - 60, now + 86400).unwrap();
        let leaf = issue(
            &ca,
            &["dp.example".into(), "127.0.0.1".into()],
            now - 60,
            now + 3600,
        )
        .unwrap();
        let cert = der(&leaf.cert_pem);
        let pin = spki_pin(&cert).unwrap();
        assert_eq!(pin, spki_pin(&cert).unwrap());
        assert_eq!(pin.len(), 44, "{pin}");
        let other = issue(&ca, &["dp.example".into()], now - 60, now + 3600).unwrap();
        assert_ne!(
            pin,
            spki_pin(&der(&other.cert_pem)).unwrap(),
            "a new key each time"
        );
        // The chain verifies under the CA for the name.
        let mut roots = RootCertStore::empty();
        roots.add(der(&ca.cert_pem)).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        let name = ServerName::try_from("dp.example").unwrap();
        verifier
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .unwrap();
        // Names that parse as addresses become IP SANs: a client may check a DP by address.
        let by_ip = ServerName::try_from("127.0.0.1").unwrap();
        verifier
            .verify_server_cert(&cert, &[], &by_ip, &[], UnixTime::now())
            .unwrap();
        let other_ip = ServerName::try_from("127.0.0.2").unwrap();
        assert!(verifier
            .verify_server_cert(&cert, &[], &other_ip, &[], UnixTime::now())
            .is_err());
        let wrong = ServerName::try_from("other.example").unwrap();
        assert!(verifier
            .verify_server_cert(&cert, &[], &wrong, &[], UnixTime::now())
            .is_err());
    }
}
