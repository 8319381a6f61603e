//! The node's services, started from its configuration on its swarm: broadcast, routing
//! with relaying, discovery; and how they help the swarm reach peers (the
//! [`DialFallback`]: addresses the DHT finds, then a relayed connection along the route
//! table) and spare connections in use from pruning.
//!
//! Nothing here speaks a protocol: each service lives in its own module on the overlay
//! driver; this file only starts them and wires them together.

use super::config::NodeConfig;
use super::pending::PendingTable;
use super::{ConnectionMode, NodeEvent};
use crate::connection::Connection;
use crate::discovery::Discovery;
use crate::pubsub::PubSub;
use crate::relay::Relay;
use crate::routing::Routing;
use crate::swarm::{DialFallback, Swarm};
use futures::future::BoxFuture;
use futures::FutureExt;
use pheromone_core::addr::Multiaddr;
use pheromone_core::identity::PeerId;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Routing plus relaying.
pub(super) struct Mesh {
    pub(super) routing: Routing,
    pub(super) relay: Relay,
}

/// The services a node runs.
pub(super) struct Services {
    pub(super) pubsub: Option<PubSub>,
    pub(super) mesh: Option<Mesh>,
    pub(super) discovery: Option<Discovery>,
}

impl Services {
    /// Starts the services `config` asks for on `swarm`. Discovery dials its bootstrap
    /// peers at once, so the node's listeners must be bound before.
    pub(super) fn start(swarm: &Swarm, config: &NodeConfig) -> Self {
        let pubsub = config
            .broadcast
            .clone()
            .map(|broadcast| PubSub::start(swarm, broadcast));
        // Routes run over links that stay up; in short mode a link per request would make
        // every request pay for a route exchange.
        let mesh = match (config.mode, config.routing.clone()) {
            (ConnectionMode::Long, Some(routing)) => {
                let routing = Routing::start(swarm, routing);
                let lookup = routing.clone();
                let relay = Relay::install(
                    swarm.endpoint(),
                    config.relay.clone(),
                    Arc::new(move |destination: &PeerId| {
                        lookup.next_hop(destination).map(|h| h.peer)
                    }),
                );
                Some(Mesh { routing, relay })
            }
            _ => None,
        };
        let discovery = config
            .discovery
            .clone()
            .map(|discovery| Discovery::start(swarm, discovery));
        let fallback = Fallback {
            discovery: discovery.clone(),
            mesh: mesh.as_ref().map(|m| (m.routing.clone(), m.relay.clone())),
        };
        swarm.set_fallback(Arc::new(fallback));
        Self {
            pubsub,
            mesh,
            discovery,
        }
    }
}

/// The DHT and the relay, as the swarm's ways around a peer with no working address.
struct Fallback {
    discovery: Option<Discovery>,
    mesh: Option<(Routing, Relay)>,
}

impl DialFallback for Fallback {
    fn find_addrs(&self, peer: PeerId) -> BoxFuture<'static, Vec<Multiaddr>> {
        let discovery = self.discovery.clone();
        async move {
            let Some(discovery) = discovery else {
                return Vec::new();
            };
            match discovery.find_peer(peer).await {
                Ok(found) => found.addrs,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "the DHT found no address");
                    Vec::new()
                }
            }
        }
        .boxed()
    }

    fn relay(
        &self,
        peer: PeerId,
    ) -> Option<BoxFuture<'static, Result<Connection, Arc<dyn std::error::Error + Send + Sync>>>>
    {
        let (routing, relay) = self.mesh.clone()?;
        // Worth a relayed dial only when the route table knows a way through someone else.
        routing.next_hop(&peer).filter(|hop| hop.peer != peer)?;
        Some(
            async move {
                relay
                    .connect(peer)
                    .await
                    .map_err(|e| Arc::new(e) as Arc<dyn std::error::Error + Send + Sync>)
            }
            .boxed(),
        )
    }
}

/// Spares the connections of peers with requests or streams in flight from pruning.
pub(super) fn keep_in_use(
    swarm: &Swarm,
    pending_out: &Arc<PendingTable>,
    pending_in: &Arc<PendingTable>,
    streams_open: &Arc<PendingTable>,
) {
    let (out, inn, open) = (
        pending_out.clone(),
        pending_in.clone(),
        streams_open.clone(),
    );
    swarm.set_keep_check(Arc::new(move |peer: &PeerId| {
        out.has(peer) || inn.has(peer) || open.has(peer)
    }));
}

/// Re-emits the swarm's peer events as node events until the swarm closes.
pub(super) fn forward_events(swarm: &Swarm, events: broadcast::Sender<NodeEvent>) {
    let mut from = swarm.events();
    let cancel = swarm.cancel_token();
    swarm.tasks().spawn(async move {
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return,
                event = from.recv() => event,
            };
            match event {
                Ok(event) => {
                    if let Some(event) = NodeEvent::from_swarm(event) {
                        let _ = events.send(event);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "node events lagged behind the swarm's");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}
