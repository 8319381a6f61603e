//! The noise-libp2p handshake state machine: XX messages in 16-bit frames, the signed
//! identity payload in messages 2 and 3, and the check against the peer we meant to reach.
//!
//! It is sans-IO: bytes come in through [`Handshake::handle_input`], framed bytes go out
//! through [`Handshake::poll_transmit`]. It reads no clock (the driver owns the handshake
//! timeout) and draws no randomness (the caller hands in both X25519 secrets).

use super::dh::DhSecret;
use super::frame::{self, LEN_PREFIX};
use super::payload::{
    self, NoiseExtensions, RemoteIdentity, TransportCipher, MAX_HANDSHAKE_PAYLOAD,
};
use super::transport::NoiseTransport;
use super::xx::{Xx, MIN_MSG1_LEN, MIN_MSG2_LEN, MIN_MSG3_LEN};
use super::NoiseError;
use crate::identity::{Keypair, PeerId, PublicKey};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use zeroize::Zeroize;

/// Largest message 1 we accept: the ephemeral key and a (clear, ignored) payload.
const MAX_MSG1_LEN: usize = MIN_MSG1_LEN + MAX_HANDSHAKE_PAYLOAD;
/// Largest message 2 we accept.
const MAX_MSG2_LEN: usize = MIN_MSG2_LEN + MAX_HANDSHAKE_PAYLOAD;
/// Largest message 3 we accept.
const MAX_MSG3_LEN: usize = MIN_MSG3_LEN + MAX_HANDSHAKE_PAYLOAD;

/// What one side brings to a handshake.
///
/// Both secrets must come from a cryptographically secure RNG owned by the caller. The
/// ephemeral secret must be fresh for every handshake — reusing it breaks forward secrecy.
/// The static secret may be kept for the life of the node or drawn per connection (the spec
/// allows either; it is authenticated by `identity`'s signature, not by being long-lived),
/// but should not be written to disk.
#[derive(Clone)]
pub struct HandshakeConfig<'a> {
    /// Our libp2p identity; it signs our static Noise key.
    pub identity: &'a Keypair,
    /// Our static X25519 secret (Noise `s`).
    pub static_dh_secret: [u8; 32],
    /// Our ephemeral X25519 secret (Noise `e`), fresh for this handshake.
    pub ephemeral_secret: [u8; 32],
    /// The peer we mean to reach. When set, a remote that authenticates as anyone else
    /// fails the handshake with [`NoiseError::PeerIdMismatch`]. Dialers set it whenever the
    /// address named a peer; listeners usually leave it `None`.
    pub expected_remote: Option<PeerId>,
    /// Stream muxers to advertise in the payload's `NoiseExtensions`, most preferred first;
    /// empty sends no extensions at all.
    pub stream_muxers: Vec<String>,
    /// A static key prepared once ([`StaticKey`]); when set, it replaces
    /// `static_dh_secret` and `stream_muxers`, saving a scalar multiplication and a
    /// signature per handshake.
    pub static_key: Option<&'a StaticKey>,
    /// Offer AES-256-GCM for the transport phase (field 1001 of our payload). The
    /// transport uses it only when the remote offered it too; otherwise — and always with
    /// libp2p peers, which never offer it — the transport is ChaChaPoly as the libp2p spec
    /// says. Off by default: the caller turns it on when its CPU has AES hardware.
    pub offer_aes_gcm: bool,
}

/// A node's static Noise key with its public half and the signed handshake payload,
/// computed once and reused for every handshake (as rust-libp2p does).
#[derive(Clone)]
pub struct StaticKey {
    /// Shared by every handshake that uses this key: preparing it costs a key parse.
    secret: Arc<DhSecret>,
    payload: Vec<u8>,
}

impl std::fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKey")
            .field("public", &self.secret.public())
            .finish_non_exhaustive()
    }
}

impl StaticKey {
    /// Derives the public key from `secret` and signs it with `identity`, advertising
    /// `stream_muxers` in the payload's extensions (none when empty).
    pub fn new(identity: &Keypair, secret: [u8; 32], stream_muxers: &[String]) -> Self {
        let secret = Arc::new(DhSecret::new(secret));
        let payload = payload::encode(identity, &secret.public(), stream_muxers);
        Self { secret, payload }
    }
}

impl std::fmt::Debug for HandshakeConfig<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the two secrets.
        f.debug_struct("HandshakeConfig")
            .field("identity", &self.identity)
            .field("expected_remote", &self.expected_remote)
            .field("stream_muxers", &self.stream_muxers)
            .field("offer_aes_gcm", &self.offer_aes_gcm)
            .finish_non_exhaustive()
    }
}

impl<'a> HandshakeConfig<'a> {
    /// A config with no expected remote, no muxer list and no AES-GCM offer.
    pub fn new(
        identity: &'a Keypair,
        static_dh_secret: [u8; 32],
        ephemeral_secret: [u8; 32],
    ) -> Self {
        Self {
            identity,
            static_dh_secret,
            ephemeral_secret,
            expected_remote: None,
            stream_muxers: Vec::new(),
            static_key: None,
            offer_aes_gcm: false,
        }
    }

    /// Offers AES-256-GCM for the transport phase (see [`HandshakeConfig::offer_aes_gcm`]).
    pub fn with_aes_gcm(mut self, offer: bool) -> Self {
        self.offer_aes_gcm = offer;
        self
    }

    /// Uses a prepared static key instead of `static_dh_secret` and `stream_muxers`.
    pub fn with_static_key(mut self, key: &'a StaticKey) -> Self {
        self.static_key = Some(key);
        self
    }

    /// Requires the remote to authenticate as `peer`.
    pub fn with_expected_remote(mut self, peer: PeerId) -> Self {
        self.expected_remote = Some(peer);
        self
    }

    /// Advertises `muxers` in the handshake payload.
    pub fn with_stream_muxers(mut self, muxers: Vec<String>) -> Self {
        self.stream_muxers = muxers;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Responder, waiting for `-> e`.
    AwaitMsg1,
    /// Initiator, waiting for `<- e, ee, s, es`.
    AwaitMsg2,
    /// Responder, waiting for `-> s, se`.
    AwaitMsg3,
    /// Keys agreed, remote verified.
    Done,
    /// An error was returned; the handshake is dead.
    Failed,
}

/// One side of a noise-libp2p `XX` handshake.
///
/// Calling contract:
/// 1. Build it with [`Handshake::initiator`] (dialer) or [`Handshake::responder`]
///    (listener).
/// 2. Loop: send whatever [`Handshake::poll_transmit`] returns; feed every byte read from
///    the connection to [`Handshake::handle_input`]; stop when [`Handshake::is_complete`].
///    The initiator's first message is ready as soon as it is built.
/// 3. Call [`Handshake::into_transport`] for the ciphers and the remote's verified
///    identity.
///
/// `handle_input` consumes only the handshake's own frames: bytes that arrive after the
/// last handshake message (the initiator may send transport data right behind message 3)
/// stay in the buffer for the [`super::NoiseReceiver`]. Any error is final; the connection
/// must be dropped. The driver enforces a timeout, since a silent peer never fails here.
pub struct Handshake {
    xx: Xx,
    initiator: bool,
    state: State,
    /// Our signed payload, sent in message 2 (responder) or 3 (initiator).
    local_payload: Vec<u8>,
    /// Whether our payload offers AES-256-GCM.
    offer_aes_gcm: bool,
    expected_remote: Option<PeerId>,
    /// Framed messages not yet taken by `poll_transmit`.
    outbox: BytesMut,
    remote: Option<RemoteIdentity>,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("initiator", &self.initiator)
            .field("state", &self.state)
            .field("offer_aes_gcm", &self.offer_aes_gcm)
            .field("expected_remote", &self.expected_remote)
            .field("remote", &self.remote.as_ref().map(|r| r.peer))
            .finish_non_exhaustive()
    }
}

impl Handshake {
    /// The dialer's side; message 1 is queued for [`Handshake::poll_transmit`] at once.
    pub fn initiator(cfg: HandshakeConfig<'_>) -> Self {
        let mut hs = Self::new(cfg, true, State::AwaitMsg2);
        let mut msg = Vec::with_capacity(MIN_MSG1_LEN);
        hs.xx.write_message_1(&mut msg);
        // Message 1 is 32 bytes: it always fits a frame.
        if hs.queue(&msg).is_err() {
            hs.state = State::Failed;
        }
        hs
    }

    /// The listener's side; it waits for message 1.
    pub fn responder(cfg: HandshakeConfig<'_>) -> Self {
        Self::new(cfg, false, State::AwaitMsg1)
    }

    fn new(cfg: HandshakeConfig<'_>, initiator: bool, state: State) -> Self {
        let (xx, mut local_payload) = match cfg.static_key {
            Some(key) => (
                Xx::with_static_key(Arc::clone(&key.secret), cfg.ephemeral_secret, &[]),
                key.payload.clone(),
            ),
            None => {
                let xx = Xx::new(cfg.static_dh_secret, cfg.ephemeral_secret);
                let payload = payload::encode(cfg.identity, &xx.local_static(), &cfg.stream_muxers);
                (xx, payload)
            }
        };
        if cfg.offer_aes_gcm {
            payload::append_aes_gcm_offer(&mut local_payload);
        }
        Self {
            xx,
            initiator,
            state,
            local_payload,
            offer_aes_gcm: cfg.offer_aes_gcm,
            expected_remote: cfg.expected_remote,
            outbox: BytesMut::new(),
            remote: None,
        }
    }

    /// Consumes every complete handshake frame at the front of `input` and advances the
    /// handshake; an incomplete frame is left in place for the next call.
    ///
    /// Returns `Ok(())` when more input is needed or the handshake is done, and an error —
    /// final for this handshake — on a malformed, oversized or unauthenticated message or a
    /// remote that is not the expected peer.
    pub fn handle_input(&mut self, input: &mut BytesMut) -> Result<(), NoiseError> {
        loop {
            let max = match self.state {
                State::AwaitMsg1 => MAX_MSG1_LEN,
                State::AwaitMsg2 => MAX_MSG2_LEN,
                State::AwaitMsg3 => MAX_MSG3_LEN,
                State::Done => return Ok(()),
                State::Failed => return Err(NoiseError::HandshakeFailed),
            };
            let msg = match frame::decode(input, max) {
                Ok(Some(msg)) => msg,
                Ok(None) => return Ok(()),
                Err(e) => return self.fail(e),
            };
            if let Err(e) = self.on_message(&msg) {
                return self.fail(e);
            }
        }
    }

    fn fail(&mut self, e: NoiseError) -> Result<(), NoiseError> {
        self.state = State::Failed;
        self.remote = None;
        Err(e)
    }

    fn on_message(&mut self, msg: &[u8]) -> Result<(), NoiseError> {
        match self.state {
            State::AwaitMsg1 => {
                // libp2p sends no payload before secrecy; a clear one is ignored, unread.
                self.xx.read_message_1(msg)?;
                self.check_local_payload()?;
                let mut out = Vec::with_capacity(MIN_MSG2_LEN + self.local_payload.len());
                self.xx.write_message_2(&self.local_payload, &mut out)?;
                self.queue(&out)?;
                self.state = State::AwaitMsg3;
            }
            State::AwaitMsg2 => {
                let remote_payload = self.xx.read_message_2(msg)?;
                self.verify_remote(&remote_payload)?;
                self.check_local_payload()?;
                let mut out = Vec::with_capacity(MIN_MSG3_LEN + self.local_payload.len());
                self.xx.write_message_3(&self.local_payload, &mut out)?;
                self.queue(&out)?;
                self.state = State::Done;
            }
            State::AwaitMsg3 => {
                let remote_payload = self.xx.read_message_3(msg)?;
                self.verify_remote(&remote_payload)?;
                self.state = State::Done;
            }
            State::Done | State::Failed => return Err(NoiseError::HandshakeFailed),
        }
        Ok(())
    }

    fn check_local_payload(&self) -> Result<(), NoiseError> {
        if self.local_payload.len() > MAX_HANDSHAKE_PAYLOAD {
            return Err(NoiseError::PayloadTooLarge {
                len: self.local_payload.len(),
                max: MAX_HANDSHAKE_PAYLOAD,
            });
        }
        Ok(())
    }

    fn verify_remote(&mut self, remote_payload: &[u8]) -> Result<(), NoiseError> {
        let remote_static = self.xx.remote_static().ok_or(NoiseError::HandshakeFailed)?;
        let remote = payload::decode_and_verify(remote_payload, &remote_static)?;
        if let Some(expected) = self.expected_remote {
            if expected != remote.peer {
                return Err(NoiseError::PeerIdMismatch {
                    expected,
                    actual: remote.peer,
                });
            }
        }
        self.remote = Some(remote);
        Ok(())
    }

    fn queue(&mut self, msg: &[u8]) -> Result<(), NoiseError> {
        self.outbox.reserve(LEN_PREFIX + msg.len());
        frame::encode(msg, &mut self.outbox)
    }

    /// The next bytes to send, length prefixes included, or `None` when nothing is pending.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.outbox.is_empty() {
            None
        } else {
            Some(self.outbox.split().freeze())
        }
    }

    /// Whether the handshake finished and its last message was taken by
    /// [`Handshake::poll_transmit`]: time for [`Handshake::into_transport`].
    pub fn is_complete(&self) -> bool {
        self.state == State::Done && self.outbox.is_empty()
    }

    /// Whether this side dialled.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// The remote's peer ID, once its payload verified (after message 2 for the initiator,
    /// message 3 for the responder).
    pub fn remote_peer(&self) -> Option<PeerId> {
        self.remote.as_ref().map(|r| r.peer)
    }

    /// The `NoiseExtensions` the remote sent, once its payload verified; `None` if it sent
    /// none.
    pub fn remote_extensions(&self) -> Option<&NoiseExtensions> {
        self.remote.as_ref().and_then(|r| r.extensions.as_ref())
    }

    /// The cipher the transport phase will use, once the remote's payload verified:
    /// AES-256-GCM iff both payloads offered it, else ChaChaPoly. Both sides reach the same
    /// answer from the same two payloads, which the handshake hash authenticates.
    pub fn transport_cipher(&self) -> Option<TransportCipher> {
        let remote = self.remote.as_ref()?;
        Some(if self.offer_aes_gcm && remote.offers_aes_gcm {
            TransportCipher::AesGcm
        } else {
            TransportCipher::ChaChaPoly
        })
    }

    /// The Noise handshake hash, equal on both sides once complete (usable for channel
    /// binding); `None` before that.
    pub fn handshake_hash(&self) -> Option<[u8; 32]> {
        (self.state == State::Done).then(|| self.xx.handshake_hash())
    }

    /// The transport ciphers and the remote's verified peer ID and identity key. The
    /// cipher is [`Handshake::transport_cipher`]'s; [`NoiseTransport::cipher`] reports it.
    ///
    /// Fails with [`NoiseError::HandshakeIncomplete`] unless [`Handshake::is_complete`],
    /// and with [`NoiseError::HandshakeFailed`] after an error.
    pub fn into_transport(self) -> Result<(NoiseTransport, PeerId, PublicKey), NoiseError> {
        match self.state {
            State::Failed => return Err(NoiseError::HandshakeFailed),
            _ if !self.is_complete() => return Err(NoiseError::HandshakeIncomplete),
            _ => {}
        }
        let cipher = self.transport_cipher().ok_or(NoiseError::HandshakeFailed)?;
        let remote = self.remote.as_ref().ok_or(NoiseError::HandshakeFailed)?;
        let (mut initiator_to_responder, mut responder_to_initiator) = self.xx.split();
        let transport = if self.initiator {
            NoiseTransport::with_cipher(cipher, &initiator_to_responder, &responder_to_initiator)
        } else {
            NoiseTransport::with_cipher(cipher, &responder_to_initiator, &initiator_to_responder)
        };
        initiator_to_responder.zeroize();
        responder_to_initiator.zeroize();
        Ok((transport?, remote.peer, remote.key))
    }

    /// Replaces our payload (tests forge payloads with it, see [`super::testing`]).
    pub(crate) fn set_local_payload(&mut self, payload: Vec<u8>) {
        self.local_payload = payload;
    }

    /// Our static X25519 public key (tests sign it with other keys).
    pub(crate) fn local_static(&self) -> [u8; 32] {
        self.xx.local_static()
    }
}
