//! What goes into and comes out of [`super::Kademlia`]: [`Input`], [`Output`], [`Event`],
//! the ids that tie them together, and the metrics.
//!
//! Plain data; the behaviour is in `state.rs`.

use crate::addr::Multiaddr;
use crate::identity::PeerId;
use bytes::Bytes;
use std::time::Duration;

/// An outbound request, numbered by the state machine; the driver quotes it back with the
/// response or the failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// An inbound request, numbered by the driver (one per inbound stream); the state machine
/// quotes it in the [`Output::SendResponse`] that answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InboundId(pub u64);

/// A lookup started by a command; its [`QueryResult`] carries the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We dialled: the address used is known to work.
    Outbound,
    /// The peer dialled us: its source address is ephemeral, so the driver passes the
    /// listen addresses the peer announced (identify), or none.
    Inbound,
}

/// Why an outbound request produced no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// No connection could be made to any of the addresses.
    Dial,
    /// The peer does not speak the kad protocol id (negotiation failed).
    Unsupported,
    /// The stream broke or was reset before a whole response arrived.
    Io,
    /// The driver gave up waiting (the state machine also times requests out itself).
    Timeout,
}

/// One input for [`super::Kademlia::handle_input`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// A connection to `peer` came up; `addrs` are where it can be dialled, as far as the
    /// driver knows (see [`Direction`]). The peer is not put in the table for this: only
    /// a kad exchange proves it serves kad.
    Connected {
        /// The peer.
        peer: PeerId,
        /// Dialable addresses.
        addrs: Vec<Multiaddr>,
        /// Who dialled.
        direction: Direction,
    },
    /// The last connection to `peer` closed. Its table entry stays (connections come and
    /// go; liveness checks decide).
    Disconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A whole framed request (see [`super::wire::split_frame`], cap
    /// [`super::wire::MAX_REQUEST_LEN`]) arrived from `peer` on an inbound stream `id`.
    InboundRequest {
        /// The sender.
        peer: PeerId,
        /// The driver's number for the stream.
        id: InboundId,
        /// The frame, length prefix included.
        bytes: &'a [u8],
    },
    /// A whole framed response (cap [`super::wire::MAX_RESPONSE_LEN`]) to request `id`.
    Response {
        /// The request it answers.
        id: RequestId,
        /// The frame, length prefix included.
        bytes: &'a [u8],
    },
    /// Request `id` will get no response.
    RequestFailed {
        /// The request.
        id: RequestId,
        /// Why.
        reason: FailureReason,
    },
}

/// What the state machine asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a stream to `peer` (dialling one of `addrs` if not connected), negotiate the
    /// kad protocol id, write `bytes`, read one framed response and hand it back as
    /// [`Input::Response`] with `id`, or report [`Input::RequestFailed`].
    SendRequest {
        /// Quote it back.
        id: RequestId,
        /// The peer.
        peer: PeerId,
        /// Where to dial it if there is no connection.
        addrs: Vec<Multiaddr>,
        /// The framed request.
        bytes: Bytes,
    },
    /// Write `bytes` on inbound stream `id`, then close it.
    SendResponse {
        /// The driver's number for the stream.
        id: InboundId,
        /// The framed response.
        bytes: Bytes,
    },
    /// Something for the application.
    Event(Event),
}

/// Application-level news.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A lookup ended.
    QueryFinished(QueryResult),
    /// `peer` became a table entry in `bucket`.
    PeerAdded {
        /// The peer.
        peer: PeerId,
        /// Its bucket.
        bucket: usize,
        /// Its addresses.
        addrs: Vec<Multiaddr>,
    },
    /// `peer` left the table (it failed a request or a liveness check); `promoted` took
    /// its place from the replacement list.
    PeerEvicted {
        /// The peer.
        peer: PeerId,
        /// Its replacement, if any.
        promoted: Option<PeerId>,
    },
}

/// Why a lookup was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// A lookup of our own ID on joining.
    Bootstrap,
    /// A periodic lookup (own ID or a random key) that keeps the buckets fresh.
    Refresh,
    /// Resolving a peer ID to addresses.
    FindPeer(PeerId),
}

/// How a lookup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryOutcome {
    /// The peer looked for was named, with these addresses (not yet verified by a dial).
    Found(Vec<Multiaddr>),
    /// A [`QueryKind::FindPeer`] lookup converged without anyone naming the peer.
    NotFound,
    /// A bootstrap or refresh lookup converged.
    Completed,
    /// The lookup ran out of time ([`super::Config::query_timeout`]).
    TimedOut,
    /// The lookup was not started: too many lookups running, or the table is empty.
    Refused,
}

/// The end of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryResult {
    /// The command's id.
    pub id: QueryId,
    /// What was looked up.
    pub kind: QueryKind,
    /// How it ended.
    pub outcome: QueryOutcome,
    /// The closest peers that answered, closest first (at most `k`).
    pub closest: Vec<PeerId>,
    /// For a found peer: the request chain that named it (1 when a peer of our own table
    /// knew it, 0 when we did). Otherwise the deepest chain the lookup followed.
    pub hops: u32,
    /// Requests sent.
    pub messages: u32,
    /// Requests that failed or timed out.
    pub failures: u32,
    /// Time from the command to the end.
    pub duration: Duration,
}

/// Counters for metrics and tests; they only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Requests handed to the driver.
    pub requests_sent: u64,
    /// Responses accepted.
    pub responses: u64,
    /// Requests failed or timed out.
    pub requests_failed: u64,
    /// Inbound requests answered.
    pub inbound_requests: u64,
    /// Messages that did not decode (inbound requests and responses).
    pub malformed: u64,
    /// Responses or failures for request ids we have no record of.
    pub unsolicited: u64,
    /// Inbound requests dropped because too many responses were pending.
    pub inbound_dropped: u64,
    /// Listed peers left unread beyond the per-response cap, or with unparsable IDs.
    pub peers_ignored: u64,
    /// Listed peers dropped for having no usable address.
    pub peers_unreachable: u64,
    /// Advertised addresses dropped as unusable (unspecified, multicast, port 0 …).
    pub addrs_rejected: u64,
    /// Table entries evicted.
    pub evictions: u64,
}
