//! Sans-IO core of pheromone: identities, wire codecs and protocol state machines.
//!
//! Nothing in this crate opens a socket, spawns a task, reads a clock or draws from an
//! unseeded random number generator. State machines take `now` and their inputs and hand
//! back outputs plus the next instant they want to be woken; the `pheromone` crate drives
//! them with tokio, and the simulator drives them with a virtual clock.
//!
//! # Layout
//!
//! - [`addr`]: multiaddrs (`/ip4/127.0.0.1/tcp/4001/p2p/12D3KooW…`), text and binary,
//!   and the `host:port` dial form.
//! - [`broadcast`]: storm-free topic pub/sub — signed messages, seen-cache, flood and
//!   Plumtree (epidemic broadcast tree) strategies, interest gradients.
//! - [`connmgr`]: the connection manager (watermarks, pinned peers, dial spreading,
//!   pruning) as an overlay with no wire of its own.
//! - [`discovery`]: Kademlia and the connection manager composed into one overlay, with
//!   the rules that tie them together.
//! - [`exec`]: the fleet exec wire format (`/pheromone/exec/1.0.0`): a request naming a
//!   program, then output chunks and an exit status.
//! - [`identify`]: the `/ipfs/id/1.0.0` message (what a peer says about itself) and its
//!   framing.
//! - [`identity`]: Ed25519 keypairs, public keys and libp2p peer IDs.
//! - [`kad`]: Kademlia discovery on the libp2p kad wire — k-bucket routing table, iterative
//!   FIND_NODE lookups, liveness checks, one sans-IO state machine.
//! - [`multistream`]: multistream-select 1.0 protocol negotiation, dialer and listener.
//! - [`noise`]: the libp2p Noise XX handshake (signed identity payload) and the framed
//!   ChaCha20-Poly1305 transport ciphers that follow it.
//! - [`overlay`]: the one contract every protocol over neighbour links implements
//!   ([`overlay::Overlay`]: neighbours up and down, frames, requests, dials, timeouts,
//!   outputs), driven by the tokio glue and by the simulator alike.
//! - [`relay`]: the `/pheromone/relay/1.0.0` circuit handshake codec (CONNECT and its
//!   status response) that relays exchange before splicing streams.
//! - [`resources`]: the resource manager's accounting (rcmgr's scopes: system,
//!   handshaking, per IP prefix, per peer, per protocol, per connection) and its limits.
//! - [`reqresp`]: the request/response wire format of user protocols (status, length,
//!   body), for `Node::dispatch` and its handlers.
//! - [`route`]: loop-free distance-vector routing (Babel-style feasibility, sequence
//!   numbers, triggered updates) as a sans-IO state machine, and its wire format.
//! - [`tls`]: the libp2p TLS certificates (QUIC and `/tls/1.0.0`): parsing with capped
//!   DER, verification of the identity extension, building our own.
//! - [`varint`]: unsigned LEB128 varints as the multiformats specs use them.
//! - [`yamux`]: the yamux stream multiplexer as a sans-IO session state machine.

#![deny(missing_docs, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod addr;
pub mod broadcast;
pub mod connmgr;
pub mod discovery;
pub mod exec;
pub mod identify;
pub mod identity;
pub mod kad;
pub mod multistream;
pub mod noise;
pub mod overlay;
mod reader;
pub mod relay;
pub mod reqresp;
pub mod resources;
pub mod route;
pub mod tls;
pub mod varint;
pub mod yamux;
