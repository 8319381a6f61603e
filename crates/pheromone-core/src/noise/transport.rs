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
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Two transports wired to each other, as after a handshake.
    fn linked() -> (NoiseTransport, NoiseTransport) {
        let a = NoiseTransport::new(&[1; 32], &[2; 32]).expect("keys");
        let b = NoiseTransport::new(&[2; 32], &[1; 32]).expect("keys");
        (a, b)
    }

    fn drain(receiver: &mut NoiseReceiver, wire: &mut BytesMut) -> Vec<u8> {
        let mut got = Vec::new();
        while let Some(plain) = receiver.decrypt_frame(wire).expect("decrypt") {
            got.extend_from_slice(&plain);
        }
        got
    }

    #[test]
    fn frames_are_filled_to_the_maximum() {
        assert_eq!(MAX_PLAINTEXT_LEN, 65519);
        let (mut a, mut b) = linked();
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut wire = BytesMut::new();
        a.sender.encrypt(&data, &mut wire).expect("encrypt");
        assert_eq!(wire.len(), encrypted_len(data.len()));
        assert_eq!(a.sender.nonce(), 4);
        assert_eq!(frame::peek_len(&wire), Some(MAX_FRAME_LEN));
        assert_eq!(drain(&mut b.receiver, &mut wire), data);
        assert_eq!(b.receiver.nonce(), 4);
        assert!(wire.is_empty());
    }

    #[test]
    fn a_pair_seals_to_the_bytes_of_its_concatenation() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let m = MAX_PLAINTEXT_LEN;
        // Splits inside a frame, on frame edges, one byte around them, and at either end.
        for split in [
            0,
            1,
            12,
            m - 1,
            m,
            m + 1,
            2 * m + 5,
            data.len() - 1,
            data.len(),
        ] {
            for aes in [false, true] {
                let link = || if aes { linked_aes() } else { linked() };
                let (mut whole, _) = link();
                let (mut pair, mut b) = link();
                let mut expected = BytesMut::new();
                whole.sender.encrypt(&data, &mut expected).expect("encrypt");
                let mut room = vec![0u8; encrypted_len(data.len())];
                let n = pair
                    .sender
                    .encrypt_pair_into(&data[..split], &data[split..], &mut room)
                    .expect("encrypt_pair_into");
                assert_eq!(n, expected.len(), "split {split}, aes {aes}");
                assert!(room == expected[..], "split {split}, aes {aes}");
                assert_eq!(pair.sender.nonce(), whole.sender.nonce());
                let mut wire = BytesMut::from(&room[..]);
                assert_eq!(drain(&mut b.receiver, &mut wire), data);
            }
        }
    }

    #[test]
    fn encrypt_into_writes_what_encrypt_appends_and_checks_its_room() {
        for (mut a, mut b) in [linked(), linked_aes()] {
            let (mut a2, _) = if a.cipher() == TransportCipher::AesGcm {
                linked_aes()
            } else {
                linked()
            };
            let data: Vec<u8> = (0..150_000u32).map(|i| (i * 13) as u8).collect();
            let mut appended = BytesMut::new();
            a.sender.encrypt(&data, &mut appended).expect("encrypt");
            // Room beyond the frames is left alone.
            let mut room = vec![0xa5u8; encrypted_len(data.len()) + 7];
            let n = a2
                .sender
                .encrypt_into(&data, &mut room)
                .expect("encrypt_into");
            assert_eq!(n, encrypted_len(data.len()));
            assert_eq!(&room[..n], &appended[..]);
            assert_eq!(&room[n..], &[0xa5; 7]);
            let mut short = vec![0u8; n - 1];
            assert_eq!(
                a2.sender.encrypt_into(&data, &mut short),
                Err(NoiseError::BufferTooSmall {
                    needed: n,
                    got: n - 1
                })
            );
            assert_eq!(a2.sender.nonce(), a.sender.nonce(), "no nonce spent");
            assert_eq!(drain(&mut b.receiver, &mut appended), data);
        }
    }

    #[test]
    fn empty_plaintext_writes_nothing() {
        let (mut a, _) = linked();
        let mut wire = BytesMut::new();
        a.sender.encrypt(&[], &mut wire).expect("encrypt");
        assert!(wire.is_empty());
        assert_eq!(a.sender.nonce(), 0);
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let (mut a, mut b) = linked();
        let mut wire = BytesMut::new();
        a.sender.encrypt(b"hello", &mut wire).expect("encrypt");
        let full = wire.split();
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert_eq!(b.receiver.decrypt_frame(&mut part), Ok(None));
            assert_eq!(part.len(), cut);
        }
        let mut whole = full.clone();
        assert_eq!(
            b.receiver.decrypt_frame(&mut whole).expect("ok").as_deref(),
            Some(&b"hello"[..])
        );
    }

    #[test]
    fn tampering_reordering_and_short_frames_are_errors() {
        let (mut a, mut b) = linked();
        let mut wire = BytesMut::new();
        a.sender.encrypt(b"first", &mut wire).expect("encrypt");
        let first = wire.split();
        a.sender.encrypt(b"second", &mut wire).expect("encrypt");
        let second = wire.split();

        // Flip each byte of the body in turn: every one must be caught.
        for i in LEN_PREFIX..first.len() {
            let mut bad = first.clone();
            bad[i] ^= 0x40;
            let (_, mut fresh) = linked();
            assert_eq!(
                fresh.receiver.decrypt_frame(&mut bad),
                Err(NoiseError::Decrypt)
            );
        }
        // Out of order: the second frame under nonce 0.
        let mut swapped = second.clone();
        assert_eq!(
            b.receiver.decrypt_frame(&mut swapped),
            Err(NoiseError::Decrypt)
        );
        // A frame too short to hold a tag.
        let mut short = BytesMut::from(&[0, 3, 1, 2, 3][..]);
        assert_eq!(
            b.receiver.decrypt_frame(&mut short),
            Err(NoiseError::FrameTooShort { len: 3 })
        );
    }

    #[test]
    fn nonces_never_wrap() {
        let (mut a, mut b) = linked();
        a.sender.set_nonce(u64::MAX - 2);
        b.receiver.set_nonce(u64::MAX - 2);
        let mut wire = BytesMut::new();
        // Two frames need nonces MAX-2 and MAX-1: allowed.
        let two_frames = vec![0u8; MAX_PLAINTEXT_LEN + 1];
        a.sender
            .encrypt(&two_frames, &mut wire)
            .expect("last nonces");
        assert_eq!(drain(&mut b.receiver, &mut wire), two_frames);
        assert_eq!(
            a.sender.encrypt(b"x", &mut wire),
            Err(NoiseError::NonceExhausted)
        );
        assert!(wire.is_empty(), "nothing written on exhaustion");
        let (mut c, _) = linked();
        c.sender.set_nonce(u64::MAX - 1);
        assert_eq!(
            c.sender.encrypt(&two_frames, &mut wire),
            Err(NoiseError::NonceExhausted)
        );
        assert!(wire.is_empty());
        let mut frame = BytesMut::from(&[0u8, 16][..]);
        frame.extend_from_slice(&[0; 16]);
        assert_eq!(
            b.receiver.decrypt_frame(&mut frame),
            Err(NoiseError::NonceExhausted)
        );
    }

    fn linked_aes() -> (NoiseTransport, NoiseTransport) {
        let cipher = TransportCipher::AesGcm;
        let a = NoiseTransport::with_cipher(cipher, &[1; 32], &[2; 32]).expect("keys");
        let b = NoiseTransport::with_cipher(cipher, &[2; 32], &[1; 32]).expect("keys");
        (a, b)
    }

    #[test]
    fn aes_gcm_round_trips_and_reports_its_cipher() {
        let (mut a, mut b) = linked_aes();
        assert_eq!(a.cipher(), TransportCipher::AesGcm);
        assert_eq!(b.receiver.cipher(), TransportCipher::AesGcm);
        assert_eq!(linked().0.cipher(), TransportCipher::ChaChaPoly);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        let mut wire = BytesMut::new();
        a.sender.encrypt(&data, &mut wire).expect("encrypt");
        assert_eq!(wire.len(), encrypted_len(data.len()));
        assert_eq!(drain(&mut b.receiver, &mut wire), data);
        // And back the other way.
        b.sender.encrypt(b"pong", &mut wire).expect("encrypt");
        assert_eq!(drain(&mut a.receiver, &mut wire), b"pong");
    }

    #[test]
    fn aes_gcm_detects_tampering_and_cipher_mismatch() {
        let (mut a, _) = linked_aes();
        let mut wire = BytesMut::new();
        a.sender
            .encrypt(b"attack at dawn", &mut wire)
            .expect("encrypt");
        for i in LEN_PREFIX..wire.len() {
            let mut bad = wire.clone();
            bad[i] ^= 0x01;
            let (_, mut fresh) = linked_aes();
            assert_eq!(
                fresh.receiver.decrypt_frame(&mut bad),
                Err(NoiseError::Decrypt)
            );
        }
        // The same split keys under ChaChaPoly must not open an AES frame.
        let (_, mut chacha) = linked();
        assert_eq!(
            chacha.receiver.decrypt_frame(&mut wire.clone()),
            Err(NoiseError::Decrypt)
        );
        let (_, mut aes) = linked_aes();
        assert!(aes.receiver.decrypt_frame(&mut wire).expect("ok").is_some());
    }

    #[test]
    fn aes_gcm_frame_matches_a_direct_encryption() {
        use hmac::{Hmac, Mac};
        let split_key = [0x5cu8; 32];
        // The expected key, computed with the variable-key HMAC API rather than ours.
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&split_key).expect("key");
        mac.update(b"pheromone noise aes-256-gcm");
        let derived: [u8; 32] = mac.finalize().into_bytes().into();
        assert_ne!(derived, split_key);
        assert_eq!(aes_gcm_key(&split_key), derived);

        let counter = 0x0102_0304_0506_0708u64;
        let mut tx = NoiseTransport::with_cipher(TransportCipher::AesGcm, &split_key, &[0; 32])
            .expect("keys");
        tx.sender.set_nonce(counter);
        let mut wire = BytesMut::new();
        tx.sender
            .encrypt(b"exact bytes", &mut wire)
            .expect("encrypt");

        let direct = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &derived).expect("key"));
        let nonce = [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let mut expected = b"exact bytes".to_vec();
        direct
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut expected,
            )
            .expect("seal");
        assert_eq!(&wire[..LEN_PREFIX], &(expected.len() as u16).to_be_bytes());
        assert_eq!(&wire[LEN_PREFIX..], &expected[..]);
    }

    proptest! {
        #[test]
        fn round_trips(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..3000), 0..6)
        ) {
            for (mut a, mut b) in [linked(), linked_aes()] {
                let mut wire = BytesMut::new();
                for chunk in &chunks {
                    a.sender.encrypt(chunk, &mut wire).expect("encrypt");
                }
                prop_assert_eq!(drain(&mut b.receiver, &mut wire), chunks.concat());
            }
        }

        #[test]
        fn decrypt_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let (_, mut b) = linked();
            let mut input = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = b.receiver.decrypt_frame(&mut input) {}
        }
    }
}
