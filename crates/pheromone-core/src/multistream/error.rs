//! Why a multistream-select negotiation failed: one error type for the codec and both roles.
//!
//! Everything here is plain data so that callers can match on it, log it and compare it in
//! tests. Text received from the peer is only ever stored after the length cap of the codec
//! has been applied, so an error can never hold more than a message's worth of bytes.

use crate::varint::VarintError;
use thiserror::Error;

/// Why a multistream-select negotiation (or one of its messages) failed.
///
/// Once a [`Dialer`](super::Dialer) or [`Listener`](super::Listener) has reported an error
/// the negotiation is over: close the stream or connection. None of these errors is
/// recoverable on the same byte stream, because the two sides no longer agree on where the
/// negotiation ends.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The listener answered `na` to the single protocol a lazy dialer proposed. Any
    /// application data already written was discarded by the listener; retry with another
    /// protocol on a new stream, or give up.
    #[error("the peer does not support {protocol}")]
    ProtocolRejected {
        /// The protocol the listener refused.
        protocol: String,
    },
    /// The listener answered `na` to every protocol the dialer proposed, in this order.
    /// The peer speaks none of them; close the stream.
    #[error("the peer rejected every protocol we proposed: {tried:?}")]
    AllRejected {
        /// Every protocol proposed, in proposal order.
        tried: Vec<String>,
    },
    /// The dialer gave up after we refused its proposals: it closed the stream, or it sent
    /// bytes that are not a negotiation message (a lazy dialer that had already started
    /// writing application data). Not a protocol violation; just close the stream.
    #[error("the peer gave up after we refused {rejected:?}")]
    PeerGaveUp {
        /// The protocols we refused, in the order they were proposed.
        rejected: Vec<String>,
    },
    /// The first message was not `/multistream/1.0.0`. The peer does not speak
    /// multistream-select 1.0 (or not on this stream); close it.
    #[error("expected the /multistream/1.0.0 header, received {received:?}")]
    InvalidHeader {
        /// What arrived instead, decoded lossily as UTF-8.
        received: String,
    },
    /// A well-formed message arrived that has no place at this point of the negotiation,
    /// for example an echo of a protocol the dialer did not propose. The peer is broken or
    /// hostile; close the stream.
    #[error("expected {expected}, received {received:?}")]
    UnexpectedMessage {
        /// What the state machine was waiting for.
        expected: &'static str,
        /// What arrived instead, decoded lossily as UTF-8.
        received: String,
    },
    /// A length prefix announced a message longer than we accept. Rejected before any
    /// allocation; the peer is broken or hostile.
    #[error("message of {len} bytes exceeds the {max}-byte limit")]
    MessageTooLong {
        /// The announced length (a lower bound when the prefix itself was cut off early).
        len: u64,
        /// The limit that applies to this kind of message.
        max: usize,
    },
    /// A length prefix was not a valid unsigned varint.
    #[error("invalid length prefix: {0}")]
    InvalidLength(#[from] VarintError),
    /// A message's text was not valid UTF-8.
    #[error("message is not valid UTF-8")]
    NotUtf8,
    /// A message did not end with the `\n` that the spec requires (including an empty,
    /// zero-length message).
    #[error("message does not end with a newline")]
    MissingNewline,
    /// A protocol name is not acceptable: empty, not starting with `/`, containing a
    /// newline, too long, or reserved. Reported for names received from the peer and for
    /// names given to [`Dialer::new`](super::Dialer::new) or
    /// [`Listener::new`](super::Listener::new).
    #[error("invalid protocol name {name:?}: {reason}")]
    InvalidProtocolName {
        /// The offending name, decoded lossily as UTF-8.
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// The dialer kept proposing protocols (or asking for `ls`) after we had already
    /// answered the configured number of them without agreement. Close the stream: a peer
    /// that proposes this many protocols is more likely probing than negotiating.
    #[error("the peer made more than {max} proposals without agreement")]
    TooManyProposals {
        /// How many refusals (and `ls` answers) we were willing to send.
        max: usize,
    },
    /// An `ls` answer was framed correctly but its entries were not: an entry's length
    /// prefix was cut off, zero, or ran past the end of the answer.
    #[error("malformed protocol list: {reason}")]
    MalformedList {
        /// What was wrong with it.
        reason: &'static str,
    },
    /// An `ls` answer listed more protocols than we accept.
    #[error("protocol list has more than {max} entries")]
    TooManyProtocols {
        /// The largest number of entries we accept.
        max: usize,
    },
    /// The byte stream ended before the negotiation did.
    #[error("the stream ended during negotiation")]
    UnexpectedEof,
    /// [`Dialer::new`](super::Dialer::new) was given no protocol to propose.
    #[error("no protocol to propose")]
    NoProtocols,
}
