//! The Noise `SymmetricState` and its handshake-phase `CipherState` (Noise spec §5.1–5.2),
//! for the one suite libp2p uses: ChaChaPoly with SHA-256.
//!
//! This is the only place that knows how the chaining key, the handshake hash and the
//! handshake keys evolve. It draws no randomness and does no framing; the XX message
//! layouts live in `xx.rs` and the post-handshake ciphers in `transport.rs`.

use super::NoiseError;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

/// Length of a SHA-256 output, the Noise `HASHLEN`.
pub(crate) const HASH_LEN: usize = 32;
/// Length of a ChaChaPoly key.
pub(crate) const KEY_LEN: usize = 32;
/// Length of the Poly1305 tag every ciphertext carries.
pub(crate) const TAG_LEN: usize = 16;
/// SHA-256 block size: HMAC keys are zero-padded to this.
const BLOCK_LEN: usize = 64;

/// Builds a ring AEAD key from 32 bytes.
pub(crate) fn aead_key(key: &[u8; KEY_LEN]) -> Result<LessSafeKey, NoiseError> {
    UnboundKey::new(&CHACHA20_POLY1305, key)
        .map(LessSafeKey::new)
        .map_err(|_| NoiseError::KeyRejected)
}

/// The ChaChaPoly nonce of Noise §12.3: 32 zero bits, then `n` little-endian.
pub(crate) fn nonce(n: u64) -> Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_le_bytes());
    Nonce::assume_unique_for_key(bytes)
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub(crate) fn hmac(key: &[u8; HASH_LEN], parts: &[&[u8]]) -> [u8; HASH_LEN] {
    // HMAC zero-pads short keys to the block size itself, so handing it the padded block is
    // the same MAC — and the fixed-size constructor cannot fail, unlike `new_from_slice`.
    let mut block = [0u8; BLOCK_LEN];
    block[..HASH_LEN].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
    block.zeroize();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// `HKDF(chaining_key, input_key_material, 2)` as Noise §4.3 defines it.
pub(crate) fn hkdf2(ck: &[u8; HASH_LEN], ikm: &[u8]) -> ([u8; HASH_LEN], [u8; HASH_LEN]) {
    let mut temp = hmac(ck, &[ikm]);
    let out1 = hmac(&temp, &[&[0x01]]);
    let out2 = hmac(&temp, &[&out1, &[0x02]]);
    temp.zeroize();
    (out1, out2)
}

/// Noise `SymmetricState` with its embedded handshake `CipherState`.
pub(crate) struct SymmetricState {
    ck: [u8; HASH_LEN],
    h: [u8; HASH_LEN],
    /// `None` until the first `MixKey`: until then payloads travel in clear, as Noise says.
    key: Option<LessSafeKey>,
    n: u64,
}

impl SymmetricState {
    /// `InitializeSymmetric(protocol_name)`.
    pub(crate) fn new(protocol_name: &[u8]) -> Self {
        let mut h = [0u8; HASH_LEN];
        if protocol_name.len() <= HASH_LEN {
            h[..protocol_name.len()].copy_from_slice(protocol_name);
        } else {
            h = Sha256::digest(protocol_name).into();
        }
        Self {
            ck: h,
            h,
            key: None,
            n: 0,
        }
    }

    /// `MixHash(data)`: `h = SHA256(h || data)`.
    pub(crate) fn mix_hash(&mut self, data: &[u8]) {
        let mut hasher = Sha256::new();
        hasher.update(self.h);
        hasher.update(data);
        self.h = hasher.finalize().into();
    }

    /// `MixKey(ikm)`: derive a new chaining key and handshake key, nonce back to zero.
    pub(crate) fn mix_key(&mut self, ikm: &[u8]) -> Result<(), NoiseError> {
        let (ck, mut k) = hkdf2(&self.ck, ikm);
        self.ck = ck;
        let key = aead_key(&k);
        k.zeroize();
        self.key = Some(key?);
        self.n = 0;
        Ok(())
    }

    /// `EncryptAndHash(plaintext)`, appending the result to `out`.
    pub(crate) fn encrypt_and_hash(
        &mut self,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), NoiseError> {
        let start = out.len();
        out.extend_from_slice(plaintext);
        if let Some(key) = &self.key {
            if self.n == u64::MAX {
                out.truncate(start);
                return Err(NoiseError::NonceExhausted);
            }
            let tag = key
                .seal_in_place_separate_tag(nonce(self.n), Aad::from(&self.h), &mut out[start..])
                .map_err(|_| NoiseError::KeyRejected)?;
            out.extend_from_slice(tag.as_ref());
            self.n += 1;
        }
        self.mix_hash(&out[start..]);
        Ok(())
    }

    /// `DecryptAndHash(ciphertext)`: the plaintext, or [`NoiseError::Decrypt`].
    pub(crate) fn decrypt_and_hash(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, NoiseError> {
        let mut buf = ciphertext.to_vec();
        if let Some(key) = &self.key {
            if ciphertext.len() < TAG_LEN {
                return Err(NoiseError::Decrypt);
            }
            if self.n == u64::MAX {
                return Err(NoiseError::NonceExhausted);
            }
            let len = key
                .open_in_place(nonce(self.n), Aad::from(&self.h), &mut buf)
                .map_err(|_| NoiseError::Decrypt)?
                .len();
            buf.truncate(len);
            self.n += 1;
        }
        self.mix_hash(ciphertext);
        Ok(buf)
    }

    /// Whether a handshake key is in place (payloads are encrypted from then on).
    pub(crate) fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// `Split()`: the initiator-to-responder and responder-to-initiator transport keys.
    pub(crate) fn split(&self) -> ([u8; KEY_LEN], [u8; KEY_LEN]) {
        hkdf2(&self.ck, &[])
    }

    /// The handshake hash `h`, which both sides share once the handshake is done.
    pub(crate) fn handshake_hash(&self) -> [u8; HASH_LEN] {
        self.h
    }
}

impl Drop for SymmetricState {
    fn drop(&mut self) {
        self.ck.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_the_variable_key_api() {
        let key = [0x0bu8; 32];
        let msg = b"Hi There";
        let mut reference = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length");
        reference.update(msg);
        let expected: [u8; 32] = reference.finalize().into_bytes().into();
        assert_eq!(hmac(&key, &[&msg[..3], &msg[3..]]), expected);
    }

    #[test]
    fn protocol_name_of_32_bytes_is_used_verbatim() {
        let name = b"Noise_XX_25519_ChaChaPoly_SHA256";
        assert_eq!(name.len(), HASH_LEN);
        let state = SymmetricState::new(name);
        assert_eq!(&state.handshake_hash(), name);
        let long = SymmetricState::new(b"Noise_XXfallback+psk0_25519_ChaChaPoly_SHA256");
        assert_eq!(
            long.handshake_hash(),
            <[u8; 32]>::from(Sha256::digest(
                b"Noise_XXfallback+psk0_25519_ChaChaPoly_SHA256"
            ))
        );
    }

    #[test]
    fn encrypt_then_decrypt_with_matching_state() {
        let mut a = SymmetricState::new(b"test");
        let mut b = SymmetricState::new(b"test");
        // Before MixKey, payloads pass in clear but still enter the hash.
        let mut out = Vec::new();
        a.encrypt_and_hash(b"clear", &mut out).expect("encrypt");
        assert_eq!(out, b"clear");
        assert_eq!(b.decrypt_and_hash(&out).expect("decrypt"), b"clear");
        a.mix_key(b"shared").expect("mix");
        b.mix_key(b"shared").expect("mix");
        for msg in [&b""[..], b"hello", &[9u8; 1000]] {
            let mut ct = Vec::new();
            a.encrypt_and_hash(msg, &mut ct).expect("encrypt");
            assert_eq!(ct.len(), msg.len() + TAG_LEN);
            assert_eq!(b.decrypt_and_hash(&ct).expect("decrypt"), msg);
        }
        assert_eq!(a.handshake_hash(), b.handshake_hash());
        assert_eq!(a.split(), b.split());
        let mut ct = Vec::new();
        a.encrypt_and_hash(b"x", &mut ct).expect("encrypt");
        ct[0] ^= 1;
        assert_eq!(b.decrypt_and_hash(&ct), Err(NoiseError::Decrypt));
        assert_eq!(b.decrypt_and_hash(&ct[..5]), Err(NoiseError::Decrypt));
    }

    #[test]
    fn handshake_nonce_never_wraps() {
        let mut a = SymmetricState::new(b"test");
        a.mix_key(b"k").expect("mix");
        a.n = u64::MAX;
        let mut out = vec![1, 2];
        assert_eq!(
            a.encrypt_and_hash(b"x", &mut out),
            Err(NoiseError::NonceExhausted)
        );
        assert_eq!(out, [1, 2], "a refused encryption writes nothing");
        assert_eq!(
            a.decrypt_and_hash(&[0u8; 20]),
            Err(NoiseError::NonceExhausted)
        );
    }
}
