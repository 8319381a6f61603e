//! Errors of the Kademlia module: [`WireError`] for bytes that are not a valid kad message,
//! [`KadError`] for inputs the state machine refuses.
//!
//! Every variant is something a remote peer can cause; none of them is a bug of ours, and
//! none of them should take more down than the one stream it arrived on.

/// A kad message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The message is longer than its cap ([`super::wire::MAX_REQUEST_LEN`] or
    /// [`super::wire::MAX_RESPONSE_LEN`]); it was not parsed.
    #[error("message of {len} bytes exceeds the {max}-byte cap")]
    FrameTooLarge {
        /// Its length.
        len: u64,
        /// The cap.
        max: usize,
    },
    /// The body is not a valid `Message` protobuf.
    #[error("malformed protobuf: {0}")]
    Protobuf(String),
    /// The message type is one we do not serve (PUT_VALUE, GET_PROVIDERS …) or unknown.
    #[error("unsupported message type {0}")]
    UnsupportedType(i32),
    /// A FIND_NODE request without a key, or with one longer than any peer ID.
    #[error("FIND_NODE key missing or {0} bytes long")]
    BadKey(usize),
    /// A response of a different type than the request it answers.
    #[error("response type {got} does not answer a {expected} request")]
    TypeMismatch {
        /// Type of the request we sent.
        expected: i32,
        /// Type of the response we got.
        got: i32,
    },
}

/// An input the [`super::Kademlia`] state machine refused. The state is unchanged apart
/// from counters; the driver should log it and drop (reset) the stream concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KadError {
    /// The bytes of an inbound request or of a response are not a valid message.
    #[error("invalid kad message from {peer}: {source}")]
    Wire {
        /// Who sent it.
        peer: crate::identity::PeerId,
        /// What is wrong with it.
        source: WireError,
    },
    /// A response or failure for a request id we have no record of: never sent, already
    /// answered, or already timed out. Ignored (and counted in the metrics).
    #[error("no outstanding request {0}")]
    UnknownRequest(u64),
    /// Too many inbound requests are waiting for the driver to send their responses; the
    /// request was dropped. The driver should reset that stream.
    #[error("too many inbound requests pending ({0})")]
    TooManyInbound(usize),
    /// An address given to `add_address` is unusable (unspecified IP, port 0, multicast,
    /// or `/p2p` naming another peer).
    #[error("unusable address for {peer}: {reason}")]
    BadAddress {
        /// The peer.
        peer: crate::identity::PeerId,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The peer is our own ID.
    #[error("that is our own peer ID")]
    SelfPeer,
    /// A frame on a neighbour link reached Kademlia, which speaks only in requests and
    /// responses: the driver mixed up its streams.
    #[error("kad frame from {peer}: the kad protocol has only requests and responses")]
    NotAFrame {
        /// Who sent it.
        peer: crate::identity::PeerId,
    },
}
