//! The simulated network's plain types: properties of a link ([`LinkConfig`]), the
//! latency model for hosts that dial each other across the "internet" ([`Reach`]), and
//! the network's counters ([`NetStats`]).
//!
//! Plain types only; the event loop that uses them is in `lib.rs`.

use std::time::Duration;

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
    /// Requests handed to the network (each answered by one response or lost).
    pub requests_sent: u64,
    /// Responses handed to the network (failures included).
    pub responses_sent: u64,
    /// Dials asked for by overlays.
    pub dials: u64,
    /// Dials that failed (dead or unknown target, or no reachability).
    pub dials_failed: u64,
    /// Frames, requests and responses an overlay refused as invalid.
    pub inputs_refused: u64,
    /// Events processed.
    pub events: u64,
}

/// How hosts that have no link reach each other when they dial (full reachability, as on
/// the internet): every node sits at a seeded random point of the unit square, and the
/// one-way latency between two nodes is `base + spread × distance`, so latencies obey the
/// triangle inequality the way geography does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reach {
    /// Latency between two nodes at the same point.
    pub base: Duration,
    /// Extra latency across the whole square's side.
    pub spread: Duration,
    /// Probability that a frame, request or response is lost.
    pub loss: f64,
}

impl Default for Reach {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(5),
            spread: Duration::from_millis(70),
            loss: 0.0,
        }
    }
}

impl Reach {
    /// One-way latency between nodes at `a` and `b`.
    pub fn latency(&self, a: (f32, f32), b: (f32, f32)) -> Duration {
        let (dx, dy) = (f64::from(a.0 - b.0), f64::from(a.1 - b.1));
        self.base + self.spread.mul_f64((dx * dx + dy * dy).sqrt())
    }

    /// The properties of a link between nodes at `a` and `b`.
    pub fn link(&self, a: (f32, f32), b: (f32, f32)) -> LinkConfig {
        LinkConfig {
            latency: self.latency(a, b),
            jitter: Duration::ZERO,
            loss: self.loss,
        }
    }
}
