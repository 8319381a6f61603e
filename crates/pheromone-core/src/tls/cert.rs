//! Parsing and verifying a peer's libp2p certificate, and building our own.
//!
//! A libp2p certificate is an ordinary self-signed X.509 v3 certificate whose key is a
//! throw-away one (ECDSA P-256 here), carrying one extra extension: the host's identity key
//! and its signature over `"libp2p-tls-handshake:"` followed by the certificate's
//! SubjectPublicKeyInfo. Verifying means: the certificate parses (every length capped),
//! is within its validity, its self-signature holds, it has the extension exactly once and
//! no unknown critical one, and the extension's signature holds under the host key. The
//! peer ID is that host key's.
//!
//! Signing our certificate needs randomness (the ECDSA nonce) and a fresh key: the caller
//! generates both and passes a signing closure, so this file stays free of RNGs and clocks.

use super::der::{self, Der, Tlv};
use super::{CertError, HandshakeScheme, HANDSHAKE_PREFIX, MAX_CERTIFICATE_LEN, MAX_EXTENSIONS};
use crate::identity::{Keypair, PeerId, PublicKey};
use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};

/// DER contents of OID 1.3.6.1.4.1.53594.1.1, the libp2p public key extension.
pub(crate) const LIBP2P_EXTENSION_OID: &[u8] =
    &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xa2, 0x5a, 0x01, 0x01];
/// id-ecPublicKey (1.2.840.10045.2.1).
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 (1.2.840.10045.3.1.7).
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp384r1 (1.3.132.0.34).
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// Ed25519 (1.3.101.112), as key and as signature algorithm.
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];
/// ecdsa-with-SHA256 (1.2.840.10045.4.3.2).
const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
/// ecdsa-with-SHA384 (1.2.840.10045.4.3.3).
const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
/// commonName (2.5.4.3).
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The key a certificate is made with (not the host's identity key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertKeyKind {
    /// ECDSA on P-256 (what we and rust-libp2p generate).
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SigAlg {
    EcdsaSha256,
    EcdsaSha384,
    Ed25519,
}

/// A parsed libp2p certificate: borrowed from the DER it was parsed from. Parsing checks
/// the structure; [`P2pCertificate::verify`] checks the signatures and the validity.
#[derive(Debug, Clone)]
pub struct P2pCertificate<'a> {
    tbs: &'a [u8],
    sig_alg: SigAlg,
    signature: &'a [u8],
    spki: &'a [u8],
    key_kind: CertKeyKind,
    key: &'a [u8],
    not_before: i64,
    not_after: i64,
    host_key: PublicKey,
    extension_signature: &'a [u8],
}

impl<'a> P2pCertificate<'a> {
    /// Parses `der`, one certificate, checking its structure and decoding the host key in
    /// the libp2p extension; no signature is checked yet.
    pub fn parse(der: &'a [u8]) -> Result<Self, CertError> {
        if der.len() > MAX_CERTIFICATE_LEN {
            return Err(CertError::TooLarge {
                len: der.len(),
                max: MAX_CERTIFICATE_LEN,
            });
        }
        let mut outer = Der::new(der);
        let mut cert = outer.nested(der::SEQUENCE, "certificate")?;
        outer.finish("certificate")?;
        let tbs_tlv = cert.expect(der::SEQUENCE, "tbsCertificate")?;
        let outer_alg = algorithm(&mut cert, "signatureAlgorithm")?;
        let signature = der::bit_string_bytes(
            cert.expect(der::BIT_STRING, "signatureValue")?,
            "signatureValue",
        )?;
        cert.finish("certificate")?;

        let mut tbs = Der::new(tbs_tlv.value);
        // version [0] EXPLICIT: must be v3 (2), since we need extensions.
        let mut version = tbs.nested(0xa0, "version")?;
        let v = version.expect(der::INTEGER, "version")?;
        if v.value != [2] {
            return Err(CertError::Der {
                field: "version",
                reason: "not an X.509 v3 certificate",
            });
        }
        tbs.expect(der::INTEGER, "serialNumber")?;
        let inner_alg = algorithm(&mut tbs, "signature")?;
        if inner_alg.raw != outer_alg.raw {
            return Err(CertError::Der {
                field: "signature",
                reason: "inner and outer signature algorithms differ",
            });
        }
        let sig_alg = signature_algorithm(inner_alg)?;
        tbs.expect(der::SEQUENCE, "issuer")?;
        let mut validity = tbs.nested(der::SEQUENCE, "validity")?;
        let not_before = der::time(validity.any("notBefore")?, "notBefore")?;
        let not_after = der::time(validity.any("notAfter")?, "notAfter")?;
        validity.finish("validity")?;
        tbs.expect(der::SEQUENCE, "subject")?;
        let spki_tlv = tbs.expect(der::SEQUENCE, "subjectPublicKeyInfo")?;
        let (key_kind, key) = public_key(spki_tlv)?;
        if tbs.peek_tag() == Some(0x81) || tbs.peek_tag() == Some(0x82) {
            return Err(CertError::UniqueId);
        }
        let mut extensions_wrapper = tbs.nested(0xa3, "extensions")?;
        let extensions = extensions_wrapper.nested(der::SEQUENCE, "extensions")?;
        extensions_wrapper.finish("extensions")?;
        tbs.finish("tbsCertificate")?;

        let (host_key, extension_signature) = libp2p_extension(extensions)?;
        Ok(Self {
            tbs: tbs_tlv.raw,
            sig_alg,
            signature,
            spki: spki_tlv.raw,
            key_kind,
            key,
            not_before,
            not_after,
            host_key,
            extension_signature,
        })
    }

    /// The peer this certificate claims to be (proven only once [`Self::verify`] passed).
    pub fn peer_id(&self) -> PeerId {
        self.host_key.to_peer_id()
    }

    /// The host's identity key from the extension.
    pub fn host_key(&self) -> PublicKey {
        self.host_key
    }

    /// The certificate key's kind.
    pub fn key_kind(&self) -> CertKeyKind {
        self.key_kind
    }

    /// Checks validity at `now` (Unix seconds), the self-signature and the extension's
    /// signature; the proven peer ID.
    pub fn verify(&self, now: i64) -> Result<PeerId, CertError> {
        if now < self.not_before {
            return Err(CertError::NotYetValid {
                not_before: self.not_before,
                now,
            });
        }
        if now > self.not_after {
            return Err(CertError::Expired {
                not_after: self.not_after,
                now,
            });
        }
        let alg: &dyn VerificationAlgorithm = match (self.key_kind, self.sig_alg) {
            (CertKeyKind::EcdsaP256, SigAlg::EcdsaSha256) => &signature::ECDSA_P256_SHA256_ASN1,
            (CertKeyKind::EcdsaP256, SigAlg::EcdsaSha384) => &signature::ECDSA_P256_SHA384_ASN1,
            (CertKeyKind::EcdsaP384, SigAlg::EcdsaSha256) => &signature::ECDSA_P384_SHA256_ASN1,
            (CertKeyKind::EcdsaP384, SigAlg::EcdsaSha384) => &signature::ECDSA_P384_SHA384_ASN1,
            (CertKeyKind::Ed25519, SigAlg::Ed25519) => &signature::ED25519,
            _ => {
                return Err(CertError::UnsupportedAlgorithm {
                    what: "signature algorithm does not match the certificate key",
                })
            }
        };
        UnparsedPublicKey::new(alg, self.key)
            .verify(self.tbs, self.signature)
            .map_err(|_| CertError::BadSelfSignature)?;
        let mut message = Vec::with_capacity(HANDSHAKE_PREFIX.len() + self.spki.len());
        message.extend_from_slice(HANDSHAKE_PREFIX);
        message.extend_from_slice(self.spki);
        if !self.host_key.verify(&message, self.extension_signature) {
            return Err(CertError::BadExtensionSignature {
                peer: self.peer_id(),
            });
        }
        Ok(self.peer_id())
    }

    /// Verifies a TLS 1.3 handshake signature (CertificateVerify) made with the
    /// certificate's key.
    pub fn verify_handshake_signature(
        &self,
        scheme: HandshakeScheme,
        message: &[u8],
        sig: &[u8],
    ) -> Result<(), CertError> {
        let alg: &dyn VerificationAlgorithm = match (scheme, self.key_kind) {
            (HandshakeScheme::EcdsaP256Sha256, CertKeyKind::EcdsaP256) => {
                &signature::ECDSA_P256_SHA256_ASN1
            }
            (HandshakeScheme::EcdsaP384Sha384, CertKeyKind::EcdsaP384) => {
                &signature::ECDSA_P384_SHA384_ASN1
            }
            (HandshakeScheme::Ed25519, CertKeyKind::Ed25519) => &signature::ED25519,
            _ => {
                return Err(CertError::HandshakeScheme {
                    scheme: scheme.name(),
                })
            }
        };
        UnparsedPublicKey::new(alg, self.key)
            .verify(message, sig)
            .map_err(|_| CertError::BadHandshakeSignature)
    }
}

/// Reads an AlgorithmIdentifier: its whole encoding, the OID and the parameters if any.
struct Algorithm<'a> {
    raw: &'a [u8],
    oid: &'a [u8],
    params: Option<Tlv<'a>>,
}

fn algorithm<'a>(der: &mut Der<'a>, field: &'static str) -> Result<Algorithm<'a>, CertError> {
    let tlv = der.expect(der::SEQUENCE, field)?;
    let mut inner = Der::new(tlv.value);
    let oid = inner.expect(der::OID, field)?.value;
    let params = if inner.is_empty() {
        None
    } else {
        Some(inner.any(field)?)
    };
    inner.finish(field)?;
    Ok(Algorithm {
        raw: tlv.raw,
        oid,
        params,
    })
}

fn signature_algorithm(alg: Algorithm<'_>) -> Result<SigAlg, CertError> {
    if alg.params.is_some() {
        return Err(CertError::UnsupportedAlgorithm {
            what: "signature algorithm with parameters",
        });
    }
    match alg.oid {
        ECDSA_SHA256 => Ok(SigAlg::EcdsaSha256),
        ECDSA_SHA384 => Ok(SigAlg::EcdsaSha384),
        ED25519 => Ok(SigAlg::Ed25519),
        _ => Err(CertError::UnsupportedAlgorithm {
            what: "certificate signature algorithm (RSA and others are not verified)",
        }),
    }
}

/// The key kind and the raw key bytes of a SubjectPublicKeyInfo.
fn public_key(spki: Tlv<'_>) -> Result<(CertKeyKind, &[u8]), CertError> {
    let mut inner = Der::new(spki.value);
    let alg = algorithm(&mut inner, "subjectPublicKeyInfo")?;
    let key = der::bit_string_bytes(
        inner.expect(der::BIT_STRING, "subjectPublicKey")?,
        "subjectPublicKey",
    )?;
    inner.finish("subjectPublicKeyInfo")?;
    let kind = match (alg.oid, alg.params) {
        (EC_PUBLIC_KEY, Some(p)) if p.tag == der::OID && p.value == P256 => CertKeyKind::EcdsaP256,
        (EC_PUBLIC_KEY, Some(p)) if p.tag == der::OID && p.value == P384 => CertKeyKind::EcdsaP384,
        (ED25519, None) => CertKeyKind::Ed25519,
        _ => {
            return Err(CertError::UnsupportedAlgorithm {
                what: "certificate key type (ECDSA P-256/P-384 and Ed25519 are accepted)",
            })
        }
    };
    Ok((kind, key))
}

/// Finds the libp2p extension among `extensions`, refusing unknown critical ones.
fn libp2p_extension(mut extensions: Der<'_>) -> Result<(PublicKey, &[u8]), CertError> {
    let mut found = None;
    let mut count = 0;
    while !extensions.is_empty() {
        count += 1;
        if count > MAX_EXTENSIONS {
            return Err(CertError::TooManyExtensions {
                max: MAX_EXTENSIONS,
            });
        }
        let mut ext = extensions.nested(der::SEQUENCE, "extension")?;
        let oid = ext.expect(der::OID, "extnID")?.value;
        let critical = match ext.optional(der::BOOLEAN, "critical")? {
            Some(b) => match b.value {
                [0] => false,
                [0xff] => true,
                _ => {
                    return Err(CertError::Der {
                        field: "critical",
                        reason: "not a DER boolean",
                    })
                }
            },
            None => false,
        };
        let value = ext.expect(der::OCTET_STRING, "extnValue")?.value;
        ext.finish("extension")?;
        if oid == LIBP2P_EXTENSION_OID {
            if found.is_some() {
                return Err(CertError::DuplicateExtension);
            }
            found = Some(value);
        } else if critical {
            return Err(CertError::UnknownCriticalExtension { oid: hex(oid) });
        }
    }
    let value = found.ok_or(CertError::MissingExtension)?;
    let mut outer = Der::new(value);
    let mut signed_key = outer.nested(der::SEQUENCE, "SignedKey")?;
    outer.finish("SignedKey")?;
    let public = signed_key
        .expect(der::OCTET_STRING, "SignedKey.publicKey")?
        .value;
    let signature = signed_key
        .expect(der::OCTET_STRING, "SignedKey.signature")?
        .value;
    signed_key.finish("SignedKey")?;
    let host_key = PublicKey::from_protobuf_encoding(public)?;
    Ok((host_key, signature))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SubjectPublicKeyInfo of an uncompressed P-256 point (65 bytes, `04‖X‖Y`).
pub fn p256_spki(point: &[u8]) -> Vec<u8> {
    let oids = [
        der::wrap(der::OID, &[EC_PUBLIC_KEY]),
        der::wrap(der::OID, &[P256]),
    ];
    let alg = der::wrap(der::SEQUENCE, &[&oids[0], &oids[1]]);
    der::wrap(der::SEQUENCE, &[&alg, &der::bit_string(point)])
}

/// The DER contents of the libp2p extension: `host`'s public key and its signature over
/// [`HANDSHAKE_PREFIX`] and `spki`.
pub fn signed_key(host: &Keypair, spki: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(HANDSHAKE_PREFIX.len() + spki.len());
    message.extend_from_slice(HANDSHAKE_PREFIX);
    message.extend_from_slice(spki);
    let signature = host.sign(&message);
    let public = host.public().to_protobuf_encoding();
    der::wrap(
        der::SEQUENCE,
        &[
            &der::wrap(der::OCTET_STRING, &[&public]),
            &der::wrap(der::OCTET_STRING, &[&signature]),
        ],
    )
}

/// Builds our self-signed libp2p certificate for the P-256 key whose uncompressed public
/// point is `point`: serial `serial`, valid from 1975 to 4096 (as rust-libp2p's, so clocks
/// never matter), the libp2p extension marked critical. `sign` signs the to-be-signed bytes
/// with the certificate key (ECDSA P-256 with SHA-256, ASN.1 DER signature).
pub fn certificate<E>(
    host: &Keypair,
    point: &[u8],
    serial: u64,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<Vec<u8>, E> {
    let spki = p256_spki(point);
    let version = der::wrap(0xa0, &[&der::wrap(der::INTEGER, &[&[2]])]);
    // A positive INTEGER: a leading zero keeps the top bit from making it negative.
    let mut serial_bytes = vec![0u8];
    serial_bytes.extend_from_slice(&serial.to_be_bytes());
    let serial = der::wrap(der::INTEGER, &[&serial_bytes]);
    let alg = der::wrap(der::SEQUENCE, &[&der::wrap(der::OID, &[ECDSA_SHA256])]);
    let cn = der::wrap(
        der::SEQUENCE,
        &[
            &der::wrap(der::OID, &[COMMON_NAME]),
            &der::wrap(der::UTF8_STRING, &[b"libp2p"]),
        ],
    );
    let name = der::wrap(der::SEQUENCE, &[&der::wrap(der::SET, &[&cn])]);
    let validity = der::wrap(
        der::SEQUENCE,
        &[
            &der::wrap(der::UTC_TIME, &[b"750101000000Z"]),
            &der::wrap(der::GENERALIZED_TIME, &[b"40960101000000Z"]),
        ],
    );
    let extension = der::wrap(
        der::SEQUENCE,
        &[
            &der::wrap(der::OID, &[LIBP2P_EXTENSION_OID]),
            &der::wrap(der::BOOLEAN, &[&[0xff]]),
            &der::wrap(der::OCTET_STRING, &[&signed_key(host, &spki)]),
        ],
    );
    let extensions = der::wrap(0xa3, &[&der::wrap(der::SEQUENCE, &[&extension])]);
    let tbs = der::wrap(
        der::SEQUENCE,
        &[
            &version,
            &serial,
            &alg,
            &name,
            &validity,
            &name,
            &spki,
            &extensions,
        ],
    );
    let signature = sign(&tbs)?;
    Ok(der::wrap(
        der::SEQUENCE,
        &[&tbs, &alg, &der::bit_string(&signature)],
    ))
}
