//! The one error type of certificate parsing and verification.

use crate::identity::{IdentityError, PeerId};
use thiserror::Error;

/// Why a peer's libp2p TLS certificate (or its handshake signature) was refused. Every
/// variant aborts the handshake it happened in.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CertError {
    /// The certificate is larger than any libp2p certificate has reason to be.
    #[error("certificate of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit ([`super::MAX_CERTIFICATE_LEN`]).
        max: usize,
    },
    /// The peer sent no certificate, or a chain of more than one (the spec allows exactly
    /// one, self-signed).
    #[error("expected exactly one certificate, got {count}")]
    ChainLength {
        /// How many certificates arrived.
        count: usize,
    },
    /// The bytes are not a well-formed DER X.509 certificate.
    #[error("malformed certificate: {field}: {reason}")]
    Der {
        /// The field being read.
        field: &'static str,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// The certificate's key or signature algorithm is not one we verify (ECDSA P-256 or
    /// P-384, Ed25519).
    #[error("unsupported certificate algorithm: {what}")]
    UnsupportedAlgorithm {
        /// Which algorithm, named.
        what: &'static str,
    },
    /// The certificate's self-signature does not verify with its own key.
    #[error("the certificate's self-signature is invalid")]
    BadSelfSignature,
    /// The certificate lacks the libp2p public key extension (OID 1.3.6.1.4.1.53594.1.1).
    #[error("the certificate has no libp2p public key extension")]
    MissingExtension,
    /// The libp2p extension appears twice.
    #[error("the certificate carries the libp2p extension twice")]
    DuplicateExtension,
    /// The certificate has more extensions than [`super::MAX_EXTENSIONS`].
    #[error("the certificate has more than {max} extensions")]
    TooManyExtensions {
        /// The limit.
        max: usize,
    },
    /// A critical extension we do not understand (the spec says to abort).
    #[error("the certificate has an unknown critical extension (OID bytes {oid})")]
    UnknownCriticalExtension {
        /// The extension's OID, hex-encoded DER contents.
        oid: String,
    },
    /// The deprecated issuer or subject unique ID is present.
    #[error("the certificate carries a deprecated unique ID field")]
    UniqueId,
    /// The host key in the extension is malformed or of a type we do not support (only
    /// Ed25519 identities are).
    #[error("the certificate's host key is refused: {0}")]
    HostKey(#[from] IdentityError),
    /// The host key's signature over the certificate key does not verify: the certificate
    /// was not made by the holder of that peer ID.
    #[error("the libp2p extension's signature does not verify for {peer}")]
    BadExtensionSignature {
        /// The peer the extension claims.
        peer: PeerId,
    },
    /// The certificate is not valid yet.
    #[error("the certificate is not valid before {not_before} (now {now}, Unix seconds)")]
    NotYetValid {
        /// Its `notBefore`.
        not_before: i64,
        /// The time of the check.
        now: i64,
    },
    /// The certificate has expired.
    #[error("the certificate expired at {not_after} (now {now}, Unix seconds)")]
    Expired {
        /// Its `notAfter`.
        not_after: i64,
        /// The time of the check.
        now: i64,
    },
    /// The certificate is valid, but for another peer than the one we dialled.
    #[error("expected peer {expected}, but the certificate is {actual}'s")]
    WrongPeer {
        /// The peer we dialled.
        expected: PeerId,
        /// The peer the certificate proves.
        actual: PeerId,
    },
    /// The TLS handshake signature (CertificateVerify) uses a scheme that does not fit the
    /// certificate's key, or one we do not support.
    #[error("TLS signature scheme {scheme} does not fit the certificate's key")]
    HandshakeScheme {
        /// The scheme named.
        scheme: &'static str,
    },
    /// The TLS handshake signature (CertificateVerify) does not verify.
    #[error("the TLS handshake signature does not verify with the certificate's key")]
    BadHandshakeSignature,
}
