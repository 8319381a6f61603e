//! The node: what a program using pheromone touches. Protocol handlers by name, contacts
//! by alias or peer ID, requests with replies, raw streams, over long or short
//! connections, and the node's services.
//!
//! A [`Node`] is built with a [`NodeBuilder`] on top of a [`Swarm`] (which owns the
//! connections: pooling, dials, identify, the peer book) and its [`Endpoint`] (sockets,
//! upgrades, per-stream negotiation). The node adds:
//!
//! - **handlers**: [`RequestHandler`]s (`handle(peer, bytes) -> optional reply`) and
//!   [`StreamHandler`]s, each registered under a protocol name, open to every peer or to an
//!   allow-list ([`Access`]) checked during negotiation, so a refused peer never reaches
//!   the handler. Unknown protocols are refused in negotiation too. The builder and the
//!   node register them the same way: `handle_requests(protocol, handler)` for everyone,
//!   `handle_requests_with(protocol, handler, access)` otherwise.
//! - **contacts**: [`Node::add_contact`] dials an address, authenticates the peer, learns
//!   the name it announces and records the operator's alias for it in the address book.
//!   Aliases are trusted; announced names are not (several peers may share one, anyone
//!   may claim any). The key is always the [`PeerId`].
//! - **requests**: [`Node::dispatch`] sends bytes on a new stream of the peer's connection
//!   and returns the reply (wire format in `docs/protocols/reqresp.md`), within a deadline
//!   and a maximum message size; [`Node::dispatch_all`] asks every contact at once.
//! - **services**: broadcast, routing with relaying, and discovery start from the
//!   builder's configuration and are reached with [`Node::pubsub`], [`Node::routing`],
//!   [`Node::relay`] and [`Node::discovery`] (each `None` when turned off). Resources made
//!   at run time — exec service, exposed services, forwarded ports — come from methods on
//!   the node that return their handle ([`Node::serve_exec`], [`Node::expose`],
//!   [`Node::forward`]).
//!
//! This module does no framing of its own and never blocks a thread: every lock is a std
//! mutex released before any await.
//!
//! See [`Node`] for an example: two nodes, one handler, one dispatch.

mod apps;
mod builder;
mod config;
mod contacts;
mod dispatch;
mod error;
mod handler;
mod pending;
mod reqresp;
mod request_streams;
mod server;
mod services;
mod stream;
mod target;
mod topics;

pub use crate::endpoint::Access;
pub use crate::swarm::{ConnectionMode, Contact};
pub use builder::NodeBuilder;
pub use config::{Limits, NodeConfig};
pub use error::{DispatchError, NodeError};
pub use handler::{HandlerError, HandlerResult, Peer, RequestHandler, StreamHandler};
pub use stream::NodeStream;
pub use target::{DispatchOptions, IntoAddr, Target};

use crate::connection::{ConnectionId, Direction};
use crate::endpoint::Endpoint;
use crate::swarm::{Swarm, SwarmEvent};
use bytes::Bytes;
use pending::PendingTable;
use pheromone_core::addr::Multiaddr;
use pheromone_core::identity::PeerId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Capacity of the event channel; a subscriber that falls further behind is told so by
/// `RecvError::Lagged` and misses events.
const EVENT_CAPACITY: usize = 1024;

/// Something that happened to the node's peers or contacts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A peer got a long-mode connection (it had none).
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// The remote address of the connection.
        addr: SocketAddr,
        /// Who dialled it.
        direction: Direction,
    },
    /// A peer's last long-mode connection closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// Identify told us a peer's announced name (first time, or it changed).
    PeerIdentified {
        /// The peer.
        peer: PeerId,
        /// The name it announced, if any.
        name: Option<String>,
    },
    /// Two connections to one peer existed (simultaneous open, redial): one was kept and
    /// the other is being drained and closed.
    ConnectionReplaced {
        /// The peer.
        peer: PeerId,
        /// The connection kept.
        kept: ConnectionId,
        /// The connection closing.
        closed: ConnectionId,
    },
    /// A contact was added to the address book.
    ContactAdded(Contact),
    /// A contact's alias or address changed.
    ContactUpdated(Contact),
    /// A contact was removed.
    ContactRemoved(Contact),
}

impl NodeEvent {
    /// The node event a swarm event is, if any.
    fn from_swarm(event: SwarmEvent) -> Option<Self> {
        Some(match event {
            SwarmEvent::PeerConnected {
                peer,
                addr,
                direction,
            } => NodeEvent::PeerConnected {
                peer,
                addr,
                direction,
            },
            SwarmEvent::PeerDisconnected { peer } => NodeEvent::PeerDisconnected { peer },
            SwarmEvent::PeerIdentified { peer, name } => NodeEvent::PeerIdentified { peer, name },
            SwarmEvent::ConnectionReplaced { peer, kept, closed } => {
                NodeEvent::ConnectionReplaced { peer, kept, closed }
            }
            _ => return None,
        })
    }
}

/// Counts of what the node holds, for metrics and leak checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct NodeStats {
    /// Live connections the node tracks (long-mode and inbound).
    pub connections: usize,
    /// Peers with a usable long-mode connection.
    pub connected_peers: usize,
    /// Entries in the per-peer connection table (connected, dialling or announced).
    pub pool_entries: usize,
    /// Dials in progress.
    pub dials: usize,
    /// Streams open on tracked connections, both directions.
    pub streams: usize,
    /// Our requests in flight, and the peers they are for.
    pub pending_outbound: usize,
    /// Entries in the outbound pending table.
    pub pending_outbound_peers: usize,
    /// Peers' requests being handled, and the peers they come from.
    pub pending_inbound: usize,
    /// Entries in the inbound pending table.
    pub pending_inbound_peers: usize,
    /// Identify exchanges in progress.
    pub identifying: usize,
    /// Peers learned from identify.
    pub known_peers: usize,
    /// Contacts in the address book.
    pub contacts: usize,
}

/// A running node: a cloneable handle. Build one with [`Node::builder`].
///
/// # Example
///
/// Two nodes, one handler, one dispatch:
///
/// ```
/// use pheromone::node::{Node, Peer};
/// use bytes::Bytes;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let yoghurt = Node::builder()
///     .name("yoghurt")
///     .listen("/ip4/127.0.0.1/tcp/0")
///     .handle_requests("/echo/1.0.0", |peer: Peer, request: Bytes| async move {
///         println!("{} says {:?}", peer, request);
///         Ok(Some(request))
///     })
///     .build()
///     .await?;
/// let luda = Node::builder().name("luda").build().await?;
///
/// luda.add_contact("yoghurt", &yoghurt.listen_addrs()[0]).await?;
/// let reply = luda.dispatch("yoghurt", "/echo/1.0.0", "hello").await?;
/// assert_eq!(reply, "hello");
///
/// luda.close().await;
/// yoghurt.close().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

/// The node's state, shared by handles, handlers and tasks.
pub(crate) struct Inner {
    swarm: Swarm,
    endpoint: Endpoint,
    config: NodeConfig,
    /// Set once, right after the handlers and listeners (see the builder).
    services: std::sync::OnceLock<services::Services>,
    pending_out: Arc<PendingTable>,
    pending_in: Arc<PendingTable>,
    /// Long-mode request streams kept open for the next request.
    request_streams: Arc<request_streams::RequestStreams>,
    /// Raw streams open per peer (ours and handlers'), so pruning spares their
    /// connections.
    streams_open: Arc<PendingTable>,
    events: broadcast::Sender<NodeEvent>,
    closed: AtomicBool,
    /// Made on the first [`Node::metrics`] call, with its refresh task.
    metrics: std::sync::OnceLock<crate::metrics::NodeMetrics>,
}

/// A handle that does not keep the node alive (its metrics hold one).
#[derive(Clone)]
pub(crate) struct WeakNode(std::sync::Weak<Inner>);

impl WeakNode {
    /// The node, if a handle to it is still alive.
    pub(crate) fn upgrade(&self) -> Option<Node> {
        self.0.upgrade().map(|inner| Node { inner })
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.peer_id())
            .field("name", &self.inner.config.name)
            .field("mode", &self.inner.config.mode)
            .finish()
    }
}

impl Node {
    /// Starts building a node.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::new()
    }

    /// This node's peer ID.
    pub fn peer_id(&self) -> PeerId {
        self.inner.endpoint.peer_id()
    }

    /// The name this node announces.
    pub fn name(&self) -> Option<&str> {
        self.inner.config.name.as_deref()
    }

    /// The settings it runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// The swarm underneath (connections, dials, identify, the peer book).
    pub fn swarm(&self) -> &Swarm {
        &self.inner.swarm
    }

    /// The endpoint underneath (sockets, handlers, ping, identify).
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// The broadcast service (topics, publish, subscribe); `None` with broadcast off.
    pub fn pubsub(&self) -> Option<&crate::pubsub::PubSub> {
        self.inner.services.get()?.pubsub.as_ref()
    }

    /// The routing service (route table, next hops, traces); `None` with routing off.
    pub fn routing(&self) -> Option<&crate::routing::Routing> {
        self.inner.services.get()?.mesh.as_ref().map(|m| &m.routing)
    }

    /// The relay service (circuits through this node, relayed dials); `None` with
    /// routing off.
    pub fn relay(&self) -> Option<&crate::relay::Relay> {
        self.inner.services.get()?.mesh.as_ref().map(|m| &m.relay)
    }

    /// The discovery service (Kademlia DHT, connection manager); `None` with discovery
    /// off.
    pub fn discovery(&self) -> Option<&crate::discovery::Discovery> {
        self.inner.services.get()?.discovery.as_ref()
    }

    /// Starts listening on one more address; the bound address with our `/p2p/` suffix.
    pub fn listen(&self, addr: impl IntoAddr) -> Result<Multiaddr, NodeError> {
        let addr = addr.into_addr()?;
        self.inner
            .endpoint
            .listen(&addr)
            .map_err(|e| NodeError::Listen {
                addr: addr.to_string(),
                source: Arc::new(e),
            })
    }

    /// The addresses we listen on, with real ports and our `/p2p/` suffix.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.inner.endpoint.listen_addrs()
    }

    /// Registers (or replaces) the request handler of `protocol`, open to every peer.
    pub fn handle_requests<H: RequestHandler>(
        &self,
        protocol: &str,
        handler: H,
    ) -> Result<(), NodeError> {
        self.handle_requests_with(protocol, handler, Access::Open)
    }

    /// Registers (or replaces) the request handler of `protocol`, for the peers `access`
    /// lets in.
    pub fn handle_requests_with<H: RequestHandler>(
        &self,
        protocol: &str,
        handler: H,
        access: Access,
    ) -> Result<(), NodeError> {
        server::check_protocol(protocol)?;
        let endpoint_handler = server::request_handler(
            Arc::downgrade(&self.inner),
            protocol,
            handler::erase_request(handler),
        );
        self.inner
            .endpoint
            .set_handler(protocol, endpoint_handler, access);
        Ok(())
    }

    /// Registers (or replaces) the stream handler of `protocol`, open to every peer.
    pub fn handle_streams<H: StreamHandler>(
        &self,
        protocol: &str,
        handler: H,
    ) -> Result<(), NodeError> {
        self.handle_streams_with(protocol, handler, Access::Open)
    }

    /// Registers (or replaces) the stream handler of `protocol`, for the peers `access`
    /// lets in.
    pub fn handle_streams_with<H: StreamHandler>(
        &self,
        protocol: &str,
        handler: H,
        access: Access,
    ) -> Result<(), NodeError> {
        server::check_protocol(protocol)?;
        let endpoint_handler =
            server::stream_handler(Arc::downgrade(&self.inner), handler::erase_stream(handler));
        self.inner
            .endpoint
            .set_handler(protocol, endpoint_handler, access);
        Ok(())
    }

    /// Stops answering `protocol`; true if it was registered.
    pub fn remove_handler(&self, protocol: &str) -> bool {
        self.inner.endpoint.remove_handler(protocol)
    }

    /// Changes who may use `protocol` (takes effect for the next stream); false if it is
    /// not registered. Refused peers are turned away during negotiation and logged.
    pub fn set_access(&self, protocol: &str, access: Access) -> bool {
        self.inner.endpoint.set_access(protocol, access)
    }

    /// The protocols this node answers (ours and the built-in ones).
    pub fn protocols(&self) -> Vec<String> {
        self.inner.endpoint.protocols()
    }

    /// Dials `addr`, authenticates the peer (against the address's `/p2p/` suffix, if it
    /// has one), asks its name, and records it in the address book under `alias`. In long
    /// mode the connection stays open; in short mode it is closed again. Adding a peer
    /// that is a contact replaces its alias and address.
    pub async fn add_contact(
        &self,
        alias: impl Into<String>,
        addr: impl IntoAddr,
    ) -> Result<Contact, NodeError> {
        let addr = addr.into_addr()?;
        self.inner.add_contact(alias.into(), addr).await
    }

    /// Removes a contact (by peer ID, or a name that names one peer). Its connection is
    /// left to the idle timeout; use [`Node::disconnect`] to close it now.
    pub fn remove_contact(&self, target: impl Into<Target>) -> Result<Contact, NodeError> {
        let peer = self.inner.resolve(&target.into())?;
        let removed = self
            .inner
            .swarm
            .book()
            .remove_contact(&peer)
            .ok_or(NodeError::NoContact { peer })?;
        self.inner.emit(NodeEvent::ContactRemoved(removed.clone()));
        Ok(removed)
    }

    /// Every contact, sorted by alias.
    pub fn contacts(&self) -> Vec<Contact> {
        self.inner.swarm.book().contacts()
    }

    /// The peer a target names: the peer itself, or the one peer with that name (a
    /// contact's alias or an announced name).
    pub fn resolve(&self, target: impl Into<Target>) -> Result<PeerId, NodeError> {
        self.inner.resolve(&target.into())
    }

    /// The name `peer` announced, if known.
    pub fn peer_name(&self, peer: &PeerId) -> Option<String> {
        self.inner.swarm.announced_name(peer)
    }

    /// Whether `peer` has a usable long-mode connection.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.inner.swarm.is_connected(peer)
    }

    /// Sends `request` to the target's `protocol` handler and returns its reply (empty if
    /// the handler had none), within the node's request timeout.
    pub async fn dispatch(
        &self,
        target: impl Into<Target>,
        protocol: &str,
        request: impl Into<Bytes>,
    ) -> Result<Bytes, DispatchError> {
        self.dispatch_with(target, protocol, request, &DispatchOptions::default())
            .await
    }

    /// Like [`Node::dispatch`] with per-call settings.
    pub async fn dispatch_with(
        &self,
        target: impl Into<Target>,
        protocol: &str,
        request: impl Into<Bytes>,
        options: &DispatchOptions,
    ) -> Result<Bytes, DispatchError> {
        let reply = self
            .inner
            .dispatch(&target.into(), protocol, request.into(), options)
            .await?;
        Ok(reply.unwrap_or_default())
    }

    /// Sends `request` to every contact at once; each peer's reply or error.
    pub async fn dispatch_all(
        &self,
        protocol: &str,
        request: impl Into<Bytes>,
    ) -> HashMap<PeerId, Result<Bytes, DispatchError>> {
        let request = request.into();
        let peers = self.inner.swarm.book().contact_peers();
        let options = DispatchOptions::default();
        let calls = peers.into_iter().map(|peer| {
            let request = request.clone();
            let options = &options;
            async move {
                let result = self
                    .inner
                    .dispatch(&Target::Peer(peer), protocol, request, options)
                    .await
                    .map(Option::unwrap_or_default);
                (peer, result)
            }
        });
        futures::future::join_all(calls).await.into_iter().collect()
    }

    /// Opens a raw stream to the target's `protocol` handler, confirmed by the peer (a
    /// refusal is an error here, not on the first read).
    pub async fn open_stream(
        &self,
        target: impl Into<Target>,
        protocol: &str,
    ) -> Result<NodeStream, DispatchError> {
        self.open_stream_with(target, protocol, &DispatchOptions::default())
            .await
    }

    /// Like [`Node::open_stream`] with per-call settings.
    pub async fn open_stream_with(
        &self,
        target: impl Into<Target>,
        protocol: &str,
        options: &DispatchOptions,
    ) -> Result<NodeStream, DispatchError> {
        self.inner
            .open_stream(&target.into(), protocol, options)
            .await
    }

    /// Closes every connection to `peer` gracefully (streams in flight finish first) and
    /// waits for them to close. The next request redials.
    pub async fn disconnect(&self, peer: &PeerId) {
        self.inner.swarm.disconnect(peer).await;
    }

    /// Subscribes to peer and contact events.
    pub fn events(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// What the node holds right now.
    pub fn stats(&self) -> NodeStats {
        self.inner.stats()
    }

    /// The node's metrics (see [`crate::metrics`]). The first call starts a task that
    /// refreshes the counters kept in the DHT and broadcast tasks every few seconds.
    pub fn metrics(&self) -> crate::metrics::NodeMetrics {
        self.inner
            .metrics
            .get_or_init(|| {
                let metrics = crate::metrics::NodeMetrics::new(self);
                if tokio::runtime::Handle::try_current().is_ok() && !self.inner.is_closed() {
                    let refresh = metrics
                        .clone()
                        .refresh_every(self.inner.swarm.cancel_token());
                    self.inner.swarm.tasks().spawn(refresh);
                }
                metrics
            })
            .clone()
    }

    pub(crate) fn downgrade(&self) -> WeakNode {
        WeakNode(Arc::downgrade(&self.inner))
    }

    /// Stops listening, closes every connection gracefully (requests in flight finish or
    /// fail within the close grace) and waits for every task of the node and its services.
    /// Later calls fail with [`DispatchError::Closed`].
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.request_streams.close_all().await;
        self.inner.swarm.close().await;
    }
}

impl Inner {
    fn emit(&self, event: NodeEvent) {
        let _ = self.events.send(event);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst) || self.swarm.is_closed()
    }

    fn resolve(&self, target: &Target) -> Result<PeerId, NodeError> {
        match target {
            Target::Peer(p) => Ok(*p),
            Target::Name(name) => Ok(self.swarm.book().resolve(name)?),
        }
    }

    fn stats(&self) -> NodeStats {
        let swarm = self.swarm.stats();
        NodeStats {
            connections: swarm.connections,
            connected_peers: swarm.connected_peers,
            pool_entries: swarm.pool_entries,
            dials: swarm.dials,
            streams: swarm.streams,
            pending_outbound: self.pending_out.total(),
            pending_outbound_peers: self.pending_out.peers(),
            pending_inbound: self.pending_in.total(),
            pending_inbound_peers: self.pending_in.peers(),
            identifying: swarm.identifying,
            known_peers: swarm.known_peers,
            contacts: swarm.contacts,
        }
    }
}
