//! pheromone: a peer-to-peer network for Rust that speaks libp2p on the wire.
//!
//! This crate is the tokio glue around [`pheromone_core`]: it owns sockets, timers and
//! tasks and feeds bytes and the current time into the core's state machines. It holds no
//! protocol logic of its own beyond moving bytes.
//!
//! # Layout
//!
//! - [`identity_file`]: the node's key on disk (load, or generate on first start; mode 0600).

#![deny(missing_docs, unreachable_pub)]
#![allow(clippy::disallowed_methods)] // the IO side is where the clock is read

pub mod identity_file;

pub use pheromone_core::identity::{Keypair, PeerId, PublicKey};
