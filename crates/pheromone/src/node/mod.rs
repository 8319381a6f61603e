//! The node: what a program using pheromone touches. Protocol handlers by name, routes to
//! peers by name or peer ID, requests with replies, raw streams, over long or short
//! connections.
//!
//! A [`Node`] is built with a [`NodeBuilder`] on top of an [`Endpoint`] (which owns the
//! sockets, the upgrade and per-stream negotiation). The node adds:
//!
//! - **handlers**: [`RequestHandler`]s (`handle(peer, bytes) -> optional reply`) and
//!   [`StreamHandler`]s, each registered under a protocol name, open to every peer or to an
//!   allow-list ([`Access`]) checked during negotiation, so a refused peer never reaches
//!   the handler. Unknown protocols are refused in negotiation too.
//! - **routes**: [`Node::add_route`] dials an address, authenticates the peer and learns
//!   the name it announces in identify. Names are aliases (several peers may share one);
//!   the key is always the [`PeerId`].
//! - **requests**: [`Node::dispatch`] sends bytes on a new stream of the peer's connection
//!   and returns the reply (wire format in `docs/protocols/reqresp.md`), within a deadline
//!   and a maximum message size; [`Node::dispatch_all`] asks every route at once.
//! - **connections**: in [`ConnectionMode::Long`] one connection per peer, used by both
//!   sides, kept alive, closed when idle and redialled on the next use; when both peers
//!   dial each other at once they settle on the connection dialled by the smaller peer ID
//!   and drain the other. In [`ConnectionMode::Short`] every request gets its own
//!   connection, closed after the reply.
//!
//! This module does no framing of its own beyond [`wire`] and never blocks a thread: every
//! lock is a std mutex released before any await.
//!
//! See [`Node`] for an example: two nodes, one handler, one dispatch.

mod builder;
mod config;
mod dispatch;
mod error;
mod handler;
mod kad;
mod lifecycle;
mod mesh;
mod pending;
mod pool;
mod reqresp;
mod request_streams;
mod routes;
mod server;
mod stream;
mod topics;
pub mod wire;

pub use crate::endpoint::Access;
pub use builder::NodeBuilder;
pub use config::{ConnectionMode, Limits, NodeConfig};
pub use error::{DispatchError, NodeError};
pub use handler::{HandlerError, HandlerResult, Peer, RequestHandler, StreamHandler};
pub use routes::RouteInfo;
pub use stream::NodeStream;

use crate::connection::{ConnectionId, Direction};
use crate::endpoint::Endpoint;
use bytes::Bytes;
use futures::future::{BoxFuture, Shared};
use pending::PendingTable;
use pheromone_core::addr::{parse_dial_address, Multiaddr};
use pheromone_core::identity::PeerId;
use pool::Pool;
use routes::{Directory, RouteChange};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Capacity of the event channel; a subscriber that falls further behind is told so by
/// `RecvError::Lagged` and misses events.
const EVENT_CAPACITY: usize = 1024;

/// Who a request or stream is for: a peer ID, or a name (a route's alias or a peer's
/// announced name) that must belong to exactly one peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// This peer.
    Peer(PeerId),
    /// The one peer with this name.
    Name(String),
}

impl From<PeerId> for Target {
    fn from(p: PeerId) -> Self {
        Target::Peer(p)
    }
}

impl From<&PeerId> for Target {
    fn from(p: &PeerId) -> Self {
        Target::Peer(*p)
    }
}

impl From<&str> for Target {
    fn from(name: &str) -> Self {
        Target::Name(name.to_owned())
    }
}

impl From<String> for Target {
    fn from(name: String) -> Self {
        Target::Name(name)
    }
}

impl From<&String> for Target {
    fn from(name: &String) -> Self {
        Target::Name(name.clone())
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Peer(p) => write!(f, "{p}"),
            Target::Name(n) => write!(f, "{n:?}"),
        }
    }
}

/// An address to dial or listen on: a multiaddr, its text, or `host:port`.
pub trait IntoAddr {
    /// The address as a multiaddr.
    fn into_addr(self) -> Result<Multiaddr, NodeError>;
}

impl IntoAddr for Multiaddr {
    fn into_addr(self) -> Result<Multiaddr, NodeError> {
        Ok(self)
    }
}

impl IntoAddr for &Multiaddr {
    fn into_addr(self) -> Result<Multiaddr, NodeError> {
        Ok(self.clone())
    }
}

impl IntoAddr for SocketAddr {
    fn into_addr(self) -> Result<Multiaddr, NodeError> {
        Ok(Multiaddr::from_socket_addr(self))
    }
}

impl IntoAddr for &str {
    fn into_addr(self) -> Result<Multiaddr, NodeError> {
        parse_dial_address(self).map_err(|e| NodeError::BadAddress {
            addr: self.to_owned(),
            reason: e.to_string(),
        })
    }
}

impl IntoAddr for String {
    fn into_addr(self) -> Result<Multiaddr, NodeError> {
        self.as_str().into_addr()
    }
}

impl IntoAddr for &String {
    fn into_addr(self) -> Result<Multiaddr, NodeError> {
        self.as_str().into_addr()
    }
}

/// Per-call settings of [`Node::dispatch_with`] and [`Node::open_stream_with`]; unset
/// fields use the node's.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DispatchOptions {
    /// Deadline of the whole call, dial included.
    pub timeout: Option<Duration>,
    /// Long or short connection for this call.
    pub mode: Option<ConnectionMode>,
}

impl DispatchOptions {
    /// The node's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the connection mode.
    pub fn mode(mut self, mode: ConnectionMode) -> Self {
        self.mode = Some(mode);
        self
    }
}

/// Something that happened to the node's peers or routes.
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
    /// Identify told us a peer's name (first time, or it changed).
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
    /// A route was added.
    RouteAdded(RouteInfo),
    /// A route's alias or address changed.
    RouteUpdated(RouteInfo),
    /// A route was removed.
    RouteRemoved(RouteInfo),
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
    /// Routes.
    pub routes: usize,
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
/// luda.add_route("yoghurt", &yoghurt.listen_addrs()[0]).await?;
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

/// The maps a dispatch consults on every call (pending counts, the pool, kept streams):
/// foldhash, seeded per process, instead of SipHash.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The node's state, shared by handles, handlers and tasks.
pub(crate) struct Inner {
    endpoint: Endpoint,
    /// Topic broadcast over the node's connections.
    pubsub: crate::pubsub::PubSub,
    /// Multi-hop routing and relayed connections (absent with routing off).
    mesh: Option<mesh::Mesh>,
    config: NodeConfig,
    pool: Pool,
    /// Routes and learned names; a std mutex, never held across an await.
    directory: Mutex<Directory>,
    pending_out: Arc<PendingTable>,
    pending_in: Arc<PendingTable>,
    /// Long-mode request streams kept open for the next request.
    request_streams: Arc<request_streams::RequestStreams>,
    /// Raw streams open per peer (ours and handlers'), so the connection manager spares
    /// their connections.
    streams_open: Arc<PendingTable>,
    /// The DHT and connection manager (absent with discovery off); set once, right after
    /// the node is built, because its connector needs a handle on the node.
    discovery: std::sync::OnceLock<crate::discovery::Discovery>,
    /// Identify exchanges in progress by connection, so a handler can wait for the name.
    identifying: Mutex<HashMap<ConnectionId, Shared<BoxFuture<'static, ()>>>>,
    events: broadcast::Sender<NodeEvent>,
    closed: AtomicBool,
    cancel: CancellationToken,
    tasks: TaskTracker,
    next_dial: AtomicU64,
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

    /// The endpoint underneath (connections, ping, identify).
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// The routing service (route table, next hops, traces); `None` with routing off.
    pub fn routing(&self) -> Option<&crate::routing::Routing> {
        self.inner.mesh.as_ref().map(|m| &m.routing)
    }

    /// The relay service (circuits through this node, relayed dials); `None` with
    /// routing off.
    pub fn relay(&self) -> Option<&crate::relay::Relay> {
        self.inner.mesh.as_ref().map(|m| &m.relay)
    }

    /// The discovery service (Kademlia DHT, connection manager); `None` with discovery
    /// off.
    pub fn discovery(&self) -> Option<&crate::discovery::Discovery> {
        self.inner.discovery.get()
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

    /// Registers (or replaces) the request handler of `protocol`.
    pub fn handle_requests<H: RequestHandler>(
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

    /// Registers (or replaces) the stream handler of `protocol`.
    pub fn handle_streams<H: StreamHandler>(
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
    /// has one), asks its name, and records the route under `name`. In long mode the
    /// connection stays open; in short mode it is closed again. Adding a route to a peer
    /// that has one replaces its alias and address.
    pub async fn add_route(
        &self,
        name: impl Into<String>,
        addr: impl IntoAddr,
    ) -> Result<RouteInfo, NodeError> {
        let addr = addr.into_addr()?;
        self.inner.add_route(name.into(), addr).await
    }

    /// Removes the route to a peer (by ID, or a name that names one peer). Its connection
    /// is left to the idle timeout; use [`Node::disconnect`] to close it now.
    pub fn remove_route(&self, target: impl Into<Target>) -> Result<RouteInfo, NodeError> {
        let peer = self.inner.resolve(&target.into())?;
        let removed = self
            .inner
            .lock_directory()
            .remove_route(&peer)
            .ok_or(NodeError::NoRoute { peer })?;
        self.inner.emit(NodeEvent::RouteRemoved(removed.clone()));
        Ok(removed)
    }

    /// Every route, sorted by alias.
    pub fn routes(&self) -> Vec<RouteInfo> {
        self.inner.lock_directory().routes()
    }

    /// The peer a target names: the peer itself, or the one peer with that name.
    pub fn resolve(&self, target: impl Into<Target>) -> Result<PeerId, NodeError> {
        self.inner.resolve(&target.into())
    }

    /// The name `peer` announced, if known.
    pub fn peer_name(&self, peer: &PeerId) -> Option<String> {
        self.inner
            .lock_directory()
            .name(peer)
            .map(|n| n.to_string())
    }

    /// Whether `peer` has a usable long-mode connection.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.inner.pool.is_connected(peer)
    }

    /// Sends `request` to the target's `protocol` handler and returns its reply (empty if
    /// the handler had none), within the node's request timeout.
    pub async fn dispatch(
        &self,
        target: impl Into<Target>,
        protocol: &str,
        request: impl Into<Bytes>,
    ) -> Result<Bytes, DispatchError> {
        let options = DispatchOptions::default();
        let reply = self
            .inner
            .dispatch(&target.into(), protocol, request.into(), &options)
            .await?;
        Ok(reply.unwrap_or_default())
    }

    /// Like [`Node::dispatch`] with per-call settings; `None` when the handler had no reply.
    pub async fn dispatch_with(
        &self,
        target: impl Into<Target>,
        protocol: &str,
        request: impl Into<Bytes>,
        options: &DispatchOptions,
    ) -> Result<Option<Bytes>, DispatchError> {
        self.inner
            .dispatch(&target.into(), protocol, request.into(), options)
            .await
    }

    /// Sends `request` to every route at once; each peer's reply or error.
    pub async fn dispatch_all(
        &self,
        protocol: &str,
        request: impl Into<Bytes>,
    ) -> HashMap<PeerId, Result<Bytes, DispatchError>> {
        let request = request.into();
        let peers = self.inner.lock_directory().route_peers();
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
        let conns = self.inner.pool.connections_to(peer);
        futures::future::join_all(conns.iter().map(|c| c.close())).await;
    }

    /// Subscribes to peer and route events.
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
                    let refresh = metrics.clone().refresh_every(self.inner.cancel.clone());
                    self.inner.tasks.spawn(refresh);
                }
                metrics
            })
            .clone()
    }

    pub(crate) fn downgrade(&self) -> WeakNode {
        WeakNode(Arc::downgrade(&self.inner))
    }

    /// Stops listening, closes every connection gracefully (requests in flight finish or
    /// fail within the close grace) and waits for the node's tasks. Later calls fail with
    /// [`DispatchError::Closed`].
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.cancel.cancel();
        self.inner.request_streams.close_all().await;
        self.inner.endpoint.close().await;
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

impl Inner {
    fn emit(&self, event: NodeEvent) {
        let _ = self.events.send(event);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn lock_directory(&self) -> std::sync::MutexGuard<'_, Directory> {
        self.directory.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn resolve(&self, target: &Target) -> Result<PeerId, NodeError> {
        match target {
            Target::Peer(p) => Ok(*p),
            Target::Name(name) => Ok(self.lock_directory().resolve(name)?),
        }
    }

    fn stats(&self) -> NodeStats {
        let pool = self.pool.sizes();
        let (known_peers, routes) = {
            let d = self.lock_directory();
            (d.num_known(), d.num_routes())
        };
        NodeStats {
            connections: pool.connections,
            connected_peers: pool.connected_peers,
            pool_entries: pool.peers,
            dials: pool.dials,
            streams: pool.streams,
            pending_outbound: self.pending_out.total(),
            pending_outbound_peers: self.pending_out.peers(),
            pending_inbound: self.pending_in.total(),
            pending_inbound_peers: self.pending_in.peers(),
            identifying: self
                .identifying
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len(),
            known_peers,
            routes,
        }
    }

    /// Records a route after its peer was reached and identified.
    fn record_route(&self, peer: PeerId, name: String, addr: Multiaddr) -> RouteInfo {
        let (change, info) = self.lock_directory().add_route(peer, name, addr);
        match change {
            RouteChange::Added => self.emit(NodeEvent::RouteAdded(info.clone())),
            RouteChange::Updated => self.emit(NodeEvent::RouteUpdated(info.clone())),
            RouteChange::Unchanged => {}
        }
        info
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone without `close`: stop the endpoint's tasks and sockets.
        self.cancel.cancel();
        if !self.endpoint.is_closing() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let endpoint = self.endpoint.clone();
                runtime.spawn(async move { endpoint.close().await });
            }
        }
    }
}
