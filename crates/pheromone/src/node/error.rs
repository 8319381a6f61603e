//! Errors of the node API: building a node and managing its contacts ([`NodeError`]), and
//! one request or stream to a peer ([`DispatchError`]).
//!
//! Every variant names what it is about (peer, protocol, limit) so a message read in a log
//! says what to do. Dial failures are shared between the callers waiting on one dial,
//! hence `Arc`s and `Clone`.

use crate::endpoint::DialError;
use crate::swarm::{ConnectError, Unresolved};
use pheromone_core::identity::PeerId;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Lists peer IDs for an error message.
fn list(peers: &[PeerId]) -> String {
    peers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why building a node or changing its contacts failed.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A listen address could not be bound or is not a TCP address.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address given.
        addr: String,
        /// What went wrong.
        source: Arc<DialError>,
    },
    /// An address could not be parsed (`127.0.0.1:4001` or `/ip4/…/tcp/…[/p2p/…]`).
    #[error("bad address {addr:?}: {reason}")]
    BadAddress {
        /// The text given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Dialling a contact's address failed (refused, wrong peer, handshake timeout, limit).
    #[error("cannot add contact at {addr}: {source}")]
    Dial {
        /// The address dialled.
        addr: String,
        /// What went wrong.
        source: Arc<ConnectError>,
    },
    /// The peer was reached but did not answer identify, so its name is unknown.
    #[error("contact {peer}: identify failed: {reason}")]
    Identify {
        /// The peer.
        peer: PeerId,
        /// What went wrong.
        reason: String,
    },
    /// A protocol name multistream-select cannot carry (empty, no leading `/`, too long,
    /// a newline).
    #[error("invalid protocol name {protocol:?}: {reason}")]
    InvalidProtocol {
        /// The name given.
        protocol: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The address is our own.
    #[error("{addr} is this node itself")]
    SelfContact {
        /// The address given.
        addr: String,
    },
    /// No contact and no known peer has this name.
    #[error("no contact or known peer is named {name:?}")]
    UnknownName {
        /// The name asked for.
        name: String,
    },
    /// Several peers share this name; use a peer ID instead.
    #[error("name {name:?} is shared by {} peers ({}); use a peer ID", .candidates.len(), list(.candidates))]
    AmbiguousName {
        /// The name asked for.
        name: String,
        /// Every peer that has it, sorted.
        candidates: Vec<PeerId>,
    },
    /// This peer is not a contact.
    #[error("{peer} is not a contact")]
    NoContact {
        /// The peer.
        peer: PeerId,
    },
    /// The node is closed.
    #[error("the node is closed")]
    Closed,
}

/// Why a request (or a stream) to a peer failed.
///
/// Variants say whether the request may have been handled: the ones documented "not
/// handled" are safe to retry; [`DispatchError::ConnectionLost`] and
/// [`DispatchError::Timeout`] are not known either way.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The node is closed. Not handled.
    #[error("the node is closed")]
    Closed,
    /// No contact and no known peer has this name. Not handled.
    #[error("no contact or known peer is named {name:?}")]
    UnknownName {
        /// The name asked for.
        name: String,
    },
    /// Several peers share this name: dispatch by peer ID instead. Not handled.
    #[error("name {name:?} is shared by {} peers ({}); dispatch by peer ID", .candidates.len(), list(.candidates))]
    AmbiguousName {
        /// The name asked for.
        name: String,
        /// Every peer that has it, sorted.
        candidates: Vec<PeerId>,
    },
    /// No connection to the peer and no address to dial it at (add a contact). Not handled.
    #[error("no connection to {peer} and no address to dial; add a contact")]
    NoAddress {
        /// The peer.
        peer: PeerId,
    },
    /// The peer has no address we could dial and the relayed dial along the route
    /// table failed too. Not handled.
    #[error("cannot reach {peer} directly or through relays: {source}")]
    Relay {
        /// The peer.
        peer: PeerId,
        /// Why the relayed dial failed.
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// Dialling the peer failed. Not handled.
    #[error("cannot reach {peer}: {source}")]
    Dial {
        /// The peer.
        peer: PeerId,
        /// What went wrong.
        source: Arc<DialError>,
    },
    /// The protocol name cannot go on the wire (no leading `/`, too long, a newline). Not
    /// sent.
    #[error("invalid protocol name {protocol:?}: {reason}")]
    InvalidProtocol {
        /// The name given.
        protocol: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request is larger than this node sends. Not sent.
    #[error("request of {size} bytes for {protocol} to {peer} exceeds the limit of {max} bytes")]
    RequestTooLarge {
        /// The peer.
        peer: PeerId,
        /// The protocol.
        protocol: String,
        /// The request's size.
        size: usize,
        /// Our limit.
        max: usize,
    },
    /// The peer accepts smaller requests than this one; it read none of it. Not handled.
    #[error("{peer} refused a {size}-byte request for {protocol}: its limit is {max} bytes")]
    RemoteRequestTooLarge {
        /// The peer.
        peer: PeerId,
        /// The protocol.
        protocol: String,
        /// The request's size.
        size: usize,
        /// The peer's limit.
        max: usize,
    },
    /// The reply is larger than this node accepts; it was not read. Handled.
    #[error("reply from {peer} for {protocol} is {size} bytes, over the limit of {max} bytes")]
    ResponseTooLarge {
        /// The peer.
        peer: PeerId,
        /// The protocol.
        protocol: String,
        /// The announced size.
        size: u64,
        /// Our limit.
        max: usize,
    },
    /// The peer refused the protocol during negotiation: it has no handler for it, or we
    /// are not on its allow-list. Not handled.
    #[error("{peer} refused {protocol}: no such protocol, or access denied")]
    Refused {
        /// The peer.
        peer: PeerId,
        /// The protocol.
        protocol: String,
    },
    /// The peer's handler returned an error (or panicked). Handled.
    #[error("{peer}'s handler for {protocol} failed: {message}")]
    HandlerFailed {
        /// The peer.
        peer: PeerId,
        /// The protocol.
        protocol: String,
        /// What the handler said.
        message: String,
    },
    /// The peer could not handle the request for another reason (it says which).
    #[error("{peer} could not handle {protocol}: {message}")]
    Remote {
        /// The peer.
        peer: PeerId,
        /// The protocol.
        protocol: String,
        /// What it said.
        message: String,
    },
    /// The peer is already handling as many of our requests as it allows. Not handled.
    #[error("{peer} is busy: it handles at most {limit} requests from us at once ({protocol})")]
    Busy {
        /// The peer.
        peer: PeerId,
        /// The protocol.
        protocol: String,
        /// The peer's limit.
        limit: usize,
    },
    /// This node already has as many requests in flight to the peer as allowed
    /// ([`Limits::max_pending_requests_per_peer`](super::Limits)). Not sent.
    #[error("{limit} requests already pending to {peer}")]
    TooManyPending {
        /// The peer.
        peer: PeerId,
        /// The limit.
        limit: usize,
    },
    /// No stream could be opened: the connection's stream limit is reached here, or the peer
    /// refused the stream at its limit. Not handled.
    #[error("stream limit reached on the connection to {peer}: {reason}")]
    StreamLimit {
        /// The peer.
        peer: PeerId,
        /// Which side and limit.
        reason: String,
    },
    /// The outbound connection limit is reached. Not handled.
    #[error("outbound connection limit of {limit} reached; cannot dial {peer}")]
    ConnectionLimit {
        /// The peer.
        peer: PeerId,
        /// The limit.
        limit: usize,
    },
    /// The connection failed, or was closed, while the request was in flight: it may or
    /// may not have been handled.
    #[error("connection to {peer} lost during {protocol}: {reason}")]
    ConnectionLost {
        /// The peer.
        peer: PeerId,
        /// The protocol.
        protocol: String,
        /// What happened.
        reason: String,
    },
    /// No reply within the deadline: it may or may not have been handled.
    #[error("no reply from {peer} for {protocol} within {timeout:?}")]
    Timeout {
        /// The peer.
        peer: PeerId,
        /// The protocol.
        protocol: String,
        /// The deadline.
        timeout: Duration,
    },
    /// The peer's reply broke the request/response wire format.
    #[error("{peer} sent a malformed reply for {protocol}: {reason}")]
    Protocol {
        /// The peer.
        peer: PeerId,
        /// The protocol.
        protocol: String,
        /// What was wrong.
        reason: String,
    },
}

impl DispatchError {
    /// The peer the request was for, when one was chosen.
    pub fn peer(&self) -> Option<PeerId> {
        use DispatchError::*;
        match self {
            Closed | UnknownName { .. } | AmbiguousName { .. } | InvalidProtocol { .. } => None,
            NoAddress { peer }
            | Relay { peer, .. }
            | Dial { peer, .. }
            | RequestTooLarge { peer, .. }
            | RemoteRequestTooLarge { peer, .. }
            | ResponseTooLarge { peer, .. }
            | Refused { peer, .. }
            | HandlerFailed { peer, .. }
            | Remote { peer, .. }
            | Busy { peer, .. }
            | TooManyPending { peer, .. }
            | StreamLimit { peer, .. }
            | ConnectionLimit { peer, .. }
            | ConnectionLost { peer, .. }
            | Timeout { peer, .. }
            | Protocol { peer, .. } => Some(*peer),
        }
    }
}

impl From<Unresolved> for NodeError {
    fn from(e: Unresolved) -> Self {
        match e {
            Unresolved::Unknown(name) => NodeError::UnknownName { name },
            Unresolved::Ambiguous(name, candidates) => {
                NodeError::AmbiguousName { name, candidates }
            }
        }
    }
}

impl From<Unresolved> for DispatchError {
    fn from(e: Unresolved) -> Self {
        match e {
            Unresolved::Unknown(name) => DispatchError::UnknownName { name },
            Unresolved::Ambiguous(name, candidates) => {
                DispatchError::AmbiguousName { name, candidates }
            }
        }
    }
}

impl From<ConnectError> for DispatchError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Closed => DispatchError::Closed,
            ConnectError::NoAddress { peer } => DispatchError::NoAddress { peer },
            ConnectError::Dial { peer, source } => DispatchError::Dial { peer, source },
            ConnectError::ConnectionLimit { peer, limit } => {
                DispatchError::ConnectionLimit { peer, limit }
            }
            ConnectError::Unreachable { peer, source } => DispatchError::Relay { peer, source },
            ConnectError::ConnectionLost { peer, reason } => DispatchError::ConnectionLost {
                peer,
                protocol: String::new(),
                reason,
            },
        }
    }
}
