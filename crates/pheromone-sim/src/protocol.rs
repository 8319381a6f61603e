//! The contract between the simulator and what it simulates: the [`Protocol`] trait a
//! node's state machine implements, link properties, and network counters.
//!
//! Plain types only; the event loop that uses them is in `lib.rs`.

use bytes::Bytes;
use pheromone_core::identity::PeerId;
use std::time::{Duration, Instant};

/// What a protocol instance asks the simulator to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolOutput<E> {
    /// Send one frame to a linked peer.
    Send {
        /// The peer.
        to: PeerId,
        /// The frame.
        bytes: Bytes,
    },
    /// Something for the application (a delivered message, a finished query …).
    Event(E),
}

/// A sans-IO state machine the simulator can drive: one instance per node.
///
/// The same calling contract as the core state machines: after every input the simulator
/// drains [`Protocol::poll_output`], then schedules [`Protocol::handle_timeout`] for
/// [`Protocol::poll_timeout`].
pub trait Protocol {
    /// Application-level events the protocol reports.
    type Event;
    /// A link to `peer` came up.
    fn link_up(&mut self, now: Instant, peer: PeerId);
    /// The link to `peer` went down.
    fn link_down(&mut self, now: Instant, peer: PeerId);
    /// A frame arrived from `from`.
    fn handle_message(&mut self, now: Instant, from: PeerId, bytes: &[u8]);
    /// The instant from `poll_timeout` has passed.
    fn handle_timeout(&mut self, now: Instant);
    /// The next output, if any.
    fn poll_output(&mut self) -> Option<ProtocolOutput<Self::Event>>;
    /// When `handle_timeout` should next run.
    fn poll_timeout(&self) -> Option<Instant>;
}

/// Properties of one (bidirectional) link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// One-way delay.
    pub latency: Duration,
    /// Extra delay drawn uniformly from `0..=jitter` per frame; frames may reorder.
    pub jitter: Duration,
    /// Probability that a frame is lost, in `0.0..=1.0`.
    pub loss: f64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
        }
    }
}

/// Counters of the simulated network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames handed to the network.
    pub frames_sent: u64,
    /// Bytes handed to the network.
    pub bytes_sent: u64,
    /// Frames delivered to a live node.
    pub frames_delivered: u64,
    /// Frames lost to link loss.
    pub frames_lost: u64,
    /// Frames dropped by a partition, a down link, a dead node or an unknown peer.
    pub frames_dropped: u64,
    /// Events processed.
    pub events: u64,
}
