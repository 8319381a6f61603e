//! The request/response wire format (`docs/protocols/reqresp.md`): framing only.
//!
//! A request is `uvarint length ‖ bytes`; a response is `status ‖ uvarint length ‖ bytes`.
//! Decoders look at a prefix of what has arrived and answer "not enough bytes yet"
//! (`Ok(None)`), "a header: this status, this many body bytes after `header_len`", or a
//! typed error. Every length is checked against the caller's maximum before anyone
//! allocates for it. No IO and no state here: the node in the `pheromone` crate moves the
//! bytes.

use crate::varint::{self, VarintError};
use bytes::{BufMut, BytesMut};
use thiserror::Error;

/// Longest text a response carries for an error status (handler failed, other error);
/// longer messages are cut when encoded and refused when decoded.
pub const MAX_ERROR_TEXT: usize = 1024;

/// What a response says happened to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// 0: handled; the body is the reply.
    Reply,
    /// 1: handled; the handler had no reply (the body is empty).
    NoReply,
    /// 2: the request was larger than the responder accepts; the body is its limit as a
    /// uvarint. The request was not read and not handled.
    TooLarge,
    /// 3: the handler failed; the body is its message (UTF-8, at most
    /// [`MAX_ERROR_TEXT`] bytes).
    HandlerFailed,
    /// 4: any other failure on the responder (malformed request, reply over its limit);
    /// the body is a message as for [`Status::HandlerFailed`].
    Error,
    /// 5: the responder is already handling as many requests from us as it allows; the body
    /// is that limit as a uvarint. The request was not handled.
    Busy,
    /// 6: on a stream kept from an earlier request, the responder no longer takes this
    /// protocol from us (its access rules changed); the body is empty. The request was not
    /// handled: send it on a new stream, whose negotiation decides.
    Reopen,
}

impl Status {
    /// The status byte on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            Status::Reply => 0,
            Status::NoReply => 1,
            Status::TooLarge => 2,
            Status::HandlerFailed => 3,
            Status::Error => 4,
            Status::Busy => 5,
            Status::Reopen => 6,
        }
    }

    /// The status a byte names, if any.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => Status::Reply,
            1 => Status::NoReply,
            2 => Status::TooLarge,
            3 => Status::HandlerFailed,
            4 => Status::Error,
            5 => Status::Busy,
            6 => Status::Reopen,
            _ => return None,
        })
    }

    /// The most body bytes this status may carry when replies may be `max_reply` long.
    fn max_body(self, max_reply: usize) -> usize {
        match self {
            Status::Reply => max_reply,
            Status::NoReply | Status::Reopen => 0,
            Status::TooLarge | Status::Busy => varint::MAX_LEN,
            Status::HandlerFailed | Status::Error => MAX_ERROR_TEXT,
        }
    }
}

/// Why bytes on a request/response stream are not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WireError {
    /// The length prefix is not a valid uvarint.
    #[error("bad length prefix: {0}")]
    Varint(#[from] VarintError),
    /// The announced body is longer than allowed. For a request this is answered with
    /// [`Status::TooLarge`]; for a response it fails the call.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The status byte names no status.
    #[error("unknown response status {0}")]
    UnknownStatus(u8),
}

/// A decoded frame header: where the body starts and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The response status; [`Status::Reply`] for requests, which have none.
    pub status: Status,
    /// Body length in bytes.
    pub body_len: usize,
    /// Bytes the header took (the body follows).
    pub header_len: usize,
}

impl Header {
    /// Header and body together.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.body_len
    }
}

/// Appends `value` as a uvarint (as [`varint::encode`], without a scratch vector).
fn put_uvarint(mut value: u64, out: &mut BytesMut) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

/// Bytes the request header for a `len`-byte body takes.
pub fn request_header_len(len: usize) -> usize {
    varint::encoded_len(len as u64)
}

/// Appends a request header (its length prefix) for a body of `len` bytes.
pub fn encode_request_header(len: usize, out: &mut BytesMut) {
    put_uvarint(len as u64, out);
}

/// Appends a response header (status and length) for a body of `len` bytes.
pub fn encode_response_header(status: Status, len: usize, out: &mut BytesMut) {
    out.put_u8(status.to_byte());
    put_uvarint(len as u64, out);
}

/// Appends a whole response: status, length, body.
pub fn encode_response(status: Status, body: &[u8], out: &mut BytesMut) {
    out.reserve(1 + varint::MAX_LEN + body.len());
    encode_response_header(status, body.len(), out);
    out.put_slice(body);
}

/// Appends a response carrying a limit ([`Status::TooLarge`], [`Status::Busy`]).
pub fn encode_limit_response(status: Status, limit: usize, out: &mut BytesMut) {
    encode_response_header(status, varint::encoded_len(limit as u64), out);
    put_uvarint(limit as u64, out);
}

/// Appends a response carrying a message, cut to [`MAX_ERROR_TEXT`] bytes on a character
/// boundary.
pub fn encode_text_response(status: Status, text: &str, out: &mut BytesMut) {
    let mut cut = text.len().min(MAX_ERROR_TEXT);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    encode_response(status, &text.as_bytes()[..cut], out);
}

/// Decodes a request header from the front of `buf`; `max` is the largest body accepted.
pub fn decode_request_header(buf: &[u8], max: usize) -> Result<Option<Header>, WireError> {
    let Some((len, used)) = varint::decode(buf)? else {
        return Ok(None);
    };
    let body_len = checked_len(len, max)?;
    Ok(Some(Header {
        status: Status::Reply,
        body_len,
        header_len: used,
    }))
}

/// Decodes a response header from the front of `buf`; `max_reply` is the largest reply
/// accepted (other statuses have their own small caps).
pub fn decode_response_header(buf: &[u8], max_reply: usize) -> Result<Option<Header>, WireError> {
    let Some(&byte) = buf.first() else {
        return Ok(None);
    };
    let status = Status::from_byte(byte).ok_or(WireError::UnknownStatus(byte))?;
    let Some((len, used)) = varint::decode(&buf[1..])? else {
        return Ok(None);
    };
    let body_len = checked_len(len, status.max_body(max_reply))?;
    Ok(Some(Header {
        status,
        body_len,
        header_len: 1 + used,
    }))
}

/// The limit carried by a [`Status::TooLarge`] or [`Status::Busy`] body.
pub fn decode_limit(body: &[u8]) -> Option<usize> {
    match varint::decode(body) {
        Ok(Some((value, used))) if used == body.len() => usize::try_from(value).ok(),
        _ => None,
    }
}

fn checked_len(len: u64, max: usize) -> Result<usize, WireError> {
    usize::try_from(len)
        .ok()
        .filter(|&l| l <= max)
        .ok_or(WireError::TooLarge { len, max })
}

/// Entry points for fuzz targets; each takes arbitrary bytes and must never panic.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Decodes `data` as a request and as a response header with a few limits; a decoded
    /// header never points past the limit it was given.
    pub fn fuzz_decode(data: &[u8]) {
        for max in [0, 1, 64, 1 << 20] {
            if let Ok(Some(h)) = decode_request_header(data, max) {
                assert!(h.body_len <= max);
                assert!(h.header_len <= varint::MAX_LEN);
            }
            if let Ok(Some(h)) = decode_response_header(data, max) {
                assert!(h.body_len <= max.max(MAX_ERROR_TEXT));
                assert!(h.header_len <= 1 + varint::MAX_LEN);
            }
        }
        let _ = decode_limit(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL: [Status; 7] = [
        Status::Reply,
        Status::NoReply,
        Status::TooLarge,
        Status::HandlerFailed,
        Status::Error,
        Status::Busy,
        Status::Reopen,
    ];

    #[test]
    fn status_bytes_are_stable() {
        for (i, s) in ALL.iter().enumerate() {
            assert_eq!(s.to_byte() as usize, i);
            assert_eq!(Status::from_byte(i as u8), Some(*s));
        }
        assert_eq!(Status::from_byte(7), None);
        assert_eq!(
            decode_response_header(&[9, 0], 10),
            Err(WireError::UnknownStatus(9))
        );
    }

    #[test]
    fn known_encodings() {
        let mut out = BytesMut::new();
        encode_request_header(300, &mut out);
        assert_eq!(&out[..], [0xac, 0x02]);
        let mut out = BytesMut::new();
        encode_response(Status::Reply, b"hi", &mut out);
        assert_eq!(&out[..], [0, 2, b'h', b'i']);
        let mut out = BytesMut::new();
        encode_limit_response(Status::TooLarge, 1 << 20, &mut out);
        let h = decode_response_header(&out, 0).unwrap().unwrap();
        assert_eq!(h.status, Status::TooLarge);
        assert_eq!(decode_limit(&out[h.header_len..]), Some(1 << 20));
    }

    #[test]
    fn oversized_lengths_are_refused_from_the_prefix_alone() {
        let mut out = BytesMut::new();
        encode_request_header(1025, &mut out);
        assert_eq!(
            decode_request_header(&out, 1024),
            Err(WireError::TooLarge {
                len: 1025,
                max: 1024
            })
        );
        let mut out = BytesMut::new();
        out.put_u8(0);
        put_uvarint(5000, &mut out);
        assert!(matches!(
            decode_response_header(&out, 4096),
            Err(WireError::TooLarge { len: 5000, .. })
        ));
        // Status 1 carries nothing; status 3 at most MAX_ERROR_TEXT.
        assert!(decode_response_header(&[1, 1], 100).is_err());
        let mut out = BytesMut::new();
        out.put_u8(3);
        put_uvarint(MAX_ERROR_TEXT as u64 + 1, &mut out);
        assert!(decode_response_header(&out, usize::MAX).is_err());
        assert!(decode_request_header(&[0xff; 12], usize::MAX).is_err());
    }

    #[test]
    fn text_is_cut_on_a_character_boundary() {
        let text = "é".repeat(MAX_ERROR_TEXT);
        let mut out = BytesMut::new();
        encode_text_response(Status::Error, &text, &mut out);
        let h = decode_response_header(&out, 0).unwrap().unwrap();
        let body = &out[h.header_len..];
        assert_eq!(body.len(), h.body_len);
        assert!(body.len() <= MAX_ERROR_TEXT);
        assert!(std::str::from_utf8(body).is_ok());
    }

    proptest! {
        #[test]
        fn request_round_trip(body in proptest::collection::vec(any::<u8>(), 0..300), tail in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut out = BytesMut::new();
            encode_request_header(body.len(), &mut out);
            prop_assert_eq!(out.len(), request_header_len(body.len()));
            for cut in 0..out.len() {
                prop_assert_eq!(decode_request_header(&out[..cut], 300), Ok(None));
            }
            out.put_slice(&body);
            out.put_slice(&tail);
            let h = decode_request_header(&out, 300).unwrap().unwrap();
            prop_assert_eq!(h.body_len, body.len());
            prop_assert_eq!(&out[h.header_len..h.frame_len()], &body[..]);
        }

        #[test]
        fn response_round_trip(status in proptest::sample::select(ALL.to_vec()), body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let body = match status {
                Status::NoReply | Status::Reopen => Vec::new(),
                Status::TooLarge | Status::Busy => {
                    let mut b = Vec::new();
                    varint::encode(body.len() as u64, &mut b);
                    b
                }
                _ => body,
            };
            let mut out = BytesMut::new();
            encode_response(status, &body, &mut out);
            let header_len = 1 + varint::encoded_len(body.len() as u64);
            for cut in 0..header_len {
                prop_assert_eq!(decode_response_header(&out[..cut], 300), Ok(None));
            }
            let h = decode_response_header(&out, 300).unwrap().unwrap();
            prop_assert_eq!(h.status, status);
            prop_assert_eq!(&out[h.header_len..h.frame_len()], &body[..]);
            prop_assert_eq!(h.frame_len(), out.len());
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            fuzzing::fuzz_decode(&bytes);
        }
    }
}
