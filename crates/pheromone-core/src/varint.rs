//! Unsigned varints (LEB128) as the multiformats `unsigned-varint` spec defines them.
//!
//! Used for multistream-select length prefixes, multiaddr and multihash codes. The spec caps
//! a varint at 9 bytes (63 bits) and forbids non-minimal encodings; decoding enforces both
//! so that a hostile peer cannot make us read unbounded prefixes. Nothing here allocates.

use thiserror::Error;

/// Longest varint the multiformats spec allows, in bytes.
pub const MAX_LEN: usize = 9;

/// Why a varint could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum VarintError {
    /// More than [`MAX_LEN`] bytes had the continuation bit set; the peer is not speaking
    /// the protocol.
    #[error("varint longer than {MAX_LEN} bytes")]
    Overflow,
    /// The value was encoded with a redundant trailing zero byte, which the spec forbids.
    #[error("varint is not minimally encoded")]
    NotMinimal,
}

/// Appends the varint encoding of `value` to `out`.
pub fn encode(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Number of bytes [`encode`] writes for `value`.
pub fn encoded_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Decodes a varint from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` ends before the varint does (read more bytes and retry),
/// otherwise the value and how many bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(u64, usize)>, VarintError> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().enumerate() {
        if i >= MAX_LEN {
            return Err(VarintError::Overflow);
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(VarintError::NotMinimal);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= MAX_LEN {
        return Err(VarintError::Overflow);
    }
    Ok(None)
}

/// Why a length-prefixed frame could not be split off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix is not a valid varint.
    #[error("bad frame length prefix: {0}")]
    Prefix(#[from] VarintError),
    /// The announced length is above the limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
}

/// Appends `frame` to `out` behind its varint length: the framing of every
/// length-prefixed protocol message on a byte stream.
pub fn encode_frame(frame: &[u8], out: &mut bytes::BytesMut) {
    let mut prefix = [0u8; MAX_LEN];
    let mut value = frame.len() as u64;
    let mut n = 0;
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            prefix[n] = byte;
            n += 1;
            break;
        }
        prefix[n] = byte | 0x80;
        n += 1;
    }
    out.reserve(n + frame.len());
    out.extend_from_slice(&prefix[..n]);
    out.extend_from_slice(frame);
}

/// Splits one varint-length-prefixed frame off the front of `buf`.
///
/// `Ok(None)` until the whole frame has arrived (read more and call again). A length above
/// `max` is an error before anything is buffered for it.
pub fn decode_frame(
    buf: &mut bytes::BytesMut,
    max: usize,
) -> Result<Option<bytes::Bytes>, FrameError> {
    let Some((len, used)) = decode(buf)? else {
        return Ok(None);
    };
    if len > max as u64 {
        return Err(FrameError::TooLarge { len, max });
    }
    // Fits: at most `max`.
    let len = len as usize;
    if buf.len() < used + len {
        return Ok(None);
    }
    let _ = buf.split_to(used);
    Ok(Some(buf.split_to(len).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn frames_round_trip_and_wait_for_their_end() {
        let mut out = bytes::BytesMut::new();
        encode_frame(b"hello", &mut out);
        encode_frame(&[7u8; 300], &mut out);
        let mut partial = bytes::BytesMut::from(&out[..out.len() - 1]);
        assert_eq!(decode_frame(&mut partial, 1024), Ok(Some("hello".into())));
        assert_eq!(decode_frame(&mut partial, 1024), Ok(None));
        let _ = decode_frame(&mut out, 1024);
        assert_eq!(
            decode_frame(&mut out, 1024),
            Ok(Some(vec![7u8; 300].into()))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn oversized_frames_are_refused_before_buffering() {
        let mut prefix = Vec::new();
        encode(10_000, &mut prefix);
        let mut buf = bytes::BytesMut::from(&prefix[..]);
        assert_eq!(
            decode_frame(&mut buf, 1024),
            Err(FrameError::TooLarge {
                len: 10_000,
                max: 1024
            })
        );
    }

    #[test]
    fn known_encodings() {
        let mut out = Vec::new();
        encode(300, &mut out);
        assert_eq!(out, [0xac, 0x02]);
        assert_eq!(decode(&out), Ok(Some((300, 2))));
        assert_eq!(decode(&[0xac]), Ok(None));
        assert_eq!(decode(&[0x80, 0x00]), Err(VarintError::NotMinimal));
        assert_eq!(decode(&[0xff; 10]), Err(VarintError::Overflow));
    }

    proptest! {
        #[test]
        fn round_trip(value in 0u64..(1 << 63), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut out = Vec::new();
            encode(value, &mut out);
            prop_assert_eq!(out.len(), encoded_len(value));
            let len = out.len();
            out.extend_from_slice(&tail);
            prop_assert_eq!(decode(&out), Ok(Some((value, len))));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = decode(&bytes);
        }
    }
}
