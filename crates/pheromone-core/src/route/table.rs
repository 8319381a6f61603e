//! The per-destination state of the router: routes learned from each neighbour, the
//! selected route, and the feasibility distance that keeps routing loop-free.
//!
//! Pure data plus the comparison rules (sequence-number arithmetic, the feasibility
//! condition); no frames are built or sent here.

use crate::identity::PeerId;
use std::time::Instant;

use super::record::Verified;
use super::wire::{Signature, INFINITY};

/// `a` is newer than `b` in 32-bit serial-number arithmetic (RFC 1982), so a sequence
/// number that wraps around still compares as newer.
pub(crate) fn seq_gt(a: u32, b: u32) -> bool {
    a != b && (a.wrapping_sub(b) as i32) > 0
}

/// `a` is `b` or newer.
pub(crate) fn seq_ge(a: u32, b: u32) -> bool {
    a == b || seq_gt(a, b)
}

/// Babel's feasibility condition (RFC 8966 §3.5.1): an advertisement of (`seqno`,
/// `metric`) may be used only if it is strictly better than the feasibility distance `fd`
/// — the best (seqno, metric) this node itself ever advertised for the destination. A
/// neighbour advertising something strictly better than what we advertised cannot be
/// routing through us, so accepting it can never close a loop, not even transiently.
pub(crate) fn feasible(fd: Option<(u32, u16)>, seqno: u32, metric: u16) -> bool {
    if metric == INFINITY {
        return true;
    }
    match fd {
        None => true,
        Some((fs, fm)) => seq_gt(seqno, fs) || (seqno == fs && metric < fm),
    }
}

/// What one neighbour last advertised for a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Learned {
    pub(crate) via: PeerId,
    pub(crate) seqno: u32,
    /// The neighbour's metric, before our link cost is added.
    pub(crate) metric: u16,
    /// The neighbour's hop count.
    pub(crate) hops: u8,
    pub(crate) refreshed: Instant,
    /// The destination's signature of (destination, seqno), checked on arrival.
    pub(crate) signature: Signature,
}

/// The route in use, as this node advertises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Selected {
    pub(crate) via: PeerId,
    pub(crate) seqno: u32,
    /// Our metric: the neighbour's plus the link cost.
    pub(crate) metric: u16,
    /// Our hop count: the neighbour's plus one.
    pub(crate) hops: u8,
    /// The destination's signature of (destination, seqno), passed on as it came.
    pub(crate) signature: Signature,
}

/// What path probes found out about the route to a destination through one neighbour.
/// Kept apart from the route itself, so a neighbour that retracts and re-advertises (or
/// reconnects) does not wipe its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Health {
    pub(crate) via: PeerId,
    /// Probes failed in a row since the last success or sentence.
    pub(crate) failures: u8,
    /// Times this route was found lying; each doubles the next penalty (capped).
    pub(crate) strikes: u8,
    /// Not selected while another feasible route exists, until then.
    pub(crate) suspect_until: Option<Instant>,
}

/// A pending sequence-number request of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pending {
    pub(crate) seqno: u32,
    pub(crate) resends_left: u8,
    pub(crate) next_at: Instant,
}

/// Everything known about one destination.
#[derive(Debug, Clone)]
pub(crate) struct Dest {
    /// Feasibility distance: the best (seqno, metric) we advertised. Only ever improves
    /// (newer seqno, or same seqno and smaller metric) until the destination is forgotten.
    pub(crate) fd: Option<(u32, u16)>,
    /// One entry per neighbour that advertises a finite route; at most one per neighbour.
    pub(crate) routes: Vec<Learned>,
    pub(crate) selected: Option<Selected>,
    /// Seqno of the last route we advertised, carried by our retractions.
    pub(crate) last_seqno: u32,
    /// When the destination became unreachable (None while it is reachable).
    pub(crate) lost_at: Option<Instant>,
    /// Signatures already checked.
    pub(crate) verified: Verified,
    /// Probe results per neighbour (at most one entry per neighbour probed).
    pub(crate) health: Vec<Health>,
    /// When the selected route is next probed (None: at the next round).
    pub(crate) next_probe: Option<Instant>,
    /// A probe of the selected route is in flight.
    pub(crate) probing: bool,
}

impl Dest {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            fd: None,
            routes: Vec::new(),
            selected: None,
            last_seqno: 0,
            lost_at: Some(now),
            verified: Verified::default(),
            health: Vec::new(),
            next_probe: None,
            probing: false,
        }
    }

    /// Whether probes found the route through `via` lying, as of `now`.
    pub(crate) fn suspect(&self, via: &PeerId, now: Instant) -> bool {
        self.strikes_if_suspect(via, now).is_some()
    }

    /// How often the route through `via` was caught, if it is suspect as of `now`.
    pub(crate) fn strikes_if_suspect(&self, via: &PeerId, now: Instant) -> Option<u8> {
        self.health
            .iter()
            .find(|h| h.via == *via && h.suspect_until.is_some_and(|t| t > now))
            .map(|h| h.strikes)
    }

    /// Records that we advertise `sel`, lowering the feasibility distance if it is better.
    pub(crate) fn advertise(&mut self, sel: &Selected) {
        let better = match self.fd {
            None => true,
            Some((fs, fm)) => seq_gt(sel.seqno, fs) || (sel.seqno == fs && sel.metric < fm),
        };
        if better {
            self.fd = Some((sel.seqno, sel.metric));
        }
        self.last_seqno = sel.seqno;
    }

    /// The seqno a request should ask for: one past anything we have advertised, so that
    /// an answer is feasible whatever its metric.
    pub(crate) fn wanted_seqno(&self) -> u32 {
        match self.fd {
            Some((fs, _)) => fs.wrapping_add(1),
            None => self.last_seqno.wrapping_add(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_arithmetic_wraps() {
        assert!(seq_gt(1, 0));
        assert!(seq_gt(0, u32::MAX));
        assert!(!seq_gt(u32::MAX, 0));
        assert!(!seq_gt(5, 5));
        assert!(seq_ge(5, 5));
        assert!(seq_gt(0x8000_0000 - 1, 0));
    }

    #[test]
    fn feasibility_follows_babel() {
        assert!(feasible(None, 0, 10));
        assert!(feasible(Some((3, 2)), 3, 1));
        assert!(!feasible(Some((3, 2)), 3, 2));
        assert!(!feasible(Some((3, 2)), 2, 0));
        assert!(feasible(Some((3, 2)), 4, 60_000));
        assert!(feasible(Some((3, 2)), 1, INFINITY));
    }
}
