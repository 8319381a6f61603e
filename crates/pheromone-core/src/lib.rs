//! Sans-IO core of pheromone: identities, wire codecs and protocol state machines.
//!
//! Nothing in this crate opens a socket, spawns a task, reads a clock or draws from an
//! unseeded random number generator. State machines take `now` and their inputs and hand
//! back outputs plus the next instant they want to be woken; the `pheromone` crate drives
//! them with tokio, and the simulator drives them with a virtual clock.
//!
//! # Layout
//!
//! - [`broadcast`]: storm-free topic pub/sub — signed messages, seen-cache, flood and
//!   Plumtree (epidemic broadcast tree) strategies, interest gradients.
//! - [`identity`]: Ed25519 keypairs, public keys and libp2p peer IDs.
//! - [`varint`]: unsigned LEB128 varints as the multiformats specs use them.

#![deny(missing_docs, unreachable_pub)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod broadcast;
pub mod identity;
pub mod varint;
