//! Why the swarm could not give a caller a connection to a peer.

use crate::endpoint::DialError;
use pheromone_core::identity::PeerId;
use std::sync::Arc;
use thiserror::Error;

/// A connection to a peer could not be had.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The swarm (and the node over it) is closed.
    #[error("the node is closed")]
    Closed,
    /// No connection to the peer, no address to dial it at, and no other way (the DHT, a
    /// relay) found one: add a contact with its address.
    #[error("no connection to {peer} and no address to dial; add a contact")]
    NoAddress {
        /// The peer.
        peer: PeerId,
    },
    /// Every address was dialled and failed; the last failure.
    #[error("cannot reach {peer}: {source}")]
    Dial {
        /// The peer.
        peer: PeerId,
        /// The last dial's failure.
        source: Arc<DialError>,
    },
    /// The outbound connection limit is reached.
    #[error("outbound connection limit of {limit} reached; cannot dial {peer}")]
    ConnectionLimit {
        /// The peer.
        peer: PeerId,
        /// The limit in force.
        limit: usize,
    },
    /// No direct address worked and the way around (a relayed connection along the route
    /// table) failed too.
    #[error("cannot reach {peer} directly or through relays: {source}")]
    Unreachable {
        /// The peer.
        peer: PeerId,
        /// Why the relayed attempt failed.
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// Connections to the peer kept closing as soon as they were made.
    #[error("connection to {peer} lost: {reason}")]
    ConnectionLost {
        /// The peer.
        peer: PeerId,
        /// What happened.
        reason: String,
    },
}

impl ConnectError {
    /// The failure of dialling `peer`.
    pub(crate) fn from_dial(peer: PeerId, error: DialError) -> Self {
        match error {
            DialError::ConnectionLimit { limit } => ConnectError::ConnectionLimit { peer, limit },
            other => ConnectError::Dial {
                peer,
                source: Arc::new(other),
            },
        }
    }
}
