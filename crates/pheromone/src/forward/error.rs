//! Why a forwarding operation failed. Only the error type lives here.

use crate::node::{DispatchError, NodeError};
use std::net::SocketAddr;
use std::sync::Arc;
use thiserror::Error;

/// Why exposing, forwarding or removing one of them failed.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// The service name cannot be carried in a protocol name: it must be 1 to
    /// [`MAX_NAME_LEN`](super::MAX_NAME_LEN) bytes of ASCII letters, digits, `-`, `_`, `.`
    /// or `:`.
    #[error("invalid service name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// This node already answers `/x/NAME` (exposed earlier, or registered by other code);
    /// unexpose it first.
    #[error("{protocol} is already served by this node")]
    AlreadyExposed {
        /// The protocol.
        protocol: String,
    },
    /// Nothing is exposed under this name.
    #[error("nothing is exposed as {name:?}")]
    NotExposed {
        /// The name asked for.
        name: String,
    },
    /// A forward already listens on this address.
    #[error("a forward already listens on {addr}")]
    AlreadyForwarded {
        /// The address.
        addr: SocketAddr,
    },
    /// No forward listens on this address.
    #[error("no forward listens on {addr}")]
    NotForwarded {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The local listener could not be bound (address in use, permission, not local).
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        reason: String,
    },
    /// The peer given to forward to is not known to the node.
    #[error("unknown peer: {0}")]
    Peer(#[source] Arc<NodeError>),
    /// Registering the handler with the node failed.
    #[error("cannot register the handler: {0}")]
    Node(#[source] Arc<NodeError>),
    /// Opening a stream to the peer failed (also reported per connection in the counters;
    /// returned only by calls that open one themselves).
    #[error("cannot open a stream to the peer: {0}")]
    Open(#[source] Arc<DispatchError>),
}
