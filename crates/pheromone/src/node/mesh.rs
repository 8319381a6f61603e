//! The node's place in the mesh beyond its direct links: the routing service and the relay
//! service wired to it, so a peer with no dialable address is reached through others.
//!
//! Nothing here decides routes or moves circuit bytes; see [`crate::routing`] and
//! [`crate::relay`].

use super::{ConnectionMode, NodeConfig};
use crate::endpoint::Endpoint;
use crate::relay::Relay;
use crate::routing::Routing;
use pheromone_core::identity::PeerId;
use std::sync::Arc;

/// Routing plus relaying.
pub(super) struct Mesh {
    pub(super) routing: Routing,
    pub(super) relay: Relay,
}

impl Mesh {
    /// Starts both services, or nothing when routing is off.
    pub(super) fn start(endpoint: &Endpoint, config: &NodeConfig) -> Option<Mesh> {
        if config.mode == ConnectionMode::Short {
            // Routes run over links that stay up; a link per request would make every
            // request pay for a route exchange (and its streams hold up each close).
            return None;
        }
        let routing = Routing::spawn(endpoint, config.routing.clone()?);
        let lookup = routing.clone();
        let relay = Relay::install(
            endpoint,
            config.relay.clone(),
            Arc::new(move |destination: &PeerId| lookup.next_hop(destination).map(|h| h.peer)),
        );
        Some(Mesh { routing, relay })
    }

    /// Whether the route table knows a way to `peer` worth a relayed dial.
    pub(super) fn can_relay_to(&self, peer: &PeerId) -> bool {
        self.routing
            .next_hop(peer)
            .is_some_and(|hop| hop.peer != *peer)
    }
}
