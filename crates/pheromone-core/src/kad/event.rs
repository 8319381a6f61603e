//! What comes out of [`super::Kademlia`] besides the overlay contract's own types:
//! [`Output`], [`Event`], query ids and results, and the metrics.
//!
//! Plain data; the behaviour is in `state.rs`.

use crate::addr::Multiaddr;
use crate::identity::PeerId;
use std::time::Duration;

/// A lookup started by a command; its [`QueryResult`] carries the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// What Kademlia asks of its driver: [`Output::Request`]s, [`Output::Respond`]s and
/// [`Output::Event`]s.
pub type Output = crate::overlay::Output<Event>;

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
