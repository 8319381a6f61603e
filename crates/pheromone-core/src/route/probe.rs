//! Path probes: the defence against metric lies.
//!
//! Signed records stop anyone from inventing a route or a newer seqno, but metric and hops
//! change at every hop and cannot be signed, so a relay can pass on a genuine record with a
//! metric it made up and draw traffic it then drops. Against that the router tests the
//! routes it actually uses: for every destination in use (marked with
//! [`Router::mark_in_use`], or all with `Config::probe_all`) it sends a TRACE along the
//! selected next hop, and only a TRACE_REPLY signed by the destination counts as an
//! answer. After `Config::probe_failures` failures in a row the route through that
//! neighbour becomes *suspect*: selection then prefers any other feasible route, and if
//! the only alternatives are unfeasible it asks their neighbours for a newer seqno, which
//! makes them feasible within a round trip. A suspect route is used only when nothing else
//! is left (so probes lost to congestion cannot cut a destination off); its sentence lasts
//! `probe_penalty`, doubled at every repeat (up to 16×).
//!
//! A liar that forwards probes faithfully but drops other traffic is not caught here (it
//! cannot be told apart on the wire); end-to-end acknowledgements of the traffic itself
//! would be the next step. Part of [`Router`]; nothing here does IO.

use super::wire::{Message, TraceProbe, TraceReply, TraceStatus};
use super::{Router, TraceId};
use crate::identity::PeerId;
use std::time::Instant;

/// A probe of the route to `dest` through `via`, waiting for its signed answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingProbe {
    pub(crate) dest: PeerId,
    pub(crate) via: PeerId,
    pub(crate) deadline: Instant,
}

/// Largest multiplier of `probe_penalty` for a route caught again and again.
const MAX_PENALTY_DOUBLINGS: u8 = 4;

impl Router {
    /// Says the node sends traffic to `destination` (a circuit, a relayed dial): its route
    /// is probed for the next `Config::in_use_ttl`. Cheap; call it on every use. Bounded by
    /// `max_destinations` (further marks are ignored until old ones lapse).
    pub fn mark_in_use(&mut self, now: Instant, destination: PeerId) {
        if destination == self.local {
            return;
        }
        if self.in_use.len() >= self.config.max_destinations
            && !self.in_use.contains_key(&destination)
        {
            return;
        }
        self.in_use.insert(destination, now);
    }

    /// Whether probes currently set the route to `destination` through `via` aside.
    pub fn is_suspect(&self, now: Instant, destination: &PeerId, via: &PeerId) -> bool {
        self.dests
            .get(destination)
            .is_some_and(|d| d.suspect(via, now))
    }

    /// Probes in flight.
    pub fn pending_probes(&self) -> usize {
        self.probes.len()
    }

    /// Starts the probes that are due; called from housekeeping.
    pub(super) fn run_probes(&mut self, now: Instant) {
        let ttl = self.config.in_use_ttl;
        self.in_use
            .retain(|_, at| now.saturating_duration_since(*at) < ttl);
        let timed_out: Vec<TraceId> = self
            .probes
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in timed_out {
            if let Some(p) = self.probes.remove(&id) {
                self.probe_failed(now, p);
            }
        }
        let room = self
            .config
            .max_pending_probes
            .saturating_sub(self.probes.len());
        if room == 0 {
            return;
        }
        let due: Vec<(PeerId, PeerId)> = self
            .dests
            .iter()
            .filter(|(dest, d)| {
                !d.probing
                    && d.next_probe.is_none_or(|at| at <= now)
                    && (self.config.probe_all || self.in_use.contains_key(*dest))
            })
            .filter_map(|(dest, d)| Some((*dest, d.selected?.via)))
            .take(room)
            .collect();
        for (dest, via) in due {
            self.send_probe(now, dest, via);
        }
    }

    fn send_probe(&mut self, now: Instant, dest: PeerId, via: PeerId) {
        let id = TraceId(self.next_trace_id);
        self.next_trace_id += 1;
        self.probes.insert(
            id,
            PendingProbe {
                dest,
                via,
                deadline: now + self.config.probe_timeout,
            },
        );
        if let Some(d) = self.dests.get_mut(&dest) {
            d.probing = true;
        }
        self.metrics.probes_sent += 1;
        let probe = TraceProbe {
            id: id.0,
            target: dest,
            ttl: self.config.max_hops,
            path: vec![self.local],
        };
        self.send(via, &Message::Trace(probe));
    }

    /// A probe's reply came back (its signature, if it says "reached", already checked).
    pub(super) fn finish_probe(&mut self, now: Instant, id: TraceId, reply: &TraceReply) {
        let Some(p) = self.probes.remove(&id) else {
            return;
        };
        let reached = reply.status == TraceStatus::Reached
            && reply.target == p.dest
            && reply.path.get(1) == Some(&p.via);
        if !reached {
            self.probe_failed(now, p);
            return;
        }
        let interval = self.config.probe_interval;
        if let Some(d) = self.dests.get_mut(&p.dest) {
            d.probing = false;
            d.next_probe = Some(now + interval);
            if let Some(h) = d.health.iter_mut().find(|h| h.via == p.via) {
                // A route that carries probes again is rehabilitated (an honest neighbour
                // whose own next hop lied, and has since fixed it); its strikes stay, so
                // a second conviction weighs more.
                h.failures = 0;
                h.suspect_until = None;
            }
        }
    }

    /// The neighbour went down: its probes say nothing about its honesty.
    pub(super) fn cancel_probes_via(&mut self, via: &PeerId) {
        let cancelled: Vec<TraceId> = self
            .probes
            .iter()
            .filter(|(_, p)| p.via == *via)
            .map(|(id, _)| *id)
            .collect();
        for id in cancelled {
            if let Some(p) = self.probes.remove(&id) {
                if let Some(d) = self.dests.get_mut(&p.dest) {
                    d.probing = false;
                }
            }
        }
    }

    fn probe_failed(&mut self, now: Instant, p: PendingProbe) {
        self.metrics.probes_failed += 1;
        let threshold = self.config.probe_failures.max(1);
        let penalty = self.config.probe_penalty;
        let Some(d) = self.dests.get_mut(&p.dest) else {
            return;
        };
        d.probing = false;
        // Probe again at the next round (a lost frame gets a second chance at once).
        d.next_probe = None;
        let health = match d.health.iter().position(|h| h.via == p.via) {
            Some(i) => &mut d.health[i],
            None => {
                d.health.push(super::table::Health {
                    via: p.via,
                    failures: 0,
                    strikes: 0,
                    suspect_until: None,
                });
                let last = d.health.len() - 1;
                &mut d.health[last]
            }
        };
        health.failures = health.failures.saturating_add(1);
        if health.failures < threshold {
            return;
        }
        health.failures = 0;
        let doublings = health.strikes.min(MAX_PENALTY_DOUBLINGS);
        health.strikes = health.strikes.saturating_add(1);
        health.suspect_until = Some(now + penalty * (1u32 << doublings));
        self.metrics.routes_suspected += 1;
        tracing::debug!(
            destination = %p.dest,
            via = %p.via,
            "route failed its probes; set aside"
        );
        self.select(now, p.dest);
        // Still on the suspect route: only unfeasible alternatives (or none) are left. Ask
        // them for a newer seqno; with no alternative at all, ask every neighbour.
        let still_suspect = self
            .dests
            .get(&p.dest)
            .and_then(|d| d.selected)
            .is_some_and(|s| s.via == p.via);
        if still_suspect {
            let alternatives = self
                .dests
                .get(&p.dest)
                .is_some_and(|d| d.routes.iter().any(|r| r.via != p.via));
            if alternatives {
                self.improve_after_select(now, p.dest);
            } else if !self.requests.contains_key(&p.dest) {
                self.start_request(now, p.dest);
            }
        }
        self.flush(now);
    }

    /// Forgets health records whose sentence has run out and that hold no strikes worth
    /// keeping (a route caught once is remembered while its doubled penalty could apply).
    pub(super) fn prune_health(&mut self, now: Instant) {
        let keep_for = self.config.probe_penalty * (1u32 << MAX_PENALTY_DOUBLINGS);
        for d in self.dests.values_mut() {
            d.health.retain(|h| match h.suspect_until {
                Some(until) => now < until + keep_for,
                None => h.failures > 0,
            });
        }
    }
}
