//! What the daemon can reach and how, for `routes` and `ping`: its direct links, the
//! destinations the multi-hop route table reaches through other nodes, and the routes it
//! holds without a live link. Read-only views of [`Net`]; nothing here dials.

use super::net::Net;
use crate::control_proto::{PeerInfo, RouteInfo};
use pheromone::PeerId;
use pheromone_core::route::RouteEntry;
use std::collections::{HashMap, HashSet};

impl Net {
    /// What this node can reach: every peer with a direct link, then every destination
    /// the route table reaches through other nodes, then every route the node holds
    /// without a live link (dialled on use: short mode, or a link that dropped).
    pub fn routes(&self) -> Vec<RouteInfo> {
        let peers = self.peers();
        let table: HashMap<String, RouteEntry> = self
            .node()
            .routing()
            .map(|r| r.table())
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.destination.to_string(), e))
            .collect();
        let name_of = |id: &str| id.parse::<PeerId>().ok().and_then(|p| self.peer_name(&p));
        let mut listed: HashSet<String> = HashSet::new();
        let mut routes = Vec::new();
        let mut relayed = Vec::new();
        for p in peers {
            let entry = table.get(&p.peer_id);
            if p.relay.is_some() {
                relayed.push(p);
                continue;
            }
            let next_hop = entry.map_or_else(|| p.peer_id.clone(), |e| e.next_hop.to_string());
            listed.insert(p.peer_id.clone());
            routes.push(RouteInfo {
                next_hop_name: name_of(&next_hop),
                next_hop: Some(next_hop),
                metric: entry.map(|e| u32::from(e.metric)),
                direct: true,
                peer_id: p.peer_id,
                name: p.name,
                via: "direct".to_owned(),
                hops: 1,
                addr: p.addrs.into_iter().next().unwrap_or_default(),
                rtt_ms: p.rtt_ms,
            });
        }
        let relayed: HashMap<String, PeerInfo> = relayed
            .into_iter()
            .map(|p| (p.peer_id.clone(), p))
            .collect();
        let mut through: Vec<&RouteEntry> = table
            .values()
            .filter(|e| !listed.contains(&e.destination.to_string()))
            .collect();
        through.sort_by_key(|e| (e.hops, e.destination));
        for e in through {
            let peer_id = e.destination.to_string();
            let conn = relayed.get(&peer_id);
            listed.insert(peer_id.clone());
            routes.push(RouteInfo {
                name: self.peer_name(&e.destination),
                next_hop: Some(e.next_hop.to_string()),
                next_hop_name: self.peer_name(&e.next_hop),
                metric: Some(u32::from(e.metric)),
                direct: false,
                via: "relay".to_owned(),
                hops: u32::from(e.hops),
                addr: conn
                    .and_then(|c| c.addrs.first().cloned())
                    .unwrap_or_default(),
                rtt_ms: conn.and_then(|c| c.rtt_ms),
                peer_id,
            });
        }
        // A relayed link whose route the table dropped meanwhile.
        for (peer_id, p) in relayed {
            if listed.insert(peer_id.clone()) {
                routes.push(RouteInfo {
                    next_hop_name: p.relay.as_deref().and_then(name_of),
                    next_hop: p.relay,
                    metric: None,
                    direct: false,
                    via: "relay".to_owned(),
                    hops: 0,
                    addr: p.addrs.into_iter().next().unwrap_or_default(),
                    rtt_ms: p.rtt_ms,
                    name: p.name,
                    peer_id,
                });
            }
        }
        for route in self.node().contacts() {
            if !listed.insert(route.peer.to_string()) {
                continue;
            }
            routes.push(RouteInfo {
                peer_id: route.peer.to_string(),
                name: self.peer_name(&route.peer),
                via: "dial".to_owned(),
                hops: 1,
                next_hop: None,
                next_hop_name: None,
                metric: None,
                direct: false,
                addr: route.addr.without_p2p().to_string(),
                rtt_ms: None,
            });
        }
        routes
    }

    /// How the node reaches `peer` right now: hops (1 for a direct link) and, for a
    /// relayed link, the first relay.
    pub fn path_to(&self, peer: &PeerId) -> (Option<u32>, Option<PeerId>) {
        let conns = self.live_connections(peer);
        if conns.iter().any(|c| c.info().relay.is_none()) {
            return (Some(1), None);
        }
        let relay = conns.iter().find_map(|c| c.info().relay);
        let hops = self
            .node()
            .routing()
            .and_then(|r| r.next_hop(peer))
            .map(|h| u32::from(h.hops));
        (hops, relay)
    }
}
