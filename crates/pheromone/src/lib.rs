//! pheromone: a peer-to-peer network for Rust that speaks libp2p on the wire.
//!
//! This crate is the tokio glue around [`pheromone_core`]: it owns sockets, timers and
//! tasks and feeds bytes and the current time into the core's state machines. It holds no
//! protocol state machine of its own.
//!
//! # Layout
//!
//! - [`transport`]: TCP sockets (listen, dial with timeout, `TCP_NODELAY`).
//! - [`upgrade`]: a socket becomes a [`Connection`]: multistream-select → Noise XX →
//!   multistream-select → yamux, within a handshake timeout.
//! - [`connection`]: the connection handle, its streams, and its driver task.
//! - [`negotiate`]: multistream-select on a stream, picking its protocol.
//! - [`protocols`]: ping, identify and perf on negotiated streams.
//! - [`endpoint`]: an identity with listeners, connections and protocol handlers.
//! - [`node`]: the API a program uses: request and stream handlers by protocol name,
//!   routes by name or peer ID, dispatch over long or short connections.
//! - [`forward`]: TCP port forwarding over the mesh (`expose` a service as `/x/NAME`,
//!   `forward` a local port to a peer's service), like `ipfs p2p`.
//! - [`exec`]: fleet exec (`/pheromone/exec/1.0.0`): run commands on allowed peers and
//!   stream their output back.
//! - [`discovery`]: the Kademlia DHT over the endpoint and the connection manager that
//!   keeps a node between a low and a high watermark of peers.
//! - [`pubsub`]: topic broadcast over the endpoint's connections (storm-free, signed).
//! - [`metrics`]: counters for Prometheus (a `prometheus_client` collector per node).
//! - [`identity_file`]: keys on disk.

#![deny(missing_docs, unreachable_pub)]
#![allow(clippy::disallowed_methods)] // the IO side is where the clock and OS RNG are read

pub mod connection;
mod deadline;
pub mod discovery;
pub mod endpoint;
pub mod exec;
pub mod forward;
pub mod identity_file;
mod links;
pub mod metrics;
pub mod negotiate;
pub mod node;
pub mod protocols;
pub mod pubsub;
pub mod relay;
pub mod routing;
pub mod transport;
pub mod upgrade;

pub use connection::{
    cpu_has_fast_aes_gcm, Connection, ConnectionError, ConnectionInfo, Direction, Stream,
    TransportCipher,
};
pub use endpoint::{Access, DialError, Endpoint, EndpointConfig, EndpointEvent, OpenStreamError};
pub use node::{
    ConnectionMode, DispatchError, DispatchOptions, Node, NodeBuilder, NodeError, NodeEvent, Peer,
    Target,
};
pub use pheromone_core::addr::{parse_dial_address, Multiaddr};
pub use pheromone_core::identity::{Keypair, PeerId, PublicKey};
