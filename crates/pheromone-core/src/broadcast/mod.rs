//! Storm-free topic broadcast (pub/sub) as a sans-IO state machine: one [`Broadcast`] per
//! node, fed `(now, input)`, drained with [`Broadcast::poll_output`].
//!
//! This module decides what to send to whom and what to deliver locally; it never touches
//! a socket, never reads a clock and never spawns anything. The `pheromone` crate drives
//! one instance per node from a tokio task; `pheromone-sim` drives thousands of them on a
//! virtual clock. The wire format and the rules are specified in
//! `docs/protocols/broadcast.md`.
//!
//! # Rules that prevent broadcast storms
//!
//! - Every message has an identity, [`MessageId`]: a hash of its origin and the origin's
//!   sequence number. A node delivers a message to its local subscribers at most once and
//!   forwards it at most once (a GRAFT answer or a retransmission to one neighbour is not a
//!   forward), never back to the neighbour it came from.
//! - A bounded [seen-cache](seen::SeenCache) (by time and by count) remembers ids; a replay
//!   within its window is neither delivered nor forwarded.
//! - Messages are signed by their origin (Ed25519). Forged, tampered, oversized or
//!   malformed frames are dropped and counted in [`Metrics`], never delivered.
//!
//! # Where traffic goes: interest gradients
//!
//! Neighbours tell each other, per topic, their distance in hops to the nearest subscriber
//! *not counting the neighbour they tell* (split horizon): 0 when subscribed themselves,
//! 1 + the best distance among their other neighbours otherwise, "none" past
//! [`Config::interest_horizon`]. A message on topic `t` is sent only to neighbours that
//! advertised a finite distance for `t`; every node relays, but only subscribers deliver.
//! So traffic flows toward interested nodes, through unsubscribed relays where needed,
//! and never into branches of the network that hold no subscriber.
//!
//! # Strategies
//!
//! [`Strategy::Flood`] pushes every new message to every interested neighbour.
//! [`Strategy::Tree`] pushes along a breadth-first spanning tree and announces lazily
//! elsewhere, as Plumtree does. Per topic a distance vector elects the node with the
//! smallest root key and makes every node's link toward it (its *parent*) an eager edge;
//! all other links are lazy and get batched IHAVE announcements. A node missing an
//! announced message pulls it with GRAFT; a node with no tree edge grafts for good, as in
//! Plumtree, and a *cycle rule* over edge weights carried in every copy PRUNEs only the
//! heaviest edge of a cycle, so repairs never cut the tree apart. When a link dies the
//! tree re-forms around it. About one copy per node per message.
//!
//! Both strategies recover from lost frames the same way: a neighbour that was sent a
//! message or an announcement is expected to answer "I have it" (an ACK, an IHAVE, or the
//! message itself); until it does, it is re-announced the message with doubling timeouts,
//! at most [`Config::max_retransmits`] times. Every retry budget is bounded.
//!
//! # Calling contract
//!
//! The [`Overlay`](crate::overlay::Overlay) trait's, with [`Wire::Frames`](crate::overlay::Wire):
//! create with [`Broadcast::new`]; a neighbour is a peer with any connection (relayed
//! ones included: a relay circuit is as good a path for a message as a direct link) that
//! speaks [`PROTOCOL`]; every frame a neighbour sends goes to `handle_frame`; local
//! commands are [`Broadcast::subscribe`], [`Broadcast::unsubscribe`] and
//! [`Broadcast::publish`]. After every input drain `poll_output`: send each
//! [`Output::Send`] frame to its peer (in order), hand each [`Event::Delivered`] to the
//! application; then arm `handle_timeout` at `poll_timeout`. Deliveries come in
//! per-origin order ([`Config::order_window`]).
//!
//! `now` must never go backwards between calls.

mod config;
mod control;
mod error;
mod gossip;
mod interest;
#[cfg(test)]
mod limits_tests;
mod metrics;
mod order;
mod recovery;
pub mod seen;
mod state;
mod tree;
pub mod wire;

pub use config::{Config, Strategy};
pub use error::{DecodeError, FrameError, PublishError, TopicError};
pub use metrics::{DropCounts, Metrics};
pub use order::OrderedDelivery;
pub use state::Broadcast;

use crate::identity::PeerId;
use bytes::Bytes;
use sha2::Digest;
use std::sync::Arc;

/// The identity of a broadcast message: the first 16 bytes of
/// SHA-256(`"pheromone-broadcast-id/1:"` ‖ origin peer ID bytes ‖ seq as 8 big-endian bytes).
///
/// Derived from (origin, seq) alone, so every node computes the same id for every copy, and
/// 128 bits make a second preimage (forging a colliding message to suppress another)
/// infeasible.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub(crate) [u8; MessageId::LEN]);

impl MessageId {
    /// Length of an id on the wire.
    pub const LEN: usize = 16;

    /// The id of the message `seq` of `origin`.
    pub fn new(origin: &PeerId, seq: u64) -> Self {
        let mut hasher = sha2::Sha256::new();
        hasher.update(b"pheromone-broadcast-id/1:");
        hasher.update(origin.as_bytes());
        hasher.update(seq.to_be_bytes());
        let digest = hasher.finalize();
        let mut id = [0u8; Self::LEN];
        id.copy_from_slice(&digest[..Self::LEN]);
        Self(id)
    }

    /// Wraps raw id bytes (as carried in control entries).
    pub fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

impl std::fmt::Debug for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MessageId({self})")
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in &self.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A topic name: non-empty UTF-8, cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

impl Topic {
    /// A topic named `name`. Length limits are checked by the node that uses it, against
    /// its [`Config::max_topic_len`].
    pub fn new(name: &str) -> Result<Self, TopicError> {
        if name.is_empty() {
            return Err(TopicError::Empty);
        }
        Ok(Self(Arc::from(name)))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Topic({:?})", &*self.0)
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A message delivered to local subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its identity.
    pub id: MessageId,
    /// The node that published it (its signature was verified).
    pub origin: PeerId,
    /// Its topic.
    pub topic: Topic,
    /// The origin's sequence number.
    pub seq: u64,
    /// The payload.
    pub data: Bytes,
    /// How many links the copy that reached us crossed (1 from a direct neighbour, 0 for
    /// our own message).
    pub hops: u8,
}

/// What the broadcast layer tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Hand a message to the local subscribers of its topic.
    Delivered(Message),
}

/// What the state machine asks its driver to do: [`Output::Send`] frames to neighbours
/// and [`Output::Event`]s.
pub type Output = crate::overlay::Output<Event>;

/// The broadcast protocol id.
pub const PROTOCOL: &str = "/pheromone/broadcast/1.0.0";

/// Checks origin signatures. The production implementation is [`Ed25519Verifier`]; a
/// simulator may wrap it to memoize results (verification is a pure function of its
/// inputs, so a memo returns the same answers, only faster).
pub trait SignatureVerifier {
    /// Whether `signature` is `origin`'s valid Ed25519 signature of `signed`.
    fn verify(&mut self, origin: &PeerId, signed: &[u8], signature: &[u8]) -> bool;
}

/// Verifies Ed25519 signatures with the public key inlined in the origin's peer ID.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ed25519Verifier;

impl SignatureVerifier for Ed25519Verifier {
    fn verify(&mut self, origin: &PeerId, signed: &[u8], signature: &[u8]) -> bool {
        // Peer IDs that hash their key (RSA and friends) cannot be verified without the key
        // itself, so their messages are refused.
        match origin.public_key() {
            Some(key) => key.verify(signed, signature),
            None => false,
        }
    }
}

/// Entry points for fuzz targets: each takes arbitrary bytes and must never panic.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;
    use crate::overlay::Overlay;

    /// Decodes `data` as a broadcast frame under the default limits and walks it.
    pub fn fuzz_decode(data: &[u8]) {
        let limits = wire::Limits::from_config(&Config::default());
        if let Ok(wire::Frame::Control(control)) = wire::decode(data, &limits) {
            control.for_each(|_, _| {});
        }
    }

    /// Splits `data` into length-prefixed frames and decodes each.
    pub fn fuzz_length_prefixed(data: &[u8]) {
        let max = Config::default().max_frame_len();
        let mut buf = bytes::BytesMut::from(data);
        while let Ok(Some(frame)) = wire::decode_length_prefixed(&mut buf, max) {
            fuzz_decode(&frame);
        }
    }

    /// Feeds `data` as a frame from a neighbour to a fresh node and drains its outputs.
    /// `start` is any instant (the harness reads the clock; this crate never does).
    pub fn fuzz_handle_message(start: std::time::Instant, data: &[u8]) {
        let local = crate::identity::Keypair::from_seed([7; 32]);
        let peer = crate::identity::Keypair::from_seed([8; 32]).peer_id();
        let mut node = Broadcast::new(local, Config::default());
        node.neighbour_up(start, peer.into());
        let _ = node.handle_frame(start, peer, data);
        while node.poll_output().is_some() {}
        node.handle_timeout(start + std::time::Duration::from_secs(1));
        while node.poll_output().is_some() {}
    }
}

/// A base instant for tests; the only clock read in this module, and only under `cfg(test)`.
#[cfg(test)]
#[allow(clippy::disallowed_methods)]
pub(crate) fn test_now() -> std::time::Instant {
    std::time::Instant::now()
}
