//! Errors of the broadcast protocol: why a frame could not be decoded, and why a local
//! `publish` or `subscribe` was refused.
//!
//! A refused frame never reaches the application as a failure of an operation: the state
//! machine drops it, counts it in [`Metrics`](super::Metrics) and returns a
//! [`FrameError`] so that the driver can log it and drop the stream it came on.

use thiserror::Error;

/// Why a received frame was rejected by the wire decoder.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame ended before a field did. Frames arrive whole, so this is a malformed
    /// frame, not a request for more bytes.
    #[error("frame truncated while reading {0}")]
    Truncated(&'static str),
    /// The frame is longer than the configured maximum; it was not parsed.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// Length of the frame.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A length field announced more bytes than its cap allows; nothing was allocated.
    #[error("{field} length {len} exceeds the cap of {max}")]
    LengthCap {
        /// Which field.
        field: &'static str,
        /// The length the peer announced.
        len: u64,
        /// The cap in force.
        max: usize,
    },
    /// The frame starts with a protocol version we do not speak.
    #[error("unsupported broadcast wire version {0}")]
    UnsupportedVersion(u8),
    /// The frame kind byte is unknown.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// A control entry tag is unknown.
    #[error("unknown control entry tag {0:#04x}")]
    UnknownEntry(u8),
    /// A varint was overlong or not minimally encoded.
    #[error("bad varint in {0}")]
    Varint(&'static str),
    /// The origin field is not a valid peer ID.
    #[error("origin is not a valid peer ID")]
    BadOrigin,
    /// The topic is empty or not UTF-8.
    #[error("topic is empty or not valid UTF-8")]
    BadTopic,
    /// Bytes were left over after the last field.
    #[error("{0} trailing bytes after the frame")]
    TrailingBytes(usize),
}

/// Why the state machine refused a frame from a neighbour.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The sender is not a neighbour (no live link); broadcast frames are only taken
    /// from neighbours.
    #[error("broadcast frame from a peer that is not a neighbour")]
    NotANeighbour,
    /// The frame is malformed; see [`DecodeError`].
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A message whose origin signature does not verify: forged or tampered with.
    #[error("message from origin {origin} with a bad signature")]
    BadSignature {
        /// The origin it claims.
        origin: crate::identity::PeerId,
    },
    /// A request or response reached the broadcast layer, which speaks only in frames on
    /// neighbour links: the driver mixed up its streams.
    #[error("the broadcast protocol has no requests")]
    NotARequest,
}

/// Why `publish` refused a message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The payload is larger than `Config::max_data_len`; split it or raise the limit on
    /// every node (receivers drop larger messages).
    #[error("payload of {len} bytes exceeds the {max}-byte limit")]
    DataTooLarge {
        /// Payload length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The topic name is invalid; see [`TopicError`].
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The sequence number space of this node is exhausted (after 2^64 − 1 messages);
    /// restart the node with a new key.
    #[error("sequence numbers exhausted")]
    SeqExhausted,
}

/// Why a topic name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TopicError {
    /// Topics must not be empty.
    #[error("topic name is empty")]
    Empty,
    /// The topic name is longer than `Config::max_topic_len`.
    #[error("topic name of {len} bytes exceeds the {max}-byte limit")]
    TooLong {
        /// Length of the name in bytes.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// This node already keeps state for `Config::max_topics` topics.
    #[error("already tracking the maximum of {0} topics")]
    TooManyTopics(usize),
}
