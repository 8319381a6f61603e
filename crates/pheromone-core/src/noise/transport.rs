//! Post-handshake Noise transport: the two `CipherState`s, one per direction, sealing and
//! opening length-prefixed ChaCha20-Poly1305 frames.
//!
//! This is the throughput ceiling of the whole stack, so neither direction allocates per
//! frame: sealing copies the plaintext once into the caller's buffer and encrypts it there,
//! opening splits the frame off the input buffer and decrypts it in place. The two halves
//! share nothing, so a connection driver may move them to different places.

use super::frame::{self, LEN_PREFIX, MAX_FRAME_LEN};
use super::symmetric::{aead_key, nonce, KEY_LEN, TAG_LEN};
use super::NoiseError;
use bytes::{BufMut, BytesMut};
use ring::aead::{Aad, LessSafeKey};

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
    /// Builds both directions from their 32-byte keys.
    pub(crate) fn new(
        send_key: &[u8; KEY_LEN],
        recv_key: &[u8; KEY_LEN],
    ) -> Result<Self, NoiseError> {
        Ok(Self {
            sender: NoiseSender {
                key: aead_key(send_key)?,
                nonce: 0,
            },
            receiver: NoiseReceiver {
                key: aead_key(recv_key)?,
                nonce: 0,
            },
        })
    }
}

/// The sending `CipherState`: turns plaintext into Noise transport frames.
pub struct NoiseSender {
    key: LessSafeKey,
    nonce: u64,
}

impl std::fmt::Debug for NoiseSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseSender")
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

/// Bytes [`NoiseSender::encrypt`] appends for `plaintext_len` bytes of plaintext.
pub fn encrypted_len(plaintext_len: usize) -> usize {
    plaintext_len + plaintext_len.div_ceil(MAX_PLAINTEXT_LEN) * FRAME_OVERHEAD
}

impl NoiseSender {
    /// Appends `plaintext` to `out` as one or more Noise frames, each as full as the spec
    /// allows (≤ [`MAX_PLAINTEXT_LEN`] plaintext, ≤ 65535 bytes on the wire after the prefix).
    ///
    /// `out` grows once by [`encrypted_len`]; the plaintext is copied into it and sealed in
    /// place, so nothing else is allocated. Empty `plaintext` appends nothing. Fails with
    /// [`NoiseError::NonceExhausted`] — before writing anything — when the frames would need
    /// the reserved nonce 2^64-1; the connection must then be closed.
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), NoiseError> {
        if plaintext.is_empty() {
            return Ok(());
        }
        let frames = plaintext.len().div_ceil(MAX_PLAINTEXT_LEN) as u64;
        if u64::MAX - self.nonce < frames {
            return Err(NoiseError::NonceExhausted);
        }
        let start_len = out.len();
        out.reserve(encrypted_len(plaintext.len()));
        for chunk in plaintext.chunks(MAX_PLAINTEXT_LEN) {
            // chunk.len() + TAG_LEN ≤ MAX_FRAME_LEN by the chunk size, so this fits a u16.
            out.put_u16((chunk.len() + TAG_LEN) as u16);
            let body = out.len();
            out.extend_from_slice(chunk);
            let sealed = self.key.seal_in_place_separate_tag(
                nonce(self.nonce),
                Aad::empty(),
                &mut out[body..],
            );
            let Ok(tag) = sealed else {
                out.truncate(start_len);
                return Err(NoiseError::KeyRejected);
            };
            out.extend_from_slice(tag.as_ref());
            self.nonce += 1;
        }
        Ok(())
    }

    /// How many frames this direction has sent (the next nonce).
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    #[cfg(test)]
    pub(crate) fn set_nonce(&mut self, nonce: u64) {
        self.nonce = nonce;
    }
}

/// The receiving `CipherState`: turns Noise transport frames back into plaintext.
pub struct NoiseReceiver {
    key: LessSafeKey,
    nonce: u64,
}

impl std::fmt::Debug for NoiseReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseReceiver")
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
            .open_in_place(nonce(self.nonce), Aad::empty(), &mut frame)
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

    proptest! {
        #[test]
        fn round_trips(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..3000), 0..6)
        ) {
            let (mut a, mut b) = linked();
            let mut wire = BytesMut::new();
            for chunk in &chunks {
                a.sender.encrypt(chunk, &mut wire).expect("encrypt");
            }
            let all: Vec<u8> = chunks.concat();
            prop_assert_eq!(drain(&mut b.receiver, &mut wire), all);
        }

        #[test]
        fn decrypt_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let (_, mut b) = linked();
            let mut input = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = b.receiver.decrypt_frame(&mut input) {}
        }
    }
}
