//! Errors of encoding and decoding identify messages.

use crate::identity::IdentityError;
use crate::varint::VarintError;
use thiserror::Error;

/// Why an identify message could not be encoded or decoded.
///
/// A decoding error means the peer's identify answer is unusable as a whole; close the
/// stream (and, for a peer that sends garbage, consider the connection suspect). Bad
/// individual addresses or protocol names are not errors: they are skipped.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IdentifyError {
    /// A frame's length prefix is not a valid varint.
    #[error("bad identify frame length: {0}")]
    Varint(#[from] VarintError),
    /// A frame announces a body longer than [`super::MAX_FRAME_LEN`]; refused before
    /// buffering it.
    #[error("identify frame of {len} bytes is over the {max}-byte limit")]
    FrameTooLarge {
        /// The announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The stream held more than [`super::MAX_FRAMES`] frames.
    #[error("more than {max} identify frames on one stream")]
    TooManyFrames {
        /// The limit.
        max: usize,
    },
    /// The stream ended in the middle of a frame: the peer closed it early, or the
    /// bytes were cut short.
    #[error("identify stream ended in the middle of a frame")]
    Truncated,
    /// The stream ended without a single frame.
    #[error("identify stream closed without a message")]
    NoMessage,
    /// A frame's body is not an `Identify` protobuf.
    #[error("malformed identify protobuf: {0}")]
    Protobuf(String),
    /// The message has no `publicKey`, so it cannot be tied to the peer.
    #[error("identify message has no public key")]
    MissingPublicKey,
    /// The `publicKey` field is not a key we can use (malformed, or not Ed25519).
    #[error("identify message has an unusable public key: {0}")]
    InvalidPublicKey(#[source] IdentityError),
    /// Our own message would exceed [`super::MAX_SEND_LEN`], which rust-libp2p peers refuse.
    /// Advertise fewer listen addresses or protocols.
    #[error("identify message is {len} bytes, over the {max}-byte limit peers accept")]
    MessageTooLarge {
        /// The encoded length of the message body.
        len: usize,
        /// The limit.
        max: usize,
    },
}
