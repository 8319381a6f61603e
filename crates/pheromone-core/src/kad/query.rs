//! One iterative lookup: the candidates it knows, sorted by distance to the target, and
//! which of them were asked, answered or failed.
//!
//! Pure bookkeeping: it picks whom to ask next and says when it is done; `state.rs` sends
//! the requests, owns the clock and turns answers into calls here.
//!
//! Diversity: among the `k` closest that a lookup asks and waits for, at most
//! `per_subnet` may share an IPv4 /24 (IPv6 /48) by the addresses they are listed with.
//! Peers that mint IDs next to a key and list only each other (an eclipse) then cannot
//! fill the `k` closest from a handful of hosts: honest peers keep their places, get asked,
//! and name the target. Loopback addresses count against no subnet (one-machine tests).

use super::key::{Distance, Key};
use super::table::Subnet;
use super::wire::KadPeer;
use crate::addr::Multiaddr;
use crate::identity::PeerId;
use std::collections::{BTreeMap, HashMap};

/// Peers whose distance a lookup remembers (see `Lookup::distances`); beyond it the
/// distance is simply computed again.
const MAX_REMEMBERED: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    NotContacted,
    Waiting(u64),
    /// Still awaited, but past the slow threshold: it no longer counts against `alpha`, so
    /// another candidate is asked meanwhile.
    Slow(u64),
    Succeeded,
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate {
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    status: Status,
    /// Requests on the shortest chain that led to this peer, counting the one to it.
    hop: u32,
    /// The subnet of the address it was listed with, for the per-subnet cap.
    subnet: Option<Subnet>,
}

impl Candidate {
    /// Neither failed nor past the slow threshold: it counts among the `k` closest.
    fn responsive(&self) -> bool {
        !matches!(self.status, Status::Failed | Status::Slow(_))
    }
}

/// State of one lookup.
#[derive(Debug, Clone)]
pub(crate) struct Lookup {
    key: Key,
    target: Option<PeerId>,
    candidates: BTreeMap<Distance, Candidate>,
    /// Distances of peers already listed to this lookup. Converging answers list mostly
    /// the same peers; remembering saves a SHA-256 per listed peer, the largest cost of
    /// taking in a response.
    distances: HashMap<PeerId, Distance>,
    in_flight: usize,
    pub(crate) found: Option<(Vec<Multiaddr>, u32)>,
    pub(crate) failures: u32,
    pub(crate) messages: u32,
    pub(crate) max_hop: u32,
    /// Most of the `k` closest that may share a subnet (0: no cap).
    per_subnet: usize,
}

/// The next request a lookup wants sent.
pub(crate) struct Next {
    pub(crate) peer: PeerId,
    pub(crate) addrs: Vec<Multiaddr>,
    pub(crate) distance: Distance,
}

impl Lookup {
    /// A lookup of `key`; `target` is the peer being resolved, if any (the lookup then ends
    /// as soon as someone names it with an address).
    pub(crate) fn new(key: Key, target: Option<PeerId>, per_subnet: usize) -> Self {
        Self {
            per_subnet,
            key,
            target,
            candidates: BTreeMap::new(),
            distances: HashMap::new(),
            in_flight: 0,
            found: None,
            failures: 0,
            messages: 0,
            max_hop: 0,
        }
    }

    /// Seeds a peer from our own table (reached in one hop); `key` is its table key.
    pub(crate) fn seed(&mut self, peer: PeerId, key: &Key, addrs: Vec<Multiaddr>) {
        let distance = self.key.distance(key);
        if self.distances.len() < MAX_REMEMBERED {
            self.distances.insert(peer, distance);
        }
        let subnet = Subnet::of_listed(&addrs);
        self.candidates.entry(distance).or_insert(Candidate {
            peer,
            addrs,
            status: Status::NotContacted,
            hop: 1,
            subnet,
        });
    }

    /// The responsive candidates that count, closest first: at most `per_subnet` of
    /// each subnet (the closest ones), at most `k` in all.
    fn counted(&self, k: usize) -> impl Iterator<Item = (&Distance, &Candidate)> + '_ {
        let mut seen: Vec<(Subnet, usize)> = Vec::new();
        let cap = self.per_subnet;
        self.candidates
            .iter()
            .filter(|(_, c)| c.responsive())
            .filter(move |(_, c)| {
                let (Some(subnet), true) = (c.subnet, cap > 0) else {
                    return true;
                };
                match seen.iter_mut().find(|(s, _)| *s == subnet) {
                    Some((_, n)) if *n >= cap => false,
                    Some((_, n)) => {
                        *n += 1;
                        true
                    }
                    None => {
                        seen.push((subnet, 1));
                        true
                    }
                }
            })
            .take(k)
    }

    /// The closest candidate worth asking now, if fewer than `alpha` requests are in flight:
    /// only candidates among the `k` closest that are not failed or slow are asked, which
    /// is what makes the lookup converge and end. A slow peer gives up its place in the
    /// `k` (as libp2p's lookups skip unresponsive peers), so a peer that left makes the
    /// lookup ask the next candidate after the slow threshold rather than after a whole
    /// request timeout; should it answer after all, it takes its place back.
    pub(crate) fn next(&self, alpha: usize, k: usize) -> Option<Next> {
        if self.in_flight >= alpha || self.found.is_some() {
            return None;
        }
        self.counted(k)
            .find(|(_, c)| c.status == Status::NotContacted)
            .map(|(distance, c)| Next {
                peer: c.peer,
                addrs: c.addrs.clone(),
                distance: *distance,
            })
    }

    /// Records that the request `request` to the candidate at `distance` is on its way.
    pub(crate) fn sent(&mut self, distance: &Distance, request: u64) {
        if let Some(c) = self.candidates.get_mut(distance) {
            c.status = Status::Waiting(request);
            self.in_flight += 1;
            self.messages += 1;
        }
    }

    /// Request ids still in flight.
    pub(crate) fn waiting(&self) -> impl Iterator<Item = u64> + '_ {
        self.candidates.values().filter_map(|c| match c.status {
            Status::Waiting(id) | Status::Slow(id) => Some(id),
            _ => None,
        })
    }

    /// The request to the candidate at `distance` has been waiting past the slow
    /// threshold: it stops counting against `alpha` (its answer is still used if it comes).
    /// A peer that left without a word costs the lookup one slow threshold, not a whole
    /// request timeout, as in libp2p's lookups where a stalled peer frees its slot.
    pub(crate) fn slow(&mut self, distance: &Distance) {
        if let Some(c) = self.candidates.get_mut(distance) {
            if let Status::Waiting(id) = c.status {
                c.status = Status::Slow(id);
                self.in_flight -= 1;
            }
        }
    }

    /// The candidate at `distance` answered with `closer` (already filtered by the caller:
    /// no self, usable addresses only). Keeps at most `max_candidates`, dropping the
    /// farthest that were never contacted.
    pub(crate) fn succeeded(&mut self, distance: &Distance, closer: Vec<KadPeer>, max: usize) {
        let Some(c) = self.candidates.get_mut(distance) else {
            return;
        };
        if matches!(c.status, Status::Waiting(_)) {
            self.in_flight -= 1;
        }
        c.status = Status::Succeeded;
        let hop = c.hop;
        self.max_hop = self.max_hop.max(hop);
        for peer in closer {
            if self.target == Some(peer.id) && !peer.addrs.is_empty() && self.found.is_none() {
                self.found = Some((peer.addrs.clone(), hop));
            }
            let d = match self.distances.get(&peer.id) {
                Some(d) => *d,
                None => {
                    let d = self.key.distance(&Key::from_peer(&peer.id));
                    if self.distances.len() < MAX_REMEMBERED {
                        self.distances.insert(peer.id, d);
                    }
                    d
                }
            };
            match self.candidates.get_mut(&d) {
                Some(existing) => {
                    existing.hop = existing.hop.min(hop + 1);
                    if existing.addrs.is_empty() {
                        existing.subnet = Subnet::of_listed(&peer.addrs);
                        existing.addrs = peer.addrs;
                    }
                }
                None => {
                    self.candidates.insert(
                        d,
                        Candidate {
                            peer: peer.id,
                            subnet: Subnet::of_listed(&peer.addrs),
                            addrs: peer.addrs,
                            status: Status::NotContacted,
                            hop: hop + 1,
                        },
                    );
                }
            }
        }
        while self.candidates.len() > max {
            // Candidates past their subnet's cap go first: a crowd from one subnet must
            // not push the others out of the lookup.
            let over_cap = self.over_cap();
            let farthest = self
                .candidates
                .iter()
                .rev()
                .filter(|(_, c)| c.status == Status::NotContacted)
                .find(|(d, _)| over_cap.contains(d))
                .or_else(|| {
                    self.candidates
                        .iter()
                        .rev()
                        .find(|(_, c)| c.status == Status::NotContacted)
                })
                .map(|(d, _)| *d);
            match farthest {
                Some(d) => {
                    self.candidates.remove(&d);
                }
                None => break,
            }
        }
    }

    /// The candidate at `distance` failed (error, timeout, bad answer).
    pub(crate) fn failed(&mut self, distance: &Distance) {
        if let Some(c) = self.candidates.get_mut(distance) {
            if matches!(c.status, Status::Waiting(_)) {
                self.in_flight -= 1;
            }
            c.status = Status::Failed;
            self.failures += 1;
        }
    }

    /// Whether the lookup is over: the target was found, or the `k` closest candidates
    /// that are neither failed nor slow all answered, or nothing is left to ask or wait
    /// for (slow requests included: one of them may still answer).
    pub(crate) fn is_finished(&self, k: usize) -> bool {
        if self.found.is_some() {
            return true;
        }
        let mut closest = self.counted(k).map(|(_, c)| c).peekable();
        if closest.peek().is_none() {
            return self.in_flight == 0
                && !self
                    .candidates
                    .values()
                    .any(|c| matches!(c.status, Status::Slow(_)));
        }
        closest.all(|c| c.status == Status::Succeeded)
    }

    /// Distances of candidates that come after `per_subnet` closer ones of their subnet.
    fn over_cap(&self) -> Vec<Distance> {
        if self.per_subnet == 0 {
            return Vec::new();
        }
        let mut seen: Vec<(Subnet, usize)> = Vec::new();
        let mut out = Vec::new();
        for (d, c) in &self.candidates {
            let Some(subnet) = c.subnet else { continue };
            match seen.iter_mut().find(|(s, _)| *s == subnet) {
                Some((_, n)) if *n >= self.per_subnet => out.push(*d),
                Some((_, n)) => *n += 1,
                None => seen.push((subnet, 1)),
            }
        }
        out
    }

    /// The peers that answered, closest first, at most `k`.
    pub(crate) fn closest_succeeded(&self, k: usize) -> Vec<PeerId> {
        self.candidates
            .values()
            .filter(|c| c.status == Status::Succeeded)
            .take(k)
            .map(|c| c.peer)
            .collect()
    }
}
