//! The libp2p kad `Message` protobuf, the typed requests and responses we serve
//! (`FIND_NODE`, `PING`). On a stream each message is length-prefixed (an unsigned
//! varint); that framing is the overlay driver's, so the bytes here are bare messages.
//!
//! Encoding goes through a prost-derived [`MessageProto`] that mirrors the spec's message
//! (proto3 in libp2p/specs `kad-dht/README.md`). Decoding does not: a prost decode would
//! allocate every one of the 10,000 peers a hostile response may list before we could cap
//! them. Instead a small field walker reads the top-level fields, decodes the first
//! `max_peers` `closerPeers` entries (each with at most `max_addrs` addresses) and steps
//! over the rest without allocating, so the work per message is bounded by its length and
//! the caps, whatever it lists. The record, provider and value fields are skipped: this
//! module serves peer routing only. What the messages mean is decided in `state.rs`.

use super::error::WireError;
use crate::addr::Multiaddr;
use crate::identity::PeerId;
use crate::varint;

/// Largest request body we read. A FIND_NODE request is about 50 bytes; the cap leaves
/// room for other implementations' unknown fields.
pub const MAX_REQUEST_LEN: usize = 4 * 1024;

/// Largest response body we read. Twenty peers with eight addresses each take about 6 KiB;
/// the cap is generous so that a large but honest response is not an error, while the
/// per-response peer cap keeps the work bounded.
pub const MAX_RESPONSE_LEN: usize = 512 * 1024;

/// Longest `key` we accept in a FIND_NODE request (a peer ID multihash is at most 44
/// bytes; CIDs used as keys by other implementations are a little longer).
pub const MAX_KEY_LEN: usize = 80;

/// `Message.MessageType` values of the spec.
const TYPE_FIND_NODE: i32 = 4;
const TYPE_PING: i32 = 5;

/// `message Message` of the libp2p kad-dht spec (proto3), the fields we write.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct MessageProto {
    #[prost(int32, tag = "1")]
    pub(crate) r#type: i32,
    #[prost(int32, tag = "10")]
    pub(crate) cluster_level_raw: i32,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) key: Vec<u8>,
    #[prost(message, repeated, tag = "8")]
    pub(crate) closer_peers: Vec<PeerProto>,
    #[prost(message, repeated, tag = "9")]
    pub(crate) provider_peers: Vec<PeerProto>,
}

/// `message Message.Peer`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PeerProto {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) id: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub(crate) addrs: Vec<Vec<u8>>,
    #[prost(int32, tag = "3")]
    pub(crate) connection: i32,
}

/// `Message.ConnectionType`: what the sender says about its link to a listed peer.
/// Advisory only; we never trust it for anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectionType {
    /// No connection and nothing known (the default).
    #[default]
    NotConnected,
    /// The sender has a live connection.
    Connected,
    /// The sender connected recently.
    CanConnect,
    /// The sender tried hard and failed.
    CannotConnect,
}

impl ConnectionType {
    fn to_i32(self) -> i32 {
        match self {
            Self::NotConnected => 0,
            Self::Connected => 1,
            Self::CanConnect => 2,
            Self::CannotConnect => 3,
        }
    }

    fn from_i32(value: u64) -> Self {
        match value {
            1 => Self::Connected,
            2 => Self::CanConnect,
            3 => Self::CannotConnect,
            _ => Self::NotConnected,
        }
    }
}

/// One `closerPeers` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KadPeer {
    /// The peer.
    pub id: PeerId,
    /// Its addresses as the sender knows them (unverified).
    pub addrs: Vec<Multiaddr>,
    /// The sender's link to it.
    pub connection: ConnectionType,
}

/// A request we serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `FIND_NODE`: the peers closest to `SHA-256(key)`; `key` is a peer ID's multihash.
    FindNode {
        /// The key bytes as sent.
        key: Vec<u8>,
    },
    /// `PING`: answered with `PING`.
    Ping,
}

/// A response we understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Answer to `FIND_NODE`.
    FindNode {
        /// The peers listed, at most `max_peers` of them.
        closer_peers: Vec<KadPeer>,
        /// Entries left unread beyond `max_peers`.
        ignored: usize,
        /// Entries whose peer ID did not parse (skipped).
        invalid: usize,
    },
    /// Answer to `PING`.
    Ping,
}

/// Caps applied while decoding a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// `closerPeers` entries decoded; the rest are stepped over.
    pub max_peers: usize,
    /// Addresses decoded per peer; the rest are stepped over.
    pub max_addrs: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_peers: 40,
            max_addrs: 8,
        }
    }
}

/// The body itself when it fits `max`; on a stream the driver has already cut it out of
/// its length prefix, so this only guards callers that did not.
fn checked_body(body: &[u8], max: usize) -> Result<&[u8], WireError> {
    if body.len() > max {
        return Err(WireError::FrameTooLarge {
            len: body.len() as u64,
            max,
        });
    }
    Ok(body)
}

fn write_body(message: &MessageProto, out: &mut Vec<u8>) {
    out.reserve(prost::Message::encoded_len(message));
    // Encoding into a Vec cannot run out of space.
    let _ = prost::Message::encode(message, out);
}

fn empty(r#type: i32) -> MessageProto {
    MessageProto {
        r#type,
        cluster_level_raw: 0,
        key: Vec::new(),
        closer_peers: Vec::new(),
        provider_peers: Vec::new(),
    }
}

impl Request {
    /// The spec's `MessageType` number of this request.
    pub fn message_type(&self) -> i32 {
        match self {
            Self::FindNode { .. } => TYPE_FIND_NODE,
            Self::Ping => TYPE_PING,
        }
    }

    /// Appends the request's bytes (no length prefix: the stream framing adds it) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut message = empty(self.message_type());
        if let Self::FindNode { key } = self {
            message.key.clone_from(key);
        }
        write_body(&message, out);
    }

    /// Reads one whole request (the bytes between its length prefix and the next).
    pub fn decode(frame: &[u8]) -> Result<Self, WireError> {
        let body = checked_body(frame, MAX_REQUEST_LEN)?;
        let mut r#type = 0i32;
        let mut key: Option<&[u8]> = None;
        for field in Fields(body) {
            match field? {
                (1, Value::Varint(v)) => r#type = v as i32,
                (2, Value::Bytes(b)) => key = Some(b),
                (1 | 2, _) => return Err(proto_error("field of the wrong wire type")),
                _ => {}
            }
        }
        match r#type {
            TYPE_FIND_NODE => match key {
                Some(key) if !key.is_empty() && key.len() <= MAX_KEY_LEN => {
                    Ok(Self::FindNode { key: key.to_vec() })
                }
                other => Err(WireError::BadKey(other.map_or(0, <[u8]>::len))),
            },
            TYPE_PING => Ok(Self::Ping),
            other => Err(WireError::UnsupportedType(other)),
        }
    }
}

impl Response {
    /// The spec's `MessageType` number of this response.
    pub fn message_type(&self) -> i32 {
        match self {
            Self::FindNode { .. } => TYPE_FIND_NODE,
            Self::Ping => TYPE_PING,
        }
    }

    /// Appends the response's bytes (no length prefix) to `out` (`ignored` and `invalid`
    /// are not sent).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::FindNode { closer_peers, .. } => encode_find_node_response(
                closer_peers
                    .iter()
                    .map(|p| (&p.id, p.addrs.as_slice(), p.connection)),
                out,
            ),
            Self::Ping => write_body(&empty(TYPE_PING), out),
        }
    }

    /// Reads one whole response (no length prefix) to a request of type `expected` (see
    /// [`Request::message_type`]), decoding at most `limits` worth of peers.
    pub fn decode(frame: &[u8], expected: i32, limits: DecodeLimits) -> Result<Self, WireError> {
        let body = checked_body(frame, MAX_RESPONSE_LEN)?;
        let mut r#type = 0i32;
        let mut closer_peers = Vec::new();
        let (mut ignored, mut invalid) = (0, 0);
        for field in Fields(body) {
            match field? {
                (1, Value::Varint(v)) => r#type = v as i32,
                (8, Value::Bytes(entry)) => {
                    if closer_peers.len() + invalid >= limits.max_peers {
                        ignored += 1;
                        continue;
                    }
                    match decode_peer(entry, limits.max_addrs)? {
                        Some(peer) => closer_peers.push(peer),
                        None => invalid += 1,
                    }
                }
                (1 | 8, _) => return Err(proto_error("field of the wrong wire type")),
                _ => {}
            }
        }
        if r#type != expected {
            return Err(WireError::TypeMismatch {
                expected,
                got: r#type,
            });
        }
        match r#type {
            TYPE_FIND_NODE => Ok(Self::FindNode {
                closer_peers,
                ignored,
                invalid,
            }),
            TYPE_PING => Ok(Self::Ping),
            other => Err(WireError::UnsupportedType(other)),
        }
    }
}

/// Appends a FIND_NODE response listing `peers` (ID, addresses, connection) to
/// `out`, straight from borrowed data: the table answers every FIND_NODE, and building an
/// owned message first would copy every listed address once more. The bytes are those
/// prost writes for the same `MessageProto` (the tests compare them).
pub fn encode_find_node_response<'a>(
    peers: impl Iterator<Item = (&'a PeerId, &'a [Multiaddr], ConnectionType)>,
    out: &mut Vec<u8>,
) {
    let mut fields = Vec::with_capacity(128);
    let entries = peers.map(|(id, addrs, connection)| {
        fields.clear();
        encode_peer_fields(id, addrs, &mut fields);
        (fields.clone(), connection)
    });
    encode_find_node_response_from_fields(entries, out);
}

/// Writes the ID and address fields of a `Peer` message (everything but the connection
/// type, which changes from one answer to the next) to `out`. The routing table keeps
/// these bytes per entry so that answering FIND_NODE copies bytes instead of encoding.
pub(crate) fn encode_peer_fields(id: &PeerId, addrs: &[Multiaddr], out: &mut Vec<u8>) {
    let id = id.as_bytes();
    out.push(0x0a);
    varint::encode(id.len() as u64, out);
    out.extend_from_slice(id);
    let mut addr_bytes = Vec::with_capacity(32);
    for addr in addrs {
        addr_bytes.clear();
        addr.write_bytes(&mut addr_bytes);
        out.push(0x12);
        varint::encode(addr_bytes.len() as u64, out);
        out.extend_from_slice(&addr_bytes);
    }
}

/// [`encode_find_node_response`] from `Peer` fields written by [`encode_peer_fields`].
pub(crate) fn encode_find_node_response_from_fields<F: AsRef<[u8]>>(
    peers: impl Iterator<Item = (F, ConnectionType)>,
    out: &mut Vec<u8>,
) {
    let body = out;
    body.reserve(1024);
    body.extend_from_slice(&[0x08, TYPE_FIND_NODE as u8]);
    for (fields, connection) in peers {
        let fields = fields.as_ref();
        let connection = connection.to_i32();
        let len = fields.len() + if connection != 0 { 2 } else { 0 };
        body.push(0x42);
        varint::encode(len as u64, body);
        body.extend_from_slice(fields);
        if connection != 0 {
            body.extend_from_slice(&[0x18, connection as u8]);
        }
    }
}

/// One `Peer` entry: `None` when its ID does not parse (the entry is skipped, the message
/// is not failed for it, as other implementations list peers we cannot name).
/// Addresses that do not parse are skipped; at most `max_addrs` are kept.
fn decode_peer(entry: &[u8], max_addrs: usize) -> Result<Option<KadPeer>, WireError> {
    let mut id = None;
    let mut addrs = Vec::new();
    let mut connection = ConnectionType::NotConnected;
    for field in Fields(entry) {
        match field? {
            (1, Value::Bytes(b)) => id = Some(b),
            (2, Value::Bytes(b)) if addrs.len() < max_addrs => {
                if let Ok(addr) = Multiaddr::from_bytes(b) {
                    addrs.push(addr);
                }
            }
            (2, Value::Bytes(_)) => {}
            (3, Value::Varint(v)) => connection = ConnectionType::from_i32(v),
            (1..=3, _) => return Err(proto_error("peer field of the wrong wire type")),
            _ => {}
        }
    }
    Ok(id
        .and_then(|id| PeerId::from_bytes(id).ok())
        .map(|id| KadPeer {
            id,
            addrs,
            connection,
        }))
}

fn proto_error(what: &str) -> WireError {
    WireError::Protobuf(what.to_owned())
}

/// A protobuf field value, borrowed from the buffer.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Iterates the top-level fields of a protobuf message without allocating. Stops at the
/// first error (after yielding it).
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let item = self.read();
        if item.is_err() {
            self.0 = &[];
        }
        Some(item)
    }
}

impl<'a> Fields<'a> {
    fn read(&mut self) -> Result<(u32, Value<'a>), WireError> {
        let key = self.varint()?;
        let field = u32::try_from(key >> 3)
            .ok()
            .filter(|&f| f != 0)
            .ok_or_else(|| proto_error("invalid field number"))?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.skip(8)?;
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| proto_error("length out of range"))?;
                Value::Bytes(self.skip(len)?)
            }
            5 => {
                self.skip(4)?;
                Value::Fixed
            }
            _ => return Err(proto_error("unsupported wire type (groups or invalid)")),
        };
        Ok((field, value))
    }

    /// A protobuf varint (up to ten bytes, unlike the multiformats ones).
    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (i, &byte) in self.0.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Ok(value);
            }
        }
        Err(proto_error("truncated or overlong varint"))
    }

    fn skip(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        if len > self.0.len() {
            return Err(proto_error("field runs past the end of the message"));
        }
        let (head, tail) = self.0.split_at(len);
        self.0 = tail;
        Ok(head)
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
