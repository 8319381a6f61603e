//! Framing of the daemon's own protocols, `/pheromone/name/1.0.0` and
//! `/pheromone/msg/1.0.0` (see `docs/protocols/pheromone-name.md` and `pheromone-msg.md`):
//! an unsigned varint length followed by that many bytes, and the one-byte ack of a
//! message.
//!
//! Every length is checked against the caller's cap before a byte of the body is read or
//! allocated; a varint longer than the multiformats maximum is refused after 9 bytes.
//! Nothing here knows about connections or the inbox.

use pheromone_core::varint;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a frame could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WireError {
    /// The stream failed or ended mid-frame.
    #[error("stream failed: {0}")]
    Io(#[from] std::io::Error),
    /// The length prefix was not a valid unsigned varint.
    #[error("bad length prefix: {0}")]
    Varint(#[from] varint::VarintError),
    /// The stream ended before a length prefix started.
    #[error("stream ended before a frame")]
    Empty,
    /// The announced length is over the cap.
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLong {
        /// The length the peer announced.
        len: u64,
        /// The cap.
        max: usize,
    },
    /// The ack byte was not one the protocol defines.
    #[error("unknown ack byte {0:#04x}")]
    UnknownAck(u8),
}

/// What a message receiver answers after the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Stored in the inbox.
    Stored,
    /// Refused: the inbox is full; nothing was stored.
    InboxFull,
    /// Refused: the announced length is over the receiver's cap; the body was not read.
    TooLarge,
}

impl Ack {
    /// The byte on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            Ack::Stored => 0,
            Ack::InboxFull => 1,
            Ack::TooLarge => 2,
        }
    }

    /// Parses the byte on the wire.
    pub fn from_byte(byte: u8) -> Result<Self, WireError> {
        match byte {
            0 => Ok(Ack::Stored),
            1 => Ok(Ack::InboxFull),
            2 => Ok(Ack::TooLarge),
            other => Err(WireError::UnknownAck(other)),
        }
    }
}

/// Reads a varint length prefix one byte at a time (so no body byte is consumed).
/// `Ok(None)` if the stream ended cleanly before the first byte.
pub async fn read_len<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Option<u64>, WireError> {
    let mut buf = [0u8; varint::MAX_LEN];
    for filled in 0..varint::MAX_LEN {
        let mut byte = [0u8; 1];
        if reader.read(&mut byte).await? == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        buf[filled] = byte[0];
        if let Some((value, _)) = varint::decode(&buf[..=filled])? {
            return Ok(Some(value));
        }
    }
    Err(varint::VarintError::Overflow.into())
}

/// Checks a length read with [`read_len`] against `max`.
pub fn check_len(len: u64, max: usize) -> Result<usize, WireError> {
    usize::try_from(len)
        .ok()
        .filter(|&n| n <= max)
        .ok_or(WireError::TooLong { len, max })
}

/// Reads the body of a frame whose length has been checked.
pub async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    len: usize,
) -> Result<Vec<u8>, WireError> {
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    Ok(body)
}

/// Reads one whole frame of at most `max` bytes.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Vec<u8>, WireError> {
    let len = read_len(reader).await?.ok_or(WireError::Empty)?;
    let len = check_len(len, max)?;
    read_body(reader, len).await
}

/// Writes one frame (without flushing or closing).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    body: &[u8],
) -> std::io::Result<()> {
    writer.write_all(&encode_prefix(body.len())).await?;
    writer.write_all(body).await
}

/// The varint length prefix of a body of `len` bytes.
pub fn encode_prefix(len: usize) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(varint::MAX_LEN);
    varint::encode(len as u64, &mut prefix);
    prefix
}

/// Bodies for fuzz targets: decoders fed arbitrary bytes must return, never panic.
#[doc(hidden)]
#[allow(dead_code)] // called by tests and, later, a fuzz target
pub mod fuzzing {
    /// Reads frames with a small cap until the input is used up or an error occurs.
    pub fn fuzz_read_frames(data: &[u8]) {
        let mut reader = data;
        futures::executor::block_on(async {
            while super::read_frame(&mut reader, 1024).await.is_ok() {}
        });
        for &byte in data.iter().take(4) {
            let _ = super::Ack::from_byte(byte);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use proptest::prelude::*;

    #[test]
    fn frame_round_trip_and_limits() {
        let mut out = Vec::new();
        block_on(write_frame(&mut out, b"hello")).expect("write");
        assert_eq!(out, b"\x05hello");
        let mut reader = &out[..];
        assert_eq!(
            block_on(read_frame(&mut reader, 5)).expect("read"),
            b"hello"
        );
        let mut reader = &out[..];
        assert!(matches!(
            block_on(read_frame(&mut reader, 4)),
            Err(WireError::TooLong { len: 5, max: 4 })
        ));
        let mut empty: &[u8] = &[];
        assert!(matches!(
            block_on(read_frame(&mut empty, 4)),
            Err(WireError::Empty)
        ));
        let mut truncated: &[u8] = b"\x05hel";
        assert!(matches!(
            block_on(read_frame(&mut truncated, 5)),
            Err(WireError::Io(_))
        ));
        let mut endless: &[u8] = &[0xff; 20];
        assert!(matches!(
            block_on(read_frame(&mut endless, 5)),
            Err(WireError::Varint(varint::VarintError::Overflow))
        ));
    }

    #[test]
    fn read_len_stops_at_the_prefix() {
        let mut out = Vec::new();
        block_on(write_frame(&mut out, &[7u8; 300])).expect("write");
        let mut reader = &out[..];
        assert_eq!(block_on(read_len(&mut reader)).expect("len"), Some(300));
        assert_eq!(reader.len(), 300);
    }

    #[test]
    fn acks() {
        for ack in [Ack::Stored, Ack::InboxFull, Ack::TooLarge] {
            assert_eq!(Ack::from_byte(ack.to_byte()).expect("ack"), ack);
        }
        assert!(matches!(Ack::from_byte(9), Err(WireError::UnknownAck(9))));
    }

    proptest! {
        #[test]
        fn frames_round_trip(bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..5)) {
            let mut out = Vec::new();
            for body in &bodies {
                block_on(write_frame(&mut out, body)).expect("write");
            }
            let mut reader = &out[..];
            for body in &bodies {
                prop_assert_eq!(&block_on(read_frame(&mut reader, 600)).expect("read"), body);
            }
            prop_assert!(reader.is_empty());
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            fuzzing::fuzz_read_frames(&data);
        }
    }
}
