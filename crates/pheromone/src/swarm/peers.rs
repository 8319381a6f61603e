//! The node's directory: routes the user added, and what identify told us about peers
//! (announced name, listen addresses). Names resolve to peers here.
//!
//! The key is always the [`PeerId`]; a name is an alias that several peers may share, so
//! resolving a name may find none, one, or several peers. The table of learned peers is
//! bounded: past [`MAX_KNOWN_PEERS`], the least recently identified peer without a route
//! is forgotten. Pure bookkeeping under the caller's lock: no IO, no awaiting.

use super::error::Unresolved;
use pheromone_core::addr::Multiaddr;
use pheromone_core::identity::PeerId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Most peers remembered from identify (routes come on top).
pub(super) const MAX_KNOWN_PEERS: usize = 4096;

/// A route: how the user asked to reach a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// The peer, authenticated when the route was added.
    pub peer: PeerId,
    /// The alias given to [`Node::add_route`](super::Node::add_route).
    pub name: String,
    /// The address dialled, with the peer's `/p2p/` suffix.
    pub addr: Multiaddr,
    /// The name the peer announces for itself, if any.
    pub remote_name: Option<String>,
}

/// What identify told us about a peer.
#[derive(Debug, Clone)]
pub(super) struct Known {
    pub(super) name: Option<Arc<str>>,
    pub(super) listen_addrs: Vec<Multiaddr>,
    pub(super) identified_at: Instant,
}

/// Routes and learned peers.
#[derive(Debug)]
pub(super) struct Directory {
    routes: HashMap<PeerId, Route>,
    known: HashMap<PeerId, Known>,
    max_known: usize,
    /// Addresses the DHT found, with when; bounded like `known`.
    found: HashMap<PeerId, (Vec<Multiaddr>, Instant)>,
}

impl Default for Directory {
    fn default() -> Self {
        Self::with_max_known(MAX_KNOWN_PEERS)
    }
}

#[derive(Debug, Clone)]
struct Route {
    name: String,
    addr: Multiaddr,
}

/// What [`Directory::add_route`] did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RouteChange {
    /// A new route.
    Added,
    /// The peer had a route; its alias or address changed.
    Updated,
    /// The same route again.
    Unchanged,
}

impl Directory {
    /// A directory remembering at most `max_known` learned peers.
    pub(super) fn with_max_known(max_known: usize) -> Self {
        Self {
            routes: HashMap::new(),
            known: HashMap::new(),
            max_known: max_known.max(1),
            found: HashMap::new(),
        }
    }

    /// Adds or replaces the route to `peer`; what changed, and the route as it is now.
    pub(super) fn add_route(
        &mut self,
        peer: PeerId,
        name: String,
        addr: Multiaddr,
    ) -> (RouteChange, RouteInfo) {
        let route = Route { name, addr };
        let change = match self.routes.insert(peer, route.clone()) {
            None => RouteChange::Added,
            Some(old) if old.name == route.name && old.addr == route.addr => RouteChange::Unchanged,
            Some(_) => RouteChange::Updated,
        };
        (change, self.info(peer, route))
    }

    /// Removes the route to `peer`.
    pub(super) fn remove_route(&mut self, peer: &PeerId) -> Option<RouteInfo> {
        let route = self.routes.remove(peer)?;
        Some(self.info(*peer, route))
    }

    fn info(&self, peer: PeerId, route: Route) -> RouteInfo {
        RouteInfo {
            peer,
            name: route.name,
            addr: route.addr,
            remote_name: self.name(&peer).map(|n| n.to_string()),
        }
    }

    /// Every route, sorted by alias then peer.
    pub(super) fn routes(&self) -> Vec<RouteInfo> {
        let mut all: Vec<RouteInfo> = self
            .routes
            .iter()
            .map(|(peer, route)| self.info(*peer, route.clone()))
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name).then(a.peer.cmp(&b.peer)));
        all
    }

    /// The peers with a route.
    pub(super) fn route_peers(&self) -> Vec<PeerId> {
        self.routes.keys().copied().collect()
    }

    /// Whether the application added a route to `peer`.
    pub(super) fn has_route(&self, peer: &PeerId) -> bool {
        self.routes.contains_key(peer)
    }

    pub(super) fn num_routes(&self) -> usize {
        self.routes.len()
    }

    pub(super) fn num_known(&self) -> usize {
        self.known.len()
    }

    /// Records what identify said; true when the announced name changed (or is new).
    pub(super) fn learn(
        &mut self,
        peer: PeerId,
        name: Option<String>,
        listen_addrs: Vec<Multiaddr>,
        now: Instant,
    ) -> bool {
        if !self.known.contains_key(&peer) && self.known.len() >= self.max_known {
            self.evict_one();
        }
        let name: Option<Arc<str>> = name.map(Arc::from);
        let changed = self.known.get(&peer).map(|k| &k.name) != Some(&name);
        self.known.insert(
            peer,
            Known {
                name,
                listen_addrs,
                identified_at: now,
            },
        );
        changed
    }

    /// Forgets the least recently identified peer that has no route.
    fn evict_one(&mut self) {
        let victim = self
            .known
            .iter()
            .filter(|(peer, _)| !self.routes.contains_key(peer))
            .min_by_key(|(_, k)| k.identified_at)
            .map(|(peer, _)| *peer);
        if let Some(peer) = victim {
            self.known.remove(&peer);
        }
    }

    /// Records addresses the DHT found for `peer` (dialled after identify's, which the
    /// peer itself vouched for). Past `max_known` peers the oldest finding is forgotten.
    pub(super) fn learn_found(&mut self, peer: PeerId, addrs: &[Multiaddr], now: Instant) {
        if addrs.is_empty() {
            return;
        }
        if !self.found.contains_key(&peer) && self.found.len() >= self.max_known {
            let oldest = self
                .found
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(p, _)| *p);
            if let Some(oldest) = oldest {
                self.found.remove(&oldest);
            }
        }
        self.found.insert(peer, (addrs.to_vec(), now));
    }

    /// What identify told us about `peer`.
    pub(super) fn known(&self, peer: &PeerId) -> Option<&Known> {
        self.known.get(peer)
    }

    /// The name `peer` announced.
    pub(super) fn name(&self, peer: &PeerId) -> Option<Arc<str>> {
        self.known.get(peer).and_then(|k| k.name.clone())
    }

    /// Addresses to dial `peer` at: its route's first, then what it announced, each with
    /// the `/p2p/` suffix so the dial authenticates it.
    pub(super) fn addresses(&self, peer: &PeerId) -> Vec<Multiaddr> {
        let mut addrs: Vec<Multiaddr> = Vec::new();
        if let Some(route) = self.routes.get(peer) {
            addrs.push(route.addr.clone());
        }
        let announced = self.known.get(peer).map(|k| k.listen_addrs.as_slice());
        let found = self.found.get(peer).map(|(a, _)| a.as_slice());
        for addr in announced.into_iter().chain(found).flatten() {
            let Ok(addr) = addr.clone().without_p2p().with_p2p(*peer) else {
                continue;
            };
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        addrs
    }

    /// The one peer called `name`: by route alias or by announced name.
    pub(super) fn resolve(&self, name: &str) -> Result<PeerId, Unresolved> {
        let mut candidates: Vec<PeerId> = self
            .routes
            .iter()
            .filter(|(_, r)| r.name == name)
            .map(|(p, _)| *p)
            .chain(
                self.known
                    .iter()
                    .filter(|(_, k)| k.name.as_deref() == Some(name))
                    .map(|(p, _)| *p),
            )
            .collect();
        candidates.sort();
        candidates.dedup();
        match candidates.len() {
            0 => Err(Unresolved::Unknown(name.to_owned())),
            1 => Ok(candidates[0]),
            _ => Err(Unresolved::Ambiguous(name.to_owned(), candidates)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pheromone_core::identity::Keypair;

    fn peer(seed: u8) -> PeerId {
        Keypair::from_seed([seed; 32]).peer_id()
    }

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr")
    }

    #[test]
    fn names_resolve_by_alias_or_announcement() {
        let mut d = Directory::default();
        let now = Instant::now();
        assert_eq!(
            d.add_route(peer(1), "a".into(), addr(1)).0,
            RouteChange::Added
        );
        assert_eq!(
            d.add_route(peer(1), "a".into(), addr(1)).0,
            RouteChange::Unchanged
        );
        assert_eq!(
            d.add_route(peer(1), "alpha".into(), addr(1)).0,
            RouteChange::Updated
        );
        assert!(d.learn(peer(2), Some("beta".into()), vec![addr(2)], now));
        assert!(!d.learn(peer(2), Some("beta".into()), vec![addr(2)], now));
        assert_eq!(d.resolve("alpha"), Ok(peer(1)));
        assert_eq!(d.resolve("beta"), Ok(peer(2)));
        assert!(matches!(d.resolve("gamma"), Err(Unresolved::Unknown(_))));
        // A route alias that equals another peer's announced name makes it ambiguous.
        d.add_route(peer(3), "beta".into(), addr(3));
        match d.resolve("beta") {
            Err(Unresolved::Ambiguous(name, candidates)) => {
                assert_eq!(name, "beta");
                let mut want = vec![peer(2), peer(3)];
                want.sort();
                assert_eq!(candidates, want);
            }
            other => panic!("{other:?}"),
        }
        // The same peer found twice (alias and announcement) is one candidate.
        d.learn(peer(1), Some("alpha".into()), vec![], now);
        assert_eq!(d.resolve("alpha"), Ok(peer(1)));
    }

    #[test]
    fn addresses_prefer_the_route_and_carry_the_peer_id() {
        let mut d = Directory::default();
        let route = addr(1).with_p2p(peer(1)).expect("p2p");
        d.add_route(peer(1), "a".into(), route.clone());
        d.learn(peer(1), None, vec![addr(1), addr(7)], Instant::now());
        let addrs = d.addresses(&peer(1));
        assert_eq!(addrs[0], route);
        assert_eq!(addrs.len(), 2);
        assert_eq!(addrs[1].peer_id(), Some(peer(1)));
        assert!(d.addresses(&peer(9)).is_empty());
        // DHT findings come after what the peer announced.
        d.learn_found(peer(1), &[addr(7), addr(8)], Instant::now());
        let addrs = d.addresses(&peer(1));
        assert_eq!(addrs.len(), 3);
        assert_eq!(addrs[2], addr(8).with_p2p(peer(1)).expect("p2p"));
        d.learn_found(peer(9), &[addr(9)], Instant::now());
        assert_eq!(d.addresses(&peer(9)).len(), 1);
        assert_eq!(d.remove_route(&peer(1)).map(|r| r.name), Some("a".into()));
        assert_eq!(d.num_routes(), 0);
    }

    #[test]
    fn learned_peers_are_bounded() {
        const MAX: usize = 16;
        let mut d = Directory::with_max_known(MAX);
        let start = Instant::now();
        let routed = peer(0);
        d.add_route(routed, "r".into(), addr(1));
        d.learn(routed, None, vec![], start);
        for i in 0..(MAX as u32 + 10) {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&(i + 1).to_le_bytes());
            let p = Keypair::from_seed(seed).peer_id();
            d.learn(
                p,
                None,
                vec![],
                start + std::time::Duration::from_millis(u64::from(i) + 1),
            );
        }
        assert_eq!(d.num_known(), MAX);
        assert!(d.known(&routed).is_some(), "a routed peer is never evicted");
    }
}
