//! The yamux wire format: the 12-byte frame header and data frame bodies.
//!
//! A frame is `version (u8) | type (u8) | flags (u16) | stream id (u32) | length (u32)`, all
//! big-endian, followed by `length` body bytes for data frames only. For the other types the
//! length field is not a body length: it is the window delta (window update), the opaque
//! value to echo (ping) or the error code (go away). This module knows nothing about stream
//! state; it validates what can be validated from the bytes alone (version, type, the cap on
//! a data body) and never allocates beyond the body it is handed.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Length of every frame header, in bytes.
pub const HEADER_LEN: usize = 12;

/// The only protocol version the spec defines.
pub const VERSION: u8 = 0;

/// The window every stream starts with in both directions, before any window update
/// (256 KiB, fixed by the spec).
pub const DEFAULT_WINDOW: u32 = 256 * 1024;

/// Why bytes could not be decoded as a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The version byte was not 0; the peer speaks another protocol or the stream is
    /// corrupt. The connection cannot continue.
    #[error("unsupported yamux version {0}")]
    UnsupportedVersion(u8),
    /// The type byte named no frame type the spec defines. The connection cannot continue.
    #[error("unknown yamux frame type {0}")]
    UnknownType(u8),
    /// A data frame announced a body longer than any window we could have granted; it is
    /// rejected from the header alone so that no buffer grows to hold it.
    #[error("data frame body of {len} bytes exceeds the limit of {max} bytes")]
    BodyTooLarge {
        /// The length the header announced.
        len: u32,
        /// The largest body the decoder accepts.
        max: u32,
    },
}

/// The four frame types of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// Stream data; the length field is the body length.
    Data,
    /// A grant of more receive window; the length field is the delta.
    WindowUpdate,
    /// Keep-alive and RTT measurement; the length field is an opaque value to echo.
    Ping,
    /// Session termination; the length field is a [`GoAwayCode`].
    GoAway,
}

impl FrameType {
    /// The type byte on the wire.
    pub const fn to_u8(self) -> u8 {
        match self {
            FrameType::Data => 0,
            FrameType::WindowUpdate => 1,
            FrameType::Ping => 2,
            FrameType::GoAway => 3,
        }
    }

    /// Parses a type byte; `None` for a type the spec does not define.
    pub const fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(FrameType::Data),
            1 => Some(FrameType::WindowUpdate),
            2 => Some(FrameType::Ping),
            3 => Some(FrameType::GoAway),
            _ => None,
        }
    }
}

/// The flags field: a set of [`Flags::SYN`], [`Flags::ACK`], [`Flags::FIN`], [`Flags::RST`].
///
/// Bits the spec does not define are kept as received (and otherwise ignored), so that a
/// future extension does not break decoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u16);

impl Flags {
    /// No flag set.
    pub const NONE: Flags = Flags(0);
    /// Opens a stream (stream frames) or marks an outbound ping.
    pub const SYN: Flags = Flags(0x1);
    /// Accepts a stream (stream frames) or marks a ping reply.
    pub const ACK: Flags = Flags(0x2);
    /// Half-closes the sender's side of a stream.
    pub const FIN: Flags = Flags(0x4);
    /// Resets a stream immediately.
    pub const RST: Flags = Flags(0x8);

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Flags from raw bits, unknown bits included.
    pub const fn from_bits(bits: u16) -> Self {
        Flags(bits)
    }

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets of flags together.
    pub const fn union(self, other: Flags) -> Self {
        Flags(self.0 | other.0)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;

    fn bitor(self, rhs: Flags) -> Flags {
        self.union(rhs)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Flags::SYN, "SYN"),
            (Flags::ACK, "ACK"),
            (Flags::FIN, "FIN"),
            (Flags::RST, "RST"),
        ];
        let mut first = true;
        f.write_str("Flags(")?;
        for (flag, name) in names {
            if self.contains(flag) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        let unknown = self.0 & !0xf;
        if unknown != 0 {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{unknown:#x}")?;
        }
        f.write_str(")")
    }
}

/// The error code a go-away frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GoAwayCode {
    /// 0: normal termination.
    Normal,
    /// 1: the sender saw a protocol violation.
    ProtocolError,
    /// 2: the sender hit an internal error.
    InternalError,
    /// Any other value; the spec defines none, so it is carried through unchanged.
    Other(u32),
}

impl GoAwayCode {
    /// The code as the frame's length field carries it.
    pub const fn to_u32(self) -> u32 {
        match self {
            GoAwayCode::Normal => 0,
            GoAwayCode::ProtocolError => 1,
            GoAwayCode::InternalError => 2,
            GoAwayCode::Other(code) => code,
        }
    }

    /// The code for a length field value.
    pub const fn from_u32(code: u32) -> Self {
        match code {
            0 => GoAwayCode::Normal,
            1 => GoAwayCode::ProtocolError,
            2 => GoAwayCode::InternalError,
            other => GoAwayCode::Other(other),
        }
    }
}

impl fmt::Display for GoAwayCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GoAwayCode::Normal => f.write_str("normal termination"),
            GoAwayCode::ProtocolError => f.write_str("protocol error"),
            GoAwayCode::InternalError => f.write_str("internal error"),
            GoAwayCode::Other(code) => write!(f, "code {code}"),
        }
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// What kind of frame this is; it decides what [`Header::length`] means.
    pub frame_type: FrameType,
    /// The flags field.
    pub flags: Flags,
    /// The stream addressed; 0 is the session itself (pings and go-aways).
    pub stream_id: u32,
    /// Body length (data), window delta (window update), opaque value (ping) or error
    /// code (go away).
    pub length: u32,
}

impl Header {
    /// A data frame header announcing `len` body bytes.
    pub const fn data(stream_id: u32, flags: Flags, len: u32) -> Self {
        Header {
            frame_type: FrameType::Data,
            flags,
            stream_id,
            length: len,
        }
    }

    /// A window update granting `delta` more bytes of receive window.
    pub const fn window_update(stream_id: u32, flags: Flags, delta: u32) -> Self {
        Header {
            frame_type: FrameType::WindowUpdate,
            flags,
            stream_id,
            length: delta,
        }
    }

    /// A ping on the session (`flags` is [`Flags::SYN`] to ask, [`Flags::ACK`] to answer).
    pub const fn ping(flags: Flags, opaque: u32) -> Self {
        Header {
            frame_type: FrameType::Ping,
            flags,
            stream_id: 0,
            length: opaque,
        }
    }

    /// A go-away frame carrying `code`.
    pub const fn go_away(code: GoAwayCode) -> Self {
        Header {
            frame_type: FrameType::GoAway,
            flags: Flags::NONE,
            stream_id: 0,
            length: code.to_u32(),
        }
    }

    /// How many body bytes follow this header on the wire.
    pub const fn body_len(&self) -> u32 {
        match self.frame_type {
            FrameType::Data => self.length,
            _ => 0,
        }
    }

    /// The 12 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = VERSION;
        out[1] = self.frame_type.to_u8();
        out[2..4].copy_from_slice(&self.flags.bits().to_be_bytes());
        out[4..8].copy_from_slice(&self.stream_id.to_be_bytes());
        out[8..12].copy_from_slice(&self.length.to_be_bytes());
        out
    }

    /// Appends the 12 header bytes to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.to_bytes());
    }

    /// Parses 12 header bytes, checking version and type.
    pub fn from_bytes(bytes: &[u8; HEADER_LEN]) -> Result<Self, FrameError> {
        if bytes[0] != VERSION {
            return Err(FrameError::UnsupportedVersion(bytes[0]));
        }
        let frame_type = FrameType::from_u8(bytes[1]).ok_or(FrameError::UnknownType(bytes[1]))?;
        Ok(Header {
            frame_type,
            flags: Flags::from_bits(u16::from_be_bytes([bytes[2], bytes[3]])),
            stream_id: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
            length: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        })
    }
}

/// Parses the header at the front of `buf` without consuming anything.
///
/// `Ok(None)` when fewer than [`HEADER_LEN`] bytes are there. A data frame whose body is
/// longer than `max_body` is an error as soon as its header is complete, before any body
/// byte has to be buffered.
pub fn peek_header(buf: &[u8], max_body: u32) -> Result<Option<Header>, FrameError> {
    let Some(bytes) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let header = Header::from_bytes(bytes)?;
    if header.body_len() > max_body {
        return Err(FrameError::BodyTooLarge {
            len: header.body_len(),
            max: max_body,
        });
    }
    Ok(Some(header))
}

/// A whole frame: a header and, for data frames, its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The header; for data frames `header.length == body.len()`.
    pub header: Header,
    /// The body; empty for every type but data.
    pub body: Bytes,
}

impl Frame {
    /// A data frame; the header's length is set from `body`.
    ///
    /// Bodies longer than `u32::MAX` cannot be framed; callers split data long before that
    /// (windows are `u32`), so such a body is truncated to what fits.
    pub fn data(stream_id: u32, flags: Flags, mut body: Bytes) -> Self {
        let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        body.truncate(len as usize);
        Frame {
            header: Header::data(stream_id, flags, len),
            body,
        }
    }

    /// A frame without body (anything but data, or an empty data frame).
    pub const fn control(header: Header) -> Self {
        Frame {
            header,
            body: Bytes::new(),
        }
    }

    /// Bytes [`Frame::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// Appends header and body to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        self.header.encode(out);
        out.put_slice(&self.body);
    }
}

/// Decodes one whole frame from the front of `buf`, consuming it.
///
/// `Ok(None)` (and nothing consumed) while the header or the body is incomplete. The body
/// is split off `buf` without copying. Data bodies above `max_body` are rejected from the
/// header alone.
pub fn decode(buf: &mut BytesMut, max_body: u32) -> Result<Option<Frame>, FrameError> {
    let Some(header) = peek_header(buf, max_body)? else {
        return Ok(None);
    };
    let body_len = header.body_len() as usize;
    if buf.len() - HEADER_LEN < body_len {
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    let body = buf.split_to(body_len).freeze();
    Ok(Some(Frame { header, body }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encoding() {
        let header = Header::window_update(7, Flags::SYN | Flags::ACK, 0x0102_0304);
        assert_eq!(
            header.to_bytes(),
            [0, 1, 0, 3, 0, 0, 0, 7, 1, 2, 3, 4],
            "big-endian fields in spec order"
        );
        assert_eq!(Header::from_bytes(&header.to_bytes()), Ok(header));
    }

    #[test]
    fn rejects_bad_version_type_and_length() {
        let mut bytes = Header::ping(Flags::SYN, 1).to_bytes();
        bytes[0] = 1;
        assert_eq!(
            peek_header(&bytes, 10),
            Err(FrameError::UnsupportedVersion(1))
        );
        let mut bytes = Header::ping(Flags::SYN, 1).to_bytes();
        bytes[1] = 4;
        assert_eq!(peek_header(&bytes, 10), Err(FrameError::UnknownType(4)));
        let bytes = Header::data(1, Flags::NONE, u32::MAX).to_bytes();
        assert_eq!(
            peek_header(&bytes, 10),
            Err(FrameError::BodyTooLarge {
                len: u32::MAX,
                max: 10
            })
        );
        // A huge length on a non-data frame is a delta or opaque value, not a body.
        let bytes = Header::window_update(1, Flags::NONE, u32::MAX).to_bytes();
        assert!(peek_header(&bytes, 10).is_ok());
    }

    #[test]
    fn incomplete_is_not_an_error() {
        let frame = Frame::data(3, Flags::FIN, Bytes::from_static(b"hello"));
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        for cut in 0..out.len() {
            let mut partial = BytesMut::from(&out[..cut]);
            assert_eq!(decode(&mut partial, 100), Ok(None));
            assert_eq!(partial.len(), cut, "nothing consumed");
        }
        assert_eq!(decode(&mut out, 100), Ok(Some(frame)));
        assert!(out.is_empty());
    }

    #[test]
    fn flags_debug_names_bits() {
        assert_eq!(format!("{:?}", Flags::SYN | Flags::RST), "Flags(SYN|RST)");
        assert_eq!(format!("{:?}", Flags::from_bits(0x12)), "Flags(ACK|0x10)");
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        (
            0u8..4,
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(ty, flags, stream_id, length, body)| {
                let flags = Flags::from_bits(flags);
                match FrameType::from_u8(ty) {
                    Some(FrameType::Data) | None => {
                        Frame::data(stream_id, flags, Bytes::from(body))
                    }
                    Some(frame_type) => Frame::control(Header {
                        frame_type,
                        flags,
                        stream_id,
                        length,
                    }),
                }
            })
    }

    proptest! {
        #[test]
        fn round_trip(frames in proptest::collection::vec(arb_frame(), 1..8)) {
            let mut buf = BytesMut::new();
            for frame in &frames {
                frame.encode(&mut buf);
            }
            let total: usize = frames.iter().map(Frame::encoded_len).sum();
            prop_assert_eq!(buf.len(), total);
            for frame in &frames {
                prop_assert_eq!(decode(&mut buf, 64), Ok(Some(frame.clone())));
            }
            prop_assert_eq!(decode(&mut buf, 64), Ok(None));
        }

        #[test]
        fn go_away_codes_round_trip(code in any::<u32>()) {
            prop_assert_eq!(GoAwayCode::from_u32(code).to_u32(), code);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128), max in any::<u32>()) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = decode(&mut buf, max) {}
        }
    }
}
