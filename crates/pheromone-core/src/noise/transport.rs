//! Post-handshake Noise transport: the two `CipherState`s, one per direction, sealing and
//! opening length-prefixed frames with ChaCha20-Poly1305 (libp2p's cipher) or, between two
//! pheromone nodes that both offered it, AES-256-GCM.
//!
//! The AES keys are never the split keys themselves: each is
//! `HMAC-SHA256(split key, AES_GCM_KEY_DOMAIN)`, so no key is used with two ciphers. The
//! AES nonce is Noise's AESGCM one (§12.4): four zero bytes, then the counter big-endian;
//! ChaChaPoly's (§12.3) has the counter little-endian.
//!
//! This is the throughput ceiling of the whole stack, so neither direction allocates per
//! frame. Opening splits the frame off the input buffer and decrypts it in place (ring).
//! Sealing AES-256-GCM reads the plaintext and writes the ciphertext into the caller's
//! buffer in one pass (AWS-LC's out-of-place seal), so a sent byte is not first copied to
//! where it is encrypted; ChaCha20-Poly1305 copies the plaintext into place and seals it
//! there (ring). The two halves share nothing, so a connection driver may move them to
//! different places.

use super::frame::{self, LEN_PREFIX, MAX_FRAME_LEN};
use super::payload::TransportCipher;
use super::symmetric::{aead_key, hmac, nonce, KEY_LEN, TAG_LEN};
use super::NoiseError;
use bytes::BytesMut;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::Zeroize;

/// A sending direction's key: the out-of-place AES-256-GCM seal of AWS-LC, or ring's
/// ChaCha20-Poly1305, which seals in place.
enum SealKey {
    /// AES-256-GCM (AWS-LC) and the Noise §12.4 nonce layout.
    AesGcm(aws_lc_rs::aead::LessSafeKey),
    /// ChaCha20-Poly1305 (ring) and the Noise §12.3 nonce layout. Boxed: ring's key holds
    /// its whole schedule inline, twenty times AWS-LC's handle.
    ChaChaPoly(Box<LessSafeKey>),
}

impl SealKey {
    /// The key for `cipher` from a 32-byte Noise split key.
    fn new(cipher: TransportCipher, split_key: &[u8; KEY_LEN]) -> Result<Self, NoiseError> {
        match cipher {
            TransportCipher::AesGcm => {
                let mut derived = aes_gcm_key(split_key);
                let key = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &derived)
                    .map(aws_lc_rs::aead::LessSafeKey::new)
                    .map_err(|_| NoiseError::KeyRejected);
                derived.zeroize();
                Ok(SealKey::AesGcm(key?))
            }
            TransportCipher::ChaChaPoly => Ok(SealKey::ChaChaPoly(Box::new(aead_key(split_key)?))),
        }
    }

    fn cipher(&self) -> TransportCipher {
        match self {
            SealKey::AesGcm(_) => TransportCipher::AesGcm,
            SealKey::ChaChaPoly(_) => TransportCipher::ChaChaPoly,
        }
    }

    /// Seals the plaintext `head` then `tail` under nonce `n` into `out`: exactly
    /// `head.len() + tail.len() + TAG_LEN` bytes, ciphertext then tag. Two pieces so that a
    /// frame's plaintext need not be gathered first (a data frame's header and its body).
    fn seal(&self, n: u64, head: &[u8], tail: &[u8], out: &mut [u8]) -> Result<(), NoiseError> {
        let (head, tail) = if head.is_empty() {
            (tail, &[][..])
        } else {
            (head, tail)
        };
        match self {
            SealKey::AesGcm(key) => {
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&n.to_be_bytes());
                let (body, tail_and_tag) = out.split_at_mut(head.len());
                key.seal_out_of_place_scatter(
                    aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                    aws_lc_rs::aead::Aad::empty(),
                    head,
                    body,
                    tail,
                    tail_and_tag,
                )
                .map_err(|_| NoiseError::KeyRejected)
            }
            SealKey::ChaChaPoly(key) => {
                let (body, tag) = out.split_at_mut(head.len() + tail.len());
                body[..head.len()].copy_from_slice(head);
                body[head.len()..].copy_from_slice(tail);
                let sealed = key
                    .seal_in_place_separate_tag(nonce(n), Aad::empty(), body)
                    .map_err(|_| NoiseError::KeyRejected)?;
                tag.copy_from_slice(sealed.as_ref());
                Ok(())
            }
        }
    }
}

/// The HMAC-SHA256 message that turns a Noise split key into its AES-256-GCM key.
pub const AES_GCM_KEY_DOMAIN: &[u8] = b"pheromone noise aes-256-gcm";

/// One direction's AEAD key and the nonce layout its cipher uses.
struct CipherKey {
    key: LessSafeKey,
    cipher: TransportCipher,
}

impl CipherKey {
    /// The key for `cipher` from a 32-byte Noise split key.
    fn new(cipher: TransportCipher, split_key: &[u8; KEY_LEN]) -> Result<Self, NoiseError> {
        let key = match cipher {
            TransportCipher::AesGcm => {
                let mut derived = aes_gcm_key(split_key);
                let key = UnboundKey::new(&AES_256_GCM, &derived)
                    .map(LessSafeKey::new)
                    .map_err(|_| NoiseError::KeyRejected);
                derived.zeroize();
                key?
            }
            TransportCipher::ChaChaPoly => aead_key(split_key)?,
        };
        Ok(Self { key, cipher })
    }

    fn nonce(&self, n: u64) -> Nonce {
        match self.cipher {
            TransportCipher::AesGcm => aes_gcm_nonce(n),
            TransportCipher::ChaChaPoly => nonce(n),
        }
    }
}

/// `HMAC-SHA256(split_key, AES_GCM_KEY_DOMAIN)`: the AES-256-GCM key of one direction.
pub(crate) fn aes_gcm_key(split_key: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    hmac(split_key, &[AES_GCM_KEY_DOMAIN])
}

/// The AESGCM nonce of Noise §12.4: 32 zero bits, then `n` big-endian.
pub(crate) fn aes_gcm_nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

/// Most plaintext one transport frame carries: the 65535-byte Noise message less its tag.
pub const MAX_PLAINTEXT_LEN: usize = MAX_FRAME_LEN - TAG_LEN;

/// Bytes a frame adds around its plaintext: the length prefix and the tag.
pub const FRAME_OVERHEAD: usize = LEN_PREFIX + TAG_LEN;

/// The two directions of an established Noise session.
#[derive(Debug)]
pub struct NoiseTransport {
    /// Encrypts what we send.
    pub sender: NoiseSender,
    /// Decrypts what we receive.
    pub receiver: NoiseReceiver,
}

impl NoiseTransport {
    /// Builds both ChaChaPoly directions from their 32-byte keys.
    pub(crate) fn new(
        send_key: &[u8; KEY_LEN],
        recv_key: &[u8; KEY_LEN],
    ) -> Result<Self, NoiseError> {
        Self::with_cipher(TransportCipher::ChaChaPoly, send_key, recv_key)
    }

    /// Builds both directions of `cipher` from the two Noise split keys.
    pub(crate) fn with_cipher(
        cipher: TransportCipher,
        send_key: &[u8; KEY_LEN],
        recv_key: &[u8; KEY_LEN],
    ) -> Result<Self, NoiseError> {
        Ok(Self {
            sender: NoiseSender {
                key: SealKey::new(cipher, send_key)?,
                nonce: 0,
            },
            receiver: NoiseReceiver {
                key: CipherKey::new(cipher, recv_key)?,
                nonce: 0,
            },
        })
    }

    /// The cipher both directions use.
    pub fn cipher(&self) -> TransportCipher {
        self.sender.cipher()
    }
}

/// The sending `CipherState`: turns plaintext into Noise transport frames.
pub struct NoiseSender {
    key: SealKey,
    nonce: u64,
}

impl std::fmt::Debug for NoiseSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseSender")
            .field("cipher", &self.key.cipher())
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

/// The parts of `first` and `second` that bytes `range` of their concatenation cover.
fn pieces<'a>(
    first: &'a [u8],
    second: &'a [u8],
    range: std::ops::Range<usize>,
) -> (&'a [u8], &'a [u8]) {
    let split = first.len();
    (
        &first[range.start.min(split)..range.end.min(split)],
        &second[range.start.saturating_sub(split)..range.end.saturating_sub(split)],
    )
}

/// Bytes [`NoiseSender::encrypt`] appends for `plaintext_len` bytes of plaintext.
pub fn encrypted_len(plaintext_len: usize) -> usize {
    plaintext_len + plaintext_len.div_ceil(MAX_PLAINTEXT_LEN) * FRAME_OVERHEAD
}

impl NoiseSender {
    /// Appends `plaintext` to `out` as one or more Noise frames, each as full as the spec
    /// allows (≤ [`MAX_PLAINTEXT_LEN`] plaintext, ≤ 65535 bytes on the wire after the prefix).
    ///
    /// `out` grows once by [`encrypted_len`] (zero-filled, then overwritten; see
    /// [`NoiseSender::encrypt_into`] for the form that reuses a buffer). Empty `plaintext`
    /// appends nothing. Fails with [`NoiseError::NonceExhausted`] — before writing anything
    /// — when the frames would need the reserved nonce 2^64-1; the connection must then be
    /// closed.
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), NoiseError> {
        let start_len = out.len();
        out.resize(start_len + encrypted_len(plaintext.len()), 0);
        let result = self.encrypt_into(plaintext, &mut out[start_len..]);
        if result.is_err() {
            out.truncate(start_len);
        }
        result.map(|_| ())
    }

    /// Writes `plaintext` as Noise frames (filled as [`NoiseSender::encrypt`] fills them)
    /// to the front of `out`, which must hold at least [`encrypted_len`] bytes; returns that
    /// length. The plaintext is read once and the ciphertext written once: no copy besides
    /// the cipher's own pass (AES-256-GCM; ChaCha20-Poly1305 copies, then seals in place).
    ///
    /// Fails with [`NoiseError::NonceExhausted`] before writing anything when the frames
    /// would need the reserved nonce, and with [`NoiseError::BufferTooSmall`] when `out` is
    /// too short.
    pub fn encrypt_into(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize, NoiseError> {
        self.encrypt_pair_into(plaintext, &[], out)
    }

    /// [`NoiseSender::encrypt_into`] for the plaintext `first` followed by `second`: the
    /// same frames, bytes and nonces as for their concatenation, without making it: for a
    /// sender that seals what its session queued (ending in a data frame's header) and the
    /// application's buffer (that frame's body) without first copying the body into the
    /// queue. With ChaCha20-Poly1305 both pieces are copied into place as usual.
    pub fn encrypt_pair_into(
        &mut self,
        first: &[u8],
        second: &[u8],
        out: &mut [u8],
    ) -> Result<usize, NoiseError> {
        let len = first.len() + second.len();
        let total = encrypted_len(len);
        if out.len() < total {
            return Err(NoiseError::BufferTooSmall {
                needed: total,
                got: out.len(),
            });
        }
        let frames = len.div_ceil(MAX_PLAINTEXT_LEN) as u64;
        if u64::MAX - self.nonce < frames {
            return Err(NoiseError::NonceExhausted);
        }
        let mut at = 0;
        for start in (0..len).step_by(MAX_PLAINTEXT_LEN) {
            let end = (start + MAX_PLAINTEXT_LEN).min(len);
            let (head, tail) = pieces(first, second, start..end);
            let sealed_len = end - start + TAG_LEN;
            // sealed_len ≤ MAX_FRAME_LEN by the frame size, so it fits a u16.
            out[at..at + LEN_PREFIX].copy_from_slice(&(sealed_len as u16).to_be_bytes());
            at += LEN_PREFIX;
            self.key
                .seal(self.nonce, head, tail, &mut out[at..at + sealed_len])?;
            at += sealed_len;
            self.nonce += 1;
        }
        Ok(at)
    }

    /// How many frames this direction has sent (the next nonce).
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// The cipher this direction seals with.
    pub fn cipher(&self) -> TransportCipher {
        self.key.cipher()
    }

    #[cfg(test)]
    pub(crate) fn set_nonce(&mut self, nonce: u64) {
        self.nonce = nonce;
    }
}

/// The receiving `CipherState`: turns Noise transport frames back into plaintext.
pub struct NoiseReceiver {
    key: CipherKey,
    nonce: u64,
}

impl std::fmt::Debug for NoiseReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseReceiver")
            .field("cipher", &self.key.cipher)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

impl NoiseReceiver {
    /// Splits the next complete frame off the front of `input` (no copy), decrypts it in
    /// place and returns its plaintext, which may be empty.
    ///
    /// `Ok(None)` means the frame is not complete yet: read more into `input` (whose
    /// capacity has been grown to fit the frame) and call again. Call in a loop until
    /// `Ok(None)`, since one read may hold many frames. Every error is fatal for the
    /// connection: [`NoiseError::FrameTooShort`] for a frame without room for its tag,
    /// [`NoiseError::Decrypt`] for a forged, corrupted or reordered frame,
    /// [`NoiseError::NonceExhausted`] after 2^64-1 frames.
    pub fn decrypt_frame(&mut self, input: &mut BytesMut) -> Result<Option<BytesMut>, NoiseError> {
        let Some(mut frame) = frame::decode(input, MAX_FRAME_LEN)? else {
            return Ok(None);
        };
        if frame.len() < TAG_LEN {
            return Err(NoiseError::FrameTooShort { len: frame.len() });
        }
        if self.nonce == u64::MAX {
            return Err(NoiseError::NonceExhausted);
        }
        let plain_len = self
            .key
            .key
            .open_in_place(self.key.nonce(self.nonce), Aad::empty(), &mut frame)
            .map_err(|_| NoiseError::Decrypt)?
            .len();
        frame.truncate(plain_len);
        self.nonce += 1;
        Ok(Some(frame))
    }

    /// How many frames this direction has received (the next nonce).
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// The cipher this direction opens with.
    pub fn cipher(&self) -> TransportCipher {
        self.key.cipher
    }

    #[cfg(test)]
    pub(crate) fn set_nonce(&mut self, nonce: u64) {
        self.nonce = nonce;
    }
}

#[cfg(test)]
#[path = "transport_tests.rs"]
mod tests;
