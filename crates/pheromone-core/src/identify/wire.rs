//! The `Identify` protobuf and its varint-length-prefixed framing.
//!
//! Every field is declared as `bytes`, even the spec's `string`s (the wire type is the same),
//! so that one peer's bad UTF-8 in a protocol name costs that name, not the whole message.
//! `signedPeerRecord` (field 8) is left undeclared: prost skips it without allocating. Field
//! 1000, `pheromone_name`, is our extension (a node's human name). This
//! file only frames and unframes bytes; what the fields mean is decided in `mod.rs`.

use super::{IdentifyError, MAX_FRAME_LEN};
use crate::varint;

/// `message Identify` of the libp2p identify spec (proto2).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct IdentifyProto {
    #[prost(bytes = "vec", optional, tag = "5")]
    pub(crate) protocol_version: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "6")]
    pub(crate) agent_version: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "1")]
    pub(crate) public_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub(crate) listen_addrs: Vec<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub(crate) observed_addr: Option<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub(crate) protocols: Vec<Vec<u8>>,
    /// pheromone's extension: the node's human name. A field number far above the spec's
    /// so that it never collides with a future one; other implementations skip it.
    #[prost(bytes = "vec", optional, tag = "1000")]
    pub(crate) pheromone_name: Option<Vec<u8>>,
}

/// Splits one length-prefixed frame off the front of `buf`: its body and the total number of
/// bytes it took. `Ok(None)` until the whole frame is there. The length is checked against
/// [`MAX_FRAME_LEN`] before anything is buffered for it.
pub(crate) fn split_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, IdentifyError> {
    let Some((len, prefix)) = varint::decode(buf)? else {
        return Ok(None);
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= MAX_FRAME_LEN)
        .ok_or(IdentifyError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        })?;
    let Some(body) = buf.get(prefix..prefix + len) else {
        return Ok(None);
    };
    Ok(Some((body, prefix + len)))
}

/// Appends `body` to `out` behind its varint length.
pub(crate) fn write_frame(body: &[u8], out: &mut Vec<u8>) {
    varint::encode(body.len() as u64, out);
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_only_when_complete() {
        let mut out = Vec::new();
        write_frame(b"hello", &mut out);
        assert_eq!(out, b"\x05hello");
        assert_eq!(split_frame(&out), Ok(Some((&b"hello"[..], 6))));
        assert_eq!(split_frame(&out[..3]), Ok(None));
        assert_eq!(split_frame(&[]), Ok(None));
        out.extend_from_slice(b"tail");
        assert_eq!(split_frame(&out), Ok(Some((&b"hello"[..], 6))));
    }

    #[test]
    fn oversized_frames_are_refused_from_the_prefix_alone() {
        let mut prefix = Vec::new();
        varint::encode(MAX_FRAME_LEN as u64 + 1, &mut prefix);
        assert_eq!(
            split_frame(&prefix),
            Err(IdentifyError::FrameTooLarge {
                len: MAX_FRAME_LEN as u64 + 1,
                max: MAX_FRAME_LEN
            })
        );
        assert!(matches!(
            split_frame(&[0xff; 12]),
            Err(IdentifyError::Varint(_))
        ));
    }
}
