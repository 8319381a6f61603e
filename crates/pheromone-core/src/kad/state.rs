//! [`Kademlia`]: the one state machine of the discovery protocol — routing table, lookups,
//! liveness checks and refreshes — driven by `(now, input)`.
//!
//! It never opens a stream or reads a clock: the driver (tokio glue or the simulator)
//! feeds it connection news, inbound requests and responses, and carries out the
//! [`Output`]s. Trust rules live here: a peer enters the table only after a kad exchange
//! with it (it answered our request, or sent one to us over a connection whose addresses
//! the driver vouches for); peers that others list only become lookup candidates.

mod lookups;
mod maintain;
mod overlay;

use super::addrs::unusable;
use super::config::Config;
use super::error::KadError;
use super::event::{Event, Metrics, Output, QueryId, QueryKind, QueryOutcome};
use super::key::{Distance, Key};
use super::query::Lookup;
use super::table::{InsertOutcome, Origin, RoutingTable};
use super::wire::{
    encode_find_node_response_from_fields, ConnectionType, DecodeLimits, KadPeer, Request, Response,
};
use crate::addr::Multiaddr;
use crate::identity::PeerId;
use crate::overlay::{Direction, InboundId, Neighbour, RequestFailure, RequestId};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Instant;

/// Random preimages tried per empty bucket after a bootstrap is 2 to this power; buckets
/// closer than `NUM_BUCKETS - 1 - this` are not aimed at (a random key lands in them too
/// rarely to be worth the hashing).
const EMPTY_BUCKET_TRIES_LOG2: usize = 6;

/// Most requesters remembered while their addresses are not yet vouched for.
const MAX_REQUESTED_UNVOUCHED: usize = 256;

#[derive(Debug, Clone, Copy)]
enum Purpose {
    Lookup(QueryId, Distance),
    Liveness,
    /// Its lookup ended before the answer came; the answer still refreshes the table.
    Orphan,
}

#[derive(Debug, Clone)]
struct Pending {
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    purpose: Purpose,
    message_type: i32,
    deadline: Instant,
    /// When a lookup request stops counting against `alpha` (`None` for other requests).
    slow_at: Option<Instant>,
}

#[derive(Debug)]
struct Query {
    kind: QueryKind,
    /// The FIND_NODE `key` sent to every peer asked.
    key_bytes: Bytes,
    lookup: Lookup,
    started: Instant,
    deadline: Instant,
}

/// The Kademlia state machine. See the module docs.
///
/// Calling contract: after every call of [`handle_input`](Self::handle_input),
/// [`handle_timeout`](Self::handle_timeout) or a command, drain
/// [`poll_output`](Self::poll_output) until `None`, then arrange to call `handle_timeout`
/// at [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct Kademlia {
    local: PeerId,
    config: Config,
    table: RoutingTable,
    rng: u64,
    queries: BTreeMap<QueryId, Query>,
    next_query: u64,
    requests: HashMap<RequestId, Pending>,
    deadlines: BTreeSet<(Instant, RequestId)>,
    /// Slow thresholds of lookup requests (see [`Config::slow_request_after`]).
    slow: BTreeSet<(Instant, RequestId)>,
    next_request: u64,
    connected: HashMap<PeerId, Vec<Multiaddr>>,
    /// The IP each connected peer's socket talks to (direct connections only): the
    /// diversity limits count this, never what the peer announces.
    observed: HashMap<PeerId, std::net::IpAddr>,
    /// Peers that sent us a request before any address of theirs was vouched for: they
    /// serve kad, so the first vouched address puts them in the table.
    requested_unvouched: HashSet<PeerId>,
    outputs: VecDeque<Output>,
    responses_queued: usize,
    next_liveness: Instant,
    next_refresh: Option<Instant>,
    liveness_in_flight: Option<RequestId>,
    metrics: Metrics,
}

impl Kademlia {
    /// A node named `local`, with an empty table, whose random choices (refresh targets,
    /// buckets to check) derive from `seed`.
    pub fn new(local: PeerId, config: Config, now: Instant, seed: u64) -> Self {
        let local_key = Key::from_peer(&local);
        Self {
            local,
            table: RoutingTable::new(local_key, &config),
            rng: seed ^ 0x9e37_79b9_7f4a_7c15,
            queries: BTreeMap::new(),
            next_query: 0,
            requests: HashMap::new(),
            deadlines: BTreeSet::new(),
            slow: BTreeSet::new(),
            next_request: 0,
            connected: HashMap::new(),
            observed: HashMap::new(),
            requested_unvouched: HashSet::new(),
            outputs: VecDeque::new(),
            responses_queued: 0,
            next_liveness: now + config.liveness_interval,
            next_refresh: config.refresh_interval.map(|i| now + i),
            liveness_in_flight: None,
            metrics: Metrics::default(),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The routing table, read-only.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// Counters.
    pub fn metrics(&self) -> Metrics {
        self.metrics
    }

    /// Lookups running.
    pub fn running_queries(&self) -> usize {
        self.queries.len()
    }

    /// Requests waiting for a response.
    pub fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    /// A connection to a peer that speaks kad came up. The driver vouches for `addrs`
    /// (see [`Direction`]); since the peer serves kad, it goes into the table at once when
    /// one of them is usable (an inbound peer that announced none waits for an exchange).
    fn add_neighbour(&mut self, now: Instant, neighbour: Neighbour) {
        let Neighbour {
            peer,
            addrs,
            direction,
            observed_ip,
            ..
        } = neighbour;
        if peer == self.local {
            return;
        }
        if let Some(ip) = observed_ip {
            self.observed.insert(peer, ip);
        }
        let mut addrs: Vec<Multiaddr> = addrs
            .into_iter()
            .filter(|a| self.usable(&peer, a))
            .take(self.config.max_addrs_per_peer)
            .collect();
        if direction == Direction::Inbound {
            // Keep what an earlier outbound dial proved over announced ones.
            if let Some(known) = self.connected.get(&peer) {
                addrs.extend(known.iter().cloned());
                addrs.dedup();
                addrs.truncate(self.config.max_addrs_per_peer);
            }
        }
        if !addrs.is_empty() {
            self.requested_unvouched.remove(&peer);
            self.offer(now, peer, &addrs);
        }
        self.connected.insert(peer, addrs);
    }

    /// Starts a lookup of our own ID, which fills the buckets near us and tells the peers
    /// near us that we exist. Needs at least one peer in the table
    /// ([`add_address`](Self::add_address) the bootstrap nodes first).
    pub fn bootstrap(&mut self, now: Instant) -> QueryId {
        self.next_refresh = self.config.refresh_interval.map(|i| now + i);
        let key = self.local.to_bytes();
        self.start_query(now, QueryKind::Bootstrap, key, None)
    }

    /// Starts resolving `target` to addresses. Ends at once (0 hops) when the table or a
    /// live connection already has an address for it.
    pub fn find_peer(&mut self, now: Instant, target: PeerId) -> QueryId {
        let known = self
            .table
            .get(&target)
            .map(|e| e.addrs.clone())
            .filter(|a| !a.is_empty())
            .or_else(|| {
                self.connected
                    .get(&target)
                    .filter(|a| !a.is_empty())
                    .cloned()
            });
        if let Some(addrs) = known {
            let id = self.new_query_id();
            self.finish_now(id, QueryKind::FindPeer(target), QueryOutcome::Found(addrs));
            return id;
        }
        self.start_query(
            now,
            QueryKind::FindPeer(target),
            target.to_bytes(),
            Some(target),
        )
    }

    /// Adds a peer the operator vouches for (a bootstrap or static peer) straight into the
    /// table.
    pub fn add_address(
        &mut self,
        now: Instant,
        peer: PeerId,
        addr: Multiaddr,
    ) -> Result<InsertOutcome, KadError> {
        if peer == self.local {
            return Err(KadError::SelfPeer);
        }
        if let Some(reason) = unusable(&peer, &addr, true) {
            return Err(KadError::BadAddress { peer, reason });
        }
        Ok(self.offer_from(now, peer, std::slice::from_ref(&addr), Origin::Operator))
    }

    /// Removes `peer` from the table (a replacement takes its place).
    pub fn remove_peer(&mut self, peer: &PeerId) -> bool {
        let (removed, promoted) = self.table.remove(peer);
        if removed.is_some() {
            self.push_promoted(promoted);
        }
        removed.is_some()
    }

    /// The next output, if any.
    fn next_output(&mut self) -> Option<Output> {
        let out = self.outputs.pop_front()?;
        if matches!(out, Output::Respond { .. }) {
            self.responses_queued -= 1;
        }
        Some(out)
    }

    /// When the timers are next due.
    fn next_timer(&self) -> Option<Instant> {
        let mut at = self.deadlines.first().map(|(at, _)| *at);
        let mut consider = |t: Instant| at = Some(at.map_or(t, |a| a.min(t)));
        if let Some((t, _)) = self.slow.first() {
            consider(*t);
        }
        consider(self.next_liveness);
        if let Some(t) = self.next_refresh {
            consider(t);
        }
        for q in self.queries.values() {
            consider(q.deadline);
        }
        at
    }

    /// Expires requests and lookups, runs due liveness checks and refreshes.
    fn run_timers(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(pending) = self.requests.remove(&id) {
                if let Some(at) = pending.slow_at {
                    self.slow.remove(&(at, id));
                }
                self.on_failure(now, id, pending, RequestFailure::Timeout);
            }
        }
        while let Some(&(at, id)) = self.slow.first() {
            if at > now {
                break;
            }
            self.slow.pop_first();
            if let Some(Pending {
                purpose: Purpose::Lookup(query, distance),
                ..
            }) = self.requests.get(&id)
            {
                if let Some(q) = self.queries.get_mut(query) {
                    q.lookup.slow(distance);
                }
            }
        }
        let expired: Vec<QueryId> = self
            .queries
            .iter()
            .filter(|(_, q)| q.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.finish(id, now, Some(QueryOutcome::TimedOut));
        }
        if now >= self.next_liveness {
            self.next_liveness = now + self.config.liveness_interval;
            self.check_liveness(now);
        }
        if let Some(at) = self.next_refresh {
            if now >= at {
                self.next_refresh = self.config.refresh_interval.map(|i| now + i);
                self.refresh(now);
            }
        }
        self.step_queries(now);
    }

    // ---- inbound -------------------------------------------------------------------

    fn on_request(
        &mut self,
        now: Instant,
        peer: PeerId,
        id: InboundId,
        bytes: &[u8],
    ) -> Result<(), KadError> {
        let request = match Request::decode(bytes) {
            Ok(r) => r,
            Err(source) => {
                self.metrics.malformed += 1;
                return Err(KadError::Wire { peer, source });
            }
        };
        if self.responses_queued >= self.config.max_pending_inbound {
            self.metrics.inbound_dropped += 1;
            return Err(KadError::TooManyInbound(self.responses_queued));
        }
        self.metrics.inbound_requests += 1;
        let out = match request {
            Request::Ping => {
                let mut out = Vec::new();
                Response::Ping.encode(&mut out);
                out
            }
            Request::FindNode { key } => {
                let target = Key::from_preimage(&key);
                let connected = &self.connected;
                let closest = self.table.closest_with_wire(&target, self.config.k + 1);
                let mut out = Vec::new();
                encode_find_node_response_from_fields(
                    closest
                        .into_iter()
                        .filter(|(e, _)| e.peer != peer)
                        .take(self.config.k)
                        .map(|(e, fields)| {
                            let connection = if connected.contains_key(&e.peer) {
                                ConnectionType::Connected
                            } else {
                                ConnectionType::NotConnected
                            };
                            (fields, connection)
                        }),
                    &mut out,
                );
                out
            }
        };
        self.responses_queued += 1;
        self.outputs.push_back(Output::Respond {
            id,
            response: Bytes::from(out),
        });
        // The requester is alive and serves kad; it joins the table if the driver vouches
        // for an address of it (or it is there already).
        let addrs = self.connected.get(&peer).cloned().unwrap_or_default();
        if !addrs.is_empty() || self.table.get(&peer).is_some() {
            self.offer(now, peer, &addrs);
        } else {
            // Peers that never get vouched for would pile up; forgetting them all at the
            // cap costs at most a late table entry for the others.
            if self.requested_unvouched.len() >= MAX_REQUESTED_UNVOUCHED {
                self.requested_unvouched.clear();
            }
            self.requested_unvouched.insert(peer);
        }
        Ok(())
    }

    // ---- outbound ------------------------------------------------------------------

    fn take_request(&mut self, id: RequestId) -> Option<Pending> {
        let pending = self.requests.remove(&id)?;
        self.deadlines.remove(&(pending.deadline, id));
        if let Some(at) = pending.slow_at {
            self.slow.remove(&(at, id));
        }
        Some(pending)
    }

    fn on_response(&mut self, now: Instant, id: RequestId, bytes: &[u8]) -> Result<(), KadError> {
        let Some(pending) = self.take_request(id) else {
            self.metrics.unsolicited += 1;
            return Err(KadError::UnknownRequest(id.0));
        };
        let limits = DecodeLimits {
            max_peers: self.config.max_peers_per_response,
            max_addrs: self.config.max_addrs_per_peer,
        };
        let response = match Response::decode(bytes, pending.message_type, limits) {
            Ok(r) => r,
            Err(source) => {
                self.metrics.malformed += 1;
                let peer = pending.peer;
                self.on_failure(now, id, pending, RequestFailure::Io);
                self.step_queries(now);
                return Err(KadError::Wire { peer, source });
            }
        };
        self.metrics.responses += 1;
        if self.liveness_in_flight == Some(id) {
            self.liveness_in_flight = None;
        }
        let peer = pending.peer;
        let addrs = self
            .connected
            .get(&peer)
            .filter(|a| !a.is_empty())
            .cloned()
            .unwrap_or(pending.addrs);
        self.offer(now, peer, &addrs);
        if let (
            Purpose::Lookup(query, distance),
            Response::FindNode {
                closer_peers,
                ignored,
                invalid,
            },
        ) = (pending.purpose, response)
        {
            self.metrics.peers_ignored += (ignored + invalid) as u64;
            let closer = self.filter_peers(closer_peers);
            let max = self.config.max_candidates;
            if let Some(q) = self.queries.get_mut(&query) {
                q.lookup.succeeded(&distance, closer, max);
            }
        }
        self.step_queries(now);
        Ok(())
    }

    /// Drops ourselves, unusable addresses, and peers left with no way to reach them.
    fn filter_peers(&mut self, peers: Vec<KadPeer>) -> Vec<KadPeer> {
        let mut out = Vec::with_capacity(peers.len());
        for mut peer in peers {
            if peer.id == self.local {
                continue;
            }
            let before = peer.addrs.len();
            let id = peer.id;
            peer.addrs.retain(|a| self.usable(&id, a));
            self.metrics.addrs_rejected += (before - peer.addrs.len()) as u64;
            if peer.addrs.is_empty() {
                // Reachable only if we know a way ourselves.
                if let Some(e) = self.table.get(&peer.id) {
                    peer.addrs = e.addrs.clone();
                } else if !self.connected.contains_key(&peer.id) {
                    self.metrics.peers_unreachable += 1;
                    continue;
                }
            }
            out.push(peer);
        }
        out
    }

    fn usable(&self, peer: &PeerId, addr: &Multiaddr) -> bool {
        unusable(peer, addr, self.config.allow_private_addrs).is_none()
    }

    fn on_failure(&mut self, now: Instant, id: RequestId, pending: Pending, _: RequestFailure) {
        self.metrics.requests_failed += 1;
        if self.liveness_in_flight == Some(id) {
            self.liveness_in_flight = None;
        }
        if let Purpose::Lookup(query, distance) = pending.purpose {
            if let Some(q) = self.queries.get_mut(&query) {
                q.lookup.failed(&distance);
            }
        }
        // A table entry that does not answer is presumed gone; the newest replacement,
        // seen alive more recently, takes its place.
        if self.table.get(&pending.peer).is_some() {
            let (_, promoted) = self.table.remove(&pending.peer);
            self.metrics.evictions += 1;
            self.outputs.push_back(Output::Event(Event::PeerEvicted {
                peer: pending.peer,
                promoted,
            }));
            self.push_promoted(promoted);
        }
        let _ = now;
    }

    fn push_promoted(&mut self, promoted: Option<PeerId>) {
        if let Some(peer) = promoted {
            if let Some(e) = self.table.get(&peer) {
                let (bucket, addrs) = (self.table.bucket_of(&e.key).unwrap_or(0), e.addrs.clone());
                self.outputs.push_back(Output::Event(Event::PeerAdded {
                    peer,
                    bucket,
                    addrs,
                }));
            }
        }
    }

    /// Offers a peer met on the network to the table.
    fn offer(&mut self, now: Instant, peer: PeerId, addrs: &[Multiaddr]) -> InsertOutcome {
        let observed = self.observed.get(&peer).copied();
        self.offer_from(now, peer, addrs, Origin::Network(observed))
    }

    fn offer_from(
        &mut self,
        now: Instant,
        peer: PeerId,
        addrs: &[Multiaddr],
        origin: Origin,
    ) -> InsertOutcome {
        let outcome = self.table.insert_from(now, peer, addrs, origin);
        if let InsertOutcome::Inserted { bucket } = outcome {
            let addrs = self
                .table
                .get(&peer)
                .map(|e| e.addrs.clone())
                .unwrap_or_default();
            self.outputs.push_back(Output::Event(Event::PeerAdded {
                peer,
                bucket,
                addrs,
            }));
        }
        outcome
    }

    fn send(
        &mut self,
        now: Instant,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: &Request,
        purpose: Purpose,
    ) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        let mut bytes = Vec::new();
        request.encode(&mut bytes);
        let deadline = now + self.config.request_timeout;
        let slow_at = match purpose {
            Purpose::Lookup(..) if self.config.slow_request_after < self.config.request_timeout => {
                Some(now + self.config.slow_request_after)
            }
            _ => None,
        };
        if let Some(at) = slow_at {
            self.slow.insert((at, id));
        }
        self.requests.insert(
            id,
            Pending {
                peer,
                addrs: addrs.clone(),
                purpose,
                message_type: request.message_type(),
                deadline,
                slow_at,
            },
        );
        self.deadlines.insert((deadline, id));
        self.metrics.requests_sent += 1;
        self.outputs.push_back(Output::Request {
            id,
            to: peer,
            addrs,
            request: Bytes::from(bytes),
        });
        id
    }
}
