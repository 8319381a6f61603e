//! Byte layout of the relay handshake: varint-length-prefixed CONNECT and RESPONSE
//! messages, each starting with a version and a kind byte.
//!
//! The decoder reads one message off the front of a buffer and leaves everything after
//! it untouched — after an `Ok` response those bytes already belong to the relayed
//! connection. "Not enough bytes yet" is `Ok(None)`; every length is capped before
//! anything is buffered for it.

use super::RelayError;
use crate::identity::PeerId;
use crate::reader::{ReadError, Reader};
use crate::varint;
use bytes::BytesMut;

/// Wire version byte.
pub const VERSION: u8 = 1;
/// Kind byte of a CONNECT request.
pub const KIND_CONNECT: u8 = 0x01;
/// Kind byte of a RESPONSE.
pub const KIND_RESPONSE: u8 = 0x02;
/// Default limit on the links a circuit may cross (the source's `max_hops`).
pub const DEFAULT_MAX_HOPS: u8 = 8;
/// Largest hop budget a decoder accepts; a relay refuses more (so a circuit can never be
/// longer than this many links, whatever the source asks).
pub const MAX_HOP_BUDGET: u8 = 32;
/// Longest message body (after the length prefix).
pub const MAX_MESSAGE_LEN: usize = 512;
/// Longest status text in a RESPONSE, in bytes.
pub const MAX_TEXT_LEN: usize = 256;
/// Longest peer ID on the wire.
pub const MAX_PEER_ID_LEN: usize = 44;

/// "Open a circuit from `source` to `destination`." Sent by the source to its next hop,
/// and by every relay to its own next hop with [`Connect::forwarded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect {
    /// Chosen by the source (at random), echoed in every response; lets relays log and
    /// deduplicate, and lets a relay refuse a circuit that comes back to it (a loop).
    pub circuit_id: u64,
    /// The node opening the circuit; the destination authenticates it again in Noise.
    pub source: PeerId,
    /// The node the circuit must reach.
    pub destination: PeerId,
    /// How many more links the request may be forwarded over after the one it arrived on.
    pub budget: u8,
    /// Links the request has crossed, the one it arrived on included.
    pub hops: u8,
}

impl Connect {
    /// The request a source sends to its first hop for a circuit of at most `max_hops`
    /// links (capped to [`MAX_HOP_BUDGET`]).
    pub fn new(circuit_id: u64, source: PeerId, destination: PeerId, max_hops: u8) -> Self {
        Self {
            circuit_id,
            source,
            destination,
            budget: max_hops.clamp(1, MAX_HOP_BUDGET) - 1,
            hops: 1,
        }
    }

    /// The request a relay forwards to its next hop: one less budget, one more hop; a
    /// [`Status::HopLimit`] error when the budget is spent.
    pub fn forwarded(&self) -> Result<Connect, Status> {
        if self.budget == 0 {
            return Err(Status::HopLimit);
        }
        Ok(Connect {
            budget: self.budget - 1,
            hops: self.hops.saturating_add(1),
            ..*self
        })
    }
}

/// The outcome of a circuit request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The circuit is open end to end; raw bytes follow.
    Ok,
    /// A relay had no route to the destination.
    NoRoute,
    /// The hop budget ran out before the destination.
    HopLimit,
    /// A relay does not relay (turned off by its operator).
    RelayDisabled,
    /// A relay is at its limit of circuits or bytes; try later or another way.
    ResourceLimit,
    /// The destination does not accept relayed connections (or not from this source).
    DestinationRefused,
    /// The next hop could not be reached (its link died, its stream could not open).
    ConnectFailed,
    /// The request came back to a relay it already crossed.
    Loop,
    /// A relay waited too long for the next hop's answer.
    Timeout,
    /// A status code this version does not know; treat as a failure.
    Other(u8),
}

impl Status {
    /// The code on the wire.
    pub fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::NoRoute => 1,
            Status::HopLimit => 2,
            Status::RelayDisabled => 3,
            Status::ResourceLimit => 4,
            Status::DestinationRefused => 5,
            Status::ConnectFailed => 6,
            Status::Loop => 7,
            Status::Timeout => 8,
            Status::Other(code) => code,
        }
    }

    /// The status of a wire code (unknown codes are kept as [`Status::Other`]).
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Status::Ok,
            1 => Status::NoRoute,
            2 => Status::HopLimit,
            3 => Status::RelayDisabled,
            4 => Status::ResourceLimit,
            5 => Status::DestinationRefused,
            6 => Status::ConnectFailed,
            7 => Status::Loop,
            8 => Status::Timeout,
            other => Status::Other(other),
        }
    }
}

/// The answer to a [`Connect`], passed back unchanged by every relay on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request's circuit id.
    pub circuit_id: u64,
    /// How it went.
    pub status: Status,
    /// With `Ok`: links of the whole circuit; otherwise the `hops` of the request at the
    /// node that refused it.
    pub hops: u8,
    /// Human-readable detail (may be empty), at most [`MAX_TEXT_LEN`] bytes; longer text
    /// is cut at a character boundary when encoding.
    pub text: String,
}

/// One handshake message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayMessage {
    /// A circuit request.
    Connect(Connect),
    /// Its answer.
    Response(Response),
}

impl RelayMessage {
    /// Appends the length-prefixed message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(2 + 8 + 2 * (1 + MAX_PEER_ID_LEN) + 2);
        body.push(VERSION);
        match self {
            RelayMessage::Connect(c) => {
                body.push(KIND_CONNECT);
                body.extend_from_slice(&c.circuit_id.to_be_bytes());
                put_peer(&c.source, &mut body);
                put_peer(&c.destination, &mut body);
                body.push(c.budget.min(MAX_HOP_BUDGET));
                body.push(c.hops);
            }
            RelayMessage::Response(r) => {
                body.push(KIND_RESPONSE);
                body.extend_from_slice(&r.circuit_id.to_be_bytes());
                body.push(r.status.code());
                body.push(r.hops);
                let mut end = r.text.len().min(MAX_TEXT_LEN);
                while !r.text.is_char_boundary(end) {
                    end -= 1;
                }
                varint::encode(end as u64, &mut body);
                body.extend_from_slice(&r.text.as_bytes()[..end]);
            }
        }
        varint::encode(body.len() as u64, out);
        out.extend_from_slice(&body);
    }

    /// The length-prefixed message as a fresh vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

fn put_peer(peer: &PeerId, out: &mut Vec<u8>) {
    let bytes = peer.as_bytes();
    // At most MAX_PEER_ID_LEN (44) bytes.
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}

/// Takes one message off the front of `buf`; `Ok(None)` until it is whole. Bytes after
/// the message stay in `buf`.
pub fn decode(buf: &mut BytesMut) -> Result<Option<RelayMessage>, RelayError> {
    let frame = varint::decode_frame(buf, MAX_MESSAGE_LEN).map_err(|e| match e {
        varint::FrameError::TooLarge { len, max } => RelayError::LengthCap {
            field: "message length",
            len,
            max,
        },
        _ => RelayError::Varint("message length"),
    })?;
    let Some(body) = frame else {
        return Ok(None);
    };
    decode_body(&body).map(Some)
}

fn decode_body(body: &[u8]) -> Result<RelayMessage, RelayError> {
    let mut r = Reader::new(body);
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(RelayError::UnsupportedVersion(version));
    }
    let message = match r.u8("kind")? {
        KIND_CONNECT => {
            let circuit_id = r.u64_be("circuit id")?;
            let source = r.peer("source")?;
            let destination = r.peer("destination")?;
            let budget = r.u8("budget")?;
            if budget > MAX_HOP_BUDGET {
                return Err(RelayError::HopBudget(budget));
            }
            RelayMessage::Connect(Connect {
                circuit_id,
                source,
                destination,
                budget,
                hops: r.u8("hops")?,
            })
        }
        KIND_RESPONSE => {
            let circuit_id = r.u64_be("circuit id")?;
            let status = Status::from_code(r.u8("status")?);
            let hops = r.u8("hops")?;
            let text_len = r.varint("text length")?;
            if text_len > MAX_TEXT_LEN as u64 {
                return Err(RelayError::LengthCap {
                    field: "status text",
                    len: text_len,
                    max: MAX_TEXT_LEN,
                });
            }
            let raw = r.take(text_len as usize, "status text")?;
            let text = std::str::from_utf8(raw)
                .map_err(|_| RelayError::BadText)?
                .to_owned();
            RelayMessage::Response(Response {
                circuit_id,
                status,
                hops,
                text,
            })
        }
        other => return Err(RelayError::UnknownKind(other)),
    };
    let left = r.remaining();
    if left != 0 {
        return Err(RelayError::TrailingBytes(left));
    }
    Ok(message)
}

impl From<ReadError> for RelayError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Truncated(what) => RelayError::Truncated(what),
            ReadError::Varint(what) => RelayError::Varint(what),
        }
    }
}

/// The fields of this protocol, read off the shared [`Reader`].
trait RelayFields {
    fn peer(&mut self, what: &'static str) -> Result<PeerId, RelayError>;
}

impl RelayFields for Reader<'_> {
    fn peer(&mut self, what: &'static str) -> Result<PeerId, RelayError> {
        let len = usize::from(self.u8(what)?);
        if len > MAX_PEER_ID_LEN {
            return Err(RelayError::LengthCap {
                field: what,
                len: len as u64,
                max: MAX_PEER_ID_LEN,
            });
        }
        PeerId::from_bytes(self.take(len, what)?).map_err(|_| RelayError::BadPeerId(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use proptest::prelude::*;

    fn peer(n: u8) -> PeerId {
        Keypair::from_seed([n; 32]).peer_id()
    }

    fn arb_message() -> impl Strategy<Value = RelayMessage> {
        prop_oneof![
            (
                any::<u64>(),
                any::<u8>(),
                any::<u8>(),
                0..=MAX_HOP_BUDGET,
                any::<u8>()
            )
                .prop_map(|(circuit_id, s, d, budget, hops)| RelayMessage::Connect(
                    Connect {
                        circuit_id,
                        source: peer(s),
                        destination: peer(d),
                        budget,
                        hops,
                    }
                )),
            (any::<u64>(), any::<u8>(), any::<u8>(), "\\PC{0,60}").prop_map(
                |(circuit_id, code, hops, text)| RelayMessage::Response(Response {
                    circuit_id,
                    status: Status::from_code(code),
                    hops,
                    text,
                })
            ),
        ]
    }

    #[test]
    fn a_circuit_request_walks_its_budget_down() {
        let c = Connect::new(7, peer(1), peer(2), DEFAULT_MAX_HOPS);
        assert_eq!((c.budget, c.hops), (7, 1));
        let mut at = c;
        for _ in 0..7 {
            at = at.forwarded().unwrap();
        }
        assert_eq!((at.budget, at.hops), (0, 8));
        assert_eq!(at.forwarded(), Err(Status::HopLimit));
        assert_eq!(
            Connect::new(1, peer(1), peer(2), 200).budget,
            MAX_HOP_BUDGET - 1
        );
    }

    #[test]
    fn bytes_after_the_message_are_left_alone() {
        let ok = RelayMessage::Response(Response {
            circuit_id: 9,
            status: Status::Ok,
            hops: 3,
            text: String::new(),
        });
        let mut stream = ok.to_vec();
        stream.extend_from_slice(b"noise handshake bytes");
        let mut buf = BytesMut::from(&stream[..2]);
        assert_eq!(decode(&mut buf), Ok(None));
        let mut buf = BytesMut::from(&stream[..]);
        assert_eq!(decode(&mut buf), Ok(Some(ok)));
        assert_eq!(&buf[..], b"noise handshake bytes");
    }

    #[test]
    fn hostile_messages_are_typed_errors() {
        let mut huge = BytesMut::from(&[0xff, 0xff, 0x03][..]);
        assert!(matches!(
            decode(&mut huge),
            Err(RelayError::LengthCap { .. })
        ));
        let mut bad = BytesMut::from(&[2, 9, 1][..]);
        assert_eq!(decode(&mut bad), Err(RelayError::UnsupportedVersion(9)));
        let mut bad = BytesMut::from(&[2, 1, 9][..]);
        assert_eq!(decode(&mut bad), Err(RelayError::UnknownKind(9)));
        let mut c = Connect::new(1, peer(1), peer(2), 8);
        c.budget = 200;
        let mut bytes = RelayMessage::Connect(c).to_vec();
        // The encoder caps the budget; forge one above the cap by hand.
        let at = bytes.len() - 2;
        bytes[at] = 200;
        assert_eq!(
            decode(&mut BytesMut::from(&bytes[..])),
            Err(RelayError::HopBudget(200))
        );
        let long = RelayMessage::Response(Response {
            circuit_id: 1,
            status: Status::NoRoute,
            hops: 1,
            text: "é".repeat(200),
        });
        match decode(&mut BytesMut::from(&long.to_vec()[..])) {
            Ok(Some(RelayMessage::Response(r))) => assert_eq!(r.text.len(), 256),
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn round_trip(m in arb_message(), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut bytes = m.to_vec();
            bytes.extend_from_slice(&tail);
            let mut buf = BytesMut::from(&bytes[..]);
            prop_assert_eq!(decode(&mut buf), Ok(Some(m)));
            prop_assert_eq!(&buf[..], &tail[..]);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            super::super::fuzzing::fuzz_decode(&bytes);
        }
    }
}
