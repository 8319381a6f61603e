//! The one error type of the Noise layer.
//!
//! Every variant is fatal for the connection it happened on: Noise has no way to resync
//! after a bad frame, so the caller drops the connection. Nothing here allocates on the
//! hot path; the variants carry only what an operator needs to see in a log line.

use crate::identity::{IdentityError, PeerId};
use thiserror::Error;

/// Why a Noise handshake or a Noise transport frame failed. Always fatal for the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NoiseError {
    /// A frame's two-byte length announced more bytes than allowed at this point (a
    /// handshake message larger than any valid one). The peer is not speaking Noise or is
    /// hostile; drop the connection.
    #[error("noise frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The length the frame announced.
        len: usize,
        /// The largest length accepted here.
        max: usize,
    },
    /// A handshake message had the wrong size for its position in the XX pattern (too short
    /// to hold the keys it must carry). Drop the connection.
    #[error("noise handshake message {message} is {len} bytes, expected at least {min}")]
    HandshakeMessageTooShort {
        /// Which message of the pattern (1, 2 or 3).
        message: u8,
        /// Its length.
        len: usize,
        /// The shortest valid length.
        min: usize,
    },
    /// A transport frame was shorter than the 16-byte authentication tag it must end with.
    #[error("noise transport frame of {len} bytes is shorter than the 16-byte tag")]
    FrameTooShort {
        /// The frame's length.
        len: usize,
    },
    /// A ciphertext failed authentication: it was tampered with, truncated, replayed, or the
    /// two sides derived different keys. Drop the connection.
    #[error("noise decryption failed (tampered or corrupted ciphertext)")]
    Decrypt,
    /// The remote sent a low-order X25519 point, which makes the shared secret all zeros.
    /// Only a hostile peer does this.
    #[error("remote noise key is a low-order point (non-contributory Diffie-Hellman)")]
    LowOrderPoint,
    /// A handshake payload (ours or theirs) was larger than [`super::MAX_HANDSHAKE_PAYLOAD`].
    #[error("noise handshake payload of {len} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The decrypted handshake payload was not a valid `NoiseHandshakePayload` protobuf.
    #[error("malformed noise handshake payload: {0}")]
    Payload(String),
    /// The identity key in the remote's handshake payload was missing, malformed or of an
    /// unsupported type.
    #[error("bad identity key in noise handshake payload: {0}")]
    IdentityKey(#[from] IdentityError),
    /// The remote's identity key did not sign its Noise static key: the remote does not hold
    /// the identity it claims. Drop the connection.
    #[error("identity signature of {peer} over its noise static key is invalid")]
    BadSignature {
        /// The peer the payload claimed to be.
        peer: PeerId,
    },
    /// The remote authenticated as a different peer than the one we dialled.
    #[error("expected peer {expected} but the remote authenticated as {actual}")]
    PeerIdMismatch {
        /// The peer we meant to reach.
        expected: PeerId,
        /// The peer that answered.
        actual: PeerId,
    },
    /// A cipher state has used its last nonce (2^64 - 1 messages); Noise forbids reuse, so
    /// the connection must be closed and re-established.
    #[error("noise nonce exhausted; the connection must be re-established")]
    NonceExhausted,
    /// [`super::NoiseSender::encrypt_into`] was given an output shorter than the frames it
    /// must write ([`super::encrypted_len`] of the plaintext). A bug in the caller; nothing
    /// was written.
    #[error("noise output buffer of {got} bytes cannot hold {needed} bytes of frames")]
    BufferTooSmall {
        /// Bytes the frames need.
        needed: usize,
        /// Bytes the buffer had.
        got: usize,
    },
    /// [`super::Handshake::into_transport`] was called before the handshake finished, or
    /// before its last message was taken with [`super::Handshake::poll_transmit`].
    #[error("noise handshake is not complete")]
    HandshakeIncomplete,
    /// The handshake already failed with an earlier error; it cannot be resumed.
    #[error("noise handshake already failed")]
    HandshakeFailed,
    /// The remote's handshake payload listed more transport ciphers (field 1001) than
    /// [`super::MAX_TRANSPORT_CIPHERS`]. Only a hostile or broken peer does this.
    #[error("noise handshake payload offers more than {max} transport ciphers")]
    TooManyTransportCiphers {
        /// The limit.
        max: usize,
    },
    /// A transport-cipher name in the remote's handshake payload was longer than
    /// [`super::MAX_TRANSPORT_CIPHER_NAME`] bytes.
    #[error("transport cipher name of {len} bytes exceeds the limit of {max} bytes")]
    TransportCipherNameTooLong {
        /// The name's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The AEAD implementation refused a 32-byte key. ChaCha20-Poly1305 accepts every 32-byte
    /// key, so this means the crypto backend is broken; it is reported instead of panicking.
    #[error("the AEAD backend rejected a key")]
    KeyRejected,
}
