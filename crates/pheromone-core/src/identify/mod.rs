//! The identify protocol's message (`/ipfs/id/1.0.0`, `/ipfs/id/push/1.0.0`): what a peer
//! says about itself.
//!
//! On an identify stream the answering peer writes one `Identify` protobuf behind a varint
//! length prefix and closes the stream (libp2p `identify` spec). go-libp2p may split a large
//! message into several frames, which the reader merges, so the IO side reads the stream to
//! its end (at most [`MAX_STREAM_LEN`] bytes) and calls [`IdentifyInfo::decode_stream`];
//! [`IdentifyInfo::decode`] reads a single frame. Limits:
//!
//! - we send at most [`MAX_SEND_LEN`] bytes of body, rust-libp2p's receive limit;
//! - we accept frames up to [`MAX_FRAME_LEN`] and up to [`MAX_FRAMES`] of them, go-libp2p's
//!   limits;
//! - we keep at most [`MAX_LISTEN_ADDRS`] addresses and [`MAX_PROTOCOLS`] protocol names;
//!   unparsable addresses (such as transports we do not know) and bad names are skipped.
//!
//! Decoding does not check that the key belongs to the peer on the other end of the
//! connection: the caller knows that peer and must compare [`IdentifyInfo::peer_id`] with it.
//! This module does no IO and keeps no state between messages.

mod error;
mod wire;

pub use error::IdentifyError;

use crate::addr::Multiaddr;
use crate::identity::{PeerId, PublicKey};
use prost::Message;
use wire::IdentifyProto;

/// Protocol name of the identify request: the answering peer sends its [`IdentifyInfo`].
pub const PROTOCOL_ID: &str = "/ipfs/id/1.0.0";
/// Protocol name of identify push: the opening peer sends an update ([`IdentifyPush`]).
pub const PUSH_PROTOCOL_ID: &str = "/ipfs/id/push/1.0.0";

/// Largest message body we send, in bytes: rust-libp2p refuses bigger ones.
pub const MAX_SEND_LEN: usize = 4096;
/// Largest frame body we accept, in bytes: go-libp2p's limit for messages that carry a
/// signed peer record.
pub const MAX_FRAME_LEN: usize = 8192;
/// Most frames we merge from one stream (go-libp2p's limit).
pub const MAX_FRAMES: usize = 10;
/// Most bytes worth reading from one identify stream before giving up on it: [`MAX_FRAMES`]
/// full frames with their length prefixes.
pub const MAX_STREAM_LEN: usize = MAX_FRAMES * (MAX_FRAME_LEN + 2);
/// Most listen addresses we keep from one peer; the rest are dropped.
pub const MAX_LISTEN_ADDRS: usize = 64;
/// Most protocol names we keep from one peer; the rest are dropped.
pub const MAX_PROTOCOLS: usize = 256;
/// Longest protocol name we keep, in bytes (multistream-select's own limit); longer ones are
/// skipped.
pub const MAX_PROTOCOL_NAME_LEN: usize = 1024;
/// Longest protocol or agent version we keep, in bytes; longer ones are cut.
pub const MAX_VERSION_LEN: usize = 256;
/// Longest node name we keep, in bytes (the `pheromone_name` extension); longer ones are
/// cut on a character boundary.
pub const MAX_NAME_LEN: usize = 256;

/// What a peer tells about itself in answer to an identify request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifyInfo {
    /// The peer's public key; its [`PeerId`] must be the peer the connection authenticated.
    pub public_key: PublicKey,
    /// Addresses the peer listens on, most preferred first.
    pub listen_addrs: Vec<Multiaddr>,
    /// Protocols the peer accepts inbound streams for.
    pub protocols: Vec<String>,
    /// The address the peer sees our side of the connection at, if it says.
    pub observed_addr: Option<Multiaddr>,
    /// The protocol family, e.g. `/pheromone/0.1.0` or `ipfs/0.1.0`; empty if not sent.
    pub protocol_version: String,
    /// The implementation, e.g. `pheromone/0.1.0`; empty if not sent.
    pub agent_version: String,
    /// The peer's human name (`luda`), our extension in field 1000; `None` if not sent
    /// (every non-pheromone peer). Names are aliases: several peers may share one.
    pub pheromone_name: Option<String>,
}

/// An identify push update: like [`IdentifyInfo`], but any field may be missing, in which
/// case the receiver keeps what it knew (identify spec, "identify/push").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentifyPush {
    /// The peer's public key, if sent.
    pub public_key: Option<PublicKey>,
    /// New listen addresses; empty means unchanged.
    pub listen_addrs: Vec<Multiaddr>,
    /// New protocol list; empty means unchanged.
    pub protocols: Vec<String>,
    /// Our address as the peer sees it, if sent.
    pub observed_addr: Option<Multiaddr>,
    /// The protocol family, if sent.
    pub protocol_version: Option<String>,
    /// The implementation, if sent.
    pub agent_version: Option<String>,
    /// The peer's human name, if sent.
    pub pheromone_name: Option<String>,
}

impl IdentifyInfo {
    /// The peer ID of [`Self::public_key`].
    pub fn peer_id(&self) -> PeerId {
        self.public_key.to_peer_id()
    }

    /// Appends the framed message (varint length, then the protobuf) to `out`.
    ///
    /// Fails, leaving `out` untouched, if the body would exceed [`MAX_SEND_LEN`].
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), IdentifyError> {
        let proto = IdentifyProto {
            protocol_version: non_empty(&self.protocol_version),
            agent_version: non_empty(&self.agent_version),
            public_key: Some(self.public_key.to_protobuf_encoding()),
            listen_addrs: self.listen_addrs.iter().map(Multiaddr::to_bytes).collect(),
            observed_addr: self.observed_addr.as_ref().map(Multiaddr::to_bytes),
            protocols: self
                .protocols
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect(),
            pheromone_name: self.pheromone_name.as_deref().and_then(non_empty),
        };
        let len = proto.encoded_len();
        if len > MAX_SEND_LEN {
            return Err(IdentifyError::MessageTooLarge {
                len,
                max: MAX_SEND_LEN,
            });
        }
        wire::write_frame(&proto.encode_to_vec(), out);
        Ok(())
    }

    /// Decodes one frame from the front of `buf`: the message and the bytes it took, or
    /// `Ok(None)` if the frame is not complete yet.
    pub fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, IdentifyError> {
        match IdentifyPush::decode(buf)? {
            Some((push, used)) => Ok(Some((push.try_into()?, used))),
            None => Ok(None),
        }
    }

    /// Decodes everything a peer wrote on an identify stream before closing it, merging
    /// the frames as protobuf merges messages (later single fields win, lists add up).
    pub fn decode_stream(buf: &[u8]) -> Result<Self, IdentifyError> {
        IdentifyPush::decode_stream(buf)?.try_into()
    }
}

impl IdentifyPush {
    /// Decodes one frame from the front of `buf`: the update and the bytes it took, or
    /// `Ok(None)` if the frame is not complete yet.
    pub fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, IdentifyError> {
        let Some((body, used)) = wire::split_frame(buf)? else {
            return Ok(None);
        };
        let mut push = Self::default();
        push.merge_body(body)?;
        Ok(Some((push, used)))
    }

    /// Decodes everything a peer wrote on a push stream before closing it (see
    /// [`IdentifyInfo::decode_stream`]).
    pub fn decode_stream(mut buf: &[u8]) -> Result<Self, IdentifyError> {
        let mut push = Self::default();
        let mut frames = 0;
        while !buf.is_empty() {
            if frames == MAX_FRAMES {
                return Err(IdentifyError::TooManyFrames { max: MAX_FRAMES });
            }
            let (body, used) = wire::split_frame(buf)?.ok_or(IdentifyError::Truncated)?;
            push.merge_body(body)?;
            buf = &buf[used..];
            frames += 1;
        }
        if frames == 0 {
            return Err(IdentifyError::NoMessage);
        }
        Ok(push)
    }

    /// Merges one frame body into `self`, applying the per-field limits.
    fn merge_body(&mut self, body: &[u8]) -> Result<(), IdentifyError> {
        let proto =
            IdentifyProto::decode(body).map_err(|e| IdentifyError::Protobuf(e.to_string()))?;
        if let Some(key) = proto.public_key {
            self.public_key = Some(
                PublicKey::from_protobuf_encoding(&key).map_err(IdentifyError::InvalidPublicKey)?,
            );
        }
        if let Some(version) = proto.protocol_version {
            self.protocol_version = Some(lossy_capped(&version, MAX_VERSION_LEN));
        }
        if let Some(version) = proto.agent_version {
            self.agent_version = Some(lossy_capped(&version, MAX_VERSION_LEN));
        }
        if let Some(name) = proto.pheromone_name {
            let name = lossy_capped(&name, MAX_NAME_LEN);
            self.pheromone_name = (!name.is_empty()).then_some(name);
        }
        for bytes in proto.listen_addrs {
            if self.listen_addrs.len() == MAX_LISTEN_ADDRS {
                tracing::debug!(
                    max = MAX_LISTEN_ADDRS,
                    "dropping extra identify listen addresses"
                );
                break;
            }
            match Multiaddr::from_bytes(&bytes) {
                Ok(addr) => self.listen_addrs.push(addr),
                Err(error) => tracing::debug!(%error, "skipping identify listen address"),
            }
        }
        if let Some(bytes) = proto.observed_addr {
            match Multiaddr::from_bytes(&bytes) {
                Ok(addr) => self.observed_addr = Some(addr),
                Err(error) => tracing::debug!(%error, "ignoring identify observed address"),
            }
        }
        for bytes in proto.protocols {
            if self.protocols.len() == MAX_PROTOCOLS {
                tracing::debug!(max = MAX_PROTOCOLS, "dropping extra identify protocols");
                break;
            }
            match String::from_utf8(bytes) {
                Ok(name) if !name.is_empty() && name.len() <= MAX_PROTOCOL_NAME_LEN => {
                    self.protocols.push(name)
                }
                _ => tracing::debug!("skipping empty, overlong or non-UTF-8 identify protocol"),
            }
        }
        Ok(())
    }
}

impl TryFrom<IdentifyPush> for IdentifyInfo {
    type Error = IdentifyError;

    /// A complete answer needs the public key; everything else may be missing.
    fn try_from(push: IdentifyPush) -> Result<Self, IdentifyError> {
        Ok(Self {
            public_key: push.public_key.ok_or(IdentifyError::MissingPublicKey)?,
            listen_addrs: push.listen_addrs,
            protocols: push.protocols,
            observed_addr: push.observed_addr,
            protocol_version: push.protocol_version.unwrap_or_default(),
            agent_version: push.agent_version.unwrap_or_default(),
            pheromone_name: push.pheromone_name,
        })
    }
}

fn non_empty(text: &str) -> Option<Vec<u8>> {
    (!text.is_empty()).then(|| text.as_bytes().to_vec())
}

/// The bytes as text (invalid UTF-8 replaced), cut to `max` bytes on a character boundary.
fn lossy_capped(bytes: &[u8], max: usize) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// Entry points for fuzz targets. Each takes arbitrary bytes and must never panic.
#[doc(hidden)]
pub mod fuzzing {
    use super::{IdentifyInfo, IdentifyPush};

    /// Decodes `data` as one frame, as a whole stream, and as a push; a decoded message
    /// small enough to send must survive an encode/decode round trip.
    pub fn fuzz_decode(data: &[u8]) {
        let _ = IdentifyPush::decode_stream(data);
        if let Ok(Some((info, used))) = IdentifyInfo::decode(data) {
            assert!(used <= data.len());
            let mut out = Vec::new();
            if info.encode(&mut out).is_ok() {
                let back = IdentifyInfo::decode_stream(&out).expect("re-encoded message decodes");
                assert_eq!(back, info);
            }
        }
    }
}

#[cfg(test)]
mod tests;
