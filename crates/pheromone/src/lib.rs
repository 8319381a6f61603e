//! pheromone: a peer-to-peer network for Rust that speaks libp2p on the wire.
//!
//! This crate is the tokio glue around [`pheromone_core`]: it owns sockets, timers and
//! tasks and feeds bytes and the current time into the core's state machines. Protocol
//! logic — codecs, handshakes, the muxer, the overlays — lives in the core; what is here
//! moves bytes, keeps connections and offers the API.
//!
//! # Layout, bottom up
//!
//! - [`transport`]: TCP sockets (listen, dial with timeout, `TCP_NODELAY`).
//! - [`upgrade`]: a socket becomes a [`Connection`]: multistream-select → Noise XX →
//!   multistream-select → yamux, within a handshake timeout.
//! - [`connection`]: the connection handle, its streams, and its driver task.
//! - [`negotiate`]: multistream-select on a stream, picking its protocol.
//! - [`endpoint`]: an identity with listeners, connections and the protocol handler
//!   table; answers ping, identify and perf ([`protocols`]).
//! - [`resources`]: the resource manager — what every scope (system, handshaking, IP
//!   prefix, peer, protocol, connection) holds, checked before anything new is taken.
//! - [`swarm`]: one pool of connections per peer, shared dials, simultaneous-open
//!   resolution, identify once per connection, the peer book (contacts, what peers said,
//!   what the DHT found), idle closing.
//! - [`overlay`]: the one driver that runs every core overlay over the swarm.
//! - [`discovery`], [`routing`], [`pubsub`]: the services built on it — Kademlia with the
//!   connection manager, multi-hop routing, topic broadcast; [`relay`]: circuits along
//!   the routes.
//! - [`node`]: the API a program uses: handlers by protocol name, contacts, dispatch over
//!   long or short connections, the services.
//! - [`forward`], [`exec`]: TCP port forwarding over the mesh and fleet exec, started
//!   from the node.
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
pub mod metrics;
pub mod negotiate;
pub mod node;
pub mod overlay;
pub mod protocols;
pub mod pubsub;
pub mod relay;
pub mod resources;
pub mod routing;
pub mod swarm;
mod throttle;
pub mod transport;
pub mod upgrade;

pub use connection::{
    cpu_has_fast_aes_gcm, Connection, ConnectionError, ConnectionInfo, Direction, Security, Stream,
    Transport, TransportCipher,
};
pub use endpoint::{Access, DialError, Endpoint, EndpointConfig, EndpointEvent, OpenStreamError};
pub use node::{
    ConnectionMode, DispatchError, DispatchOptions, Node, NodeBuilder, NodeError, NodeEvent, Peer,
    Target,
};
pub use pheromone_core::addr::{parse_dial_address, Multiaddr};
pub use pheromone_core::identity::{Keypair, PeerId, PublicKey};
pub use upgrade::TcpSecurity;

/// The maps a dispatch consults on every call (pending counts, the pool, kept streams):
/// foldhash, seeded per process, instead of SipHash.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The README's example is compiled as a doctest, so the front page cannot drift from the
/// API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExample;
