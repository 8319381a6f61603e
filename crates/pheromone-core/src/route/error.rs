//! Errors of the routing protocol: why a frame was rejected, why a message from a peer was
//! refused, and why a local trace could not start.
//!
//! Nothing here is fatal to a node: a rejected frame is dropped and counted in
//! [`Metrics`](super::Metrics); the errors are public so the IO side can log them and fuzz
//! targets can inspect them.

use thiserror::Error;

/// Why a received routing frame was rejected by the wire decoder.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame ended before a field did. Frames arrive whole (the stream framing delimits
    /// them), so this is a malformed frame, not a request for more bytes.
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
    /// A count or length field announced more than its cap allows; nothing was allocated.
    #[error("{field} of {len} exceeds the cap of {max}")]
    LengthCap {
        /// Which field.
        field: &'static str,
        /// The value the peer announced.
        len: u64,
        /// The cap in force.
        max: usize,
    },
    /// The frame starts with a protocol version we do not speak; the peer runs a newer
    /// protocol and this frame can only be dropped.
    #[error("unsupported route wire version {0}")]
    UnsupportedVersion(u8),
    /// The frame kind byte is unknown.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// A varint was overlong, not minimally encoded, or too large for its field.
    #[error("bad varint in {0}")]
    Varint(&'static str),
    /// A peer ID field is not a valid multihash.
    #[error("{0} is not a valid peer ID")]
    BadPeerId(&'static str),
    /// The trace status byte is unknown.
    #[error("unknown trace status {0:#04x}")]
    UnknownStatus(u8),
    /// Bytes were left over after the last field.
    #[error("{0} trailing bytes after the frame")]
    TrailingBytes(usize),
}

/// Why the [`Router`](super::Router) dropped a frame. The node
/// keeps running either way; the IO side may log this or penalise the peer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The frame is malformed; see [`DecodeError`].
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The sender has no live link with us (`link_up` was not called for it, or
    /// `link_down` was); routing information is only taken from neighbours.
    #[error("frame from a peer that is not a neighbour")]
    NotANeighbour,
    /// A request or response reached the router, which speaks only in frames on neighbour
    /// links: the driver mixed up its streams.
    #[error("the route protocol has no requests")]
    NotARequest,
    /// A trace frame whose path does not end with the sender, or a trace reply whose path
    /// does not hold us just before the sender: forged or misrouted, dropped.
    #[error("trace frame with an inconsistent path")]
    BadTracePath,
    /// A route record whose signature is not the destination's own signature of
    /// (destination, seqno): forged (e.g. a higher seqno for someone else's peer ID) or
    /// corrupted. The entry was dropped, the rest of the frame used.
    #[error("route record for {destination} (seqno {seqno}) from {from} has a bad signature")]
    BadSignature {
        /// The neighbour that sent it.
        from: crate::identity::PeerId,
        /// The destination it claims to be signed by.
        destination: crate::identity::PeerId,
        /// The seqno it claims.
        seqno: u32,
    },
    /// The neighbour already holds routes to `Config::max_destinations_per_neighbour`
    /// destinations in our table; its new destinations were dropped.
    #[error("neighbour {peer} advertises more than {limit} destinations; {dropped} refused")]
    NeighbourRouteCap {
        /// The neighbour.
        peer: crate::identity::PeerId,
        /// The cap in force.
        limit: usize,
        /// Destinations of this frame refused.
        dropped: usize,
    },
    /// A trace reply that says "reached" without the target's valid signature of the trace:
    /// a node on the way back faked an arrival. Dropped (the trace or probe times out).
    #[error("trace reply for {target} without the target's signature")]
    BadTraceSignature {
        /// The target the reply claims reached.
        target: crate::identity::PeerId,
    },
}

/// Why [`Router::trace`](super::Router::trace) could not start a trace.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TraceError {
    /// No route to the destination is known right now; wait for routing to converge or
    /// check that the destination is connected at all.
    #[error("no route to the destination")]
    NoRoute,
    /// `Config::max_pending_traces` traces are already waiting for their answers; wait for
    /// one to finish or time out.
    #[error("already {0} traces in flight")]
    TooManyTraces(usize),
}
