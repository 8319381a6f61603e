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
//! }
//! ```
//!
//! Decoding caps the input at [`MAX_HANDSHAKE_PAYLOAD`] before prost sees it, and only
//! hands back an identity whose signature checked out. Nothing here touches Noise state.

use super::NoiseError;
use crate::identity::{IdentityError, Keypair, PeerId, PublicKey};
use prost::Message;

/// Largest handshake payload we send or accept, in bytes. A real payload is an Ed25519 key
/// (36 bytes), a signature (64) and a few muxer names; even an RSA-keyed peer stays far
/// below this. The cap bounds what prost may allocate for a hostile payload.
pub const MAX_HANDSHAKE_PAYLOAD: usize = 8 * 1024;

/// What the identity key signs: this prefix followed by the 32-byte static X25519 key.
pub const STATIC_KEY_DOMAIN: &[u8] = b"noise-libp2p-static-key:";

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
    let extensions = proto.extensions.map(|ext| NoiseExtensions {
        webtransport_certhashes: ext.webtransport_certhashes,
        stream_muxers: ext.stream_muxers,
    });
    Ok(RemoteIdentity {
        key,
        peer,
        extensions,
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
        }
    }
}
