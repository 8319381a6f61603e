//! Transports: byte pipes between two sockets, before any authentication or multiplexing.
//!
//! Only TCP exists for now. A transport knows nothing about peers, Noise or streams; it
//! hands a connected socket to [`crate::upgrade`].

mod tcp;

pub use tcp::{TcpConfig, TcpListener, TcpTransport};

use std::net::SocketAddr;
use thiserror::Error;

/// Why a socket could not be bound, accepted or connected.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Binding a listening socket failed (address in use, not permitted, …).
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address we tried to bind.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The TCP connect failed (refused, unreachable, …).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address we dialled.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The TCP connect did not finish within the dial timeout.
    #[error("connecting to {addr} timed out after {timeout:?}")]
    ConnectTimeout {
        /// The address we dialled.
        addr: SocketAddr,
        /// The limit that passed.
        timeout: std::time::Duration,
    },
    /// A host name could not be resolved to any address.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The name we looked up.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// Accepting an inbound connection failed.
    #[error("accept on {addr} failed: {source}")]
    Accept {
        /// The listening address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}
