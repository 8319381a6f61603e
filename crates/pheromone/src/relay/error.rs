//! Why opening a relayed connection failed.

use crate::endpoint::OpenStreamError;
use crate::upgrade::UpgradeError;
use pheromone_core::identity::PeerId;
use pheromone_core::relay::wire::Status;
use std::time::Duration;
use thiserror::Error;

/// Why a circuit could not be opened.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The route table has no way to the destination.
    #[error("no route to {destination}")]
    NoRoute {
        /// The peer we wanted.
        destination: PeerId,
    },
    /// A relay on the way (or the destination) refused the circuit.
    #[error("circuit to {destination} refused after {hops} hop(s): {status:?}: {reason}")]
    Refused {
        /// The peer we wanted.
        destination: PeerId,
        /// The refusal.
        status: Status,
        /// How far the request got.
        hops: u8,
        /// The refusing node's explanation.
        reason: String,
    },
    /// The relay stream to a hop could not be opened.
    #[error("cannot open a relay stream to {peer}: {source}")]
    Open {
        /// The hop.
        peer: PeerId,
        /// Why.
        source: Box<OpenStreamError>,
    },
    /// The relay stream failed mid-handshake.
    #[error("relay stream to {peer} failed: {source}")]
    Io {
        /// The hop.
        peer: PeerId,
        /// What the stream said.
        source: std::io::Error,
    },
    /// The hop closed the relay stream before answering.
    #[error("{peer} closed the relay stream before answering")]
    Closed {
        /// The hop.
        peer: PeerId,
    },
    /// The hop sent bytes that are not a relay message.
    #[error("bad relay message from {peer}: {source}")]
    Protocol {
        /// The hop.
        peer: PeerId,
        /// What the codec said.
        source: pheromone_core::relay::RelayError,
    },
    /// The hop answered something other than the response to our request.
    #[error("{peer} answered the circuit request with an unexpected message")]
    UnexpectedMessage {
        /// The hop.
        peer: PeerId,
    },
    /// The circuit opened but the end-to-end handshake over it failed (or the far end is
    /// not the peer we asked for).
    #[error("handshake with {destination} over the circuit failed: {source}")]
    Upgrade {
        /// The peer we wanted.
        destination: PeerId,
        /// Why.
        source: Box<UpgradeError>,
    },
    /// Setting the circuit up took too long.
    #[error("circuit to {destination} not open within {timeout:?}")]
    Timeout {
        /// The peer we wanted.
        destination: PeerId,
        /// The limit.
        timeout: Duration,
    },
}
