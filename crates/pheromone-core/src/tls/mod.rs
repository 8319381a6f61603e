//! The libp2p TLS handshake's certificates (`/tls/1.0.0` over TCP, and QUIC v1), sans IO.
//!
//! libp2p authenticates TLS 1.3 peers not through a CA but through a certificate
//! extension: each side presents one self-signed certificate with a throw-away key, and
//! the extension (OID 1.3.6.1.4.1.53594.1.1) carries the host's identity key with its
//! signature over `"libp2p-tls-handshake:"` followed by the certificate's
//! SubjectPublicKeyInfo. This module parses and verifies such certificates (a DER reader
//! with every length capped, in `der.rs`; the certificate in `cert.rs`), checks TLS 1.3
//! handshake signatures against them, and builds our own from a key and a signing closure
//! the caller supplies.
//!
//! It runs no TLS handshake: rustls does, in the `pheromone` crate, which calls in here
//! from its certificate verifiers. Over TCP, the records after the handshake are sealed
//! and opened by `record.rs` with the keys rustls negotiated. Nothing here reads a clock (the caller passes `now`) or draws
//! randomness (the caller generates the certificate key and signs).

mod cert;
mod der;
mod error;
pub mod record;

#[cfg(test)]
mod tests;

pub use cert::{certificate, p256_spki, signed_key, CertKeyKind, P2pCertificate};
pub use error::CertError;

use crate::identity::PeerId;

/// The protocol ID of TLS as a security protocol over TCP.
pub const PROTOCOL_ID: &str = "/tls/1.0.0";

/// The ALPN protocol both sides offer.
pub const ALPN: &[u8] = b"libp2p";

/// What the host key signs, in front of the certificate's SubjectPublicKeyInfo.
pub const HANDSHAKE_PREFIX: &[u8] = b"libp2p-tls-handshake:";

/// The largest certificate we parse. Ours are about 400 bytes; one with an RSA host key
/// about 1.2 KiB.
pub const MAX_CERTIFICATE_LEN: usize = 8 * 1024;

/// The most extensions a certificate may carry.
pub const MAX_EXTENSIONS: usize = 16;

/// The TLS 1.3 signature schemes a libp2p certificate key may sign the handshake with (the
/// ones we verify).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeScheme {
    /// `ecdsa_secp256r1_sha256`.
    EcdsaP256Sha256,
    /// `ecdsa_secp384r1_sha384`.
    EcdsaP384Sha384,
    /// `ed25519`.
    Ed25519,
}

impl HandshakeScheme {
    /// The scheme's TLS name.
    pub fn name(self) -> &'static str {
        match self {
            Self::EcdsaP256Sha256 => "ecdsa_secp256r1_sha256",
            Self::EcdsaP384Sha384 => "ecdsa_secp384r1_sha384",
            Self::Ed25519 => "ed25519",
        }
    }
}

/// Verifies a peer's certificate chain as the spec requires: exactly one certificate,
/// valid at `now` (Unix seconds), self-signature and libp2p extension correct, and, with
/// `expected`, proving that peer. The proven peer ID.
pub fn verify_chain(
    end_entity: &[u8],
    intermediates: usize,
    now: i64,
    expected: Option<PeerId>,
) -> Result<PeerId, CertError> {
    if intermediates != 0 {
        return Err(CertError::ChainLength {
            count: intermediates + 1,
        });
    }
    let peer = P2pCertificate::parse(end_entity)?.verify(now)?;
    match expected {
        Some(expected) if expected != peer => Err(CertError::WrongPeer {
            expected,
            actual: peer,
        }),
        _ => Ok(peer),
    }
}

/// Entry points for the cargo-fuzz targets.
pub mod fuzzing {
    use super::P2pCertificate;

    /// Parses `data` as a certificate and, if it parses, verifies it: neither may panic,
    /// and a certificate that verifies must name the peer its host key gives.
    pub fn fuzz_certificate(data: &[u8]) {
        if let Ok(cert) = P2pCertificate::parse(data) {
            if let Ok(peer) = cert.verify(1_700_000_000) {
                assert_eq!(peer, cert.host_key().to_peer_id());
            }
            let _ = cert.verify_handshake_signature(
                super::HandshakeScheme::EcdsaP256Sha256,
                data,
                data,
            );
        }
    }
}
