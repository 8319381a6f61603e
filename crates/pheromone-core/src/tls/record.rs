//! TLS 1.3 record protection (RFC 8446 §5) for `/tls/1.0.0` over TCP, once the handshake
//! is done: sealing and opening `application_data` records with the traffic keys rustls
//! negotiated.
//!
//! rustls runs the handshake (in the `pheromone` crate); its traffic keys are then taken
//! out of it and the connection's driver seals and opens records here, the way it does
//! Noise frames: no copy of the plaintext where the record is in one piece, no allocation
//! per record, the two directions apart. What rustls would do after the handshake that
//! matters to a libp2p peer is here too: `close_notify`, `NewSessionTicket` (skipped: we do
//! not resume), and `KeyUpdate` (reported to the caller, who derives the next key, because
//! the traffic secrets stay with rustls). Nothing here reads a clock or draws randomness.

use bytes::{Buf, BytesMut};
use thiserror::Error;
use zeroize::Zeroize;

/// Most plaintext one record carries (RFC 8446 §5.1: 2^14 bytes).
pub const MAX_RECORD_PLAINTEXT: usize = 16 * 1024;
/// The record header: type, legacy version, length.
pub const RECORD_HEADER_LEN: usize = 5;
/// The AEAD tag of every TLS 1.3 cipher suite.
const TAG_LEN: usize = 16;
/// Bytes a record adds around its plaintext: header, inner content type, tag.
pub const RECORD_OVERHEAD: usize = RECORD_HEADER_LEN + 1 + TAG_LEN;
/// The longest protected record the RFC allows (§5.2: 2^14 + 256).
const MAX_CIPHERTEXT_LEN: usize = MAX_RECORD_PLAINTEXT + 256;

const CONTENT_ALERT: u8 = 21;
const CONTENT_HANDSHAKE: u8 = 22;
const CONTENT_APPLICATION_DATA: u8 = 23;
/// `key_update`'s handshake message type.
const HANDSHAKE_KEY_UPDATE: u8 = 24;
/// `new_session_ticket`'s handshake message type.
const HANDSHAKE_NEW_SESSION_TICKET: u8 = 4;

/// Records sealed under one key before we replace it: the AES-GCM confidentiality limit of
/// RFC 9147 §4.5.3 / rustls (2^24.5 full records, rounded down to 2^24). ChaCha20-Poly1305
/// has none worth counting, but rekeying at the same mark costs one small record.
pub const KEY_UPDATE_AFTER: u64 = 1 << 24;

/// The length of a sealed `KeyUpdate` record.
pub const KEY_UPDATE_RECORD_LEN: usize = RECORD_OVERHEAD + 5;

/// The AEAD of a TLS 1.3 cipher suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordCipher {
    /// `TLS_AES_128_GCM_SHA256`.
    Aes128Gcm,
    /// `TLS_AES_256_GCM_SHA384`.
    Aes256Gcm,
    /// `TLS_CHACHA20_POLY1305_SHA256`.
    ChaCha20Poly1305,
}

impl RecordCipher {
    fn algorithm(self) -> &'static aws_lc_rs::aead::Algorithm {
        match self {
            Self::Aes128Gcm => &aws_lc_rs::aead::AES_128_GCM,
            Self::Aes256Gcm => &aws_lc_rs::aead::AES_256_GCM,
            Self::ChaCha20Poly1305 => &aws_lc_rs::aead::CHACHA20_POLY1305,
        }
    }

    /// Whether this is an AES-GCM suite.
    pub fn is_aes_gcm(self) -> bool {
        !matches!(self, Self::ChaCha20Poly1305)
    }
}

/// Why a record could not be sealed or opened. Every variant ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The key has the wrong length for its cipher.
    #[error("TLS traffic key rejected")]
    KeyRejected,
    /// A record arrived whose outer type is not `application_data` (after the handshake
    /// every TLS 1.3 record is).
    #[error("unexpected TLS record type {content_type} after the handshake")]
    UnexpectedRecordType {
        /// The type received.
        content_type: u8,
    },
    /// A record longer than TLS 1.3 allows.
    #[error("TLS record of {len} bytes exceeds the limit of {max}")]
    RecordTooLong {
        /// Its announced length.
        len: usize,
        /// The limit (2^14 + 256).
        max: usize,
    },
    /// The record did not authenticate: forged, corrupted, reordered, or under a key the
    /// peer has since replaced.
    #[error("TLS record failed to decrypt")]
    Decrypt,
    /// A decrypted record with no content type (all padding).
    #[error("TLS record without a content type")]
    NoContentType,
    /// A content type or handshake message that has no place after the handshake.
    #[error("unexpected TLS message after the handshake: content type {content_type}, handshake type {handshake_type:?}")]
    UnexpectedMessage {
        /// The inner content type.
        content_type: u8,
        /// For a handshake record, the message type.
        handshake_type: Option<u8>,
    },
    /// A post-handshake message split across records, or a malformed `KeyUpdate`.
    #[error("malformed post-handshake message: {0}")]
    MalformedHandshake(&'static str),
    /// The peer sent an alert other than `close_notify`.
    #[error("peer sent TLS alert {description}")]
    Alert {
        /// The alert description (RFC 8446 §6).
        description: u8,
    },
    /// The sequence number would wrap: the key must be replaced first.
    #[error("TLS record sequence number exhausted")]
    SequenceExhausted,
    /// The output buffer is too small for the records.
    #[error("output buffer too small: need {needed}, got {got}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
}

/// One direction's traffic key and IV, from the handshake or a key update.
pub struct TrafficKey {
    /// The AEAD.
    pub cipher: RecordCipher,
    /// The key (16 or 32 bytes).
    pub key: Vec<u8>,
    /// The 12-byte static IV the sequence number is XORed into.
    pub iv: [u8; 12],
    /// The sequence number of the next record (0 after the handshake's last record for
    /// a fresh key).
    pub seq: u64,
}

impl std::fmt::Debug for TrafficKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrafficKey")
            .field("cipher", &self.cipher)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl Drop for TrafficKey {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

/// A keyed AEAD and its IV: the state one direction needs.
struct Keyed {
    key: aws_lc_rs::aead::LessSafeKey,
    iv: [u8; 12],
    seq: u64,
    cipher: RecordCipher,
}

impl Keyed {
    fn new(traffic: &TrafficKey) -> Result<Self, RecordError> {
        let key = aws_lc_rs::aead::UnboundKey::new(traffic.cipher.algorithm(), &traffic.key)
            .map_err(|_| RecordError::KeyRejected)?;
        Ok(Self {
            key: aws_lc_rs::aead::LessSafeKey::new(key),
            iv: traffic.iv,
            seq: traffic.seq,
            cipher: traffic.cipher,
        })
    }

    /// RFC 8446 §5.3: the sequence number, big-endian and left-padded, XOR the IV.
    fn nonce(&self) -> aws_lc_rs::aead::Nonce {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce)
    }
}

/// Bytes [`RecordSealer::seal_pair_into`] writes for `plaintext_len` bytes.
pub fn sealed_len(plaintext_len: usize) -> usize {
    plaintext_len + plaintext_len.div_ceil(MAX_RECORD_PLAINTEXT) * RECORD_OVERHEAD
}

fn header(inner_len: usize) -> [u8; RECORD_HEADER_LEN] {
    let len = (inner_len + 1 + TAG_LEN) as u16;
    let [hi, lo] = len.to_be_bytes();
    [CONTENT_APPLICATION_DATA, 0x03, 0x03, hi, lo]
}

/// The sending direction: plaintext in, `application_data` records out.
pub struct RecordSealer {
    keyed: Keyed,
}

impl std::fmt::Debug for RecordSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordSealer")
            .field("cipher", &self.keyed.cipher)
            .field("seq", &self.keyed.seq)
            .finish_non_exhaustive()
    }
}

impl RecordSealer {
    /// A sealer starting at `traffic`'s sequence number.
    pub fn new(traffic: &TrafficKey) -> Result<Self, RecordError> {
        Ok(Self {
            keyed: Keyed::new(traffic)?,
        })
    }

    /// The cipher in use.
    pub fn cipher(&self) -> RecordCipher {
        self.keyed.cipher
    }

    /// The next record's sequence number.
    pub fn seq(&self) -> u64 {
        self.keyed.seq
    }

    /// Whether the key has sealed [`KEY_UPDATE_AFTER`] records and should be replaced
    /// (send a `KeyUpdate` with [`RecordSealer::seal_key_update_into`], then
    /// [`RecordSealer::rekey`]).
    pub fn wants_key_update(&self) -> bool {
        self.keyed.seq >= KEY_UPDATE_AFTER
    }

    /// Replaces the key (after our `KeyUpdate` went out under the old one).
    pub fn rekey(&mut self, traffic: &TrafficKey) -> Result<(), RecordError> {
        self.keyed = Keyed::new(traffic)?;
        Ok(())
    }

    /// Writes `first` followed by `second` as records of up to [`MAX_RECORD_PLAINTEXT`]
    /// bytes to the front of `out`, which must hold [`sealed_len`] bytes; returns that.
    /// A record whose plaintext lies in one piece is sealed straight from it.
    pub fn seal_pair_into(
        &mut self,
        first: &[u8],
        second: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RecordError> {
        let len = first.len() + second.len();
        let total = sealed_len(len);
        if out.len() < total {
            return Err(RecordError::BufferTooSmall {
                needed: total,
                got: out.len(),
            });
        }
        let records = len.div_ceil(MAX_RECORD_PLAINTEXT) as u64;
        if u64::MAX - self.keyed.seq < records {
            return Err(RecordError::SequenceExhausted);
        }
        let mut at = 0;
        for start in (0..len).step_by(MAX_RECORD_PLAINTEXT) {
            let end = (start + MAX_RECORD_PLAINTEXT).min(len);
            let split = first.len();
            let head = &first[start.min(split)..end.min(split)];
            let tail = &second[start.saturating_sub(split)..end.saturating_sub(split)];
            at += self.seal_record(head, tail, CONTENT_APPLICATION_DATA, &mut out[at..])?;
        }
        Ok(at)
    }

    /// Seals a `KeyUpdate` (update_not_requested) handshake record into `out`
    /// ([`KEY_UPDATE_RECORD_LEN`] bytes) under the current key.
    pub fn seal_key_update_into(&mut self, out: &mut [u8]) -> Result<usize, RecordError> {
        if out.len() < KEY_UPDATE_RECORD_LEN {
            return Err(RecordError::BufferTooSmall {
                needed: KEY_UPDATE_RECORD_LEN,
                got: out.len(),
            });
        }
        if self.keyed.seq == u64::MAX {
            return Err(RecordError::SequenceExhausted);
        }
        let message = [HANDSHAKE_KEY_UPDATE, 0, 0, 1, 0];
        self.seal_record(&message, &[], CONTENT_HANDSHAKE, out)
    }

    /// One record of `head` then `tail` (together ≤ 2^14 bytes) with inner type `content`.
    fn seal_record(
        &mut self,
        head: &[u8],
        tail: &[u8],
        content: u8,
        out: &mut [u8],
    ) -> Result<usize, RecordError> {
        let inner = head.len() + tail.len();
        let hdr = header(inner);
        out[..RECORD_HEADER_LEN].copy_from_slice(&hdr);
        let body = &mut out[RECORD_HEADER_LEN..RECORD_HEADER_LEN + inner + 1 + TAG_LEN];
        let nonce = self.keyed.nonce();
        let aad = aws_lc_rs::aead::Aad::from(hdr);
        let sealed = if tail.is_empty() || head.is_empty() {
            // One piece: sealed from where it lies, the content type as the extra input.
            let piece = if tail.is_empty() { head } else { tail };
            let (ct, extra_and_tag) = body.split_at_mut(inner);
            self.keyed.key.seal_out_of_place_scatter(
                nonce,
                aad,
                piece,
                ct,
                &[content],
                extra_and_tag,
            )
        } else {
            body[..head.len()].copy_from_slice(head);
            body[head.len()..inner].copy_from_slice(tail);
            body[inner] = content;
            let (plain, tag_out) = body.split_at_mut(inner + 1);
            self.keyed
                .key
                .seal_in_place_separate_tag(nonce, aad, plain)
                .map(|tag| tag_out.copy_from_slice(tag.as_ref()))
        };
        sealed.map_err(|_| RecordError::KeyRejected)?;
        self.keyed.seq += 1;
        Ok(RECORD_HEADER_LEN + inner + 1 + TAG_LEN)
    }
}

/// What one opened record held.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// Application data (possibly empty).
    Data(BytesMut),
    /// The peer replaced its sending key: derive the next receive key and
    /// [`RecordOpener::rekey`] before opening the next record; with `update_requested`,
    /// send a `KeyUpdate` of our own before our next data.
    KeyUpdate {
        /// The peer asked us to update our key too.
        update_requested: bool,
    },
    /// A message with nothing for us (a `NewSessionTicket`: we never resume).
    Skipped,
    /// The peer's `close_notify`: it sends nothing more.
    CloseNotify,
}

/// The receiving direction: records in, plaintext out.
pub struct RecordOpener {
    keyed: Keyed,
}

impl std::fmt::Debug for RecordOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordOpener")
            .field("cipher", &self.keyed.cipher)
            .field("seq", &self.keyed.seq)
            .finish_non_exhaustive()
    }
}

impl RecordOpener {
    /// An opener starting at `traffic`'s sequence number.
    pub fn new(traffic: &TrafficKey) -> Result<Self, RecordError> {
        Ok(Self {
            keyed: Keyed::new(traffic)?,
        })
    }

    /// The cipher in use.
    pub fn cipher(&self) -> RecordCipher {
        self.keyed.cipher
    }

    /// Replaces the key (after [`Opened::KeyUpdate`]).
    pub fn rekey(&mut self, traffic: &TrafficKey) -> Result<(), RecordError> {
        self.keyed = Keyed::new(traffic)?;
        Ok(())
    }

    /// Splits the next complete record off the front of `input` (no copy), opens it in
    /// place and says what it held. `Ok(None)`: the record is not complete yet (`input`'s
    /// capacity has grown to fit it); read more and call again. Call in a loop until
    /// `Ok(None)`. Every error ends the connection.
    pub fn open(&mut self, input: &mut BytesMut) -> Result<Option<Opened>, RecordError> {
        if input.len() < RECORD_HEADER_LEN {
            return Ok(None);
        }
        let content_type = input[0];
        if content_type != CONTENT_APPLICATION_DATA {
            return Err(RecordError::UnexpectedRecordType { content_type });
        }
        let len = u16::from_be_bytes([input[3], input[4]]) as usize;
        if len > MAX_CIPHERTEXT_LEN {
            return Err(RecordError::RecordTooLong {
                len,
                max: MAX_CIPHERTEXT_LEN,
            });
        }
        if len < TAG_LEN + 1 {
            return Err(RecordError::Decrypt);
        }
        if input.len() < RECORD_HEADER_LEN + len {
            input.reserve(RECORD_HEADER_LEN + len - input.len());
            return Ok(None);
        }
        if self.keyed.seq == u64::MAX {
            return Err(RecordError::SequenceExhausted);
        }
        let mut record = input.split_to(RECORD_HEADER_LEN + len);
        let mut hdr = [0u8; RECORD_HEADER_LEN];
        hdr.copy_from_slice(&record[..RECORD_HEADER_LEN]);
        record.advance(RECORD_HEADER_LEN);
        let nonce = self.keyed.nonce();
        let plain_len = self
            .keyed
            .key
            .open_in_place(nonce, aws_lc_rs::aead::Aad::from(hdr), &mut record)
            .map_err(|_| RecordError::Decrypt)?
            .len();
        self.keyed.seq += 1;
        record.truncate(plain_len);
        // Padding: zeros after the content type (§5.4).
        let Some(type_at) = record.iter().rposition(|b| *b != 0) else {
            return Err(RecordError::NoContentType);
        };
        let inner_type = record[type_at];
        record.truncate(type_at);
        match inner_type {
            CONTENT_APPLICATION_DATA => Ok(Some(Opened::Data(record))),
            CONTENT_ALERT => match record.get(1) {
                Some(0) => Ok(Some(Opened::CloseNotify)),
                Some(&description) => Err(RecordError::Alert { description }),
                None => Err(RecordError::MalformedHandshake("short alert")),
            },
            CONTENT_HANDSHAKE => post_handshake(&record),
            other => Err(RecordError::UnexpectedMessage {
                content_type: other,
                handshake_type: None,
            }),
        }
    }
}

/// A handshake record after the handshake: tickets are skipped, a key update reported.
/// A `KeyUpdate` must end its record (RFC 8446 §5.1), so it is the last message looked at.
fn post_handshake(mut record: &[u8]) -> Result<Option<Opened>, RecordError> {
    if record.is_empty() {
        return Err(RecordError::MalformedHandshake("empty handshake record"));
    }
    while !record.is_empty() {
        if record.len() < 4 {
            return Err(RecordError::MalformedHandshake("split message header"));
        }
        let kind = record[0];
        let len = u32::from_be_bytes([0, record[1], record[2], record[3]]) as usize;
        let Some(body) = record.get(4..4 + len) else {
            return Err(RecordError::MalformedHandshake(
                "message split across records",
            ));
        };
        record = &record[4 + len..];
        match kind {
            HANDSHAKE_NEW_SESSION_TICKET => {}
            HANDSHAKE_KEY_UPDATE => {
                if !record.is_empty() {
                    return Err(RecordError::MalformedHandshake(
                        "data behind a KeyUpdate in its record",
                    ));
                }
                return match body {
                    [0] => Ok(Some(Opened::KeyUpdate {
                        update_requested: false,
                    })),
                    [1] => Ok(Some(Opened::KeyUpdate {
                        update_requested: true,
                    })),
                    _ => Err(RecordError::MalformedHandshake("bad KeyUpdate")),
                };
            }
            other => {
                return Err(RecordError::UnexpectedMessage {
                    content_type: CONTENT_HANDSHAKE,
                    handshake_type: Some(other),
                })
            }
        }
    }
    Ok(Some(Opened::Skipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(cipher: RecordCipher, byte: u8) -> TrafficKey {
        let len = if cipher == RecordCipher::Aes128Gcm {
            16
        } else {
            32
        };
        TrafficKey {
            cipher,
            key: vec![byte; len],
            iv: [byte ^ 0x55; 12],
            seq: 0,
        }
    }

    const CIPHERS: [RecordCipher; 3] = [
        RecordCipher::Aes128Gcm,
        RecordCipher::Aes256Gcm,
        RecordCipher::ChaCha20Poly1305,
    ];

    fn pair(cipher: RecordCipher) -> (RecordSealer, RecordOpener) {
        (
            RecordSealer::new(&key(cipher, 7)).expect("key"),
            RecordOpener::new(&key(cipher, 7)).expect("key"),
        )
    }

    fn seal(sealer: &mut RecordSealer, a: &[u8], b: &[u8]) -> BytesMut {
        let mut out = vec![0u8; sealed_len(a.len() + b.len())];
        let n = sealer.seal_pair_into(a, b, &mut out).expect("seal");
        assert_eq!(n, out.len());
        BytesMut::from(&out[..])
    }

    fn drain(opener: &mut RecordOpener, wire: &mut BytesMut) -> Vec<u8> {
        let mut got = Vec::new();
        while let Some(opened) = opener.open(wire).expect("open") {
            match opened {
                Opened::Data(d) => got.extend_from_slice(&d),
                other => panic!("unexpected {other:?}"),
            }
        }
        got
    }

    #[test]
    fn records_are_full_and_split_pairs_match_their_concatenation() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7) as u8).collect();
        for cipher in CIPHERS {
            let (mut whole, _) = pair(cipher);
            let expected = seal(&mut whole, &data, &[]);
            assert_eq!(expected.len(), sealed_len(data.len()));
            assert_eq!(
                u16::from_be_bytes([expected[3], expected[4]]) as usize,
                MAX_RECORD_PLAINTEXT + 1 + TAG_LEN
            );
            for split in [
                1,
                100,
                MAX_RECORD_PLAINTEXT,
                MAX_RECORD_PLAINTEXT + 1,
                49_999,
            ] {
                let (mut s, mut o) = pair(cipher);
                let mut wire = seal(&mut s, &data[..split], &data[split..]);
                assert_eq!(wire, expected, "{cipher:?} split {split}");
                assert_eq!(drain(&mut o, &mut wire), data);
            }
        }
    }

    #[test]
    fn matches_a_direct_aead_seal_of_the_rfc_layout() {
        let (mut s, _) = pair(RecordCipher::Aes128Gcm);
        s.keyed.seq = 0x0102_0304_0506_0708;
        let wire = seal(&mut s, b"exact", &[]);
        let k = key(RecordCipher::Aes128Gcm, 7);
        let direct = aws_lc_rs::aead::LessSafeKey::new(
            aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_128_GCM, &k.key).expect("k"),
        );
        let mut nonce = k.iv;
        for (i, b) in 0x0102_0304_0506_0708u64.to_be_bytes().iter().enumerate() {
            nonce[4 + i] ^= b;
        }
        let hdr = [23, 3, 3, 0, 5 + 1 + 16];
        let mut expected = b"exact\x17".to_vec();
        direct
            .seal_in_place_append_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::from(hdr),
                &mut expected,
            )
            .expect("seal");
        assert_eq!(&wire[..5], &hdr);
        assert_eq!(&wire[5..], &expected[..]);
    }

    #[test]
    fn partial_records_wait_and_tampering_is_caught() {
        let (mut s, _) = pair(RecordCipher::ChaCha20Poly1305);
        let full = seal(&mut s, b"hello", &[]);
        for cut in 0..full.len() {
            let (_, mut o) = pair(RecordCipher::ChaCha20Poly1305);
            let mut part = BytesMut::from(&full[..cut]);
            assert_eq!(o.open(&mut part), Ok(None));
        }
        for i in RECORD_HEADER_LEN..full.len() {
            let (_, mut o) = pair(RecordCipher::ChaCha20Poly1305);
            let mut bad = full.clone();
            bad[i] ^= 1;
            assert_eq!(o.open(&mut bad), Err(RecordError::Decrypt));
        }
        let (_, mut o) = pair(RecordCipher::ChaCha20Poly1305);
        let mut plain_alert = BytesMut::from(&[21u8, 3, 3, 0, 2, 2, 40][..]);
        assert_eq!(
            o.open(&mut plain_alert),
            Err(RecordError::UnexpectedRecordType { content_type: 21 })
        );
        let mut huge = BytesMut::from(&[23u8, 3, 3, 0xff, 0xff][..]);
        assert!(matches!(
            o.open(&mut huge),
            Err(RecordError::RecordTooLong { .. })
        ));
    }

    /// Seals a record of inner type `content` with `body` by hand.
    fn seal_inner(s: &mut RecordSealer, body: &[u8], content: u8) -> BytesMut {
        let mut out = vec![0u8; body.len() + RECORD_OVERHEAD];
        let n = s.seal_record(body, &[], content, &mut out).expect("seal");
        out.truncate(n);
        BytesMut::from(&out[..])
    }

    #[test]
    fn key_update_tickets_and_close_notify() {
        let (mut s, mut o) = pair(RecordCipher::Aes256Gcm);
        let mut out = vec![0u8; KEY_UPDATE_RECORD_LEN];
        s.seal_key_update_into(&mut out).expect("seal");
        let mut wire = BytesMut::from(&out[..]);
        assert_eq!(
            o.open(&mut wire),
            Ok(Some(Opened::KeyUpdate {
                update_requested: false
            }))
        );
        let mut ticket = seal_inner(&mut s, &[4, 0, 0, 2, 9, 9], CONTENT_HANDSHAKE);
        assert_eq!(o.open(&mut ticket), Ok(Some(Opened::Skipped)));
        let mut requested = seal_inner(&mut s, &[24, 0, 0, 1, 1], CONTENT_HANDSHAKE);
        assert_eq!(
            o.open(&mut requested),
            Ok(Some(Opened::KeyUpdate {
                update_requested: true
            }))
        );
        let mut finished = seal_inner(&mut s, &[20, 0, 0, 1, 0], CONTENT_HANDSHAKE);
        assert!(matches!(
            o.open(&mut finished),
            Err(RecordError::UnexpectedMessage {
                handshake_type: Some(20),
                ..
            })
        ));
        let mut close = seal_inner(&mut s, &[1, 0], CONTENT_ALERT);
        assert_eq!(o.open(&mut close), Ok(Some(Opened::CloseNotify)));
        let mut fatal = seal_inner(&mut s, &[2, 40], CONTENT_ALERT);
        assert_eq!(
            o.open(&mut fatal),
            Err(RecordError::Alert { description: 40 })
        );
        // Padding after the content type is stripped.
        let mut padded = seal_inner(&mut s, &[b'h', b'i', 23, 0, 0, 0], 0);
        assert_eq!(
            o.open(&mut padded),
            Ok(Some(Opened::Data(BytesMut::from(&b"hi"[..]))))
        );
        let mut all_padding = seal_inner(&mut s, &[0, 0], 0);
        assert_eq!(o.open(&mut all_padding), Err(RecordError::NoContentType));
    }

    #[test]
    fn rekeyed_directions_agree_and_old_keys_fail() {
        let (mut s, mut o) = pair(RecordCipher::Aes128Gcm);
        assert!(!s.wants_key_update());
        let next = key(RecordCipher::Aes128Gcm, 9);
        s.rekey(&next).expect("rekey");
        let mut wire = seal(&mut s, b"after", &[]);
        assert_eq!(o.clone_open_err(&mut wire.clone()), RecordError::Decrypt);
        o.rekey(&next).expect("rekey");
        assert_eq!(drain(&mut o, &mut wire), b"after");
        s.keyed.seq = KEY_UPDATE_AFTER;
        assert!(s.wants_key_update());
    }

    impl RecordOpener {
        fn clone_open_err(&mut self, wire: &mut BytesMut) -> RecordError {
            let seq = self.keyed.seq;
            let e = self.open(wire).expect_err("must fail");
            self.keyed.seq = seq;
            e
        }
    }

    proptest! {
        #[test]
        fn round_trips(chunks in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..40_000), 0..4)
        ) {
            for cipher in CIPHERS {
                let (mut s, mut o) = pair(cipher);
                let mut wire = BytesMut::new();
                for chunk in &chunks {
                    wire.extend_from_slice(&seal(&mut s, chunk, &[]));
                }
                prop_assert_eq!(drain(&mut o, &mut wire), chunks.concat());
            }
        }

        #[test]
        fn open_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let (_, mut o) = pair(RecordCipher::Aes128Gcm);
            let mut input = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = o.open(&mut input) {}
        }
    }
}
