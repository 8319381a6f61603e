//! Node identities: Ed25519 keypairs, their public keys and libp2p peer IDs.
//!
//! Encodings follow the libp2p `peer-ids` spec exactly — keys as the `PublicKey` /
//! `PrivateKey` protobufs, peer IDs as identity multihashes of the public key protobuf,
//! printed in base58btc (`12D3KooW…`) — so our IDs are the IDs rust-libp2p and go-libp2p
//! compute for the same key. This module does no IO: saving keys to files lives in the
//! `pheromone` crate, and key generation takes the caller's RNG.

mod keypair;
mod peer_id;
mod proto;

pub use keypair::{Keypair, PublicKey};
pub use peer_id::PeerId;

use thiserror::Error;

/// Why a key or peer ID could not be decoded or verified.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The key protobuf was malformed.
    #[error("malformed key protobuf: {0}")]
    Protobuf(String),
    /// The key is of a type we do not support (only Ed25519 is supported).
    #[error("unsupported key type {0} (only Ed25519 keys are supported)")]
    UnsupportedKeyType(i32),
    /// The key bytes had the wrong length or were not a valid Ed25519 key.
    #[error("invalid Ed25519 key: {0}")]
    InvalidKey(String),
    /// The peer ID text was not valid base58btc.
    #[error("peer ID {text:?} is not valid base58: {reason}")]
    Base58 {
        /// The text that was given.
        text: String,
        /// What the base58 decoder reported.
        reason: String,
    },
    /// The peer ID bytes were not a multihash we accept (identity or SHA-256).
    #[error("peer ID is not a valid multihash: {0}")]
    Multihash(String),
}
