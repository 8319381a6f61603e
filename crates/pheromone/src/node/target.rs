//! What a call names: a [`Target`] (a peer ID or a name), an address to dial or listen on
//! ([`IntoAddr`]), and per-call settings ([`DispatchOptions`]). Plain types; no lookup
//! happens here.

use super::{ConnectionMode, NodeError};
use pheromone_core::addr::{parse_dial_address, Multiaddr};
use pheromone_core::identity::PeerId;
use std::net::SocketAddr;
use std::time::Duration;

/// Who a request or stream is for: a peer ID, or a name (a route's alias or a peer's
/// announced name) that must belong to exactly one peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// This peer.
    Peer(PeerId),
    /// The one peer with this name.
    Name(String),
}

impl From<PeerId> for Target {
    fn from(p: PeerId) -> Self {
        Target::Peer(p)
    }
}

impl From<&PeerId> for Target {
    fn from(p: &PeerId) -> Self {
        Target::Peer(*p)
    }
}

impl From<&str> for Target {
    fn from(name: &str) -> Self {
        Target::Name(name.to_owned())
    }
}

impl From<String> for Target {
    fn from(name: String) -> Self {
        Target::Name(name)
    }
}

impl From<&String> for Target {
    fn from(name: &String) -> Self {
        Target::Name(name.clone())
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Peer(p) => write!(f, "{p}"),
            Target::Name(n) => write!(f, "{n:?}"),
        }
    }
}

/// An address to dial or listen on: a multiaddr, its text, or `host:port`.
pub trait IntoAddr {
    /// The address as a multiaddr.
    fn into_addr(self) -> Result<Multiaddr, NodeError>;
}

impl IntoAddr for Multiaddr {
    fn into_addr(self) -> Result<Multiaddr, NodeError> {
        Ok(self)
    }
}

impl IntoAddr for &Multiaddr {
    fn into_addr(self) -> Result<Multiaddr, NodeError> {
        Ok(self.clone())
    }
}

impl IntoAddr for SocketAddr {
    fn into_addr(self) -> Result<Multiaddr, NodeError> {
        Ok(Multiaddr::from_socket_addr(self))
    }
}

impl IntoAddr for &str {
    fn into_addr(self) -> Result<Multiaddr, NodeError> {
        parse_dial_address(self).map_err(|e| NodeError::BadAddress {
            addr: self.to_owned(),
            reason: e.to_string(),
        })
    }
}

impl IntoAddr for String {
    fn into_addr(self) -> Result<Multiaddr, NodeError> {
        self.as_str().into_addr()
    }
}

impl IntoAddr for &String {
    fn into_addr(self) -> Result<Multiaddr, NodeError> {
        self.as_str().into_addr()
    }
}

/// Per-call settings of [`Node::dispatch_with`] and [`Node::open_stream_with`]; unset
/// fields use the node's.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DispatchOptions {
    /// Deadline of the whole call, dial included.
    pub timeout: Option<Duration>,
    /// Long or short connection for this call.
    pub mode: Option<ConnectionMode>,
}

impl DispatchOptions {
    /// The node's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the connection mode.
    pub fn mode(mut self, mode: ConnectionMode) -> Self {
        self.mode = Some(mode);
        self
    }
}
