//! [`NodeBuilder`]: identity, name, listen addresses, mode, limits and handlers, then
//! [`NodeBuilder::build`] starts the node.
//!
//! The builder only collects settings; `build` creates the endpoint, binds the listeners,
//! registers the handlers and starts the node's background tasks.

use super::config::{Limits, NodeConfig};
use super::handler::{RequestHandler, StreamHandler};
use super::pending::PendingTable;
use super::request_streams::RequestStreams;
use super::services::{self, Services};
use super::{Access, ConnectionMode, Inner, IntoAddr, Node, NodeError};
use crate::endpoint::{Endpoint, EndpointConfig};
use crate::swarm::Swarm;
use pheromone_core::addr::Multiaddr;
use pheromone_core::identity::Keypair;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// A handler registration waiting for the node to exist.
type Registration = Box<dyn FnOnce(&Node) -> Result<(), NodeError> + Send>;

/// Collects a node's settings and handlers; [`NodeBuilder::build`] starts it.
#[must_use = "a builder does nothing until `build` is called"]
pub struct NodeBuilder {
    keypair: Option<Keypair>,
    config: NodeConfig,
    listen: Vec<Result<Multiaddr, NodeError>>,
    registrations: Vec<Registration>,
}

impl std::fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("config", &self.config)
            .field("listen", &self.listen)
            .field("handlers", &self.registrations.len())
            .finish()
    }
}

impl Default for NodeBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeBuilder {
    /// Default settings, a fresh identity, no listener, no handler.
    pub fn new() -> Self {
        Self {
            keypair: None,
            config: NodeConfig::default(),
            listen: Vec::new(),
            registrations: Vec::new(),
        }
    }

    /// The node's identity (default: a new random key).
    pub fn keypair(mut self, keypair: Keypair) -> Self {
        self.keypair = Some(keypair);
        self
    }

    /// The human name announced to peers.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = Some(name.into());
        self
    }

    /// Listens on `addr` (`/ip4/127.0.0.1/tcp/0`, `127.0.0.1:4001`, …); may be repeated.
    pub fn listen(mut self, addr: impl IntoAddr) -> Self {
        self.listen.push(addr.into_addr());
        self
    }

    /// Long (default) or short connections.
    pub fn mode(mut self, mode: ConnectionMode) -> Self {
        self.config.mode = mode;
        self
    }

    /// Default deadline of a dispatch.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// Largest request or reply in bytes.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// Happy Eyeballs: how long a dial waits for one address before racing the next
    /// (250 ms by default; see [`NodeConfig::happy_eyeballs_delay`]).
    pub fn happy_eyeballs_delay(mut self, delay: Duration) -> Self {
        self.config.happy_eyeballs_delay = delay;
        self
    }

    /// How long an unused connection stays open; `None` keeps it until it fails.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Long mode: how long a request stream is kept open for the next request of its
    /// protocol (see [`NodeConfig::request_stream_idle`]).
    pub fn request_stream_idle(mut self, idle: Duration) -> Self {
        self.config.request_stream_idle = idle;
        self
    }

    /// Connection, stream and pending-request caps.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// The security protocol TCP dials propose first: Noise (the default) or TLS; either
    /// falls back to the other on a second dial when the listener refuses it (see
    /// [`EndpointConfig::tcp_security`]). Set after [`NodeBuilder::endpoint_config`],
    /// which replaces it.
    pub fn tcp_security(mut self, security: crate::TcpSecurity) -> Self {
        self.config.endpoint.tcp_security = security;
        self
    }

    /// Endpoint settings (transport, handshake, keep-alive); see [`NodeConfig::endpoint`].
    pub fn endpoint_config(mut self, config: EndpointConfig) -> Self {
        self.config.endpoint = config;
        self
    }

    /// Multi-hop routing settings; `None` turns routing (and relayed dials) off.
    pub fn routing(mut self, routing: Option<pheromone_core::route::Config>) -> Self {
        self.config.routing = routing;
        self
    }

    /// Relay settings: whether this node carries circuits for others, accepts them, and
    /// their limits.
    pub fn relay(mut self, relay: crate::relay::RelayConfig) -> Self {
        self.config.relay = relay;
        self
    }

    /// Adds a bootstrap peer (`/ip4/…/tcp/…/p2p/<id>`, or without `/p2p` to learn who
    /// answers): dialled at start, the DHT joined through it, kept connected. Turns
    /// discovery on with its defaults if it was off. May be repeated.
    pub fn bootstrap(mut self, addr: impl IntoAddr) -> Self {
        match addr.into_addr() {
            Ok(addr) => self
                .config
                .discovery
                .get_or_insert_with(Default::default)
                .bootstrap
                .push(addr),
            Err(e) => self.listen.push(Err(e)),
        }
        self
    }

    /// Discovery settings (protocol id, bootstrap peers, watermarks); `None` turns the DHT
    /// and the connection manager off.
    pub fn discovery(mut self, config: Option<crate::discovery::DiscoveryConfig>) -> Self {
        self.config.discovery = config;
        self
    }

    /// Replaces every setting at once (the name and mode included).
    pub fn config(mut self, config: NodeConfig) -> Self {
        self.config = config;
        self
    }

    /// Answers requests of `protocol` with `handler`, for every authenticated peer.
    pub fn handle_requests<H: RequestHandler>(self, protocol: &str, handler: H) -> Self {
        self.handle_requests_with(protocol, handler, Access::Open)
    }

    /// Answers requests of `protocol` with `handler`, for the peers `access` allows.
    pub fn handle_requests_with<H: RequestHandler>(
        mut self,
        protocol: &str,
        handler: H,
        access: Access,
    ) -> Self {
        let protocol = protocol.to_owned();
        self.registrations.push(Box::new(move |node: &Node| {
            node.handle_requests_with(&protocol, handler, access)
        }));
        self
    }

    /// Serves raw streams of `protocol` with `handler`, for every authenticated peer.
    pub fn handle_streams<H: StreamHandler>(self, protocol: &str, handler: H) -> Self {
        self.handle_streams_with(protocol, handler, Access::Open)
    }

    /// Serves raw streams of `protocol` with `handler`, for the peers `access` allows.
    pub fn handle_streams_with<H: StreamHandler>(
        mut self,
        protocol: &str,
        handler: H,
        access: Access,
    ) -> Self {
        let protocol = protocol.to_owned();
        self.registrations.push(Box::new(move |node: &Node| {
            node.handle_streams_with(&protocol, handler, access)
        }));
        self
    }

    /// Starts the node: binds every listen address, registers the handlers, starts the
    /// services. Must run inside a tokio runtime.
    pub async fn build(self) -> Result<Node, NodeError> {
        let NodeBuilder {
            keypair,
            config,
            listen,
            registrations,
        } = self;
        let keypair = keypair.unwrap_or_else(|| Keypair::generate(&mut rand::rngs::OsRng));
        let endpoint = Endpoint::new(keypair, config.endpoint_config());
        let swarm = Swarm::new(endpoint.clone(), config.swarm_config());
        let (events, _) = broadcast::channel(super::EVENT_CAPACITY);
        let pending_out = PendingTable::new(config.limits.max_pending_requests_per_peer);
        let pending_in = PendingTable::new(config.limits.max_pending_requests_per_peer);
        let streams_open = PendingTable::new(usize::MAX);
        services::keep_in_use(&swarm, &pending_out, &pending_in, &streams_open);
        services::forward_events(&swarm, events.clone());
        let node = Node {
            inner: Arc::new(Inner {
                request_streams: RequestStreams::new(config.kept_stream_idle()),
                swarm,
                metrics: std::sync::OnceLock::new(),
                endpoint,
                config,
                services: std::sync::OnceLock::new(),
                pending_out,
                pending_in,
                streams_open,
                events,
                closed: AtomicBool::new(false),
            }),
        };
        // Handlers and listeners first: discovery dials its bootstrap peers at once, and
        // they must hear our protocols and listen addresses in identify.
        let started = registrations
            .into_iter()
            .try_for_each(|register| register(&node))
            .and_then(|()| {
                listen
                    .into_iter()
                    .try_for_each(|addr| node.listen(addr?).map(drop))
            });
        if let Err(e) = started {
            node.close().await;
            return Err(e);
        }
        let services = Services::start(&node.inner.swarm, &node.inner.config);
        let _ = node.inner.services.set(services);
        Ok(node)
    }
}
