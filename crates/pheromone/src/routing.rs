//! The routing service: runs the node's [`Router`] (`/pheromone/route/1.0.0`, a loop-free
//! distance-vector protocol) over its direct connections.
//!
//! Every direct connection makes its peer a neighbour ([`Links`] with
//! [`LinkKind::Direct`]: a relayed circuit is not a link of the mesh, or routes would
//! lean on themselves); updates are rare, so each batch goes on a short stream of its own
//! and an idle link holds none. One task feeds the router connection events, frames and its timer
//! and hands its frames to the neighbours' writers. The router sits behind a std mutex so
//! that next-hop lookups (one per relayed dial or relay hop) cost a lock, not a message.
//! Protocol logic is all in [`pheromone_core::route`]; this file only carries bytes.

use crate::endpoint::{Endpoint, EndpointEvent};
use crate::links::{self, LinkKind, Links, StreamUse};
use pheromone_core::identity::PeerId;
use pheromone_core::route::{
    Config, Event, Metrics, NextHop, Output, RouteEntry, Router, TraceError, TraceId, TraceOutcome,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use thiserror::Error;
use tokio::sync::{broadcast as events, mpsc, oneshot};

/// The routing protocol id.
pub const PROTOCOL: &str = "/pheromone/route/1.0.0";
/// Frames queued per neighbour before new ones are dropped (periodic dumps repair).
const PEER_QUEUE: usize = 256;
/// Frames from all neighbours waiting for the router.
const INBOUND_QUEUE: usize = 4096;

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

enum Command {
    Trace {
        destination: PeerId,
        reply: oneshot::Sender<Result<TraceOutcome, RoutingError>>,
    },
}

/// A handle on the routing service; cheap to clone.
#[derive(Clone)]
pub struct Routing {
    router: Arc<Mutex<Router>>,
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routing")
            .field("destinations", &self.lock().destinations())
            .finish()
    }
}

impl Routing {
    /// Starts the service on `endpoint` (installs the protocol handler and the task).
    pub fn spawn(endpoint: &Endpoint, config: Config) -> Routing {
        let max_frame = config.max_frame_len;
        let router = Arc::new(Mutex::new(Router::new(endpoint.peer_id(), config)));
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        links::serve_frames(endpoint, PROTOCOL, max_frame, inbound_tx);
        let (commands, commands_rx) = mpsc::channel(64);
        let driver = Driver {
            router: router.clone(),
            links: Links::new(
                endpoint.clone(),
                PROTOCOL,
                LinkKind::Direct,
                StreamUse::PerBatch,
                PEER_QUEUE,
            ),
            endpoint: endpoint.clone(),
            traces: HashMap::new(),
        };
        tokio::spawn(driver.run(endpoint.events(), inbound, commands_rx));
        Routing { router, commands }
    }

    fn lock(&self) -> MutexGuard<'_, Router> {
        self.router.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where traffic for `destination` goes next, if it is reachable.
    pub fn next_hop(&self, destination: &PeerId) -> Option<NextHop> {
        self.lock().next_hop(destination)
    }

    /// Every destination the node can reach and how.
    pub fn table(&self) -> Vec<RouteEntry> {
        self.lock().table(Instant::now())
    }

    /// The router's counters.
    pub fn metrics(&self) -> Metrics {
        self.lock().metrics()
    }

    /// The path to `destination`, hop by hop (this node first), probed along the routes.
    pub async fn trace(&self, destination: PeerId) -> Result<TraceOutcome, RoutingError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Trace { destination, reply })
            .await
            .map_err(|_| RoutingError::Stopped)?;
        answer.await.map_err(|_| RoutingError::Stopped)?
    }
}

struct Driver {
    router: Arc<Mutex<Router>>,
    links: Links,
    endpoint: Endpoint,
    traces: HashMap<TraceId, oneshot::Sender<Result<TraceOutcome, RoutingError>>>,
}

impl Driver {
    async fn run(
        mut self,
        mut events: events::Receiver<EndpointEvent>,
        mut inbound: mpsc::Receiver<(PeerId, bytes::Bytes)>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        for conn in self.endpoint.connections() {
            let peer = conn.remote_peer();
            if self.links.connection_up(conn) {
                self.lock().link_up(Instant::now(), peer);
            }
        }
        self.drain();
        loop {
            let deadline = self.lock().poll_timeout();
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            // Biased, connection events before frames: a neighbour's first frames can be
            // ready in the same poll as the event of its connection, and a frame taken
            // before its link is up is dropped (the next periodic dump is 20 s away).
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => return,
                },
                event = events.recv() => match event {
                    Ok(EndpointEvent::ConnectionEstablished(conn)) => {
                        let peer = conn.remote_peer();
                        if self.links.connection_up(conn) {
                            self.lock().link_up(Instant::now(), peer);
                        }
                    }
                    Ok(EndpointEvent::ConnectionClosed { info, .. }) => {
                        if self.links.connection_down(&info) {
                            self.lock().link_down(Instant::now(), info.remote_peer);
                        }
                    }
                    Err(events::error::RecvError::Lagged(_)) => self.resync(),
                    Err(events::error::RecvError::Closed) => return,
                },
                Some((peer, frame)) = inbound.recv() => {
                    if !self.links.contains(&peer) {
                        // Its connection's event may still be on the way (streams are
                        // served before the event reaches us): catch up first, or the
                        // router drops the frame as one from a stranger.
                        self.resync();
                    }
                    if let Err(e) = self.lock().handle_message(Instant::now(), peer, &frame) {
                        tracing::debug!(%peer, error = %e, "bad routing frame");
                    }
                }
                () = timer => self.lock().handle_timeout(Instant::now()),
            }
            self.drain();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Router> {
        self.router.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn resync(&mut self) {
        let changes = self.links.resync();
        let now = Instant::now();
        let mut router = self.router.lock().unwrap_or_else(|e| e.into_inner());
        for peer in changes.down {
            router.link_down(now, peer);
        }
        for peer in changes.up {
            router.link_up(now, peer);
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Trace { destination, reply } => {
                let started = self.lock().trace(Instant::now(), destination);
                match started {
                    Ok(id) => {
                        self.traces.insert(id, reply);
                    }
                    Err(source) => {
                        let _ = reply.send(Err(RoutingError::Trace {
                            destination,
                            source,
                        }));
                    }
                }
            }
        }
    }

    fn drain(&mut self) {
        let outputs: Vec<Output> = {
            let mut router = self.lock();
            std::iter::from_fn(|| router.poll_output()).collect()
        };
        for output in outputs {
            match output {
                Output::Send { to, bytes } => {
                    if !self.links.send(&to, bytes) {
                        tracing::trace!(peer = %to, "routing frame dropped: queue full or link gone");
                    }
                }
                Output::Event(Event::TraceFinished(outcome)) => {
                    if let Some(reply) = self.traces.remove(&outcome.id) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Output::Event(Event::RouteChanged { .. }) => {}
            }
        }
    }
}
