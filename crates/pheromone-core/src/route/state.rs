//! The [`Router`] state machine: neighbours, the destination table, route selection under
//! the feasibility condition, triggered and periodic updates, sequence-number requests,
//! expiry and garbage collection.
//!
//! Trace probes are handled in `trace.rs`, path probes of selected routes in `probe.rs`,
//! record signatures in `record.rs`; frames are built by `wire.rs`; what goes out is in
//! `state/outgoing.rs`, the overlay contract in `state/overlay_impl.rs`. Nothing here
//! reads a clock or does IO: every method takes `now` and queues [`Output`]s.

mod outgoing;
mod overlay_impl;

use super::probe::PendingProbe;
use super::record;
use super::table::{feasible, seq_ge, seq_gt, Dest, Learned, Pending, Selected};
use super::wire::{self, Limits, Message, RequestEntry, Signature, UpdateEntry, INFINITY};
use super::{Config, Event, MessageError, Metrics, NextHop, Output, RouteEntry, TraceId};
use crate::identity::{Keypair, PeerId};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

/// A live link to a neighbour.
#[derive(Debug, Clone, Copy)]
pub(super) struct Neighbour {
    pub(super) cost: u16,
    pub(super) next_dump: Instant,
    /// Destinations it holds a route to in our table, against
    /// `max_destinations_per_neighbour`.
    pub(super) routes: usize,
}

/// A request we forwarded toward its destination.
#[derive(Debug, Clone)]
struct Forwarded {
    at: Instant,
    /// Neighbours that sent it (at most `max_neighbours`).
    askers: Vec<PeerId>,
}

/// A trace this node started.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingTrace {
    pub(super) destination: PeerId,
    pub(super) deadline: Instant,
}

/// Distance-vector routing for one node; see the [module docs](super) for the rules and
/// the calling contract.
///
/// Tables are ordered maps, so the same inputs always give the same outputs in the same
/// order (the simulator replays runs bit for bit).
#[derive(Debug)]
pub struct Router {
    pub(super) local: PeerId,
    /// Signs our own route record and the trace replies addressed to us.
    pub(super) keypair: Keypair,
    /// Our signature of (us, `seqno`), made once per seqno.
    pub(super) own_signature: Signature,
    pub(super) config: Config,
    limits: Limits,
    /// Our own sequence number.
    seqno: u32,
    pub(super) neighbours: BTreeMap<PeerId, Neighbour>,
    pub(super) dests: BTreeMap<PeerId, Dest>,
    /// Our pending sequence-number requests, by destination.
    pub(super) requests: BTreeMap<PeerId, Pending>,
    /// Earliest `next_at` among `requests` (may be stale-early: a wake-up with nothing to
    /// do is harmless and keeps this O(1) to maintain).
    next_request_at: Option<Instant>,
    /// Requests we forwarded recently, to forward each (destination, seqno) once, with
    /// the neighbours that asked: they get the newer route when it arrives.
    forwarded: BTreeMap<(PeerId, u32), Forwarded>,
    /// Destinations to advertise to one neighbour at the next flush, answering its
    /// request (a newer seqno alone is not news for the others).
    answers: BTreeMap<PeerId, BTreeSet<PeerId>>,
    /// Destinations for which we recently asked a neighbour for a newer seqno because it
    /// offered a better, unfeasible route; asked again only after `request_dedup`.
    improving: BTreeMap<PeerId, Instant>,
    /// Destinations whose advertisement changed since the last flush (ours included).
    dirty: BTreeSet<PeerId>,
    /// Request entries to send at the next flush, per neighbour.
    out_requests: BTreeMap<PeerId, Vec<RequestEntry>>,
    pub(super) traces: BTreeMap<TraceId, PendingTrace>,
    /// Path probes of selected routes in flight (ids shared with traces).
    pub(super) probes: BTreeMap<TraceId, PendingProbe>,
    /// Destinations the node sends traffic to, with the last time it said so: their
    /// routes are probed (all destinations with `Config::probe_all`).
    pub(super) in_use: BTreeMap<PeerId, Instant>,
    pub(super) next_trace_id: u64,
    next_housekeeping: Option<Instant>,
    /// When the held triggered updates go out (None: nothing held).
    flush_at: Option<Instant>,
    pub(super) outputs: VecDeque<Output>,
    pub(super) metrics: Metrics,
}

impl Router {
    /// A router for the node whose identity is `keypair` (it signs the node's route
    /// record), with no neighbours yet; its housekeeping clock starts at `now`.
    pub fn new(keypair: Keypair, config: Config, now: Instant) -> Self {
        let own_signature = record::sign_record(&keypair, config.initial_seqno);
        let mut router = Self {
            local: keypair.peer_id(),
            keypair,
            own_signature,
            limits: Limits::from_config(&config),
            seqno: config.initial_seqno,
            config,
            neighbours: BTreeMap::new(),
            dests: BTreeMap::new(),
            requests: BTreeMap::new(),
            next_request_at: None,
            forwarded: BTreeMap::new(),
            answers: BTreeMap::new(),
            improving: BTreeMap::new(),
            dirty: BTreeSet::new(),
            out_requests: BTreeMap::new(),
            traces: BTreeMap::new(),
            probes: BTreeMap::new(),
            in_use: BTreeMap::new(),
            next_trace_id: 1,
            next_housekeeping: None,
            flush_at: None,
            outputs: VecDeque::new(),
            metrics: Metrics::default(),
        };
        router.wake(now);
        router
    }

    /// This node's peer ID.
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This node's current sequence number.
    pub fn seqno(&self) -> u32 {
        self.seqno
    }

    /// Counters.
    pub fn metrics(&self) -> Metrics {
        self.metrics
    }

    /// Peers with a live link, in peer ID order.
    pub fn neighbours(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.neighbours.keys().copied()
    }

    /// Where to send traffic for `destination`, if it is reachable. `None` for this node
    /// itself.
    pub fn next_hop(&self, destination: &PeerId) -> Option<NextHop> {
        let sel = self.dests.get(destination)?.selected?;
        Some(NextHop {
            peer: sel.via,
            hops: sel.hops,
            metric: sel.metric,
        })
    }

    /// Every reachable destination with its route, in destination order.
    pub fn table(&self, now: Instant) -> Vec<RouteEntry> {
        self.dests
            .iter()
            .filter_map(|(dest, d)| {
                let sel = d.selected?;
                let refreshed = d
                    .routes
                    .iter()
                    .find(|r| r.via == sel.via)
                    .map_or(now, |r| r.refreshed);
                Some(RouteEntry {
                    destination: *dest,
                    next_hop: sel.via,
                    hops: sel.hops,
                    metric: sel.metric,
                    seqno: sel.seqno,
                    age: now.saturating_duration_since(refreshed),
                })
            })
            .collect()
    }

    /// Number of reachable destinations.
    pub fn reachable(&self) -> usize {
        self.dests.values().filter(|d| d.selected.is_some()).count()
    }

    /// Number of destinations kept (reachable or remembered), bounded by
    /// `Config::max_destinations`.
    pub fn destinations(&self) -> usize {
        self.dests.len()
    }

    /// A link to `peer` came up with an explicit cost (at least 1; e.g. derived from the
    /// round-trip time), where [`Overlay::neighbour_up`] gives it the default cost. Routes
    /// minimise the sum of costs. The peer is sent our whole table at once and every
    /// `update_interval` after. Ignored for ourselves, for a peer already linked, and
    /// beyond `max_neighbours`.
    pub fn neighbour_up_with_cost(&mut self, now: Instant, peer: PeerId, cost: u16) {
        self.wake(now);
        if peer == self.local || self.neighbours.contains_key(&peer) {
            return;
        }
        if self.neighbours.len() >= self.config.max_neighbours {
            self.metrics.neighbour_limit_drops += 1;
            return;
        }
        self.neighbours.insert(
            peer,
            Neighbour {
                cost: cost.clamp(1, INFINITY - 1),
                next_dump: now + self.config.update_interval,
                routes: 0,
            },
        );
        self.send_dump(now, peer);
        self.flush(now);
    }

    /// Changes the cost of the link to `peer`; routes through it are re-evaluated.
    pub fn set_link_cost(&mut self, now: Instant, peer: PeerId, cost: u16) {
        let Some(n) = self.neighbours.get_mut(&peer) else {
            return;
        };
        n.cost = cost.clamp(1, INFINITY - 1);
        let affected: Vec<PeerId> = self
            .dests
            .iter()
            .filter(|(_, d)| d.routes.iter().any(|r| r.via == peer))
            .map(|(k, _)| *k)
            .collect();
        for dest in affected {
            self.select(now, dest);
        }
        self.flush(now);
    }

    /// The link to `peer` went down: every route through it is dropped at once, and the
    /// destinations that lose their route are retracted (or rerouted) right away.
    fn remove_neighbour(&mut self, now: Instant, peer: PeerId) {
        self.wake(now);
        if self.neighbours.remove(&peer).is_none() {
            return;
        }
        self.out_requests.remove(&peer);
        self.answers.remove(&peer);
        self.cancel_probes_via(&peer);
        let mut affected = Vec::new();
        for (dest, d) in &mut self.dests {
            let before = d.routes.len();
            d.routes.retain(|r| r.via != peer);
            if d.routes.len() != before || d.selected.is_some_and(|s| s.via == peer) {
                affected.push(*dest);
            }
        }
        for dest in affected {
            self.select(now, dest);
        }
        self.flush(now);
    }

    /// A frame from `from`. Malformed frames and frames from non-neighbours are dropped
    /// (and counted); the error says why.
    fn receive_frame(
        &mut self,
        now: Instant,
        from: PeerId,
        bytes: &[u8],
    ) -> Result<(), MessageError> {
        self.wake(now);
        self.metrics.frames_received += 1;
        let result = self.dispatch_frame(now, from, bytes);
        if result.is_err() {
            self.metrics.frames_rejected += 1;
        }
        self.flush(now);
        result
    }

    fn dispatch_frame(
        &mut self,
        now: Instant,
        from: PeerId,
        bytes: &[u8],
    ) -> Result<(), MessageError> {
        if !self.neighbours.contains_key(&from) {
            return Err(MessageError::NotANeighbour);
        }
        match wire::decode(bytes, &self.limits)? {
            Message::Update(entries) => {
                // Every entry is judged on its own; the first refusal is reported.
                let mut first_error = None;
                let mut capped = 0;
                for entry in entries {
                    match self.handle_update(now, from, entry) {
                        Ok(()) => {}
                        Err(MessageError::NeighbourRouteCap { .. }) => capped += 1,
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                if let Some(e) = first_error {
                    return Err(e);
                }
                if capped > 0 {
                    return Err(MessageError::NeighbourRouteCap {
                        peer: from,
                        limit: self.config.max_destinations_per_neighbour,
                        dropped: capped,
                    });
                }
                Ok(())
            }
            Message::Request(entries) => {
                for entry in entries {
                    self.handle_request(now, from, entry);
                }
                Ok(())
            }
            Message::Trace(probe) => self.handle_trace(now, from, probe),
            Message::TraceReply(reply) => self.handle_trace_reply(now, from, reply),
        }
    }

    /// Timers: periodic dumps, request resends, expiry, garbage collection, trace
    /// timeouts. Harmless to call early.
    fn run_timers(&mut self, now: Instant) {
        self.wake(now);
        let due: Vec<PeerId> = self
            .neighbours
            .iter()
            .filter(|(_, n)| n.next_dump <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            if let Some(n) = self.neighbours.get_mut(&peer) {
                // From the old deadline, not from `now`, so dumps keep their rhythm
                // however late the driver wakes us; never behind `now`, though.
                n.next_dump = (n.next_dump + self.config.update_interval).max(now);
            }
            self.send_dump(now, peer);
        }
        if self.next_request_at.is_some_and(|at| at <= now) {
            self.resend_requests(now);
        }
        if self.next_housekeeping.is_some_and(|at| at <= now) {
            self.next_housekeeping = Some(now + self.config.housekeeping_interval);
            self.housekeeping(now);
        }
        self.flush(now);
    }

    /// When the timers are next due.
    fn next_timer(&self) -> Option<Instant> {
        let dumps = self.neighbours.values().map(|n| n.next_dump).min();
        [
            dumps,
            self.next_request_at,
            self.next_housekeeping,
            self.flush_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Starts the housekeeping clock on the first input.
    fn wake(&mut self, now: Instant) {
        if self.next_housekeeping.is_none() {
            self.next_housekeeping = Some(now + self.config.housekeeping_interval);
        }
    }

    fn handle_update(
        &mut self,
        now: Instant,
        from: PeerId,
        e: UpdateEntry,
    ) -> Result<(), MessageError> {
        let bad_signature = MessageError::BadSignature {
            from,
            destination: e.destination,
            seqno: e.seqno,
        };
        if e.destination == self.local {
            // Someone still carries a number of ours at least as new as our own: we were
            // restarted. Jump past it so our fresh routes are feasible everywhere — but
            // only for a number we really signed, or anyone could push ours around.
            if e.metric != INFINITY && seq_ge(e.seqno, self.seqno) {
                let genuine = e
                    .signature
                    .is_some_and(|sig| record::verify_record(&self.local, e.seqno, &sig));
                if !genuine {
                    self.metrics.records_rejected += 1;
                    return Err(bad_signature);
                }
                self.bump_seqno(e.seqno.wrapping_add(1));
            }
            return Ok(());
        }
        let signature = match e.signature {
            Some(sig) if e.metric != INFINITY => Some(sig),
            _ => None,
        };
        if e.metric != INFINITY && signature.is_none() {
            self.metrics.records_rejected += 1;
            return Err(bad_signature);
        }
        let known = self.dests.contains_key(&e.destination);
        if !known && e.metric == INFINITY {
            return Ok(());
        }
        let holds_route = self
            .dests
            .get(&e.destination)
            .is_some_and(|d| d.routes.iter().any(|r| r.via == from));
        if e.metric != INFINITY && !holds_route {
            let held = self.neighbours.get(&from).map_or(0, |n| n.routes);
            if held >= self.config.max_destinations_per_neighbour {
                self.metrics.neighbour_cap_drops += 1;
                return Err(MessageError::NeighbourRouteCap {
                    peer: from,
                    limit: self.config.max_destinations_per_neighbour,
                    dropped: 1,
                });
            }
        }
        if let Some(sig) = &signature {
            // Checked before the destination takes a table slot, so forged records cannot
            // fill the table either.
            let genuine = match self.dests.get_mut(&e.destination) {
                Some(d) => d.verified.check(&e.destination, e.seqno, sig),
                None => record::verify_record(&e.destination, e.seqno, sig),
            };
            if !genuine {
                self.metrics.records_rejected += 1;
                return Err(bad_signature);
            }
        }
        if !known {
            if !self.make_room(now) {
                return Ok(());
            }
            let mut dest = Dest::new(now);
            if let Some(sig) = &signature {
                dest.verified.check(&e.destination, e.seqno, sig);
            }
            self.dests.insert(e.destination, dest);
        }
        let Some(d) = self.dests.get_mut(&e.destination) else {
            return Ok(());
        };
        let slot = d.routes.iter().position(|r| r.via == from);
        match (slot, signature) {
            (Some(i), None) => {
                d.routes.swap_remove(i);
                uncount(&mut self.neighbours, &from);
            }
            (None, None) => return Ok(()),
            (slot, Some(signature)) => {
                let learned = Learned {
                    via: from,
                    seqno: e.seqno,
                    metric: e.metric,
                    hops: e.hops,
                    refreshed: now,
                    signature,
                };
                match slot {
                    Some(i) => {
                        let old = d.routes[i];
                        d.routes[i] = learned;
                        if (old.seqno, old.metric, old.hops) == (e.seqno, e.metric, e.hops) {
                            // A refresh from a periodic dump: nothing to reselect.
                            return Ok(());
                        }
                    }
                    None => {
                        d.routes.push(learned);
                        if let Some(n) = self.neighbours.get_mut(&from) {
                            n.routes += 1;
                        }
                    }
                }
            }
        }
        self.select(now, e.destination);
        // An unusable advertisement while we have no route at all: ask for a newer seqno,
        // which will make it (or another) feasible.
        // If a request is already pending, the sender may not have heard it (it may be a
        // new neighbour): ask it directly, once per advertisement it sends.
        self.ask_to_improve(now, from, &e);
        if e.metric != INFINITY
            && self
                .dests
                .get(&e.destination)
                .is_some_and(|d| d.selected.is_none())
        {
            match self.requests.get(&e.destination) {
                None => self.start_request(now, e.destination),
                Some(p) => {
                    let entry = RequestEntry {
                        destination: e.destination,
                        seqno: p.seqno,
                        hop_count: self.config.request_hop_count,
                    };
                    self.out_requests.entry(from).or_default().push(entry);
                }
            }
        }
        Ok(())
    }

    fn handle_request(&mut self, now: Instant, from: PeerId, e: RequestEntry) {
        if e.destination == self.local {
            if seq_gt(e.seqno, self.seqno) {
                self.bump_seqno(e.seqno);
            } else {
                let entry = self.advert(&self.local, &from);
                if let Some(entry) = entry {
                    self.send_updates(from, vec![entry]);
                }
            }
            return;
        }
        let Some(sel) = self.dests.get(&e.destination).and_then(|d| d.selected) else {
            return;
        };
        if seq_ge(sel.seqno, e.seqno) {
            if let Some(entry) = self.advert(&e.destination, &from) {
                self.send_updates(from, vec![entry]);
            }
            return;
        }
        if e.hop_count <= 1 || sel.via == from {
            return;
        }
        let key = (e.destination, e.seqno);
        if let Some(f) = self.forwarded.get_mut(&key) {
            if now.saturating_duration_since(f.at) < self.config.request_dedup {
                if !f.askers.contains(&from) && f.askers.len() < self.config.max_neighbours {
                    f.askers.push(from);
                }
                return;
            }
        }
        if self.forwarded.len() >= self.config.max_destinations {
            // Full of recent forwards: a flood of requests; drop this one rather than grow.
            return;
        }
        self.forwarded.insert(
            key,
            Forwarded {
                at: now,
                askers: vec![from],
            },
        );
        self.out_requests
            .entry(sel.via)
            .or_default()
            .push(RequestEntry {
                destination: e.destination,
                seqno: e.seqno,
                hop_count: e.hop_count - 1,
            });
    }

    /// `from` offers a route better than the one we use but unfeasible for us: ask it
    /// (only it) for a newer seqno, which makes the better route usable (RFC 8966
    /// §3.8.2.2). Seqno changes travel only to those who ask, so without this a node would
    /// keep a longer route after the mesh healed.
    fn ask_to_improve(&mut self, now: Instant, from: PeerId, e: &UpdateEntry) {
        if e.metric == INFINITY {
            return;
        }
        let Some(d) = self.dests.get(&e.destination) else {
            return;
        };
        let (Some(sel), Some(n)) = (d.selected, self.neighbours.get(&from)) else {
            return;
        };
        let offered = e.metric.saturating_add(n.cost);
        if offered >= sel.metric || feasible(d.fd, e.seqno, e.metric) {
            return;
        }
        self.request_newer(now, e.destination, from);
    }

    /// After a reselection: if a stored, unfeasible route is shorter than the one chosen
    /// (the mesh lost a link and the best alternative was not feasible), ask its
    /// neighbour for a newer seqno.
    pub(super) fn improve_after_select(&mut self, now: Instant, dest: PeerId) {
        let Some(d) = self.dests.get(&dest) else {
            return;
        };
        let Some(sel) = d.selected else {
            return;
        };
        // A suspect route is worse than any honest one, whatever the metrics say.
        let selected_suspect = d.suspect(&sel.via, now);
        let better = d
            .routes
            .iter()
            .filter(|r| !feasible(d.fd, r.seqno, r.metric) && !d.suspect(&r.via, now))
            .filter_map(|r| {
                let n = self.neighbours.get(&r.via)?;
                let metric = r.metric.saturating_add(n.cost);
                (selected_suspect || metric < sel.metric).then_some((metric, r.via))
            })
            .min();
        if let Some((_, via)) = better {
            self.request_newer(now, dest, via);
        }
    }

    /// Asks `via` alone for a newer seqno of `dest`, at most once per `request_dedup`.
    pub(super) fn request_newer(&mut self, now: Instant, dest: PeerId, via: PeerId) {
        let Some(d) = self.dests.get(&dest) else {
            return;
        };
        if self
            .improving
            .get(&dest)
            .is_some_and(|&at| now.saturating_duration_since(at) < self.config.request_dedup)
        {
            return;
        }
        if self.improving.len() >= self.config.max_destinations {
            return;
        }
        let entry = RequestEntry {
            destination: dest,
            seqno: d.wanted_seqno(),
            hop_count: self.config.request_hop_count,
        };
        self.improving.insert(dest, now);
        self.out_requests.entry(via).or_default().push(entry);
    }

    /// Queues our route to `dest` for every neighbour whose request for a seqno up to
    /// `seqno` we forwarded.
    fn answer_askers(&mut self, dest: PeerId, seqno: u32) {
        let satisfied: Vec<(PeerId, u32)> = self
            .forwarded
            .range((dest, 0)..=(dest, u32::MAX))
            .filter(|((_, wanted), f)| !f.askers.is_empty() && seq_ge(seqno, *wanted))
            .map(|(k, _)| *k)
            .collect();
        for key in satisfied {
            if let Some(f) = self.forwarded.get_mut(&key) {
                for asker in std::mem::take(&mut f.askers) {
                    self.answers.entry(asker).or_default().insert(dest);
                }
            }
        }
    }

    fn bump_seqno(&mut self, to: u32) {
        self.seqno = to;
        self.own_signature = record::sign_record(&self.keypair, to);
        self.metrics.seqno_bumps += 1;
        self.dirty.insert(self.local);
    }

    /// Makes room for one more destination: true if there is room, possibly after
    /// forgetting the unreachable destination lost longest ago.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.dests.len() < self.config.max_destinations {
            return true;
        }
        let oldest = self
            .dests
            .iter()
            .filter(|(_, d)| d.selected.is_none())
            .min_by_key(|(_, d)| d.lost_at.unwrap_or(now))
            .map(|(k, _)| *k);
        match oldest {
            Some(k) => {
                if let Some(d) = self.dests.remove(&k) {
                    for r in &d.routes {
                        uncount(&mut self.neighbours, &r.via);
                    }
                }
                self.requests.remove(&k);
                true
            }
            None => {
                self.metrics.table_full_drops += 1;
                false
            }
        }
    }

    /// Picks the best feasible route to `dest` and records what changed.
    pub(super) fn select(&mut self, now: Instant, dest: PeerId) {
        let Some(d) = self.dests.get_mut(&dest) else {
            return;
        };
        let old = d.selected;
        let mut best: Option<(Selected, SelectionKey)> = None;
        for r in &d.routes {
            let Some(n) = self.neighbours.get(&r.via) else {
                continue;
            };
            let metric = r.metric.saturating_add(n.cost);
            let hops = r.hops.saturating_add(1);
            if metric == INFINITY || hops > self.config.max_hops {
                continue;
            }
            if !feasible(d.fd, r.seqno, r.metric) {
                continue;
            }
            // Routes probes found lying come last (used only when nothing else is
            // feasible; among them the least often caught, since a liar's metric is the
            // lowest); then smallest metric, then fewest hops, then the route already in
            // use (no flapping between equals), then the smallest peer ID (determinism).
            let strikes = d.strikes_if_suspect(&r.via, now);
            let key = (
                strikes.is_some(),
                strikes.unwrap_or(0),
                metric,
                hops,
                old.is_none_or(|o| o.via != r.via),
                r.via,
            );
            if best.as_ref().is_none_or(|(_, k)| key < *k) {
                let sel = Selected {
                    via: r.via,
                    seqno: r.seqno,
                    metric,
                    hops,
                    signature: r.signature,
                };
                best = Some((sel, key));
            }
        }
        let new = best.map(|(s, _)| s);
        if new == old {
            return;
        }
        d.selected = new;
        if new.map(|s| s.via) != old.map(|s| s.via) {
            // A new path: probe it at the next round.
            d.next_probe = None;
        }
        let visible = |s: &Option<Selected>| s.map(|s| (s.via, s.metric, s.hops));
        if visible(&new) != visible(&old) {
            self.dirty.insert(dest);
        }
        // Only the seqno moved: news for the neighbours that asked for it, not for all.
        // Everyone else still holds a feasible route and hears the number in the next
        // dump; flooding it would make every request cost a message per link of the mesh.
        if let Some(sel) = &new {
            self.answer_askers(dest, sel.seqno);
        }
        let Some(d) = self.dests.get_mut(&dest) else {
            return;
        };
        match &new {
            Some(sel) => {
                d.advertise(sel);
                d.lost_at = None;
                self.requests.remove(&dest);
            }
            None => d.lost_at = Some(now),
        }
        if visible(&new) != visible(&old) {
            self.metrics.route_changes += 1;
            if self.config.route_events {
                self.outputs.push_back(Output::Event(Event::RouteChanged {
                    destination: dest,
                    route: new.map(|s| NextHop {
                        peer: s.via,
                        hops: s.hops,
                        metric: s.metric,
                    }),
                }));
            }
        }
        if new.is_none() && old.is_some() {
            self.start_request(now, dest);
        } else if new.is_some() {
            self.improve_after_select(now, dest);
        }
    }

    /// Asks every neighbour for a newer seqno of `dest`, to be resent until answered.
    pub(super) fn start_request(&mut self, now: Instant, dest: PeerId) {
        let Some(d) = self.dests.get(&dest) else {
            return;
        };
        let pending = Pending {
            seqno: d.wanted_seqno(),
            resends_left: self.config.request_resends,
            next_at: now + self.config.request_timeout,
        };
        self.requests.insert(dest, pending);
        self.next_request_at = Some(
            self.next_request_at
                .map_or(pending.next_at, |at| at.min(pending.next_at)),
        );
        self.queue_request_to_all(dest, pending.seqno);
    }

    fn queue_request_to_all(&mut self, dest: PeerId, seqno: u32) {
        let entry = RequestEntry {
            destination: dest,
            seqno,
            hop_count: self.config.request_hop_count,
        };
        for peer in self.neighbours.keys() {
            self.out_requests.entry(*peer).or_default().push(entry);
        }
    }

    fn resend_requests(&mut self, now: Instant) {
        let mut next: Option<Instant> = None;
        let mut resend = Vec::new();
        self.requests.retain(|dest, p| {
            if p.next_at > now {
                next = Some(next.map_or(p.next_at, |at| at.min(p.next_at)));
                return true;
            }
            if p.resends_left == 0 {
                return false;
            }
            p.resends_left -= 1;
            p.next_at = now + self.config.request_timeout;
            next = Some(next.map_or(p.next_at, |at| at.min(p.next_at)));
            resend.push((*dest, p.seqno));
            true
        });
        self.next_request_at = next;
        for (dest, seqno) in resend {
            self.queue_request_to_all(dest, seqno);
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        let expiry = self.config.route_expiry;
        let mut reselect = Vec::new();
        for (dest, d) in &mut self.dests {
            let before = d.routes.len();
            let neighbours = &mut self.neighbours;
            d.routes.retain(|r| {
                let keep = now.saturating_duration_since(r.refreshed) < expiry;
                if !keep {
                    uncount(neighbours, &r.via);
                }
                keep
            });
            if d.routes.len() != before {
                reselect.push(*dest);
            }
        }
        for dest in reselect {
            self.select(now, dest);
        }
        let gc = self.config.source_gc_time;
        let requests = &mut self.requests;
        let neighbours = &mut self.neighbours;
        self.dests.retain(|dest, d| {
            let forget = d.selected.is_none()
                && d.lost_at
                    .is_some_and(|at| now.saturating_duration_since(at) >= gc);
            if forget {
                requests.remove(dest);
                for r in &d.routes {
                    uncount(neighbours, &r.via);
                }
            }
            !forget
        });
        let dedup = self.config.request_dedup;
        self.forwarded
            .retain(|_, f| now.saturating_duration_since(f.at) < dedup);
        self.improving
            .retain(|_, at| now.saturating_duration_since(*at) < dedup);
        self.expire_traces(now);
        self.run_probes(now);
        self.prune_health(now);
    }
}

/// How candidate routes are ranked by `Router::select`, smallest first: suspect, strikes
/// if suspect, metric, hops, not the route in use, neighbour peer ID.
type SelectionKey = (bool, u8, u16, u8, bool, PeerId);

/// One route through `via` left our table: it no longer counts against its cap.
fn uncount(neighbours: &mut BTreeMap<PeerId, Neighbour>, via: &PeerId) {
    if let Some(n) = neighbours.get_mut(via) {
        n.routes = n.routes.saturating_sub(1);
    }
}
