//! The resource manager's accounting: what every scope holds, checked against
//! [`ResourceLimits`] before anything new is taken.
//!
//! The scopes are go-libp2p rcmgr's — system, handshaking, per IP prefix, per peer, per
//! protocol, per connection — and what they count: connections in and out, streams,
//! pending handshakes, circuits relayed through us and circuits that end here, and the
//! memory connections hold. A refusal is a [`ResourceError`] naming the scope, the resource
//! and the limit.
//!
//! This is bookkeeping only: no IO, no clock, no locks. The `pheromone` crate keeps one
//! [`Ledger`] behind a mutex, wraps each grant in a guard that gives it back on drop, and
//! counts and logs the refusals. Per-connection stream limits are yamux's and QUIC's own
//! (`max_streams`); the memory a connection holds is measured by its driver and checked here.

mod limits;
#[cfg(test)]
mod tests;

pub use limits::{ResourceLimits, CONNECTION_BUDGET};

use crate::identity::PeerId;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::net::IpAddr;
use thiserror::Error;

/// An IP prefix the per-IP limits count by: the whole address for IPv4 (/32), the first
/// 56 bits for IPv6 (/56, what one subscriber usually gets), as rcmgr does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpPrefix(IpAddr);

impl IpPrefix {
    /// The prefix `ip` falls in.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => IpPrefix(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpPrefix(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 72) - 1);
                    IpPrefix(IpAddr::V6(bits.into()))
                }
            },
        }
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}/32"),
            IpAddr::V6(a) => write!(f, "{a}/56"),
        }
    }
}

/// Where a limit applies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// The whole node.
    System,
    /// Inbound connections still in their handshake, before the peer is known (rcmgr's
    /// transient scope).
    Handshaking,
    /// One IPv4 address or IPv6 /56.
    Ip(IpPrefix),
    /// One peer.
    Peer(PeerId),
    /// One protocol.
    Protocol(String),
    /// One connection.
    Connection(u64),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::System => f.write_str("system"),
            Scope::Handshaking => f.write_str("handshaking"),
            Scope::Ip(p) => write!(f, "ip {p}"),
            Scope::Peer(p) => write!(f, "peer {p}"),
            Scope::Protocol(p) => write!(f, "protocol {p}"),
            Scope::Connection(id) => write!(f, "connection {id}"),
        }
    }
}

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Resource {
    /// Live inbound connections.
    InboundConnections,
    /// Live outbound connections.
    OutboundConnections,
    /// Live connections, both directions.
    Connections,
    /// Inbound handshakes in progress.
    PendingHandshakes,
    /// Inbound streams being served.
    Streams,
    /// Bytes held.
    Memory,
    /// Circuits relayed through this node.
    RelayedCircuits,
    /// Relayed connections ending at this node.
    CircuitsEndingHere,
}

impl Resource {
    /// The name used in metrics labels and in the TOML keys' wording.
    pub fn label(self) -> &'static str {
        match self {
            Resource::InboundConnections => "inbound_connections",
            Resource::OutboundConnections => "outbound_connections",
            Resource::Connections => "connections",
            Resource::PendingHandshakes => "pending_handshakes",
            Resource::Streams => "streams",
            Resource::Memory => "memory",
            Resource::RelayedCircuits => "relayed_circuits",
            Resource::CircuitsEndingHere => "circuits_ending_here",
        }
    }
}

impl Scope {
    /// The scope's kind, for metrics labels (no peer IDs or addresses there).
    pub fn label(&self) -> &'static str {
        match self {
            Scope::System => "system",
            Scope::Handshaking => "handshaking",
            Scope::Ip(_) => "ip",
            Scope::Peer(_) => "peer",
            Scope::Protocol(_) => "protocol",
            Scope::Connection(_) => "connection",
        }
    }
}

/// A refusal: taking one more of `resource` in `scope` would pass `limit`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("resource limit: {scope} is at its limit of {limit} {}", resource.label())]
pub struct ResourceError {
    /// Where the limit applies.
    pub scope: Scope,
    /// What ran out.
    pub resource: Resource,
    /// The limit (bytes for memory, a count otherwise).
    pub limit: u64,
}

fn refuse(scope: Scope, resource: Resource, limit: usize) -> ResourceError {
    ResourceError {
        scope,
        resource,
        limit: limit as u64,
    }
}

/// Which way a connection was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Way {
    /// The peer dialled us (or a relayed circuit ended here).
    Inbound,
    /// We dialled.
    Outbound,
}

/// A handshake admitted by [`Ledger::open_handshake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeAdmission {
    /// The ticket to give back with [`Ledger::close_handshake`].
    pub ticket: u64,
    /// A handshake that lost its place to this one: abort it (its ticket is already
    /// closed).
    pub evicted: Option<u64>,
}

/// What one connection was counted under, to give back when it closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionKey {
    /// Its direction.
    pub way: Way,
    /// Its address prefix, unless exempt (loopback) or unknown (relayed).
    pub ip: Option<IpPrefix>,
    /// The authenticated peer.
    pub peer: PeerId,
}

/// Counts by key; entries that reach zero are removed, so the map holds only live keys.
#[derive(Debug)]
struct Counts<K: Hash + Eq>(HashMap<K, usize>);

impl<K: Hash + Eq> Default for Counts<K> {
    fn default() -> Self {
        Counts(HashMap::new())
    }
}

impl<K: Hash + Eq + Clone> Counts<K> {
    fn get(&self, k: &K) -> usize {
        self.0.get(k).copied().unwrap_or(0)
    }
    fn add(&mut self, k: &K) {
        *self.0.entry(k.clone()).or_insert(0) += 1;
    }
    fn sub(&mut self, k: &K) {
        if let Some(n) = self.0.get_mut(k) {
            *n -= 1;
            if *n == 0 {
                self.0.remove(k);
            }
        }
    }
}

/// What every scope holds now. One per node; see the module docs for how it is used.
#[derive(Debug)]
pub struct Ledger {
    limits: ResourceLimits,
    inbound: usize,
    outbound: usize,
    /// Handshakes in progress by ticket; tickets grow, so the first is the oldest.
    handshakes: BTreeMap<u64, Option<IpPrefix>>,
    next_ticket: u64,
    handshakes_per_ip: Counts<IpPrefix>,
    connections_per_ip: Counts<IpPrefix>,
    connections_per_peer: Counts<PeerId>,
    streams: usize,
    streams_per_peer: Counts<PeerId>,
    streams_per_protocol: Counts<String>,
    relayed: usize,
    relayed_per_peer: Counts<PeerId>,
    ending: usize,
    ending_per_relay: Counts<PeerId>,
}

/// A snapshot of the system scope's counts, for metrics and `pheromone status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Usage {
    /// Live inbound connections.
    pub inbound_connections: usize,
    /// Live outbound connections.
    pub outbound_connections: usize,
    /// Inbound handshakes in progress.
    pub pending_handshakes: usize,
    /// Inbound streams being served.
    pub streams: usize,
    /// Circuits relayed through this node.
    pub relayed_circuits: usize,
    /// Relayed connections ending here.
    pub circuits_ending_here: usize,
}

impl Ledger {
    /// An empty ledger enforcing `limits`.
    pub fn new(limits: ResourceLimits) -> Self {
        Self {
            limits,
            inbound: 0,
            outbound: 0,
            handshakes: BTreeMap::new(),
            next_ticket: 0,
            handshakes_per_ip: Counts::default(),
            connections_per_ip: Counts::default(),
            connections_per_peer: Counts::default(),
            streams: 0,
            streams_per_peer: Counts::default(),
            streams_per_protocol: Counts::default(),
            relayed: 0,
            relayed_per_peer: Counts::default(),
            ending: 0,
            ending_per_relay: Counts::default(),
        }
    }

    /// The limits enforced.
    pub fn limits(&self) -> &ResourceLimits {
        &self.limits
    }

    /// The system scope's counts.
    pub fn usage(&self) -> Usage {
        Usage {
            inbound_connections: self.inbound,
            outbound_connections: self.outbound,
            pending_handshakes: self.handshakes.len(),
            streams: self.streams,
            relayed_circuits: self.relayed,
            circuits_ending_here: self.ending,
        }
    }

    /// The prefix `ip` is counted under, or `None` when it is exempt (loopback, by default).
    pub fn prefix(&self, ip: IpAddr) -> Option<IpPrefix> {
        let loopback = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
            IpAddr::V4(v4) => v4.is_loopback(),
        };
        if loopback && self.limits.exempt_loopback {
            None
        } else {
            Some(IpPrefix::of(ip))
        }
    }

    /// Admits an inbound handshake from `ip`. Refused when that address already has its
    /// share of handshakes in progress; when every handshake slot is taken, the oldest
    /// handshake of the address holding the most slots is evicted to make room (that may
    /// be one of `ip`'s own). A good peer's handshake takes milliseconds, so it is never
    /// the oldest for long; idle sockets are.
    pub fn open_handshake(&mut self, ip: IpAddr) -> Result<HandshakeAdmission, ResourceError> {
        let prefix = self.prefix(ip);
        if let Some(p) = prefix {
            if self.handshakes_per_ip.get(&p) >= self.limits.max_pending_handshakes_per_ip {
                return Err(refuse(
                    Scope::Ip(p),
                    Resource::PendingHandshakes,
                    self.limits.max_pending_handshakes_per_ip,
                ));
            }
        }
        if self.limits.max_pending_handshakes == 0 {
            return Err(refuse(Scope::Handshaking, Resource::PendingHandshakes, 0));
        }
        let mut evicted = None;
        if self.handshakes.len() >= self.limits.max_pending_handshakes {
            let victim = self.eviction_victim();
            if let Some(ticket) = victim {
                self.close_handshake(ticket);
            }
            evicted = victim;
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.handshakes.insert(ticket, prefix);
        if let Some(p) = prefix {
            self.handshakes_per_ip.add(&p);
        }
        Ok(HandshakeAdmission { ticket, evicted })
    }

    /// The oldest handshake of the address with the most handshakes in progress (exempt
    /// addresses counted together as one).
    fn eviction_victim(&self) -> Option<u64> {
        let exempt = self.handshakes.values().filter(|p| p.is_none()).count();
        let busiest = self
            .handshakes_per_ip
            .0
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(p, n)| (Some(*p), *n));
        let target = match busiest {
            Some((p, n)) if n > exempt => p,
            _ => None,
        };
        self.handshakes
            .iter()
            .find(|(_, p)| **p == target)
            .map(|(t, _)| *t)
    }

    /// A handshake ended (done, failed or evicted); closing a ticket twice is harmless.
    pub fn close_handshake(&mut self, ticket: u64) {
        if let Some(Some(p)) = self.handshakes.remove(&ticket) {
            self.handshakes_per_ip.sub(&p);
        }
    }

    /// Whether a handshake still holds its place (false once evicted or closed).
    pub fn handshake_is_open(&self, ticket: u64) -> bool {
        self.handshakes.contains_key(&ticket)
    }

    /// Checks that an outbound dial may start (the system outbound limit), before any
    /// socket is made.
    pub fn check_dial(&self) -> Result<(), ResourceError> {
        if self.outbound >= self.limits.max_outbound_connections {
            return Err(refuse(
                Scope::System,
                Resource::OutboundConnections,
                self.limits.max_outbound_connections,
            ));
        }
        Ok(())
    }

    /// Counts an authenticated connection with `peer` from `ip` (`None`: relayed, or not an
    /// IP transport), or says which limit it would pass.
    pub fn open_connection(
        &mut self,
        way: Way,
        ip: Option<IpAddr>,
        peer: PeerId,
    ) -> Result<ConnectionKey, ResourceError> {
        let l = &self.limits;
        match way {
            Way::Inbound if self.inbound >= l.max_inbound_connections => {
                return Err(refuse(
                    Scope::System,
                    Resource::InboundConnections,
                    l.max_inbound_connections,
                ))
            }
            Way::Outbound if self.outbound >= l.max_outbound_connections => {
                return Err(refuse(
                    Scope::System,
                    Resource::OutboundConnections,
                    l.max_outbound_connections,
                ))
            }
            _ => {}
        }
        let prefix = ip.and_then(|ip| self.prefix(ip));
        if let Some(p) = prefix {
            if self.connections_per_ip.get(&p) >= l.max_connections_per_ip {
                return Err(refuse(
                    Scope::Ip(p),
                    Resource::Connections,
                    l.max_connections_per_ip,
                ));
            }
        }
        if self.connections_per_peer.get(&peer) >= l.max_connections_per_peer {
            return Err(refuse(
                Scope::Peer(peer),
                Resource::Connections,
                l.max_connections_per_peer,
            ));
        }
        match way {
            Way::Inbound => self.inbound += 1,
            Way::Outbound => self.outbound += 1,
        }
        if let Some(p) = prefix {
            self.connections_per_ip.add(&p);
        }
        self.connections_per_peer.add(&peer);
        Ok(ConnectionKey {
            way,
            ip: prefix,
            peer,
        })
    }

    /// Gives back what [`Ledger::open_connection`] counted.
    pub fn close_connection(&mut self, key: &ConnectionKey) {
        match key.way {
            Way::Inbound => self.inbound = self.inbound.saturating_sub(1),
            Way::Outbound => self.outbound = self.outbound.saturating_sub(1),
        }
        if let Some(p) = key.ip {
            self.connections_per_ip.sub(&p);
        }
        self.connections_per_peer.sub(&key.peer);
    }

    /// Counts an inbound stream of `peer` for `protocol`, once negotiated.
    pub fn open_stream(&mut self, peer: PeerId, protocol: &str) -> Result<(), ResourceError> {
        let l = &self.limits;
        if self.streams >= l.max_streams {
            return Err(refuse(Scope::System, Resource::Streams, l.max_streams));
        }
        if self.streams_per_peer.get(&peer) >= l.max_streams_per_peer {
            return Err(refuse(
                Scope::Peer(peer),
                Resource::Streams,
                l.max_streams_per_peer,
            ));
        }
        let protocol = protocol.to_owned();
        if self.streams_per_protocol.get(&protocol) >= l.max_streams_per_protocol {
            return Err(refuse(
                Scope::Protocol(protocol),
                Resource::Streams,
                l.max_streams_per_protocol,
            ));
        }
        self.streams += 1;
        self.streams_per_peer.add(&peer);
        self.streams_per_protocol.add(&protocol);
        Ok(())
    }

    /// Gives back what [`Ledger::open_stream`] counted.
    pub fn close_stream(&mut self, peer: PeerId, protocol: &str) {
        self.streams = self.streams.saturating_sub(1);
        self.streams_per_peer.sub(&peer);
        self.streams_per_protocol.sub(&protocol.to_owned());
    }

    /// Counts a circuit relayed through us at the request of neighbour `from`.
    pub fn open_relayed_circuit(&mut self, from: PeerId) -> Result<(), ResourceError> {
        let l = &self.limits;
        if self.relayed >= l.max_relayed_circuits {
            return Err(refuse(
                Scope::System,
                Resource::RelayedCircuits,
                l.max_relayed_circuits,
            ));
        }
        if self.relayed_per_peer.get(&from) >= l.max_relayed_circuits_per_peer {
            return Err(refuse(
                Scope::Peer(from),
                Resource::RelayedCircuits,
                l.max_relayed_circuits_per_peer,
            ));
        }
        self.relayed += 1;
        self.relayed_per_peer.add(&from);
        Ok(())
    }

    /// Gives back what [`Ledger::open_relayed_circuit`] counted.
    pub fn close_relayed_circuit(&mut self, from: PeerId) {
        self.relayed = self.relayed.saturating_sub(1);
        self.relayed_per_peer.sub(&from);
    }

    /// Counts a relayed connection ending here that arrives through neighbour `relay`. It
    /// is counted as an inbound connection too, once its peer is known
    /// ([`Ledger::open_connection`]); this checks the inbound limit already, so that a
    /// refused circuit costs no handshake.
    pub fn open_circuit_ending_here(&mut self, relay: PeerId) -> Result<(), ResourceError> {
        let l = &self.limits;
        if self.inbound >= l.max_inbound_connections {
            return Err(refuse(
                Scope::System,
                Resource::InboundConnections,
                l.max_inbound_connections,
            ));
        }
        if self.ending >= l.max_circuits_ending_here {
            return Err(refuse(
                Scope::System,
                Resource::CircuitsEndingHere,
                l.max_circuits_ending_here,
            ));
        }
        if self.ending_per_relay.get(&relay) >= l.max_circuits_ending_here_per_relay {
            return Err(refuse(
                Scope::Peer(relay),
                Resource::CircuitsEndingHere,
                l.max_circuits_ending_here_per_relay,
            ));
        }
        self.ending += 1;
        self.ending_per_relay.add(&relay);
        Ok(())
    }

    /// Gives back what [`Ledger::open_circuit_ending_here`] counted.
    pub fn close_circuit_ending_here(&mut self, relay: PeerId) {
        self.ending = self.ending.saturating_sub(1);
        self.ending_per_relay.sub(&relay);
    }

    /// Checks the memory scopes before something new is taken: `system` bytes held by all
    /// connections, and `peer` with the bytes its connections hold.
    pub fn check_memory(
        &self,
        system: u64,
        peer: Option<(PeerId, u64)>,
    ) -> Result<(), ResourceError> {
        if system >= self.limits.max_memory {
            return Err(ResourceError {
                scope: Scope::System,
                resource: Resource::Memory,
                limit: self.limits.max_memory,
            });
        }
        if let Some((peer, held)) = peer {
            if held >= self.limits.max_memory_per_peer {
                return Err(ResourceError {
                    scope: Scope::Peer(peer),
                    resource: Resource::Memory,
                    limit: self.limits.max_memory_per_peer,
                });
            }
        }
        Ok(())
    }
}
