//! The broadcast wire format: GOSSIP frames (one signed message) and CONTROL frames
//! (batched IHAVE / ACK / GRAFT / PRUNE / INTEREST entries), plus length-prefix framing
//! for byte streams.
//!
//! Every frame arrives whole (the stream layer delimits frames), so a short frame is
//! malformed, not "incomplete". Every length is checked against its cap before anything is
//! allocated, and nothing here panics on any input. This module neither verifies
//! signatures nor keeps state; see `docs/protocols/broadcast.md` for the byte layout.

use super::error::DecodeError;
use super::MessageId;
use crate::identity::PeerId;
use crate::reader::{ReadError, Reader};
use crate::varint;
use bytes::{Bytes, BytesMut};

/// Wire version byte that starts every frame.
pub const VERSION: u8 = 1;
/// Frame kind of a GOSSIP frame.
pub const KIND_GOSSIP: u8 = 0x01;
/// Frame kind of a CONTROL frame.
pub const KIND_CONTROL: u8 = 0x02;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Longest origin peer ID accepted (an identity multihash of a 42-byte key).
pub const MAX_ORIGIN_LEN: usize = 44;
/// Domain separation prefix of the signed bytes, so that a broadcast signature can never
/// be replayed as a signature of any other pheromone structure.
pub const SIGNING_DOMAIN: &[u8] = b"pheromone-broadcast/1:";
/// Bytes a GOSSIP frame needs beyond its topic and data, at most.
pub const GOSSIP_OVERHEAD: usize =
    SIGNED_OFFSET + 8 + 1 + MAX_ORIGIN_LEN + 2 * varint::MAX_LEN + SIGNATURE_LEN;
/// Bytes a CONTROL frame needs beyond its groups, at most.
pub const CONTROL_OVERHEAD: usize = 2 + varint::MAX_LEN;
/// Bytes one control entry plus a group header may take, at most, beyond the topic name.
pub const CONTROL_ENTRY_MAX: usize = 1 + MessageId::LEN + 3 * varint::MAX_LEN;
/// Offset of the hop counter in a GOSSIP frame; relays rewrite it.
const HOPS_OFFSET: usize = 2;
/// Offset of the path's largest tree-edge weight (u64 big-endian); relays rewrite it.
const PATH_MAX_OFFSET: usize = 3;
/// Offset of the weight of the link the frame is sent over (u64 big-endian).
const LINK_WEIGHT_OFFSET: usize = 11;
/// Offset where the signed part of a GOSSIP frame starts (after the relay-written header:
/// version, kind, hops, path maximum, link weight).
const SIGNED_OFFSET: usize = 19;

const TAG_IHAVE: u8 = 0x01;
const TAG_IHAVE_AGAIN: u8 = 0x02;
const TAG_ACK: u8 = 0x03;
const TAG_GRAFT: u8 = 0x04;
const TAG_PRUNE: u8 = 0x05;
const TAG_INTEREST: u8 = 0x06;
const TAG_TREE: u8 = 0x07;

/// Caps the decoder enforces; derived from [`Config`](super::Config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest frame accepted.
    pub max_frame_len: usize,
    /// Longest topic name.
    pub max_topic_len: usize,
    /// Largest payload.
    pub max_data_len: usize,
    /// Most entries in one control frame (over all groups).
    pub max_control_entries: usize,
}

impl Limits {
    /// The limits a node running `config` enforces.
    pub fn from_config(config: &super::Config) -> Self {
        Self {
            max_frame_len: config.max_frame_len(),
            max_topic_len: config.max_topic_len,
            max_data_len: config.max_data_len,
            max_control_entries: config.max_control_entries,
        }
    }
}

/// A decoded GOSSIP frame, borrowing from the received bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gossip<'a> {
    /// Links this copy crossed, the last one included (1 straight from the origin).
    pub hops: u8,
    /// Largest weight of the tree edges this copy crossed (see the Plumtree cycle rule in
    /// `docs/protocols/broadcast.md`); not signed, rewritten by every relay.
    pub path_max: u64,
    /// Weight of the link this copy arrived over, as the sender knows it; not signed.
    pub link_weight: u64,
    /// The origin's sequence number.
    pub seq: u64,
    /// The node that published the message.
    pub origin: PeerId,
    /// Topic name.
    pub topic: &'a str,
    /// Payload.
    pub data: &'a [u8],
    /// The origin's Ed25519 signature over [`SIGNING_DOMAIN`] ‖ `signed`.
    pub signature: &'a [u8],
    /// The frame bytes the signature covers: everything after the hop counter and before
    /// the signature.
    pub signed: &'a [u8],
}

/// One entry of a CONTROL frame; every entry belongs to a topic group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entry {
    /// "I have this message" — first announcement. The receiver answers with [`Entry::Ack`]
    /// if it has the message too, or sends GRAFT later if it does not.
    IHave {
        /// The message.
        id: MessageId,
        /// Hop count of the announcer's copy; receivers graft the closest announcer.
        hops: u8,
    },
    /// "I have this message" — a re-announcement because no answer came; always answered.
    IHaveAgain {
        /// The message.
        id: MessageId,
        /// Hop count of the announcer's copy.
        hops: u8,
    },
    /// "I have this message too"; never answered.
    Ack(MessageId),
    /// "Send me this message, and push this topic to me eagerly from now on"; `gen` is the
    /// generation the new tree edge gets (part of its weight).
    Graft {
        /// The message wanted.
        id: MessageId,
        /// Generation of the new tree edge.
        gen: u32,
    },
    /// "Stop pushing this topic to me eagerly; announce it lazily instead."
    Prune,
    /// "My distance to the nearest subscriber of this topic, not counting you, is this many
    /// hops" (0: I am subscribed; `u8::MAX`: I no longer want it).
    Interest(u8),
    /// Tree strategy: "the best root I know for this topic is `root`, `dist` hops away, and
    /// you are (or are not) my parent toward it".
    Tree {
        /// Root key (smaller wins).
        root: u64,
        /// Hops to the root.
        dist: u8,
        /// Whether the receiver is the sender's parent.
        parent: bool,
    },
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// One signed message.
    Gossip(Gossip<'a>),
    /// A validated batch of control entries.
    Control(Control<'a>),
}

/// A validated CONTROL frame body; [`Control::for_each`] walks its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control<'a> {
    body: &'a [u8],
    entries: usize,
}

impl<'a> Control<'a> {
    /// Number of entries in the frame.
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether the frame carries no entries.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Calls `f(topic, entry)` for every entry in frame order.
    pub fn for_each(&self, mut f: impl FnMut(&'a str, Entry)) {
        // The body was fully validated by `decode`, so walking it again cannot fail, and
        // the caps are the ones it already passed.
        let caps = Limits {
            max_frame_len: usize::MAX,
            max_topic_len: usize::MAX,
            max_data_len: usize::MAX,
            max_control_entries: usize::MAX,
        };
        let _ = walk_control(self.body, &caps, &mut f);
    }

    /// Collects the entries; convenient for tests and tools.
    pub fn to_vec(&self) -> Vec<(String, Entry)> {
        let mut out = Vec::with_capacity(self.entries);
        self.for_each(|topic, entry| out.push((topic.to_owned(), entry)));
        out
    }
}

/// Decodes one whole frame, enforcing `limits`.
pub fn decode<'a>(frame: &'a [u8], limits: &Limits) -> Result<Frame<'a>, DecodeError> {
    if frame.len() > limits.max_frame_len {
        return Err(DecodeError::Oversized {
            len: frame.len(),
            max: limits.max_frame_len,
        });
    }
    let mut r = Reader::new(frame);
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    match r.u8("kind")? {
        KIND_GOSSIP => decode_gossip(frame, r, limits).map(Frame::Gossip),
        KIND_CONTROL => {
            let body = &frame[r.position()..];
            let entries = walk_control(body, limits, &mut |_, _| {})?;
            Ok(Frame::Control(Control { body, entries }))
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

fn decode_gossip<'a>(
    frame: &'a [u8],
    mut r: Reader<'a>,
    limits: &Limits,
) -> Result<Gossip<'a>, DecodeError> {
    let hops = r.u8("hops")?;
    let path_max = r.u64_be("path maximum")?;
    let link_weight = r.u64_be("link weight")?;
    let seq = r.u64_be("seq")?;
    let origin_len = usize::from(r.u8("origin length")?);
    if origin_len > MAX_ORIGIN_LEN {
        return Err(DecodeError::LengthCap {
            field: "origin",
            len: origin_len as u64,
            max: MAX_ORIGIN_LEN,
        });
    }
    let origin =
        PeerId::from_bytes(r.take(origin_len, "origin")?).map_err(|_| DecodeError::BadOrigin)?;
    let topic = r.topic(limits.max_topic_len)?;
    let data_len = r.len_prefix("data", limits.max_data_len)?;
    let data = r.take(data_len, "data")?;
    let signed_end = r.position();
    let signature = r.take(SIGNATURE_LEN, "signature")?;
    if r.remaining() != 0 {
        return Err(DecodeError::TrailingBytes(r.remaining()));
    }
    Ok(Gossip {
        hops,
        path_max,
        link_weight,
        seq,
        origin,
        topic,
        data,
        signature,
        signed: &frame[SIGNED_OFFSET..signed_end],
    })
}

/// Walks a control body, calling `f` per entry; returns the entry count.
fn walk_control<'a>(
    body: &'a [u8],
    limits: &Limits,
    f: &mut impl FnMut(&'a str, Entry),
) -> Result<usize, DecodeError> {
    let mut r = Reader::new(body);
    let groups = r.len_prefix("group count", limits.max_control_entries)?;
    let mut total = 0usize;
    for _ in 0..groups {
        let topic = r.topic(limits.max_topic_len)?;
        let count = r.len_prefix("entry count", limits.max_control_entries)?;
        total = total.saturating_add(count);
        if total > limits.max_control_entries {
            return Err(DecodeError::LengthCap {
                field: "control entries",
                len: total as u64,
                max: limits.max_control_entries,
            });
        }
        for _ in 0..count {
            let entry = match r.u8("entry tag")? {
                TAG_IHAVE => Entry::IHave {
                    id: r.id()?,
                    hops: r.u8("hops")?,
                },
                TAG_IHAVE_AGAIN => Entry::IHaveAgain {
                    id: r.id()?,
                    hops: r.u8("hops")?,
                },
                TAG_ACK => Entry::Ack(r.id()?),
                TAG_GRAFT => {
                    let id = r.id()?;
                    let gen = r.varint("graft generation")?;
                    let gen =
                        u32::try_from(gen).map_err(|_| DecodeError::Varint("graft generation"))?;
                    Entry::Graft { id, gen }
                }
                TAG_PRUNE => Entry::Prune,
                TAG_INTEREST => Entry::Interest(r.u8("interest distance")?),
                TAG_TREE => {
                    let root = r.u64_be("tree root")?;
                    let dist = r.u8("tree distance")?;
                    let parent = match r.u8("tree parent flag")? {
                        0 => false,
                        1 => true,
                        other => return Err(DecodeError::UnknownEntry(other)),
                    };
                    Entry::Tree { root, dist, parent }
                }
                other => return Err(DecodeError::UnknownEntry(other)),
            };
            f(topic, entry);
        }
    }
    if r.remaining() != 0 {
        return Err(DecodeError::TrailingBytes(r.remaining()));
    }
    Ok(total)
}

impl From<ReadError> for DecodeError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Truncated(what) => DecodeError::Truncated(what),
            ReadError::Varint(what) => DecodeError::Varint(what),
        }
    }
}

/// The fields of this protocol, read off the shared [`Reader`].
trait BroadcastFields<'a> {
    fn len_prefix(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError>;
    fn topic(&mut self, max: usize) -> Result<&'a str, DecodeError>;
    fn id(&mut self) -> Result<MessageId, DecodeError>;
}

impl<'a> BroadcastFields<'a> for Reader<'a> {
    fn len_prefix(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let len = self.varint(what)?;
        if len > max as u64 {
            return Err(DecodeError::LengthCap {
                field: what,
                len,
                max,
            });
        }
        // Fits: it is at most `max`, a usize.
        Ok(len as usize)
    }

    fn topic(&mut self, max: usize) -> Result<&'a str, DecodeError> {
        let len = self.len_prefix("topic", max)?;
        let raw = self.take(len, "topic")?;
        if raw.is_empty() {
            return Err(DecodeError::BadTopic);
        }
        std::str::from_utf8(raw).map_err(|_| DecodeError::BadTopic)
    }

    fn id(&mut self) -> Result<MessageId, DecodeError> {
        let raw = self.take(MessageId::LEN, "message id")?;
        let mut id = [0u8; MessageId::LEN];
        id.copy_from_slice(raw);
        Ok(MessageId(id))
    }
}

/// Encodes an unsigned GOSSIP frame up to (not including) the signature; returns the bytes
/// and the range the signature must cover. The caller appends the signature.
pub(crate) fn encode_gossip_unsigned(
    seq: u64,
    origin: &PeerId,
    topic: &str,
    data: &[u8],
) -> Vec<u8> {
    let origin = origin.as_bytes();
    let mut out = Vec::with_capacity(GOSSIP_OVERHEAD + topic.len() + data.len());
    out.extend_from_slice(&[VERSION, KIND_GOSSIP, 0]);
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&seq.to_be_bytes());
    // Peer IDs are at most MAX_ORIGIN_LEN (44) bytes, so the length fits a byte.
    out.push(origin.len() as u8);
    out.extend_from_slice(origin);
    varint::encode(topic.len() as u64, &mut out);
    out.extend_from_slice(topic.as_bytes());
    varint::encode(data.len() as u64, &mut out);
    out.extend_from_slice(data);
    out
}

/// The bytes an origin signs for a frame produced by [`encode_gossip_unsigned`] (or the
/// `signed` field of a decoded [`Gossip`]): [`SIGNING_DOMAIN`] ‖ `signed`.
pub(crate) fn signing_input(signed: &[u8], scratch: &mut Vec<u8>) {
    scratch.clear();
    scratch.extend_from_slice(SIGNING_DOMAIN);
    scratch.extend_from_slice(signed);
}

/// Builds a complete, signed GOSSIP frame. `sign` receives the bytes to sign.
pub fn encode_gossip(
    seq: u64,
    origin: &PeerId,
    topic: &str,
    data: &[u8],
    sign: impl FnOnce(&[u8]) -> [u8; SIGNATURE_LEN],
) -> Bytes {
    let mut frame = encode_gossip_unsigned(seq, origin, topic, data);
    let mut input = Vec::new();
    signing_input(&frame[SIGNED_OFFSET..], &mut input);
    frame.extend_from_slice(&sign(&input));
    Bytes::from(frame)
}

/// Returns a copy of a GOSSIP frame with its relay-written header replaced.
pub(crate) fn relay_copy(frame: &[u8], hops: u8, path_max: u64, link_weight: u64) -> Bytes {
    let mut out = BytesMut::from(frame);
    if out.len() >= SIGNED_OFFSET {
        out[HOPS_OFFSET] = hops;
        out[PATH_MAX_OFFSET..LINK_WEIGHT_OFFSET].copy_from_slice(&path_max.to_be_bytes());
        out[LINK_WEIGHT_OFFSET..SIGNED_OFFSET].copy_from_slice(&link_weight.to_be_bytes());
    }
    out.freeze()
}

/// Encodes a CONTROL frame from topic groups, in order.
pub fn encode_control<'t>(groups: impl IntoIterator<Item = (&'t str, &'t [Entry])>) -> Bytes {
    let groups: Vec<(&str, &[Entry])> = groups.into_iter().collect();
    let mut out = Vec::with_capacity(
        CONTROL_OVERHEAD
            + groups
                .iter()
                .map(|(t, e)| t.len() + 2 * varint::MAX_LEN + e.len() * (1 + MessageId::LEN))
                .sum::<usize>(),
    );
    out.extend_from_slice(&[VERSION, KIND_CONTROL]);
    varint::encode(groups.len() as u64, &mut out);
    for (topic, entries) in groups {
        encode_group(&mut out, topic, entries);
    }
    Bytes::from(out)
}

fn encode_group(out: &mut Vec<u8>, topic: &str, entries: &[Entry]) {
    varint::encode(topic.len() as u64, out);
    out.extend_from_slice(topic.as_bytes());
    varint::encode(entries.len() as u64, out);
    for entry in entries {
        match *entry {
            Entry::IHave { id, hops } => {
                push_id(out, TAG_IHAVE, id);
                out.push(hops);
            }
            Entry::IHaveAgain { id, hops } => {
                push_id(out, TAG_IHAVE_AGAIN, id);
                out.push(hops);
            }
            Entry::Ack(id) => push_id(out, TAG_ACK, id),
            Entry::Graft { id, gen } => {
                push_id(out, TAG_GRAFT, id);
                varint::encode(u64::from(gen), out);
            }
            Entry::Prune => out.push(TAG_PRUNE),
            Entry::Interest(dist) => out.extend_from_slice(&[TAG_INTEREST, dist]),
            Entry::Tree { root, dist, parent } => {
                out.push(TAG_TREE);
                out.extend_from_slice(&root.to_be_bytes());
                out.extend_from_slice(&[dist, u8::from(parent)]);
            }
        }
    }
}

/// Encodes a CONTROL frame from a node's pending batch, skipping empty topic groups.
pub(crate) fn encode_pending(groups: &[(super::Topic, Vec<Entry>)]) -> Bytes {
    let live = || groups.iter().filter(|(_, e)| !e.is_empty());
    let capacity = CONTROL_OVERHEAD
        + live()
            .map(|(t, e)| t.as_str().len() + 2 * varint::MAX_LEN + e.len() * CONTROL_ENTRY_MAX)
            .sum::<usize>();
    let mut out = Vec::with_capacity(capacity);
    out.extend_from_slice(&[VERSION, KIND_CONTROL]);
    varint::encode(live().count() as u64, &mut out);
    for (topic, entries) in live() {
        encode_group(&mut out, topic.as_str(), entries);
    }
    Bytes::from(out)
}

fn push_id(out: &mut Vec<u8>, tag: u8, id: MessageId) {
    out.push(tag);
    out.extend_from_slice(&id.0);
}

/// Appends `frame` to `out` behind an unsigned-varint length prefix, the framing used when
/// broadcast frames travel over a byte stream.
pub fn encode_length_prefixed(frame: &[u8], out: &mut BytesMut) {
    varint::encode_frame(frame, out);
}

/// Splits one length-prefixed frame off the front of `buf`.
///
/// Returns `Ok(None)` until the whole frame has arrived (read more and call again). A
/// length above `max_frame_len` is an error before anything is buffered for it.
pub fn decode_length_prefixed(
    buf: &mut BytesMut,
    max_frame_len: usize,
) -> Result<Option<Bytes>, DecodeError> {
    varint::decode_frame(buf, max_frame_len).map_err(|e| match e {
        varint::FrameError::TooLarge { len, max } => DecodeError::Oversized {
            len: usize::try_from(len).unwrap_or(usize::MAX),
            max,
        },
        _ => DecodeError::Varint("frame length"),
    })
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
