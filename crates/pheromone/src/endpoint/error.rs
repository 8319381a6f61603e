//! Errors of dialling and of opening streams.

use crate::connection::ConnectionError;
use crate::negotiate::NegotiateError;
use crate::transport::TransportError;
use crate::upgrade::UpgradeError;
use std::time::Duration;
use thiserror::Error;

/// Why a dial failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DialError {
    /// The address is not one we can dial over TCP (no `/tcp`, or a transport we lack).
    #[error("cannot dial {addr}: not a TCP address (expected /ip4|/ip6|/dns*/…/tcp/PORT)")]
    UnsupportedAddress {
        /// The address given.
        addr: String,
    },
    /// The socket could not be connected.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The connection was made but the handshake failed (wrong peer, bad crypto, timeout).
    #[error(transparent)]
    Upgrade(Box<UpgradeError>),
    /// The outbound connection limit is reached.
    #[error("outbound connection limit of {limit} reached")]
    ConnectionLimit {
        /// The limit.
        limit: usize,
    },
    /// The connection was made, but the resource manager refused to keep it (a per-peer,
    /// per-IP or memory limit); it was closed.
    #[error(transparent)]
    Resource(#[from] crate::resources::ResourceError),
}

/// Why a stream could not be opened or its protocol failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OpenStreamError {
    /// The connection is gone or refused a new stream.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The peer refused the protocol or negotiation broke.
    #[error(transparent)]
    Negotiate(#[from] NegotiateError),
    /// Negotiation did not finish in time.
    #[error("negotiating {protocol} timed out after {timeout:?}")]
    Timeout {
        /// The protocol proposed.
        protocol: String,
        /// The limit.
        timeout: Duration,
    },
    /// A built-in protocol (ping, identify) failed after negotiation.
    #[error("{protocol} failed: {reason}")]
    Protocol {
        /// Which protocol.
        protocol: String,
        /// What went wrong.
        reason: String,
    },
}

impl From<UpgradeError> for DialError {
    fn from(e: UpgradeError) -> Self {
        DialError::Upgrade(Box::new(e))
    }
}
