//! rustls set up the libp2p way: TLS 1.3 only, ALPN `libp2p`, no SNI, mutual
//! authentication by the libp2p certificate extension instead of a CA.
//!
//! Both QUIC and `/tls/1.0.0` over TCP take their rustls configurations from here. The
//! certificate work itself — parsing, the extension's signature, the peer ID, building our
//! certificate — is [`pheromone_core::tls`]; this file generates the throw-away P-256 keys,
//! signs with them, and plugs the core's checks into rustls's verifier traits. A
//! verification failure surfaces as a rustls error wrapping the core's [`CertError`], so the
//! handshake error names what was wrong (bad signature, wrong peer, unsupported key).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use pheromone_core::identity::{Keypair, PeerId};
use pheromone_core::tls::{self as core_tls, CertError, HandshakeScheme, P2pCertificate};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureAlgorithm, SignatureScheme};
use std::sync::{Arc, Mutex};

/// How our certificates are made.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// A fresh P-256 key and certificate for every handshake (the and the
    /// privacy-minded choice: connections cannot be linked by their certificate key) rather
    /// than one per endpoint. Costs a key generation and two signatures per connection.
    pub fresh_certificate_per_connection: bool,
    /// Put AES-GCM before ChaCha20-Poly1305 among the cipher suites, and prefer our order
    /// as a server. Defaults to [`crate::cpu_has_fast_aes_gcm`].
    pub prefer_aes_gcm: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            fresh_certificate_per_connection: true,
            prefer_aes_gcm: crate::cpu_has_fast_aes_gcm(),
        }
    }
}

/// Our side of the libp2p TLS handshake: the identity whose key signs our certificates,
/// and the rustls configurations built from it.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    certs: Arc<CertSource>,
    provider: Arc<CryptoProvider>,
    server: Arc<rustls::ServerConfig>,
    /// The server configuration for `/tls/1.0.0` over TCP: the same, but it lets the
    /// record keys out after the handshake (our driver seals the records itself).
    tcp_server: Arc<rustls::ServerConfig>,
    prefer_aes_gcm: bool,
}

impl TlsIdentity {
    /// Builds the configurations for `keypair`.
    pub fn new(keypair: &Keypair, config: &TlsConfig) -> Self {
        let provider = Arc::new(provider(config.prefer_aes_gcm));
        let certs = Arc::new(CertSource::new(
            keypair.clone(),
            config.fresh_certificate_per_connection,
        ));
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("the AWS-LC provider supports TLS 1.3")
            .with_client_cert_verifier(Arc::new(Verifier { expected: None }))
            .with_cert_resolver(certs.clone());
        server.alpn_protocols = vec![core_tls::ALPN.to_vec()];
        server.ignore_client_order = true;
        // 0.5-RTT data and session tickets serve resumption, which libp2p does not use.
        server.send_tls13_tickets = 0;
        let mut tcp_server = server.clone();
        tcp_server.enable_secret_extraction = true;
        Self {
            certs,
            provider,
            server: Arc::new(server),
            tcp_server: Arc::new(tcp_server),
            prefer_aes_gcm: config.prefer_aes_gcm,
        }
    }

    /// The server configuration (shared by every inbound handshake).
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server.clone()
    }

    /// The server configuration of `/tls/1.0.0` over TCP (secret extraction enabled).
    pub(crate) fn tcp_server_config(&self) -> Arc<rustls::ServerConfig> {
        self.tcp_server.clone()
    }

    /// The client configuration of one `/tls/1.0.0` dial over TCP (secret extraction
    /// enabled); with `expected`, the server must prove it is that peer.
    pub(crate) fn tcp_client_config(&self, expected: Option<PeerId>) -> Arc<rustls::ClientConfig> {
        let mut client = Arc::unwrap_or_clone(self.client_config(expected));
        client.enable_secret_extraction = true;
        Arc::new(client)
    }

    /// A client configuration for one dial; with `expected`, the server must prove it is
    /// that peer.
    pub fn client_config(&self, expected: Option<PeerId>) -> Arc<rustls::ClientConfig> {
        let mut client = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("the AWS-LC provider supports TLS 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier { expected }))
            .with_client_cert_resolver(self.certs.clone());
        client.alpn_protocols = vec![core_tls::ALPN.to_vec()];
        // The spec: a client MUST NOT send SNI.
        client.enable_sni = false;
        client.resumption = rustls::client::Resumption::disabled();
        Arc::new(client)
    }

    /// Whether AES-GCM comes first (what [`crate::connection::ConnectionInfo::cipher`]
    /// reports for TLS connections).
    pub fn prefers_aes_gcm(&self) -> bool {
        self.prefer_aes_gcm
    }
}

/// The AWS-LC provider with the TLS 1.3 suites in the order we prefer. AES-128-GCM before
/// AES-256-GCM: four fewer rounds per block and the same strength class for this use.
fn provider(prefer_aes_gcm: bool) -> CryptoProvider {
    use rustls::crypto::aws_lc_rs::cipher_suite as suites;
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = if prefer_aes_gcm {
        vec![
            suites::TLS13_AES_128_GCM_SHA256,
            suites::TLS13_AES_256_GCM_SHA384,
            suites::TLS13_CHACHA20_POLY1305_SHA256,
        ]
    } else {
        vec![
            suites::TLS13_CHACHA20_POLY1305_SHA256,
            suites::TLS13_AES_128_GCM_SHA256,
            suites::TLS13_AES_256_GCM_SHA384,
        ]
    };
    provider
}

/// The peer a verified certificate chain proves, for a connection whose handshake is done
/// (the verifiers checked it during the handshake; this re-reads the peer ID).
pub(crate) fn peer_of(
    certs: &[CertificateDer<'_>],
) -> Result<pheromone_core::identity::PublicKey, CertError> {
    match certs {
        [one] => Ok(P2pCertificate::parse(one)?.host_key()),
        _ => Err(CertError::ChainLength { count: certs.len() }),
    }
}

/// Where our certificates come from: one made per handshake, or one per endpoint.
#[derive(Debug)]
struct CertSource {
    keypair: Keypair,
    fresh: bool,
    /// The endpoint's one certificate when not fresh per connection.
    cached: Mutex<Option<Arc<CertifiedKey>>>,
}

impl CertSource {
    fn new(keypair: Keypair, fresh: bool) -> Self {
        Self {
            keypair,
            fresh,
            cached: Mutex::new(None),
        }
    }

    fn get(&self) -> Option<Arc<CertifiedKey>> {
        if self.fresh {
            return make_certified_key(&self.keypair);
        }
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if cached.is_none() {
            *cached = make_certified_key(&self.keypair);
        }
        cached.clone()
    }
}

/// A new P-256 key and our certificate for it.
fn make_certified_key(keypair: &Keypair) -> Option<Arc<CertifiedKey>> {
    let rng = SystemRandom::new();
    let key = match EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING) {
        Ok(key) => key,
        Err(e) => {
            tracing::error!(error = %e, "cannot generate a certificate key");
            return None;
        }
    };
    let serial = {
        let mut bytes = [0u8; 8];
        if aws_lc_rs::rand::SecureRandom::fill(&rng, &mut bytes).is_err() {
            return None;
        }
        u64::from_be_bytes(bytes)
    };
    let der = core_tls::certificate(keypair, key.public_key().as_ref(), serial, |tbs| {
        key.sign(&rng, tbs).map(|s| s.as_ref().to_vec())
    });
    let der = match der {
        Ok(der) => der,
        Err(e) => {
            tracing::error!(error = %e, "cannot sign our certificate");
            return None;
        }
    };
    let signing = Arc::new(P256Key {
        key: Arc::new(key),
        rng,
    });
    Some(Arc::new(CertifiedKey::new(
        vec![CertificateDer::from(der)],
        signing,
    )))
}

impl rustls::server::ResolvesServerCert for CertSource {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get()
    }
}

impl rustls::client::ResolvesClientCert for CertSource {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        if !sigschemes.contains(&SignatureScheme::ECDSA_NISTP256_SHA256) {
            return None;
        }
        self.get()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Our certificate key, signing TLS 1.3 handshakes (ECDSA P-256 with SHA-256).
#[derive(Debug)]
struct P256Key {
    key: Arc<EcdsaKeyPair>,
    rng: SystemRandom,
}

impl SigningKey for P256Key {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| {
                Box::new(P256Signer {
                    key: self.key.clone(),
                    rng: self.rng.clone(),
                }) as Box<dyn Signer>
            })
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

#[derive(Debug)]
struct P256Signer {
    key: Arc<EcdsaKeyPair>,
    rng: SystemRandom,
}

impl Signer for P256Signer {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.key
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| rustls::Error::General("ECDSA signing failed".into()))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

/// Verifies the peer's certificate, as server and as client, with the core's checks.
#[derive(Debug)]
struct Verifier {
    /// The peer a client dialled (`None` on the server side, or a dial without `/p2p/`).
    expected: Option<PeerId>,
}

/// The TLS 1.3 signature schemes we verify, in rustls's terms.
const SCHEMES: [SignatureScheme; 3] = [
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ED25519,
];

fn cert_error(e: CertError) -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
        Arc::new(e),
    )))
}

impl Verifier {
    fn verify_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<PeerId, rustls::Error> {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        core_tls::verify_chain(end_entity, intermediates.len(), now, self.expected)
            .map_err(cert_error)
    }

    fn verify_signature(
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let scheme = match dss.scheme {
            SignatureScheme::ECDSA_NISTP256_SHA256 => HandshakeScheme::EcdsaP256Sha256,
            SignatureScheme::ECDSA_NISTP384_SHA384 => HandshakeScheme::EcdsaP384Sha384,
            SignatureScheme::ED25519 => HandshakeScheme::Ed25519,
            _ => {
                return Err(rustls::Error::PeerMisbehaved(
                    rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
                ))
            }
        };
        P2pCertificate::parse(cert)
            .and_then(|c| c.verify_handshake_signature(scheme, message, dss.signature()))
            .map_err(cert_error)?;
        Ok(HandshakeSignatureValid::assertion())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify_chain(end_entity, intermediates, now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}

impl ClientCertVerifier for Verifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify_chain(end_entity, intermediates, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Self::verify_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}
