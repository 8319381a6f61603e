//! The noise-libp2p wire framing: every Noise message, handshake or transport, travels as a
//! 16-bit big-endian length followed by that many bytes.
//!
//! Only framing lives here — no cryptography. Decoding splits frames off the caller's
//! buffer without copying and never allocates more than the announced (16-bit, so bounded)
//! length; "not enough bytes yet" is `Ok(None)`.

use super::NoiseError;
use bytes::{Buf, BufMut, BytesMut};

/// Size of the length prefix in bytes.
pub const LEN_PREFIX: usize = 2;

/// Largest Noise message the spec allows, and the most a 16-bit prefix can announce.
pub const MAX_FRAME_LEN: usize = u16::MAX as usize;

/// Appends `body` to `out` as one frame (length prefix included).
///
/// Fails with [`NoiseError::FrameTooLarge`] when `body` is longer than [`MAX_FRAME_LEN`].
pub fn encode(body: &[u8], out: &mut BytesMut) -> Result<(), NoiseError> {
    let len = u16::try_from(body.len()).map_err(|_| NoiseError::FrameTooLarge {
        len: body.len(),
        max: MAX_FRAME_LEN,
    })?;
    out.reserve(LEN_PREFIX + body.len());
    out.put_u16(len);
    out.extend_from_slice(body);
    Ok(())
}

/// Number of bytes [`encode`] writes for a body of `body_len` bytes.
pub fn encoded_len(body_len: usize) -> usize {
    LEN_PREFIX + body_len
}

/// The body length announced by the prefix at the front of `input`, if two bytes are there.
pub fn peek_len(input: &[u8]) -> Option<usize> {
    match input {
        [hi, lo, ..] => Some(usize::from(u16::from_be_bytes([*hi, *lo]))),
        _ => None,
    }
}

/// Splits the next complete frame off the front of `input` and returns its body (prefix
/// removed), without copying.
///
/// Returns `Ok(None)` when the frame is not complete yet; then `input` is untouched except
/// that its capacity is grown to hold the whole frame, so the next read can fill it. A frame
/// announcing more than `max_len` bytes fails at once with [`NoiseError::FrameTooLarge`],
/// before any of its body is buffered.
pub fn decode(input: &mut BytesMut, max_len: usize) -> Result<Option<BytesMut>, NoiseError> {
    let Some(len) = peek_len(input) else {
        return Ok(None);
    };
    if len > max_len {
        return Err(NoiseError::FrameTooLarge { len, max: max_len });
    }
    let total = LEN_PREFIX + len;
    if input.len() < total {
        input.reserve(total - input.len());
        return Ok(None);
    }
    let mut frame = input.split_to(total);
    frame.advance(LEN_PREFIX);
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encoding_and_partial_input() {
        let mut out = BytesMut::new();
        encode(b"abc", &mut out).expect("encode");
        assert_eq!(&out[..], &[0, 3, b'a', b'b', b'c']);
        assert_eq!(encoded_len(3), out.len());

        let mut partial = BytesMut::from(&out[..4]);
        assert_eq!(decode(&mut partial, MAX_FRAME_LEN), Ok(None));
        assert_eq!(partial.len(), 4, "incomplete input must stay in the buffer");
        let mut one = BytesMut::from(&out[..1]);
        assert_eq!(decode(&mut one, MAX_FRAME_LEN), Ok(None));

        let frame = decode(&mut out, MAX_FRAME_LEN)
            .expect("decode")
            .expect("complete");
        assert_eq!(&frame[..], b"abc");
        assert!(out.is_empty());
    }

    #[test]
    fn empty_and_maximal_frames() {
        let mut out = BytesMut::new();
        encode(&[], &mut out).expect("empty");
        let body = vec![7u8; MAX_FRAME_LEN];
        encode(&body, &mut out).expect("max");
        let empty = decode(&mut out, MAX_FRAME_LEN).expect("ok").expect("some");
        assert!(empty.is_empty());
        let max = decode(&mut out, MAX_FRAME_LEN).expect("ok").expect("some");
        assert_eq!(max.len(), MAX_FRAME_LEN);
        let too_big = vec![0u8; MAX_FRAME_LEN + 1];
        assert_eq!(
            encode(&too_big, &mut out),
            Err(NoiseError::FrameTooLarge {
                len: MAX_FRAME_LEN + 1,
                max: MAX_FRAME_LEN
            })
        );
        assert!(out.is_empty(), "a refused frame writes nothing");
    }

    #[test]
    fn oversized_announcement_fails_before_buffering() {
        let mut input = BytesMut::from(&[0xff, 0xff, 1, 2][..]);
        assert_eq!(
            decode(&mut input, 100),
            Err(NoiseError::FrameTooLarge {
                len: 65535,
                max: 100
            })
        );
    }

    proptest! {
        #[test]
        fn round_trips(bodies in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..2000), 0..8)
        ) {
            let mut wire = BytesMut::new();
            for body in &bodies {
                encode(body, &mut wire).expect("encode");
            }
            let expected: usize = bodies.iter().map(|b| encoded_len(b.len())).sum();
            prop_assert_eq!(wire.len(), expected);
            for body in &bodies {
                let frame = decode(&mut wire, MAX_FRAME_LEN).expect("decode").expect("complete");
                prop_assert_eq!(&frame[..], &body[..]);
            }
            prop_assert!(wire.is_empty());
            prop_assert_eq!(decode(&mut wire, MAX_FRAME_LEN), Ok(None));
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512),
                               max in 0usize..=MAX_FRAME_LEN) {
            let mut input = BytesMut::from(&data[..]);
            while let Ok(Some(frame)) = decode(&mut input, max) {
                prop_assert!(frame.len() <= max);
            }
        }
    }
}
