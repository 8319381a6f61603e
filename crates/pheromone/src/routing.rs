//! The routing service: the node's [`Router`] (`/pheromone/route/2.0.0`, a loop-free
//! distance-vector protocol of signed route records) run by the generic
//! [overlay driver](crate::overlay) over the node's direct connections.
//!
//! Every direct connection to a peer that speaks the protocol makes it a neighbour (a
//! relayed circuit never does, or routes would lean on themselves); updates are rare, so
//! each batch goes on a short stream of its own and an idle link holds none. Next-hop
//! lookups (one per relayed dial or relay hop) take the router's lock without a message
//! and mark the destination in use, so the router probes that route and drops it if a
//! relay on it lies about its metric. Protocol logic is all in [`pheromone_core::route`].

use crate::overlay::{DriverConfig, OverlayDriver, OverlayHandle, Service, StreamUse};
use crate::swarm::Swarm;
use pheromone_core::identity::PeerId;
use pheromone_core::route::{
    Config, Event, Metrics, NextHop, RouteEntry, Router, TraceError, TraceId, TraceOutcome,
};
use std::collections::HashMap;
use std::time::Instant;
use thiserror::Error;
use tokio::sync::oneshot;

pub use pheromone_core::route::PROTOCOL;

/// Why a trace gave no path.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RoutingError {
    /// The router refused to start the trace (no route, too many in flight).
    #[error("cannot trace {destination}: {source}")]
    Trace {
        /// The peer traced.
        destination: PeerId,
        /// Why.
        source: TraceError,
    },
    /// The routing task has stopped (the node is closing).
    #[error("the routing service has stopped")]
    Stopped,
}

/// Traces waiting for their outcome: the router's [`Service`].
#[derive(Default)]
pub(crate) struct Traces {
    waiting: HashMap<TraceId, oneshot::Sender<TraceOutcome>>,
}

impl Service<Router> for Traces {
    fn on_event(&mut self, _: &mut Router, _: Instant, event: Event) {
        if let Event::TraceFinished(outcome) = event {
            if let Some(reply) = self.waiting.remove(&outcome.id) {
                let _ = reply.send(outcome);
            }
        }
    }
}

/// A handle on the routing service; cheap to clone.
#[derive(Clone)]
pub struct Routing {
    handle: OverlayHandle<Router, Traces>,
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routing")
            .field("destinations", &self.handle.read(|r, _| r.destinations()))
            .finish()
    }
}

impl Routing {
    /// Starts the service on `swarm` (installs the protocol handler and the driver).
    pub fn start(swarm: &Swarm, config: Config) -> Routing {
        let router = Router::new(
            swarm.endpoint().keypair().clone(),
            config,
            crate::overlay::now(),
        );
        let driver = DriverConfig {
            streams: StreamUse::PerBatch,
            // Periodic dumps repair whatever a full queue drops.
            queue_bytes: 256 * 1024,
            ..DriverConfig::default()
        };
        let handle = OverlayDriver::spawn(swarm, router, Traces::default(), driver);
        Routing { handle }
    }

    /// Where traffic for `destination` goes next, if it is reachable. A lookup means
    /// traffic: the route is marked in use, so the router probes it.
    pub fn next_hop(&self, destination: &PeerId) -> Option<NextHop> {
        self.handle
            .with(|r, _, now| {
                r.mark_in_use(now, *destination);
                r.next_hop(destination)
            })
            .ok()
            .flatten()
    }

    /// Every destination the node can reach and how.
    pub fn table(&self) -> Vec<RouteEntry> {
        self.handle.read(|r, _| r.table(crate::overlay::now()))
    }

    /// The router's counters.
    pub fn metrics(&self) -> Metrics {
        self.handle.read(|r, _| r.metrics())
    }

    /// The path to `destination`, hop by hop (this node first), probed along the routes.
    pub async fn trace(&self, destination: PeerId) -> Result<TraceOutcome, RoutingError> {
        let (reply, answer) = oneshot::channel();
        self.handle
            .with(|router, traces, now| {
                let id = router.trace(now, destination)?;
                traces.waiting.insert(id, reply);
                Ok(())
            })
            .map_err(|_| RoutingError::Stopped)?
            .map_err(|source| RoutingError::Trace {
                destination,
                source,
            })?;
        answer.await.map_err(|_| RoutingError::Stopped)
    }
}
