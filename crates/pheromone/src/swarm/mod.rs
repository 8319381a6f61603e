//! The swarm: the layer between the [`Endpoint`] (sockets, upgrades, per-stream
//! negotiation) and everything that wants "a connection to that peer" — the node's user
//! API, the overlay drivers, relaying.
//!
//! It owns every connection the node uses, in both directions, and:
//! - keeps at most one long-mode connection per peer (`pool.rs`): dials are shared by all
//!   who wait for them, and when both peers dial each other at once both keep the same
//!   connection and close the other gracefully;
//! - runs identify exactly once per connection and remembers what peers said, with the
//!   operator's contacts and the DHT's findings, in the peer book (`peers.rs`), where names
//!   resolve;
//! - dials a peer at every address it knows, then asks its [`DialFallback`] (the DHT, a
//!   relay along the route table) for a way;
//! - closes connections that stay idle, and reports every connection, once identified, as
//!   a [`SwarmEvent`].
//!
//! It speaks no protocol of its own beyond identify and knows nothing of requests or
//! overlays: those live in `node` and `overlay`.
//!
//! # Layout
//! - `pool.rs`: the per-peer connection table and the simultaneous-open rule.
//! - `lifecycle.rs`: connections entering and leaving (adopt, install, identify, idle).
//! - `dial.rs`: getting a connection to a peer.
//! - `peers.rs`: the peer book.
//! - `error.rs`: [`ConnectError`].

mod dial;
mod error;
mod lifecycle;
mod peers;
mod pool;

pub use error::ConnectError;
pub use peers::{Contact, PeerRecord};
pub(crate) use peers::{ContactChange, Unresolved};

use crate::connection::{Connection, ConnectionId, ConnectionInfo, Direction};
use crate::endpoint::Endpoint;
use futures::future::{BoxFuture, Shared};
use peers::PeerBook;
use pheromone_core::addr::Multiaddr;
use pheromone_core::identity::PeerId;
use pool::Pool;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Capacity of the event channel; a subscriber that falls further behind is told so by
/// `RecvError::Lagged` and must resynchronise from [`Swarm::ready_connections`].
const EVENT_CAPACITY: usize = 4096;

/// How a node reaches its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConnectionMode {
    /// At most one connection per peer, kept open and used by both sides, kept alive by
    /// yamux pings, closed after the idle timeout and redialled on the next use.
    #[default]
    Long,
    /// A new connection per request: dial, upgrade, send, read the reply, close. A node in
    /// this mode also closes inbound connections once it has replied.
    Short,
}

/// Settings of a [`Swarm`].
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// Long or short connections.
    pub mode: ConnectionMode,
    /// A connection with no stream and no use for this long is closed; `None` keeps
    /// connections until they fail.
    pub idle_timeout: Option<Duration>,
    /// Peers remembered from identify and DHT findings each (contacts come on top).
    pub max_known_peers: usize,
    /// Happy Eyeballs (RFC 8305): a dial of a peer with several addresses tries QUIC ones
    /// first and starts the next address when an attempt has not succeeded within this
    /// "connection attempt delay" (the RFC's recommended 250 ms), keeping the earlier ones
    /// running; the first to succeed wins.
    pub happy_eyeballs_delay: Duration,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            mode: ConnectionMode::Long,
            idle_timeout: Some(Duration::from_secs(120)),
            max_known_peers: peers::MAX_KNOWN_PEERS,
            happy_eyeballs_delay: Duration::from_millis(250),
        }
    }
}

/// Something that happened to the swarm's connections.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SwarmEvent {
    /// A connection was adopted and its identify exchange ended: `record` is what the peer
    /// said (`None` when identify failed). Every connection is reported once, whatever its
    /// mode or direction, relayed ones included.
    ConnectionReady {
        /// The connection.
        conn: Connection,
        /// What the peer told us.
        record: Option<Arc<PeerRecord>>,
    },
    /// A connection the swarm held closed.
    ConnectionClosed {
        /// Which one.
        info: Box<ConnectionInfo>,
    },
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
}

/// The ways to reach a peer the swarm cannot find itself, tried in order once every known
/// address failed. The node installs one backed by its DHT and relay services.
pub trait DialFallback: Send + Sync + 'static {
    /// Addresses for `peer` found elsewhere (the DHT); empty when none.
    fn find_addrs(&self, peer: PeerId) -> BoxFuture<'static, Vec<Multiaddr>>;
    /// A relayed connection to `peer`, if there is a way to try one.
    #[allow(clippy::type_complexity)]
    fn relay(
        &self,
        peer: PeerId,
    ) -> Option<BoxFuture<'static, Result<Connection, Arc<dyn std::error::Error + Send + Sync>>>>;
}

/// Whether a peer's connections are in use (requests or streams in flight) and must not
/// be closed to prune.
pub type KeepCheck = Arc<dyn Fn(&PeerId) -> bool + Send + Sync>;

/// Counts of what the swarm holds, for metrics and leak checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SwarmStats {
    /// Live connections tracked.
    pub connections: usize,
    /// Peers with a usable long-mode connection.
    pub connected_peers: usize,
    /// Entries in the per-peer connection table (connected, dialling or announced).
    pub pool_entries: usize,
    /// Dials in progress.
    pub dials: usize,
    /// Streams open on tracked connections, both directions.
    pub streams: usize,
    /// Identify exchanges in progress.
    pub identifying: usize,
    /// Peers remembered from identify.
    pub known_peers: usize,
    /// Contacts in the address book.
    pub contacts: usize,
}

type Identifying = Shared<BoxFuture<'static, Option<Arc<PeerRecord>>>>;

/// A live connection whose identify ended, and what it said.
pub type Ready = (Connection, Option<Arc<PeerRecord>>);

/// A cloneable handle to a running swarm.
#[derive(Clone)]
pub struct Swarm {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    endpoint: Endpoint,
    config: SwarmConfig,
    pool: Pool,
    /// A std mutex, never held across an await.
    book: Mutex<PeerBook>,
    /// Identify exchanges in progress by connection; handlers of a connection's first
    /// requests wait for its answer.
    identifying: Mutex<HashMap<ConnectionId, Identifying>>,
    /// Live connections whose identify ended, with what it said (for resynchronising).
    ready: Mutex<HashMap<ConnectionId, Ready>>,
    events: broadcast::Sender<SwarmEvent>,
    fallback: RwLock<Option<Arc<dyn DialFallback>>>,
    keep: RwLock<Option<KeepCheck>>,
    closed: AtomicBool,
    cancel: CancellationToken,
    tasks: TaskTracker,
    next_dial: AtomicU64,
}

impl std::fmt::Debug for Swarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swarm")
            .field("peer_id", &self.inner.endpoint.peer_id())
            .field("mode", &self.inner.config.mode)
            .finish()
    }
}

impl Swarm {
    /// A swarm over `endpoint`: it adopts every inbound connection from now on and closes
    /// idle ones.
    pub fn new(endpoint: Endpoint, config: SwarmConfig) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let inner = Arc::new(Inner {
            pool: Pool::new(endpoint.peer_id()),
            book: Mutex::new(PeerBook::with_max_known(config.max_known_peers)),
            endpoint,
            config,
            identifying: Mutex::new(HashMap::new()),
            ready: Mutex::new(HashMap::new()),
            events,
            fallback: RwLock::new(None),
            keep: RwLock::new(None),
            closed: AtomicBool::new(false),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            next_dial: AtomicU64::new(0),
        });
        lifecycle::start(&inner);
        Swarm { inner }
    }

    /// The endpoint underneath.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// Our peer ID.
    pub fn local_peer_id(&self) -> PeerId {
        self.inner.endpoint.peer_id()
    }

    /// The settings.
    pub fn config(&self) -> &SwarmConfig {
        &self.inner.config
    }

    /// The tasks of the swarm and of everything running on it; [`Swarm::close`] waits for
    /// them.
    pub fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    /// Cancelled when the swarm starts closing.
    pub fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.inner.cancel.cancelled()
    }

    /// A token cancelled when the swarm starts closing.
    pub fn cancel_token(&self) -> CancellationToken {
        self.inner.cancel.clone()
    }

    /// Whether [`Swarm::close`] has begun.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Subscribes to connection events.
    pub fn events(&self) -> broadcast::Receiver<SwarmEvent> {
        self.inner.events.subscribe()
    }

    /// Every live connection whose identify exchange has ended, with what it said.
    pub fn ready_connections(&self) -> Vec<Ready> {
        self.inner
            .ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|(c, _)| !c.is_closed())
            .cloned()
            .collect()
    }

    /// What `peer` said about itself in identify, if we know.
    pub fn peer_record(&self, peer: &PeerId) -> Option<Arc<PeerRecord>> {
        self.inner.book().record(peer).map(|(r, _)| r)
    }

    /// Installs the ways to reach a peer with no working address.
    pub fn set_fallback(&self, fallback: Arc<dyn DialFallback>) {
        *self
            .inner
            .fallback
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(fallback);
    }

    /// Installs the check that spares peers in use from pruning.
    pub fn set_keep_check(&self, keep: KeepCheck) {
        *self.inner.keep.write().unwrap_or_else(|e| e.into_inner()) = Some(keep);
    }

    /// The peer's usable long-mode connection.
    pub fn current(&self, peer: &PeerId) -> Option<Connection> {
        self.inner.pool.current(peer)
    }

    /// Whether `peer` has a usable long-mode connection.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.inner.pool.is_connected(peer)
    }

    /// Every connection to `peer` the swarm holds.
    pub fn connections_to(&self, peer: &PeerId) -> Vec<Connection> {
        self.inner.pool.connections_to(peer)
    }

    /// A connection to `peer` in the swarm's mode: [`Swarm::connect_pooled`] in long mode,
    /// [`Swarm::connect_new`] in short mode.
    pub async fn connect(&self, peer: PeerId) -> Result<Connection, ConnectError> {
        match self.inner.config.mode {
            ConnectionMode::Long => self.connect_pooled(peer).await,
            ConnectionMode::Short => self.connect_new(peer).await,
        }
    }

    /// The peer's long-mode connection: the current one, the dial in progress, or a new
    /// dial at every address known, then through the fallback.
    pub async fn connect_pooled(&self, peer: PeerId) -> Result<Connection, ConnectError> {
        self.inner.connection_to(peer).await
    }

    /// A connection of its own to `peer` (never pooled), which the caller closes.
    pub async fn connect_new(&self, peer: PeerId) -> Result<Connection, ConnectError> {
        // Boxed: a dial (DHT lookup, relayed handshake) holds kilobytes of state, and every
        // dispatch future would otherwise carry and move it.
        Box::pin(self.inner.dial_short(peer)).await
    }

    /// A connection to `peer` at `addrs` alone (never the fallback), shared with other
    /// callers as [`Swarm::connect`]'s are.
    pub async fn connect_at(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
    ) -> Result<Connection, ConnectError> {
        self.inner.connect_direct(peer, addrs).await
    }

    /// Dials `addr` (which may lack `/p2p/`: whoever answers) and adopts the connection.
    pub async fn dial_addr(&self, addr: &Multiaddr) -> Result<Connection, ConnectError> {
        if self.is_closed() {
            return Err(ConnectError::Closed);
        }
        let conn = Box::pin(self.inner.endpoint.dial(addr))
            .await
            .map_err(|e| match addr.peer_id() {
                Some(peer) => ConnectError::from_dial(peer, e),
                None => ConnectError::Dial {
                    peer: self.local_peer_id(),
                    source: Arc::new(e),
                },
            })?;
        self.inner
            .adopt(conn.clone(), self.inner.config.mode == ConnectionMode::Long);
        Ok(conn)
    }

    /// Adopts a connection made outside the swarm (a relayed circuit): it is tracked,
    /// identified and, in long mode with `pooled`, offered as its peer's connection.
    pub fn adopt(&self, conn: Connection, pooled: bool) {
        self.inner.adopt(conn, pooled);
    }

    /// Closes every connection to `peer` gracefully (streams in flight finish first) and
    /// waits for them to close.
    pub async fn disconnect(&self, peer: &PeerId) {
        let conns = self.inner.pool.connections_to(peer);
        futures::future::join_all(conns.iter().map(|c| c.close())).await;
    }

    /// Closes `peer`'s connections in the background unless it is a contact or in use
    /// (see [`Swarm::set_keep_check`]); whether it did.
    pub fn prune(&self, peer: &PeerId) -> bool {
        if self.inner.book().is_contact(peer) || self.inner.in_use(peer) {
            return false;
        }
        for conn in self.inner.pool.connections_to(peer) {
            if conn.info().relay.is_none() {
                self.inner.tasks.spawn(async move { conn.close().await });
            }
        }
        true
    }

    /// Waits for the identify exchange running on `conn`, if any.
    pub async fn identified(&self, conn: &Connection) -> Option<Arc<PeerRecord>> {
        let running = self
            .inner
            .identifying
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&conn.id())
            .cloned();
        match running {
            Some(exchange) => exchange.await,
            None => self.peer_record(&conn.remote_peer()),
        }
    }

    /// Runs identify on `conn` now and records the answer.
    pub async fn identify(&self, conn: &Connection) -> Result<Arc<PeerRecord>, String> {
        self.inner.identify(conn).await
    }

    /// Records addresses the DHT found for `peer`.
    pub fn found(&self, peer: PeerId, addrs: &[Multiaddr]) {
        self.inner
            .book()
            .found(peer, addrs, std::time::Instant::now());
    }

    /// Addresses to dial `peer` at, contact address first.
    pub fn addresses(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.inner.book().addresses(peer)
    }

    /// The name `peer` announced, if known.
    pub fn announced_name(&self, peer: &PeerId) -> Option<String> {
        self.inner.book().name(peer).map(|n| n.to_string())
    }

    pub(crate) fn book(&self) -> MutexGuard<'_, PeerBook> {
        self.inner.book()
    }

    /// What the swarm holds right now.
    pub fn stats(&self) -> SwarmStats {
        let pool = self.inner.pool.sizes();
        let (known_peers, contacts) = {
            let book = self.inner.book();
            (book.num_identified(), book.num_contacts())
        };
        SwarmStats {
            connections: pool.connections,
            connected_peers: pool.connected_peers,
            pool_entries: pool.peers,
            dials: pool.dials,
            streams: pool.streams,
            identifying: self
                .inner
                .identifying
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len(),
            known_peers,
            contacts,
        }
    }

    /// Stops listening, closes every connection gracefully and waits for every task the
    /// swarm and the services on it started.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.cancel.cancel();
        self.inner.endpoint.close().await;
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

impl Inner {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn book(&self) -> MutexGuard<'_, PeerBook> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, event: SwarmEvent) {
        let _ = self.events.send(event);
    }

    fn in_use(&self, peer: &PeerId) -> bool {
        self.keep
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|keep| keep(peer))
    }

    fn fallback(&self) -> Option<Arc<dyn DialFallback>> {
        self.fallback
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
