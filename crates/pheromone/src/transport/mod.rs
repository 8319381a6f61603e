//! Transports: what carries bytes between two hosts, before the connection handles.
//!
//! TCP (`tcp.rs`) hands a connected socket to [`crate::upgrade`], which runs a security
//! protocol (Noise, or TLS from `tls.rs`) and yamux over it. QUIC (`quic.rs`, quinn) brings
//! TLS 1.3 and streams of its own; its connections become the same
//! [`Connection`](crate::Connection) handles. `tls.rs` is the libp2p TLS setup of rustls
//! both share. No transport knows about protocols or the swarm: admitting a connection
//! (limits, peer, address) happens in the [endpoint](crate::endpoint), once for all.

pub(crate) mod quic;
mod tcp;
pub(crate) mod tls;

pub use quic::{bind_udp, QuicConfig};
pub use tcp::{TcpConfig, TcpListener, TcpTransport};
pub use tls::{TlsConfig, TlsIdentity};

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
