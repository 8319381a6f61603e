//! The libp2p Noise secure channel (`/noise`): the `Noise_XX_25519_ChaChaPoly_SHA256`
//! handshake with the signed libp2p identity payload, and the framed transport ciphers that
//! follow it, as the libp2p `noise` spec defines them.
//!
//! Everything here is sans-IO and deterministic: no sockets, no clock, no randomness. The
//! caller draws both X25519 secrets from its RNG and hands them in; the handshake takes
//! bytes in and hands framed bytes out. The Noise state machine is written here on plain
//! primitives (X25519 from AWS-LC with x25519-dalek as fallback, in `dh.rs`; SHA-256/HMAC;
//! ring's ChaCha20-Poly1305) rather than on a Noise crate, because those draw their own
//! randomness.
//!
//! # Wire
//!
//! Every message is a 16-bit big-endian length and at most 65535 bytes of Noise message.
//!
//! | message | direction | Noise tokens | bytes |
//! | --- | --- | --- | --- |
//! | 1 | initiator → responder | `e` | 32 (`e`), empty payload |
//! | 2 | responder → initiator | `e, ee, s, es` | 32 (`e`) + 48 (`s` + tag) + payload + 16 |
//! | 3 | initiator → responder | `s, se` | 48 (`s` + tag) + payload + 16 |
//! | transport | both | — | ≤ 65519 plaintext + 16 |
//!
//! The payloads of messages 2 and 3 are `NoiseHandshakePayload` protobufs carrying the
//! sender's identity key and its Ed25519 signature over
//! `"noise-libp2p-static-key:" ‖ static X25519 public key` ([`STATIC_KEY_DOMAIN`]), and
//! optionally `NoiseExtensions` with the muxers it supports. The prologue is empty.
//!
//! # Transport cipher
//!
//! The transport phase is ChaCha20-Poly1305, as the libp2p spec says, unless both payloads
//! offered AES-256-GCM in our field 1001 ([`TRANSPORT_CIPHERS_FIELD`], ignored by libp2p
//! decoders) — see [`HandshakeConfig::offer_aes_gcm`]. Then each direction uses
//! AES-256-GCM under `HMAC-SHA256(split key, AES_GCM_KEY_DOMAIN)` with Noise's AESGCM nonce
//! (counter big-endian). The handshake messages are ChaChaPoly either way. The offers are
//! encrypted and bound into the handshake hash, so they cannot be stripped unnoticed.
//!
//! # Use
//!
//! ```
//! use bytes::BytesMut;
//! use pheromone_core::identity::Keypair;
//! use pheromone_core::noise::{Handshake, HandshakeConfig};
//!
//! let (alice, bob) = (Keypair::from_seed([1; 32]), Keypair::from_seed([2; 32]));
//! // In real use all four secrets come from a CSPRNG, fresh per connection.
//! let mut dialer = Handshake::initiator(
//!     HandshakeConfig::new(&alice, [3; 32], [4; 32]).with_expected_remote(bob.peer_id()),
//! );
//! let mut listener = Handshake::responder(HandshakeConfig::new(&bob, [5; 32], [6; 32]));
//! let (mut to_bob, mut to_alice) = (BytesMut::new(), BytesMut::new());
//! while !(dialer.is_complete() && listener.is_complete()) {
//!     while let Some(bytes) = dialer.poll_transmit() { to_bob.extend_from_slice(&bytes); }
//!     listener.handle_input(&mut to_bob)?;
//!     while let Some(bytes) = listener.poll_transmit() { to_alice.extend_from_slice(&bytes); }
//!     dialer.handle_input(&mut to_alice)?;
//! }
//! let (mut a, bob_id, _) = dialer.into_transport()?;
//! let (mut b, alice_id, _) = listener.into_transport()?;
//! assert_eq!((bob_id, alice_id), (bob.peer_id(), alice.peer_id()));
//!
//! let mut wire = BytesMut::new();
//! a.sender.encrypt(b"hello", &mut wire)?;
//! let plain = b.receiver.decrypt_frame(&mut wire)?.expect("one whole frame");
//! assert_eq!(&plain[..], b"hello");
//! # Ok::<(), pheromone_core::noise::NoiseError>(())
//! ```
//!
//! # Limits
//!
//! Handshake payloads are capped at [`MAX_HANDSHAKE_PAYLOAD`] bytes, checked on the frame
//! length before the message is even buffered. Nonces are 64-bit counters; the reserved
//! value 2^64-1 is never used, so a direction fails with [`NoiseError::NonceExhausted`]
//! instead of wrapping. Only Ed25519 identity keys are accepted from remotes.

mod dh;
mod error;
pub mod frame;
mod handshake;
mod payload;
mod symmetric;
mod transport;
mod xx;

#[cfg(test)]
mod cipher_tests;
#[cfg(test)]
mod snow_tests;
#[cfg(test)]
mod tests;

pub use error::NoiseError;
pub use handshake::{Handshake, HandshakeConfig, StaticKey};
pub use payload::{
    NoiseExtensions, TransportCipher, MAX_HANDSHAKE_PAYLOAD, MAX_TRANSPORT_CIPHERS,
    MAX_TRANSPORT_CIPHER_NAME, STATIC_KEY_DOMAIN, TRANSPORT_CIPHERS_FIELD,
};
pub use transport::{
    encrypted_len, NoiseReceiver, NoiseSender, NoiseTransport, AES_GCM_KEY_DOMAIN, FRAME_OVERHEAD,
    MAX_PLAINTEXT_LEN,
};

/// The protocol ID multistream-select negotiates for this channel.
pub const PROTOCOL_ID: &str = "/noise";

/// The Noise protocol name, hashed into the handshake's initial state.
pub const NOISE_PROTOCOL_NAME: &str = "Noise_XX_25519_ChaChaPoly_SHA256";

/// Hooks for tests that play a malicious peer over real sockets (the `pheromone` crate's
/// hostile-input tests forge handshake payloads with them). Not part of the API; no
/// production path calls them, and they only change what *this* side sends.
#[doc(hidden)]
pub mod testing {
    use super::{payload, Handshake};
    use crate::identity::PublicKey;

    /// The static X25519 public key `hs` sends, which its payload's signature must cover.
    pub fn local_static(hs: &Handshake) -> [u8; 32] {
        hs.local_static()
    }

    /// Makes `hs` send `payload` instead of its own signed one in its next payload-carrying
    /// message (2 for a responder, 3 for an initiator).
    pub fn replace_local_payload(hs: &mut Handshake, payload: Vec<u8>) {
        hs.set_local_payload(payload);
    }

    /// A `NoiseHandshakePayload` with any identity key and any signature bytes.
    pub fn encode_payload(identity_key: &PublicKey, identity_sig: &[u8]) -> Vec<u8> {
        payload::encode_raw(identity_key, identity_sig, &[])
    }
}

/// Fuzz-target bodies for the decoders here; each must return without panicking on any
/// input. Used by the fuzz crate and by the never-panics proptests.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;
    use crate::identity::Keypair;
    use bytes::BytesMut;

    /// Splits frames off `data` until it runs out.
    pub fn fuzz_decode_frame(data: &[u8]) {
        let mut input = BytesMut::from(data);
        while let Ok(Some(_)) = frame::decode(&mut input, frame::MAX_FRAME_LEN) {}
    }

    /// Decodes and verifies `data` as a remote handshake payload.
    pub fn fuzz_decode_payload(data: &[u8]) {
        let _ = payload::decode_and_verify(data, &[0x42; 32]);
    }

    /// Scans `data` for a transport-cipher offer (field 1001), as a handshake does with a
    /// verified payload.
    pub fn fuzz_decode_transport_ciphers(data: &[u8]) {
        let _ = payload::decode_transport_ciphers(data);
    }

    /// Feeds `data` to a responder as messages 1 and 3.
    pub fn fuzz_responder(data: &[u8]) {
        let identity = Keypair::from_seed([1; 32]);
        let mut hs = Handshake::responder(HandshakeConfig::new(&identity, [2; 32], [3; 32]));
        let mut input = BytesMut::from(data);
        let _ = hs.handle_input(&mut input);
        let _ = hs.poll_transmit();
        let _ = hs.into_transport();
    }

    /// Feeds `data` to an initiator as message 2.
    pub fn fuzz_initiator(data: &[u8]) {
        let identity = Keypair::from_seed([1; 32]);
        let mut hs = Handshake::initiator(HandshakeConfig::new(&identity, [2; 32], [3; 32]));
        let _ = hs.poll_transmit();
        let mut input = BytesMut::from(data);
        let _ = hs.handle_input(&mut input);
        let _ = hs.poll_transmit();
        let _ = hs.into_transport();
    }

    /// Runs a real handshake, corrupting one message: `data[0] % 3` picks message 1, 2 or
    /// 3, then byte pairs `(position, xor)` flip bits in it. Completes when nothing flips.
    pub fn fuzz_handshake_tamper(data: &[u8]) {
        let (alice, bob) = (Keypair::from_seed([1; 32]), Keypair::from_seed([2; 32]));
        let mut hs = [
            Handshake::initiator(HandshakeConfig::new(&alice, [3; 32], [4; 32])),
            Handshake::responder(HandshakeConfig::new(&bob, [5; 32], [6; 32])),
        ];
        let target = data.first().map_or(3, |b| b % 3);
        let flips = data.get(1..).unwrap_or_default();
        for message in 0..3u8 {
            let from = usize::from(message % 2);
            let Some(bytes) = hs[from].poll_transmit() else {
                return;
            };
            let mut wire = BytesMut::from(&bytes[..]);
            if message == target {
                for pair in flips.chunks_exact(2) {
                    let at = usize::from(pair[0]) % wire.len();
                    wire[at] ^= pair[1];
                }
            }
            if hs[1 - from].handle_input(&mut wire).is_err() {
                return;
            }
        }
        let [a, b] = hs;
        let (Ok((mut ta, ..)), Ok((mut tb, ..))) = (a.into_transport(), b.into_transport()) else {
            return;
        };
        let mut wire = BytesMut::new();
        if ta.sender.encrypt(flips, &mut wire).is_ok() {
            while let Ok(Some(_)) = tb.receiver.decrypt_frame(&mut wire) {}
        }
    }

    /// Decrypts `data` as a stream of transport frames under a fixed key, with each
    /// cipher.
    pub fn fuzz_transport_decrypt(data: &[u8]) {
        for cipher in [TransportCipher::ChaChaPoly, TransportCipher::AesGcm] {
            let Ok(mut transport) = NoiseTransport::with_cipher(cipher, &[7; 32], &[7; 32]) else {
                return;
            };
            let mut input = BytesMut::from(data);
            while let Ok(Some(_)) = transport.receiver.decrypt_frame(&mut input) {}
        }
        // A fresh pair under one key must round-trip whatever the fuzzer hands it.
        let Ok(mut fresh) = NoiseTransport::new(&[8; 32], &[8; 32]) else {
            return;
        };
        let mut wire = BytesMut::new();
        let mut back = Vec::with_capacity(data.len());
        if fresh.sender.encrypt(data, &mut wire).is_ok() {
            while let Ok(Some(plain)) = fresh.receiver.decrypt_frame(&mut wire) {
                back.extend_from_slice(&plain);
            }
            assert_eq!(back, data, "transport round trip lost or changed bytes");
        }
    }
}
