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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
