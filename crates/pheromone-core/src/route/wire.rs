//! The `/pheromone/route/2.0.0` wire format: UPDATE and REQUEST frames (distance-vector
//! routing, every finite route carrying its destination's signature of (destination,
//! seqno)) and TRACE / TRACE_REPLY probes (path discovery for `ping --trace` and the
//! router's own path probes, a reached reply signed by the target), plus length-prefix
//! framing for byte streams.
//!
//! Every frame arrives whole, so a short frame is malformed, not "incomplete" (only the
//! length-prefix layer says "not enough bytes yet"). Every count and length is checked
//! against its cap before anything is allocated, and nothing here panics on any input.
//! No routing decisions here; the byte layout is in `docs/protocols/route.md`.

use super::error::DecodeError;
use crate::identity::PeerId;
use crate::reader::{ReadError, Reader};
use crate::varint;
use bytes::BytesMut;

/// Wire version byte that starts every frame (2: signed records; version 1 frames, which
/// carried none, are refused).
pub const VERSION: u8 = 2;
/// Frame kind of an UPDATE frame.
pub const KIND_UPDATE: u8 = 0x01;
/// Frame kind of a REQUEST (sequence-number request) frame.
pub const KIND_REQUEST: u8 = 0x02;
/// Frame kind of a TRACE probe.
pub const KIND_TRACE: u8 = 0x03;
/// Frame kind of a TRACE_REPLY.
pub const KIND_TRACE_REPLY: u8 = 0x04;
/// The metric that means "unreachable": an entry carrying it is a retraction.
pub const INFINITY: u16 = u16::MAX;
/// Longest peer ID on the wire (an identity multihash of a 42-byte key).
pub const MAX_PEER_ID_LEN: usize = 44;
/// Most peers a trace path may hold (the origin and the destination included).
pub const MAX_TRACE_PATH: usize = 64;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// An Ed25519 signature as carried on the wire.
pub type Signature = [u8; SIGNATURE_LEN];
/// Largest encoding of one UPDATE entry.
pub const MAX_UPDATE_ENTRY_LEN: usize = 1 + MAX_PEER_ID_LEN + 5 + 3 + 1 + SIGNATURE_LEN;
/// Largest encoding of one REQUEST entry.
pub const MAX_REQUEST_ENTRY_LEN: usize = 1 + MAX_PEER_ID_LEN + 5 + 1;
/// Bytes of frame header (version, kind, count) at most.
pub const FRAME_HEADER_MAX: usize = 2 + varint::MAX_LEN;

/// Caps the decoder enforces; see [`Limits::from_config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest frame accepted.
    pub max_frame_len: usize,
    /// Most entries in an UPDATE or REQUEST frame.
    pub max_entries: usize,
}

impl Limits {
    /// The limits a node running `config` enforces.
    pub fn from_config(config: &super::Config) -> Self {
        Self {
            max_frame_len: config.max_frame_len,
            max_entries: config.max_entries_per_frame,
        }
    }
}

/// One route advertisement: "I reach `destination` with this (seqno, metric), in `hops`
/// links". A `metric` of [`INFINITY`] retracts the route.
///
/// `signature` is the destination's own signature of (destination, seqno) (see
/// `route::record`), present exactly when the metric is finite: a relay passes it on
/// unchanged, and nobody but the destination can make one for a new seqno. Metric and hops
/// change at every hop and are not signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateEntry {
    /// The node the route leads to.
    pub destination: PeerId,
    /// The destination's sequence number this route was derived from.
    pub seqno: u32,
    /// Sum of link costs to the destination from the sender; [`INFINITY`] = retraction.
    pub metric: u16,
    /// Links from the sender to the destination.
    pub hops: u8,
    /// The destination's signature of (destination, seqno); `None` on a retraction (and
    /// only there: a finite entry is encoded with it, decoded only with it).
    pub signature: Option<Signature>,
}

/// "Please make a route to `destination` with a sequence number of at least `seqno`
/// reach me": forwarded toward the destination, which raises its sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestEntry {
    /// The destination whose sequence number is wanted.
    pub destination: PeerId,
    /// The sequence number wanted.
    pub seqno: u32,
    /// How many more times the request may be forwarded.
    pub hop_count: u8,
}

/// A trace probe travelling toward `target`; every node appends itself to `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceProbe {
    /// Chosen by the origin (`path[0]`) to match the reply; meaningless elsewhere.
    pub id: u64,
    /// The node being traced.
    pub target: PeerId,
    /// How many more times the probe may be forwarded.
    pub ttl: u8,
    /// The nodes the probe visited, origin first, the sender last.
    pub path: Vec<PeerId>,
}

/// How a trace ended, as carried by a TRACE_REPLY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceStatus {
    /// The probe reached the target; the path is complete.
    Reached,
    /// The last node of the path had no route to the target.
    NoRoute,
    /// The probe ran out of hops (ttl or the path cap).
    HopLimit,
    /// The next hop was already on the path (a transient loop; routing repairs it).
    Loop,
    /// No reply came back in time (produced locally, never sent).
    Timeout,
}

impl TraceStatus {
    fn code(self) -> u8 {
        match self {
            TraceStatus::Reached => 0,
            TraceStatus::NoRoute => 1,
            TraceStatus::HopLimit => 2,
            TraceStatus::Loop => 3,
            TraceStatus::Timeout => 4,
        }
    }

    fn from_code(code: u8) -> Result<Self, DecodeError> {
        Ok(match code {
            0 => TraceStatus::Reached,
            1 => TraceStatus::NoRoute,
            2 => TraceStatus::HopLimit,
            3 => TraceStatus::Loop,
            4 => TraceStatus::Timeout,
            other => return Err(DecodeError::UnknownStatus(other)),
        })
    }
}

/// The answer to a [`TraceProbe`], walked back along the reversed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceReply {
    /// The probe's id.
    pub id: u64,
    /// The probe's target.
    pub target: PeerId,
    /// How the probe ended.
    pub status: TraceStatus,
    /// The probe's path, the node that ended it last.
    pub path: Vec<PeerId>,
    /// With [`TraceStatus::Reached`] (and only then): the target's signature of (id, path),
    /// so that no node on the way back can fake an arrival.
    pub signature: Option<Signature>,
}

/// One routing frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Route advertisements and retractions.
    Update(Vec<UpdateEntry>),
    /// Sequence-number requests.
    Request(Vec<RequestEntry>),
    /// A trace probe.
    Trace(TraceProbe),
    /// A trace answer.
    TraceReply(TraceReply),
}

impl Message {
    /// Bytes [`Message::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let peer = |p: &PeerId| 1 + p.as_bytes().len();
        2 + match self {
            Message::Update(entries) => {
                varint::encoded_len(entries.len() as u64)
                    + entries
                        .iter()
                        .map(|e| {
                            peer(&e.destination)
                                + varint::encoded_len(u64::from(e.seqno))
                                + varint::encoded_len(u64::from(e.metric))
                                + 1
                                + if e.metric == INFINITY {
                                    0
                                } else {
                                    SIGNATURE_LEN
                                }
                        })
                        .sum::<usize>()
            }
            Message::Request(entries) => {
                varint::encoded_len(entries.len() as u64)
                    + entries
                        .iter()
                        .map(|e| peer(&e.destination) + varint::encoded_len(u64::from(e.seqno)) + 1)
                        .sum::<usize>()
            }
            Message::Trace(t) => {
                8 + peer(&t.target) + 1 + 1 + t.path.iter().map(peer).sum::<usize>()
            }
            Message::TraceReply(t) => {
                8 + peer(&t.target)
                    + 1
                    + 1
                    + t.path.iter().map(peer).sum::<usize>()
                    + if t.status == TraceStatus::Reached {
                        SIGNATURE_LEN
                    } else {
                        0
                    }
            }
        }
    }

    /// Appends the frame to `out`. Counts are written as given: the sender keeps them under
    /// the receiver's caps (the router splits its frames by `max_entries_per_frame`, and a
    /// trace path longer than [`MAX_TRACE_PATH`] is truncated to it here).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.push(VERSION);
        match self {
            Message::Update(entries) => {
                out.push(KIND_UPDATE);
                varint::encode(entries.len() as u64, out);
                for e in entries {
                    put_peer(&e.destination, out);
                    varint::encode(u64::from(e.seqno), out);
                    varint::encode(u64::from(e.metric), out);
                    out.push(e.hops);
                    if e.metric != INFINITY {
                        // A finite entry without a signature is a bug of the sender; all
                        // zeros is refused by every receiver, like any bad signature.
                        out.extend_from_slice(&e.signature.unwrap_or([0; SIGNATURE_LEN]));
                    }
                }
            }
            Message::Request(entries) => {
                out.push(KIND_REQUEST);
                varint::encode(entries.len() as u64, out);
                for e in entries {
                    put_peer(&e.destination, out);
                    varint::encode(u64::from(e.seqno), out);
                    out.push(e.hop_count);
                }
            }
            Message::Trace(t) => {
                out.push(KIND_TRACE);
                out.extend_from_slice(&t.id.to_be_bytes());
                put_peer(&t.target, out);
                out.push(t.ttl);
                put_path(&t.path, out);
            }
            Message::TraceReply(t) => {
                out.push(KIND_TRACE_REPLY);
                out.extend_from_slice(&t.id.to_be_bytes());
                put_peer(&t.target, out);
                out.push(t.status.code());
                put_path(&t.path, out);
                if t.status == TraceStatus::Reached {
                    out.extend_from_slice(&t.signature.unwrap_or([0; SIGNATURE_LEN]));
                }
            }
        }
    }

    /// The frame as a fresh vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

fn put_peer(peer: &PeerId, out: &mut Vec<u8>) {
    let bytes = peer.as_bytes();
    // Peer IDs are at most MAX_PEER_ID_LEN (44) bytes, so the length fits a byte.
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

fn put_path(path: &[PeerId], out: &mut Vec<u8>) {
    let path = &path[..path.len().min(MAX_TRACE_PATH)];
    out.push(path.len() as u8);
    for p in path {
        put_peer(p, out);
    }
}

/// Decodes one whole frame, enforcing `limits`.
pub fn decode(frame: &[u8], limits: &Limits) -> Result<Message, DecodeError> {
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
    let message = match r.u8("kind")? {
        KIND_UPDATE => {
            let count = r.count("update entries", limits.max_entries)?;
            // The smallest entry takes 5 bytes, so a count the frame cannot hold is refused
            // before the vector is sized by it.
            let mut entries = Vec::with_capacity(count.min(r.remaining() / 5));
            for _ in 0..count {
                let destination = r.peer("destination")?;
                let seqno = r.varint_u32("seqno")?;
                let metric = u16::try_from(r.varint("metric")?)
                    .map_err(|_| DecodeError::Varint("metric"))?;
                let hops = r.u8("hops")?;
                let signature = if metric == INFINITY {
                    None
                } else {
                    Some(r.signature("record signature")?)
                };
                entries.push(UpdateEntry {
                    destination,
                    seqno,
                    metric,
                    hops,
                    signature,
                });
            }
            Message::Update(entries)
        }
        KIND_REQUEST => {
            let count = r.count("request entries", limits.max_entries)?;
            let mut entries = Vec::with_capacity(count.min(r.remaining() / 4));
            for _ in 0..count {
                entries.push(RequestEntry {
                    destination: r.peer("destination")?,
                    seqno: r.varint_u32("seqno")?,
                    hop_count: r.u8("hop count")?,
                });
            }
            Message::Request(entries)
        }
        KIND_TRACE => Message::Trace(TraceProbe {
            id: r.u64_be("trace id")?,
            target: r.peer("target")?,
            ttl: r.u8("ttl")?,
            path: r.path()?,
        }),
        KIND_TRACE_REPLY => {
            let id = r.u64_be("trace id")?;
            let target = r.peer("target")?;
            let status = TraceStatus::from_code(r.u8("status")?)?;
            let path = r.path()?;
            let signature = if status == TraceStatus::Reached {
                Some(r.signature("trace signature")?)
            } else {
                None
            };
            Message::TraceReply(TraceReply {
                id,
                target,
                status,
                path,
                signature,
            })
        }
        other => return Err(DecodeError::UnknownKind(other)),
    };
    if r.remaining() != 0 {
        return Err(DecodeError::TrailingBytes(r.remaining()));
    }
    Ok(message)
}

/// Prefixes `frame` with its varint length, for byte streams.
pub fn encode_length_prefixed(frame: &[u8], out: &mut Vec<u8>) {
    varint::encode(frame.len() as u64, out);
    out.extend_from_slice(frame);
}

/// Takes one length-prefixed frame off the front of `buf`: `Ok(None)` until it is whole.
/// A prefix above `max_frame_len` is an error before anything is buffered for it.
pub fn decode_length_prefixed(
    buf: &mut BytesMut,
    max_frame_len: usize,
) -> Result<Option<bytes::Bytes>, DecodeError> {
    varint::decode_frame(buf, max_frame_len).map_err(|e| match e {
        varint::FrameError::TooLarge { len, max } => DecodeError::LengthCap {
            field: "frame length",
            len,
            max,
        },
        _ => DecodeError::Varint("frame length"),
    })
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
trait RouteFields {
    fn varint_u32(&mut self, what: &'static str) -> Result<u32, DecodeError>;
    fn count(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError>;
    fn peer(&mut self, what: &'static str) -> Result<PeerId, DecodeError>;
    fn path(&mut self) -> Result<Vec<PeerId>, DecodeError>;
    fn signature(&mut self, what: &'static str) -> Result<Signature, DecodeError>;
}

impl RouteFields for Reader<'_> {
    fn varint_u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        u32::try_from(self.varint(what)?).map_err(|_| DecodeError::Varint(what))
    }

    fn count(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let len = self.varint(what)?;
        if len > max as u64 {
            return Err(DecodeError::LengthCap {
                field: what,
                len,
                max,
            });
        }
        // At most `max`, a usize.
        Ok(len as usize)
    }

    fn peer(&mut self, what: &'static str) -> Result<PeerId, DecodeError> {
        let len = usize::from(self.u8(what)?);
        if len > MAX_PEER_ID_LEN {
            return Err(DecodeError::LengthCap {
                field: what,
                len: len as u64,
                max: MAX_PEER_ID_LEN,
            });
        }
        PeerId::from_bytes(self.take(len, what)?).map_err(|_| DecodeError::BadPeerId(what))
    }

    fn path(&mut self) -> Result<Vec<PeerId>, DecodeError> {
        let count = usize::from(self.u8("path length")?);
        if count > MAX_TRACE_PATH {
            return Err(DecodeError::LengthCap {
                field: "path length",
                len: count as u64,
                max: MAX_TRACE_PATH,
            });
        }
        let mut path = Vec::with_capacity(count.min(self.remaining() / 3));
        for _ in 0..count {
            path.push(self.peer("path entry")?);
        }
        Ok(path)
    }

    fn signature(&mut self, what: &'static str) -> Result<Signature, DecodeError> {
        let mut sig = [0; SIGNATURE_LEN];
        sig.copy_from_slice(self.take(SIGNATURE_LEN, what)?);
        Ok(sig)
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
