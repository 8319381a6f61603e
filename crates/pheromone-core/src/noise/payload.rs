//! The libp2p `NoiseHandshakePayload` protobuf, and the signature that binds a Noise static
//! key to a libp2p identity.
//!
//! ```protobuf
//! message NoiseExtensions {
//!     repeated bytes webtransport_certhashes = 1;
//!     repeated string stream_muxers = 2;
//! }
//! message NoiseHandshakePayload {
//!     optional bytes identity_key = 1;          // libp2p PublicKey protobuf
//!     optional bytes identity_sig = 2;          // sig("noise-libp2p-static-key:" ‖ s)
//!     optional NoiseExtensions extensions = 4;
//!     repeated string transport_ciphers = 1001; // pheromone only: ["AESGCM"]
//! }
//! ```
//!
//! Decoding caps the input at [`MAX_HANDSHAKE_PAYLOAD`] before prost sees it, and only
//! hands back an identity whose signature checked out. Field 1001 is ours (libp2p decoders
//! skip it as unknown): prost never sees it as a field of ours, a non-allocating scanner
//! reads it, with the number and length of its entries capped. Nothing here touches Noise
//! state.

use super::NoiseError;
use crate::identity::{IdentityError, Keypair, PeerId, PublicKey};
use prost::Message;

/// Largest handshake payload we send or accept, in bytes. A real payload is an Ed25519 key
/// (36 bytes), a signature (64) and a few muxer names; even an RSA-keyed peer stays far
/// below this. The cap bounds what prost may allocate for a hostile payload.
pub const MAX_HANDSHAKE_PAYLOAD: usize = 8 * 1024;

/// What the identity key signs: this prefix followed by the 32-byte static X25519 key.
pub const STATIC_KEY_DOMAIN: &[u8] = b"noise-libp2p-static-key:";

/// The field number of our transport-cipher offer in `NoiseHandshakePayload`: far above
/// anything libp2p assigns, so a libp2p peer skips it as an unknown field.
pub const TRANSPORT_CIPHERS_FIELD: u32 = 1001;

/// Most entries a peer's transport-cipher list may have; more fails the handshake with
/// [`NoiseError::TooManyTransportCiphers`].
pub const MAX_TRANSPORT_CIPHERS: usize = 8;

/// Longest name in a peer's transport-cipher list, in bytes; longer fails the handshake
/// with [`NoiseError::TransportCipherNameTooLong`].
pub const MAX_TRANSPORT_CIPHER_NAME: usize = 32;

/// The cipher of the Noise transport phase (the handshake itself is always ChaChaPoly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportCipher {
    /// ChaCha20-Poly1305, the libp2p noise spec's cipher; what every libp2p peer gets.
    ChaChaPoly,
    /// AES-256-GCM under keys derived from the Noise split keys; only between two
    /// pheromone nodes that both offered it.
    AesGcm,
}

impl TransportCipher {
    /// A short lowercase name for logs, status output and benchmark JSON:
    /// `chacha20poly1305` or `aes256gcm`.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportCipher::ChaChaPoly => "chacha20poly1305",
            TransportCipher::AesGcm => "aes256gcm",
        }
    }

    /// The name offered on the wire in field 1001 (the Noise spec's cipher name).
    pub fn wire_name(self) -> &'static str {
        match self {
            TransportCipher::ChaChaPoly => "ChaChaPoly",
            TransportCipher::AesGcm => "AESGCM",
        }
    }
}

impl std::fmt::Display for TransportCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `NoiseExtensions` a peer sent in its handshake payload. Only made available once the
/// payload's signature verified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoiseExtensions {
    /// Certificate hashes for WebTransport; empty on TCP.
    pub webtransport_certhashes: Vec<Vec<u8>>,
    /// Stream muxers the peer supports, most preferred first (inlined muxer negotiation).
    pub stream_muxers: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct NoiseHandshakePayloadProto {
    #[prost(bytes = "vec", tag = "1")]
    identity_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    identity_sig: Vec<u8>,
    #[prost(message, optional, tag = "4")]
    extensions: Option<NoiseExtensionsProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct NoiseExtensionsProto {
    #[prost(bytes = "vec", repeated, tag = "1")]
    webtransport_certhashes: Vec<Vec<u8>>,
    #[prost(string, repeated, tag = "2")]
    stream_muxers: Vec<String>,
}

/// The remote's identity, proven by its handshake payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteIdentity {
    pub(crate) key: PublicKey,
    pub(crate) peer: PeerId,
    pub(crate) extensions: Option<NoiseExtensions>,
    /// Whether the payload offered AES-256-GCM for the transport phase.
    pub(crate) offers_aes_gcm: bool,
}

/// The message the identity key signs for `static_key`.
fn signed_message(static_key: &[u8; 32]) -> [u8; 56] {
    let mut msg = [0u8; 56];
    msg[..STATIC_KEY_DOMAIN.len()].copy_from_slice(STATIC_KEY_DOMAIN);
    msg[STATIC_KEY_DOMAIN.len()..].copy_from_slice(static_key);
    msg
}

/// Encodes a payload with an explicit signature (tests forge payloads with it).
pub(crate) fn encode_raw(
    identity_key: &PublicKey,
    identity_sig: &[u8],
    stream_muxers: &[String],
) -> Vec<u8> {
    let extensions = (!stream_muxers.is_empty()).then(|| NoiseExtensionsProto {
        webtransport_certhashes: Vec::new(),
        stream_muxers: stream_muxers.to_vec(),
    });
    NoiseHandshakePayloadProto {
        identity_key: identity_key.to_protobuf_encoding(),
        identity_sig: identity_sig.to_vec(),
        extensions,
    }
    .encode_to_vec()
}

/// Our payload: `identity`'s public key, its signature over `static_key`, and the muxers we
/// offer (no extensions field when there are none).
pub(crate) fn encode(
    identity: &Keypair,
    static_key: &[u8; 32],
    stream_muxers: &[String],
) -> Vec<u8> {
    let sig = identity.sign(&signed_message(static_key));
    encode_raw(&identity.public(), &sig, stream_muxers)
}

/// Appends our transport-cipher offer (field 1001, `"AESGCM"`) to an encoded payload.
/// Concatenated protobuf encodings decode as one message, so this works on a payload
/// signed and encoded once in advance.
pub(crate) fn append_aes_gcm_offer(payload: &mut Vec<u8>) {
    append_transport_cipher(payload, TransportCipher::AesGcm.wire_name().as_bytes());
}

/// Appends one entry of field 1001 naming `name` (tests forge odd lists with it).
pub(crate) fn append_transport_cipher(payload: &mut Vec<u8>, name: &[u8]) {
    crate::varint::encode(u64::from(TRANSPORT_CIPHERS_FIELD) << 3 | WIRE_LEN, payload);
    crate::varint::encode(name.len() as u64, payload);
    payload.extend_from_slice(name);
}

const WIRE_VARINT: u64 = 0;
const WIRE_FIXED64: u64 = 1;
const WIRE_LEN: u64 = 2;
const WIRE_FIXED32: u64 = 5;

/// Scans the top level of an encoded `NoiseHandshakePayload` for field 1001 and reports
/// whether it offers AES-256-GCM. Allocates nothing.
///
/// Unknown cipher names are ignored (a later version may offer more). More than
/// [`MAX_TRANSPORT_CIPHERS`] entries or a name longer than [`MAX_TRANSPORT_CIPHER_NAME`]
/// is an error. Bytes this scanner cannot walk (groups, truncation — which prost rejects
/// first anyway) end the scan with what was found before them: only the sender can lose by
/// that, since a wrong decision just makes the first transport frame fail.
pub(crate) fn decode_transport_ciphers(payload: &[u8]) -> Result<bool, NoiseError> {
    // Varints are read the way prost reads them (up to ten bytes, non-minimal forms
    // allowed), by prost itself; `rest` advances past what was read.
    let varint = |rest: &mut &[u8]| prost::encoding::decode_varint(rest).ok();
    let mut rest = payload;
    let mut count = 0usize;
    let mut aes_gcm = false;
    while !rest.is_empty() {
        let Some(key) = varint(&mut rest) else {
            break;
        };
        let skip = match key & 7 {
            WIRE_VARINT => {
                if varint(&mut rest).is_none() {
                    break;
                }
                0
            }
            WIRE_FIXED64 => 8,
            WIRE_FIXED32 => 4,
            WIRE_LEN => {
                let Some(len) = varint(&mut rest)
                    .and_then(|len| usize::try_from(len).ok())
                    .filter(|&len| len <= rest.len())
                else {
                    break;
                };
                if key >> 3 == u64::from(TRANSPORT_CIPHERS_FIELD) {
                    count += 1;
                    if count > MAX_TRANSPORT_CIPHERS {
                        return Err(NoiseError::TooManyTransportCiphers {
                            max: MAX_TRANSPORT_CIPHERS,
                        });
                    }
                    if len > MAX_TRANSPORT_CIPHER_NAME {
                        return Err(NoiseError::TransportCipherNameTooLong {
                            len,
                            max: MAX_TRANSPORT_CIPHER_NAME,
                        });
                    }
                    aes_gcm |= &rest[..len] == TransportCipher::AesGcm.wire_name().as_bytes();
                }
                len
            }
            _ => break,
        };
        let Some(after) = rest.get(skip..) else {
            break;
        };
        rest = after;
    }
    Ok(aes_gcm)
}

/// Decodes a remote payload and checks that its identity key signed `remote_static`.
pub(crate) fn decode_and_verify(
    payload: &[u8],
    remote_static: &[u8; 32],
) -> Result<RemoteIdentity, NoiseError> {
    if payload.len() > MAX_HANDSHAKE_PAYLOAD {
        return Err(NoiseError::PayloadTooLarge {
            len: payload.len(),
            max: MAX_HANDSHAKE_PAYLOAD,
        });
    }
    let proto = NoiseHandshakePayloadProto::decode(payload)
        .map_err(|e| NoiseError::Payload(e.to_string()))?;
    if proto.identity_key.is_empty() {
        return Err(NoiseError::IdentityKey(IdentityError::Protobuf(
            "handshake payload has no identity key".into(),
        )));
    }
    let key = PublicKey::from_protobuf_encoding(&proto.identity_key)?;
    let peer = key.to_peer_id();
    if !key.verify(&signed_message(remote_static), &proto.identity_sig) {
        return Err(NoiseError::BadSignature { peer });
    }
    let offers_aes_gcm = decode_transport_ciphers(payload)?;
    let extensions = proto.extensions.map(|ext| NoiseExtensions {
        webtransport_certhashes: ext.webtransport_certhashes,
        stream_muxers: ext.stream_muxers,
    });
    Ok(RemoteIdentity {
        key,
        peer,
        extensions,
        offers_aes_gcm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keypair(seed: u8) -> Keypair {
        Keypair::from_seed([seed; 32])
    }

    #[test]
    fn wire_layout_matches_the_schema() {
        let kp = keypair(1);
        let static_key = [9u8; 32];
        let bytes = encode(&kp, &static_key, &[]);
        // field 1, length 36, the key protobuf; field 2, length 64, the signature.
        let mut expected = vec![0x0a, 36];
        expected.extend_from_slice(&kp.public().to_protobuf_encoding());
        expected.extend_from_slice(&[0x12, 64]);
        expected.extend_from_slice(&kp.sign(&signed_message(&static_key)));
        assert_eq!(bytes, expected);
        assert_eq!(
            &signed_message(&static_key)[..24],
            b"noise-libp2p-static-key:"
        );

        let with_muxers = encode(&kp, &static_key, &["/yamux/1.0.0".to_owned()]);
        // field 4 (0x22) holding field 2 (0x12) "/yamux/1.0.0".
        let mut tail = vec![0x22, 14, 0x12, 12];
        tail.extend_from_slice(b"/yamux/1.0.0");
        assert_eq!(&with_muxers[expected.len()..], &tail[..]);
    }

    #[test]
    fn verifies_and_returns_identity_and_extensions() {
        let kp = keypair(2);
        let muxers = vec!["/yamux/1.0.0".to_owned(), "/mplex/6.7.0".to_owned()];
        let id = decode_and_verify(&encode(&kp, &[5; 32], &muxers), &[5; 32]).expect("valid");
        assert_eq!(id.key, kp.public());
        assert_eq!(id.peer, kp.peer_id());
        assert_eq!(id.extensions.expect("extensions").stream_muxers, muxers);
        let plain = decode_and_verify(&encode(&kp, &[5; 32], &[]), &[5; 32]).expect("valid");
        assert_eq!(plain.extensions, None);
    }

    #[test]
    fn rejects_wrong_static_key_forged_signature_and_garbage() {
        let victim = keypair(3);
        let attacker = keypair(4);
        let static_key = [7u8; 32];
        assert_eq!(
            decode_and_verify(&encode(&victim, &static_key, &[]), &[8; 32]),
            Err(NoiseError::BadSignature {
                peer: victim.peer_id()
            })
        );
        let forged_sig = attacker.sign(&signed_message(&static_key));
        let forged = encode_raw(&victim.public(), &forged_sig, &[]);
        assert_eq!(
            decode_and_verify(&forged, &static_key),
            Err(NoiseError::BadSignature {
                peer: victim.peer_id()
            })
        );
        let no_sig = encode_raw(&victim.public(), &[], &[]);
        assert!(matches!(
            decode_and_verify(&no_sig, &static_key),
            Err(NoiseError::BadSignature { .. })
        ));
        assert!(matches!(
            decode_and_verify(&[], &static_key),
            Err(NoiseError::IdentityKey(_))
        ));
        assert!(matches!(
            decode_and_verify(&[0xff, 0xff, 0xff], &static_key),
            Err(NoiseError::Payload(_))
        ));
        assert_eq!(
            decode_and_verify(&vec![0u8; MAX_HANDSHAKE_PAYLOAD + 1], &static_key),
            Err(NoiseError::PayloadTooLarge {
                len: MAX_HANDSHAKE_PAYLOAD + 1,
                max: MAX_HANDSHAKE_PAYLOAD
            })
        );
    }

    #[test]
    fn the_offer_is_field_1001_and_libp2p_fields_still_decode() {
        let kp = keypair(5);
        let plain = encode(&kp, &[3; 32], &["/yamux/1.0.0".to_owned()]);
        let mut offered = plain.clone();
        append_aes_gcm_offer(&mut offered);
        // key (1001 << 3 | 2) = 8010 = varint ca 3e, length 6, "AESGCM".
        assert_eq!(&offered[plain.len()..], b"\xca\x3e\x06AESGCM");
        let id = decode_and_verify(&offered, &[3; 32]).expect("valid");
        assert!(id.offers_aes_gcm);
        assert_eq!(id.peer, kp.peer_id());
        assert_eq!(
            id.extensions.expect("extensions").stream_muxers,
            ["/yamux/1.0.0"]
        );
        assert!(
            !decode_and_verify(&plain, &[3; 32])
                .expect("valid")
                .offers_aes_gcm
        );
    }

    #[test]
    fn unknown_cipher_names_are_ignored() {
        let mut p = encode(&keypair(6), &[1; 32], &[]);
        for name in [
            &b"ChaChaPoly"[..],
            b"AESGCM-SIV",
            b"aesgcm",
            b"",
            b"\xff\xfe",
        ] {
            append_transport_cipher(&mut p, name);
        }
        assert_eq!(decode_transport_ciphers(&p), Ok(false));
        append_transport_cipher(&mut p, b"AESGCM");
        assert_eq!(decode_transport_ciphers(&p), Ok(true));
        assert!(
            decode_and_verify(&p, &[1; 32])
                .expect("valid")
                .offers_aes_gcm
        );
        // The same name under another field number, or as another wire type, is no offer.
        let mut other = Vec::new();
        crate::varint::encode(1002 << 3 | WIRE_LEN, &mut other);
        other.extend_from_slice(b"\x06AESGCM");
        crate::varint::encode(1001 << 3 | WIRE_VARINT, &mut other);
        other.push(6);
        assert_eq!(decode_transport_ciphers(&other), Ok(false));
    }

    #[test]
    fn oversized_cipher_lists_are_typed_errors() {
        let mut p = encode(&keypair(7), &[1; 32], &[]);
        for _ in 0..MAX_TRANSPORT_CIPHERS {
            append_transport_cipher(&mut p, b"AESGCM");
        }
        assert_eq!(decode_transport_ciphers(&p), Ok(true));
        append_transport_cipher(&mut p, b"x");
        assert_eq!(
            decode_transport_ciphers(&p),
            Err(NoiseError::TooManyTransportCiphers {
                max: MAX_TRANSPORT_CIPHERS
            })
        );
        assert_eq!(
            decode_and_verify(&p, &[1; 32]),
            Err(NoiseError::TooManyTransportCiphers {
                max: MAX_TRANSPORT_CIPHERS
            })
        );
        let mut long = encode(&keypair(7), &[1; 32], &[]);
        append_transport_cipher(&mut long, &[b'A'; MAX_TRANSPORT_CIPHER_NAME]);
        assert_eq!(decode_transport_ciphers(&long), Ok(false));
        append_transport_cipher(&mut long, &[b'A'; MAX_TRANSPORT_CIPHER_NAME + 1]);
        assert_eq!(
            decode_transport_ciphers(&long),
            Err(NoiseError::TransportCipherNameTooLong {
                len: MAX_TRANSPORT_CIPHER_NAME + 1,
                max: MAX_TRANSPORT_CIPHER_NAME
            })
        );
    }

    #[test]
    fn the_scanner_walks_every_wire_type_and_stops_on_junk() {
        let mut p = Vec::new();
        p.extend_from_slice(&[0x08, 0x96, 0x01]); // field 1 varint 150
        p.extend_from_slice(&[0x11, 1, 2, 3, 4, 5, 6, 7, 8]); // field 2 fixed64
        p.extend_from_slice(&[0x1d, 1, 2, 3, 4]); // field 3 fixed32
                                                  // A non-minimal length varint, as prost accepts.
        crate::varint::encode(1001 << 3 | WIRE_LEN, &mut p);
        p.extend_from_slice(&[0x86, 0x00]);
        p.extend_from_slice(b"AESGCM");
        assert_eq!(decode_transport_ciphers(&p), Ok(true));
        // An offer behind a group or a truncated field is not reached.
        let mut grouped = vec![0x0b];
        append_aes_gcm_offer(&mut grouped);
        assert_eq!(decode_transport_ciphers(&grouped), Ok(false));
        let mut truncated = vec![0x12, 50, 1];
        append_aes_gcm_offer(&mut truncated);
        assert_eq!(decode_transport_ciphers(&truncated), Ok(false));
        assert_eq!(decode_transport_ciphers(&[0xff; 11]), Ok(false));
    }

    proptest! {
        // Ed25519 in a debug build is slow; 64 keys are plenty for an encoding round trip.
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn round_trips(seed in any::<[u8; 32]>(), static_key in any::<[u8; 32]>(),
                       muxers in proptest::collection::vec("[a-z/0-9.]{0,20}", 0..5)) {
            let kp = Keypair::from_seed(seed);
            let id = decode_and_verify(&encode(&kp, &static_key, &muxers), &static_key)
                .expect("own payload verifies");
            prop_assert_eq!(id.peer, kp.peer_id());
            let got = id.extensions.map(|e| e.stream_muxers).unwrap_or_default();
            prop_assert_eq!(got, muxers);
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_and_verify(&data, &[1; 32]);
            let _ = decode_transport_ciphers(&data);
        }

        #[test]
        fn cipher_lists_round_trip(names in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..=MAX_TRANSPORT_CIPHER_NAME),
            0..=MAX_TRANSPORT_CIPHERS)
        ) {
            let mut p = vec![0x0a, 0];
            for name in &names {
                append_transport_cipher(&mut p, name);
            }
            let offered = names.iter().any(|n| n == b"AESGCM");
            prop_assert_eq!(decode_transport_ciphers(&p), Ok(offered));
        }
    }
}
