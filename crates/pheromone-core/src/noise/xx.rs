//! The Noise `XX` handshake pattern over `25519`, for opaque payloads (Noise spec §5.3, §7.5):
//!
//! ```text
//! -> e
//! <- e, ee, s, es
//! -> s, se
//! ```
//!
//! This is plain Noise with no libp2p in it — payloads are bytes, and who may send which
//! message when is the caller's business (`handshake.rs` sequences it). It never draws
//! randomness: both X25519 secrets are handed in.

use super::dh::DhSecret;
pub(crate) use super::dh::DH_LEN;
use super::symmetric::{SymmetricState, HASH_LEN, KEY_LEN, TAG_LEN};
use super::NoiseError;
use std::sync::Arc;

/// The Noise protocol name libp2p mandates.
pub(crate) const PROTOCOL_NAME: &[u8] = b"Noise_XX_25519_ChaChaPoly_SHA256";
/// Shortest valid message 1: the initiator's ephemeral key.
pub(crate) const MIN_MSG1_LEN: usize = DH_LEN;
/// Shortest valid message 2: ephemeral key, encrypted static key, tag of the payload.
pub(crate) const MIN_MSG2_LEN: usize = DH_LEN + DH_LEN + TAG_LEN + TAG_LEN;
/// Shortest valid message 3: encrypted static key, tag of the payload.
pub(crate) const MIN_MSG3_LEN: usize = DH_LEN + TAG_LEN + TAG_LEN;

fn key_at(msg: &[u8], at: usize) -> [u8; DH_LEN] {
    let mut key = [0u8; DH_LEN];
    key.copy_from_slice(&msg[at..at + DH_LEN]);
    key
}

fn check_len(message: u8, msg: &[u8], min: usize) -> Result<(), NoiseError> {
    if msg.len() < min {
        return Err(NoiseError::HandshakeMessageTooShort {
            message,
            len: msg.len(),
            min,
        });
    }
    Ok(())
}

/// Noise `HandshakeState` for `XX` with one side's keys; either role.
pub(crate) struct Xx {
    sym: SymmetricState,
    /// Shared with the node's [`super::StaticKey`], which prepares it once.
    s: Arc<DhSecret>,
    e: DhSecret,
    re: Option<[u8; DH_LEN]>,
    rs: Option<[u8; DH_LEN]>,
}

impl Xx {
    /// `Initialize(XX, s, e, prologue)`. libp2p uses an empty prologue.
    pub(crate) fn new(static_secret: [u8; KEY_LEN], ephemeral_secret: [u8; KEY_LEN]) -> Self {
        Self::with_prologue(static_secret, ephemeral_secret, &[])
    }

    /// [`Xx::new`] with an explicit prologue (tests use it to check that it is mixed in).
    pub(crate) fn with_prologue(
        static_secret: [u8; KEY_LEN],
        ephemeral_secret: [u8; KEY_LEN],
        prologue: &[u8],
    ) -> Self {
        let s = Arc::new(DhSecret::new(static_secret));
        Self::with_static_key(s, ephemeral_secret, prologue)
    }

    /// [`Xx::with_prologue`] with the static key already prepared (it is the same for
    /// every handshake of a node that keeps its static key).
    pub(crate) fn with_static_key(
        s: Arc<DhSecret>,
        ephemeral_secret: [u8; KEY_LEN],
        prologue: &[u8],
    ) -> Self {
        let mut sym = SymmetricState::new(PROTOCOL_NAME);
        sym.mix_hash(prologue);
        Self {
            s,
            e: DhSecret::new(ephemeral_secret),
            sym,
            re: None,
            rs: None,
        }
    }

    /// Initiator, `-> e` with an empty payload (libp2p sends none before secrecy).
    pub(crate) fn write_message_1(&mut self, out: &mut Vec<u8>) {
        let e_pub = self.e.public();
        out.extend_from_slice(&e_pub);
        self.sym.mix_hash(&e_pub);
        // EncryptAndHash of the empty payload without a key is MixHash of nothing.
        self.sym.mix_hash(&[]);
    }

    /// Responder, reads `-> e`; returns the (clear) payload.
    pub(crate) fn read_message_1(&mut self, msg: &[u8]) -> Result<Vec<u8>, NoiseError> {
        check_len(1, msg, MIN_MSG1_LEN)?;
        let re = key_at(msg, 0);
        self.sym.mix_hash(&re);
        self.re = Some(re);
        self.sym.decrypt_and_hash(&msg[DH_LEN..])
    }

    /// Responder, `<- e, ee, s, es` with `payload`.
    pub(crate) fn write_message_2(
        &mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), NoiseError> {
        let re = self.re.ok_or(NoiseError::HandshakeFailed)?;
        let e_pub = self.e.public();
        out.extend_from_slice(&e_pub);
        self.sym.mix_hash(&e_pub);
        self.sym.mix_key(self.e.diffie_hellman(&re)?.as_slice())?;
        self.sym.encrypt_and_hash(&self.s.public(), out)?;
        self.sym.mix_key(self.s.diffie_hellman(&re)?.as_slice())?;
        self.sym.encrypt_and_hash(payload, out)
    }

    /// Initiator, reads `<- e, ee, s, es`; returns the payload. The responder's static key
    /// is then [`Xx::remote_static`].
    pub(crate) fn read_message_2(&mut self, msg: &[u8]) -> Result<Vec<u8>, NoiseError> {
        check_len(2, msg, MIN_MSG2_LEN)?;
        let re = key_at(msg, 0);
        self.sym.mix_hash(&re);
        self.re = Some(re);
        self.sym.mix_key(self.e.diffie_hellman(&re)?.as_slice())?;
        let rs_end = DH_LEN + DH_LEN + TAG_LEN;
        let rs = self.sym.decrypt_and_hash(&msg[DH_LEN..rs_end])?;
        let rs: [u8; DH_LEN] = rs.try_into().map_err(|_| NoiseError::Decrypt)?;
        self.rs = Some(rs);
        self.sym.mix_key(self.e.diffie_hellman(&rs)?.as_slice())?;
        self.sym.decrypt_and_hash(&msg[rs_end..])
    }

    /// Initiator, `-> s, se` with `payload`.
    pub(crate) fn write_message_3(
        &mut self,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), NoiseError> {
        let re = self.re.ok_or(NoiseError::HandshakeFailed)?;
        self.sym.encrypt_and_hash(&self.s.public(), out)?;
        self.sym.mix_key(self.s.diffie_hellman(&re)?.as_slice())?;
        self.sym.encrypt_and_hash(payload, out)
    }

    /// Responder, reads `-> s, se`; returns the payload. The initiator's static key is then
    /// [`Xx::remote_static`].
    pub(crate) fn read_message_3(&mut self, msg: &[u8]) -> Result<Vec<u8>, NoiseError> {
        check_len(3, msg, MIN_MSG3_LEN)?;
        if !self.sym.has_key() {
            return Err(NoiseError::HandshakeFailed);
        }
        let rs_end = DH_LEN + TAG_LEN;
        let rs = self.sym.decrypt_and_hash(&msg[..rs_end])?;
        let rs: [u8; DH_LEN] = rs.try_into().map_err(|_| NoiseError::Decrypt)?;
        self.rs = Some(rs);
        self.sym.mix_key(self.e.diffie_hellman(&rs)?.as_slice())?;
        self.sym.decrypt_and_hash(&msg[rs_end..])
    }

    /// The remote's static X25519 key, once a message carrying it was read.
    pub(crate) fn remote_static(&self) -> Option<[u8; DH_LEN]> {
        self.rs
    }

    /// Our static X25519 public key.
    pub(crate) fn local_static(&self) -> [u8; DH_LEN] {
        self.s.public()
    }

    /// `Split()`: (initiator-to-responder key, responder-to-initiator key).
    pub(crate) fn split(&self) -> ([u8; KEY_LEN], [u8; KEY_LEN]) {
        self.sym.split()
    }

    /// The handshake hash, identical on both sides after the last message.
    pub(crate) fn handshake_hash(&self) -> [u8; HASH_LEN] {
        self.sym.handshake_hash()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Xx, Xx) {
        (Xx::new([1; 32], [2; 32]), Xx::new([3; 32], [4; 32]))
    }

    #[test]
    fn both_sides_agree_and_learn_static_keys() {
        let (mut i, mut r) = pair();
        let mut m1 = Vec::new();
        i.write_message_1(&mut m1);
        assert_eq!(m1.len(), MIN_MSG1_LEN);
        assert!(r.read_message_1(&m1).expect("m1").is_empty());
        let mut m2 = Vec::new();
        r.write_message_2(b"from responder", &mut m2).expect("w2");
        assert_eq!(m2.len(), MIN_MSG2_LEN + 14);
        assert_eq!(i.read_message_2(&m2).expect("m2"), b"from responder");
        let mut m3 = Vec::new();
        i.write_message_3(b"from initiator", &mut m3).expect("w3");
        assert_eq!(r.read_message_3(&m3).expect("m3"), b"from initiator");
        assert_eq!(i.remote_static(), Some(r.local_static()));
        assert_eq!(r.remote_static(), Some(i.local_static()));
        assert_eq!(i.split(), r.split());
        assert_eq!(i.handshake_hash(), r.handshake_hash());
        let (a, b) = i.split();
        assert_ne!(a, b);
    }

    #[test]
    fn short_messages_are_typed_errors() {
        let (mut i, mut r) = pair();
        assert_eq!(
            r.read_message_1(&[0; 31]),
            Err(NoiseError::HandshakeMessageTooShort {
                message: 1,
                len: 31,
                min: 32
            })
        );
        assert!(matches!(
            i.read_message_2(&[0; 95]),
            Err(NoiseError::HandshakeMessageTooShort { message: 2, .. })
        ));
        assert!(matches!(
            r.read_message_3(&[0; 63]),
            Err(NoiseError::HandshakeMessageTooShort { message: 3, .. })
        ));
    }

    #[test]
    fn low_order_ephemeral_is_refused() {
        let (_, mut r) = pair();
        // The all-zero point is of low order: DH with it is all zeros.
        r.read_message_1(&[0; 32])
            .expect("m1 itself only carries the key");
        let mut m2 = Vec::new();
        assert_eq!(
            r.write_message_2(b"", &mut m2),
            Err(NoiseError::LowOrderPoint)
        );
    }

    #[test]
    fn out_of_order_use_is_an_error_not_a_panic() {
        let (mut i, mut r) = pair();
        let mut out = Vec::new();
        assert_eq!(
            r.write_message_2(b"", &mut out),
            Err(NoiseError::HandshakeFailed)
        );
        assert_eq!(
            i.write_message_3(b"", &mut out),
            Err(NoiseError::HandshakeFailed)
        );
        assert_eq!(r.read_message_3(&[0; 64]), Err(NoiseError::HandshakeFailed));
    }
}
