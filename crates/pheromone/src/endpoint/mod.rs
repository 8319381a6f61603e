//! The endpoint: one identity, its listeners, the connections it dialled or accepted, and
//! the protocols it answers.
//!
//! Every connection, in either direction, gets a driver task and an inbound-stream task
//! that negotiates each new stream against the handler table (`handlers.rs`) and hands it
//! to the handler. Ping and identify are always answered; perf only when enabled. The
//! endpoint does not pool connections by peer or redial — that is the
//! [swarm](crate::swarm)'s job — but it tracks every live connection so
//! [`Endpoint::close`] can say goodbye to all of them.

mod config;
mod error;
mod handlers;
mod protocol_book;
mod quic;
mod streams;

pub use config::EndpointConfig;
pub use error::{DialError, OpenStreamError};
pub use handlers::{Access, StreamHandler};

use crate::connection::Transport;
use crate::connection::{
    Connection, ConnectionError, ConnectionId, ConnectionInfo, Direction, Socket,
};
use crate::protocols::{identify, perf, ping};
use crate::resources::{
    CircuitGuard, ConnectionGuard, HandshakeGuard, ResourceError, ResourceManager, Way,
};
use crate::transport::quic::QuicTransport;
use crate::transport::{TcpListener, TcpTransport};
use crate::upgrade;
use futures::FutureExt;
use handlers::HandlerTable;
use pheromone_core::addr::{Multiaddr, Protocol};
use pheromone_core::identity::{Keypair, PeerId};
use pheromone_core::noise::StaticKey;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Something that happened to the endpoint's connections.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EndpointEvent {
    /// A connection finished its upgrade and is ready for streams.
    ConnectionEstablished(Connection),
    /// A connection ended.
    ConnectionClosed {
        /// Which connection.
        info: Box<ConnectionInfo>,
        /// Why it ended.
        error: ConnectionError,
    },
}

/// Capacity of the event channel; a subscriber that falls further behind misses events and
/// is told so by `RecvError::Lagged`.
const EVENT_CAPACITY: usize = 1024;

/// A cloneable handle to a running endpoint.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<Inner>,
}

struct Inner {
    keypair: Keypair,
    static_key: StaticKey,
    peer_id: PeerId,
    config: EndpointConfig,
    handlers: HandlerTable,
    transport: TcpTransport,
    quic: QuicTransport,
    /// Bound addresses and what listens there (TCP or QUIC).
    listen_addrs: Mutex<Vec<(SocketAddr, Transport)>>,
    connections: Mutex<HashMap<ConnectionId, Connection>>,
    events: broadcast::Sender<EndpointEvent>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    /// What every scope holds; asked before a handshake, a connection, a stream or a
    /// circuit is taken.
    resources: ResourceManager,
    /// Called for every connection as it is adopted, before any stream on it is served and
    /// before `dial` returns it: the node's pool must see a connection before its peer can
    /// use it, which the lossy event channel cannot promise.
    on_connection: std::sync::RwLock<Option<ConnectionHook>>,
    /// What peers listed in identify, to seed new connections with (see `protocol_book`).
    protocol_book: Mutex<protocol_book::ProtocolBook>,
    /// Event counters for metrics (connections, handshakes, dials, streams per protocol).
    counters: Arc<crate::metrics::Counters>,
}

/// What a live connection holds from the resource manager; given back when its
/// inbound-stream task ends, after the connection closed.
pub(crate) struct Held {
    _connection: ConnectionGuard,
    _circuit: Option<CircuitGuard>,
}

/// A callback run synchronously for each newly adopted connection (see `Inner`).
pub(crate) type ConnectionHook = Arc<dyn Fn(&Connection) + Send + Sync>;

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("peer_id", &self.inner.peer_id)
            .finish()
    }
}

impl Endpoint {
    /// Creates an endpoint with no listeners; it can dial at once and serves ping and
    /// identify on every connection.
    pub fn new(keypair: Keypair, config: EndpointConfig) -> Self {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let endpoint = Self {
            inner: Arc::new(Inner {
                peer_id: keypair.peer_id(),
                static_key: upgrade::static_key(&keypair),
                quic: QuicTransport::new(&keypair, config.quic.clone()),
                keypair,
                transport: TcpTransport::new(config.tcp.clone()),
                resources: ResourceManager::new(config.resources.clone()),
                config,
                handlers: HandlerTable::default(),
                listen_addrs: Mutex::new(Vec::new()),
                connections: Mutex::new(HashMap::new()),
                events,
                cancel: CancellationToken::new(),
                tasks: TaskTracker::new(),
                on_connection: std::sync::RwLock::new(None),
                protocol_book: Mutex::new(protocol_book::ProtocolBook::default()),
                counters: Arc::default(),
            }),
        };
        endpoint.register_builtin_protocols();
        endpoint
    }

    fn register_builtin_protocols(&self) {
        self.register_quic_goaway();
        let idle = self.inner.config.ping_idle_timeout;
        let reply = self.inner.config.stream_negotiation_timeout;
        self.set_handler(
            ping::PROTOCOL,
            Arc::new(move |_conn, stream| {
                async move {
                    if let Err(e) = ping::serve(stream, idle, reply).await {
                        tracing::debug!(error = %e, "ping stream ended");
                    }
                }
                .boxed()
            }),
            Access::Open,
        );
        let weak = Arc::downgrade(&self.inner);
        self.set_handler(
            identify::PROTOCOL,
            Arc::new(move |conn, stream| {
                let weak = weak.clone();
                async move {
                    let Some(inner) = weak.upgrade() else { return };
                    let info = Endpoint { inner }.identify_info(&conn);
                    if let Err(e) = identify::send(stream, &info).await {
                        tracing::debug!(peer = %conn.remote_peer(), error = %e, "identify reply failed");
                    }
                }
                .boxed()
            }),
            Access::Open,
        );
        if let Some(perf_access) = self.inner.config.perf.clone() {
            let max = self.inner.config.perf_max_download;
            self.set_handler(
                perf::PROTOCOL,
                Arc::new(move |conn, stream| {
                    async move {
                        if let Err(e) = perf::serve(stream, max).await {
                            tracing::debug!(peer = %conn.remote_peer(), error = %e, "perf stream ended");
                        }
                    }
                    .boxed()
                }),
                perf_access,
            );
        }
    }

    fn identity(&self) -> upgrade::LocalKeys<'_> {
        upgrade::LocalKeys {
            keypair: &self.inner.keypair,
            static_key: &self.inner.static_key,
            tls: self.inner.quic.tls(),
        }
    }

    /// This endpoint's peer ID.
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// This endpoint's keypair.
    pub fn keypair(&self) -> &Keypair {
        &self.inner.keypair
    }

    /// The settings it runs with.
    pub fn config(&self) -> &EndpointConfig {
        &self.inner.config
    }

    /// Registers (or replaces) the handler for inbound streams of `protocol`.
    pub fn set_handler(&self, protocol: &str, handler: StreamHandler, access: Access) {
        self.inner.counters.protocols.register(protocol);
        self.inner
            .handlers
            .insert(protocol.to_owned(), handler, access);
    }

    /// Stops answering `protocol`; true if it was registered.
    pub fn remove_handler(&self, protocol: &str) -> bool {
        self.inner.handlers.remove(protocol)
    }

    /// Changes who may open `protocol`; false if it is not registered.
    pub fn set_access(&self, protocol: &str, access: Access) -> bool {
        self.inner.handlers.set_access(protocol, access)
    }

    /// A number that changes whenever a protocol's access rule changes or a protocol is
    /// removed: a stream serving many requests re-checks [`Endpoint::allows`] only then.
    pub(crate) fn access_generation(&self) -> u64 {
        self.inner.handlers.access_generation()
    }

    /// Whether `peer` may use `protocol` now (what negotiation would answer).
    pub(crate) fn allows(&self, protocol: &str, peer: &PeerId) -> bool {
        self.inner.handlers.allows(protocol, peer)
    }

    /// The protocols this endpoint answers.
    pub fn protocols(&self) -> Vec<String> {
        self.inner.handlers.protocols()
    }

    /// The event counters metrics read.
    pub(crate) fn counters(&self) -> &Arc<crate::metrics::Counters> {
        &self.inner.counters
    }

    /// Installs the hook run for every new connection (see `Inner::on_connection`).
    pub(crate) fn set_connection_hook(&self, hook: ConnectionHook) {
        *self
            .inner
            .on_connection
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    /// Whether [`Endpoint::close`] has begun.
    pub(crate) fn is_closing(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Subscribes to connection events.
    pub fn events(&self) -> broadcast::Receiver<EndpointEvent> {
        self.inner.events.subscribe()
    }

    /// Every live connection (one closed a moment ago, whose bookkeeping task has not run
    /// yet, is left out).
    pub fn connections(&self) -> Vec<Connection> {
        self.inner
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|c| !c.is_closed())
            .cloned()
            .collect()
    }

    /// Starts listening on `addr` (`/ip4|ip6/…/tcp/PORT` or `/ip4|ip6/…/udp/PORT/quic-v1`;
    /// port 0 picks one) and returns the bound address with its real port and our `/p2p/`
    /// suffix.
    pub fn listen(&self, addr: &Multiaddr) -> Result<Multiaddr, DialError> {
        if let Some(socket_addr) = addr.quic_socket_addr() {
            return self.listen_quic(socket_addr);
        }
        let socket_addr = addr
            .tcp_socket_addr()
            .ok_or_else(|| DialError::UnsupportedAddress {
                addr: addr.to_string(),
            })?;
        let listener = self.inner.transport.listen(socket_addr)?;
        let bound = listener.local_addr();
        self.add_listen_addr(bound, Transport::Tcp);
        let this = self.clone();
        self.inner
            .tasks
            .spawn(async move { this.accept_loop(listener).await });
        tracing::info!(addr = %bound, peer = %self.peer_id(), "listening on TCP");
        Ok(self.p2p_addr(bound, Transport::Tcp))
    }

    fn add_listen_addr(&self, bound: SocketAddr, transport: Transport) {
        self.inner
            .listen_addrs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((bound, transport));
    }

    fn p2p_addr(&self, addr: SocketAddr, transport: Transport) -> Multiaddr {
        let base = match transport {
            Transport::Quic => Multiaddr::from_quic_socket_addr(addr),
            _ => Multiaddr::from_socket_addr(addr),
        };
        base.clone().with_p2p(self.peer_id()).unwrap_or(base)
    }

    /// The addresses we listen on, with real ports and our `/p2p/` suffix.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        let addrs = self
            .inner
            .listen_addrs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        addrs
            .into_iter()
            .map(|(a, t)| self.p2p_addr(a, t))
            .collect()
    }

    async fn accept_loop(self, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (socket, remote) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(slot) = self.admit_inbound(remote, Transport::Tcp) else {
                continue;
            };
            let this = self.clone();
            self.inner.tasks.spawn(async move {
                let started = std::time::Instant::now();
                let upgrade =
                    upgrade::inbound(Socket::Tcp(socket), this.identity(), &this.inner.config);
                let result = tokio::select! {
                    result = upgrade => result,
                    _ = slot.evicted() => {
                        // A newer handshake took the slot; dropping the socket closes it.
                        tracing::debug!(%remote, "inbound handshake evicted by a newer one");
                        return;
                    }
                };
                drop(slot);
                let counters = &this.inner.counters;
                counters.handshake(Direction::Inbound, started.elapsed(), &result);
                match result {
                    Ok(upgraded) => {
                        let _ = this.adopt(upgraded, None);
                    }
                    Err(e) => tracing::debug!(%remote, error = %e, "inbound handshake failed"),
                }
            });
        }
    }

    /// Admission of an inbound connection before its handshake, the same for every
    /// transport: a handshake slot (the address's share of them; when all are taken, the
    /// oldest handshake of the busiest address gives its slot up, see
    /// [`Ledger::open_handshake`](pheromone_core::resources::Ledger::open_handshake)).
    /// `None` (counted, logged at a throttled rate) refuses it; the slot is held until the
    /// handshake ends, and the handshake must stop when [`HandshakeGuard::evicted`]
    /// completes. The connection is admitted a second time, with its peer ID, in
    /// [`Endpoint::adopt`].
    pub(crate) fn admit_inbound(
        &self,
        remote: SocketAddr,
        transport: Transport,
    ) -> Option<HandshakeGuard> {
        let resources = &self.inner.resources;
        let admitted = resources.open_handshake(remote.ip()).and_then(|slot| {
            // A node at its inbound limit need not spend a handshake on one more.
            let usage = resources.usage();
            let limit = self.inner.config.resources.max_inbound_connections;
            if usage.inbound_connections >= limit {
                return Err(ResourceError {
                    scope: crate::resources::Scope::System,
                    resource: crate::resources::Resource::InboundConnections,
                    limit: limit as u64,
                });
            }
            Ok(slot)
        });
        admitted
            .inspect_err(|e| {
                resources.refused(e, &format_args!("{transport} connection from {remote}"))
            })
            .ok()
    }

    /// Admission of an outbound dial, the same for every transport.
    pub(crate) fn admit_outbound(
        &self,
        _remote: SocketAddr,
        _transport: Transport,
    ) -> Result<(), DialError> {
        self.inner
            .resources
            .check_dial()
            .map_err(|e| DialError::ConnectionLimit {
                limit: usize::try_from(e.limit).unwrap_or(usize::MAX),
            })
    }

    /// Handshakes in progress (inbound, all transports).
    pub(crate) fn pending_handshakes(&self) -> usize {
        self.inner.resources.usage().pending_handshakes
    }

    /// The endpoint's resource manager (limits, usage, refusals).
    pub fn resources(&self) -> &ResourceManager {
        &self.inner.resources
    }

    /// Bytes the live connections with `peer` hold.
    fn peer_memory(&self, peer: &PeerId) -> u64 {
        self.inner.resources.peer_memory(peer)
    }

    /// Dials `addr` and upgrades the link; if the address ends in `/p2p/<id>`, the remote
    /// must prove it is that peer.
    pub async fn dial(&self, addr: &Multiaddr) -> Result<Connection, DialError> {
        let expected = addr.peer_id();
        if addr.is_quic() {
            return self.dial_quic_addr(addr, expected).await;
        }
        let targets = self
            .resolve(addr)
            .await
            .inspect_err(|e| self.inner.counters.dial_failed(e))?;
        let mut last_error = None;
        for target in targets {
            match self.dial_socket(target, expected).await {
                Ok(conn) => return Ok(conn),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| DialError::UnsupportedAddress {
            addr: addr.to_string(),
        }))
    }

    /// Dials one socket address, optionally requiring the remote to be `expected`.
    pub async fn dial_socket(
        &self,
        addr: SocketAddr,
        expected: Option<PeerId>,
    ) -> Result<Connection, DialError> {
        let result = self.dial_socket_inner(addr, expected).await;
        if let Err(e) = &result {
            self.inner.counters.dial_failed(e);
        }
        result
    }

    async fn dial_socket_inner(
        &self,
        addr: SocketAddr,
        expected: Option<PeerId>,
    ) -> Result<Connection, DialError> {
        self.admit_outbound(addr, Transport::Tcp)?;
        let security = self.inner.config.tcp_security;
        match self.dial_tcp_with(addr, expected, security).await {
            Err(DialError::Upgrade(e)) if e.is_security_refused() => {
                // The listener read our handshake behind the refused proposal as garbage:
                // the other protocol needs a connection of its own.
                tracing::debug!(%addr, refused = security.protocol_id(), "redialling with the other security protocol");
                self.dial_tcp_with(addr, expected, security.other()).await
            }
            other => other,
        }
    }

    /// One TCP dial and upgrade proposing `security`.
    async fn dial_tcp_with(
        &self,
        addr: SocketAddr,
        expected: Option<PeerId>,
        security: upgrade::TcpSecurity,
    ) -> Result<Connection, DialError> {
        let socket = self.inner.transport.dial(addr).await?;
        let started = std::time::Instant::now();
        let upgraded = upgrade::outbound(
            Socket::Tcp(socket),
            self.identity(),
            expected,
            security,
            &self.inner.config,
        )
        .await;
        let counters = &self.inner.counters;
        counters.handshake(Direction::Outbound, started.elapsed(), &upgraded);
        Ok(self.adopt(upgraded?, None)?)
    }

    /// A live direct (not relayed) connection to `peer`, if there is one.
    pub fn direct_connection(&self, peer: &PeerId) -> Option<Connection> {
        self.inner
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|c| c.remote_peer() == *peer && c.info().relay.is_none())
            .find(|c| !c.is_closed() && !c.is_going_away())
            .cloned()
    }

    /// Upgrades a relayed circuit (its far end spliced to the peer) like a socket and
    /// registers the connection; outbound with the peer we expect, inbound as accepted.
    /// An inbound one holds `circuit` (its count among the circuits ending here) for as
    /// long as the connection lives.
    pub(crate) async fn adopt_circuit(
        &self,
        socket: Socket,
        direction: Direction,
        expected: Option<PeerId>,
        circuit: Option<CircuitGuard>,
    ) -> Result<Connection, upgrade::UpgradeError> {
        let started = std::time::Instant::now();
        let upgraded = self.upgrade_circuit(socket, direction, expected).await;
        let counters = &self.inner.counters;
        counters.handshake(direction, started.elapsed(), &upgraded);
        Ok(self.adopt(upgraded?, circuit)?)
    }

    async fn upgrade_circuit(
        &self,
        socket: Socket,
        direction: Direction,
        expected: Option<PeerId>,
    ) -> Result<upgrade::Upgraded, upgrade::UpgradeError> {
        Ok(match direction {
            Direction::Outbound => {
                // A relayed circuit is always Noise: both ends are pheromone nodes.
                upgrade::outbound(
                    socket,
                    self.identity(),
                    expected,
                    upgrade::TcpSecurity::Noise,
                    &self.inner.config,
                )
                .await?
            }
            Direction::Inbound => {
                let remote = socket.peer_addr();
                let slot = self.inner.resources.open_handshake(remote.ip())?;
                tokio::select! {
                    upgraded = upgrade::inbound(socket, self.identity(), &self.inner.config) => upgraded?,
                    _ = slot.evicted() => return Err(upgrade::UpgradeError::Timeout {
                        addr: remote,
                        timeout: Duration::ZERO,
                    }),
                }
            }
        })
    }

    async fn resolve(&self, addr: &Multiaddr) -> Result<Vec<SocketAddr>, DialError> {
        if let Some(sa) = addr.tcp_socket_addr() {
            return Ok(vec![sa]);
        }
        let unsupported = || DialError::UnsupportedAddress {
            addr: addr.to_string(),
        };
        let mut host = None;
        let mut port = None;
        for proto in addr.iter() {
            match proto {
                Protocol::Dns(h) => host = Some((h.clone(), true, true)),
                Protocol::Dns4(h) => host = Some((h.clone(), true, false)),
                Protocol::Dns6(h) => host = Some((h.clone(), false, true)),
                Protocol::Tcp(p) => port = Some(*p),
                _ => {}
            }
        }
        let ((host, v4, v6), port) = host.zip(port).ok_or_else(unsupported)?;
        Ok(self.inner.transport.resolve(&host, port, v4, v6).await?)
    }

    /// Registers an upgraded connection, if the resource manager lets it stay (system,
    /// per-IP and per-peer connection limits, memory): spawns its driver and
    /// inbound-stream task, which holds its grants until it closes. A refused connection
    /// is dropped, which closes its socket.
    fn adopt(
        &self,
        upgraded: upgrade::Upgraded,
        circuit: Option<CircuitGuard>,
    ) -> Result<Connection, ResourceError> {
        let upgrade::Upgraded { connection, driver } = upgraded;
        let info = connection.info().clone();
        let way = match info.direction {
            Direction::Inbound => Way::Inbound,
            Direction::Outbound => Way::Outbound,
        };
        // A relayed connection's address is its relay's: the per-IP limit is not for it.
        let ip = info.relay.is_none().then(|| info.remote_addr.ip());
        let resources = &self.inner.resources;
        let peer_memory = self.peer_memory(&info.remote_peer);
        let held = match resources.open_connection(way, ip, info.remote_peer, peer_memory) {
            Ok(guard) => Held {
                _connection: guard,
                _circuit: circuit,
            },
            Err(e) => {
                let what = format_args!(
                    "{:?} connection with {} at {}",
                    info.direction, info.remote_peer, info.remote_addr
                );
                resources.refused(&e, &what);
                connection.abort();
                return Err(e);
            }
        };
        connection.attach_memory(resources.memory_gauge(info.remote_peer));
        tracing::debug!(peer = %info.remote_peer, addr = %info.remote_addr, direction = ?info.direction, id = %info.id, cipher = %info.cipher, "connection established");
        let known = self
            .inner
            .protocol_book
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&info.remote_peer);
        if let Some(protocols) = known {
            connection.set_remote_protocols(protocols);
        }
        self.inner.counters.connection_opened(&info);
        connection.attach_counters(&self.inner.counters);
        self.inner
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(info.id, connection.clone());
        let hook = self
            .inner
            .on_connection
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook(&connection);
        }
        if let Some(driver) = driver {
            self.inner.tasks.spawn(driver);
        }
        let this = self.clone();
        let conn = connection.clone();
        self.inner
            .tasks
            .spawn(async move { this.serve_inbound_streams(conn, held).await });
        let _ = self
            .inner
            .events
            .send(EndpointEvent::ConnectionEstablished(connection.clone()));
        Ok(connection)
    }

    /// Stops listening, closes every connection gracefully and waits for all tasks.
    pub async fn close(&self) {
        self.inner.cancel.cancel();
        let conns = self.connections();
        futures::future::join_all(conns.iter().map(|c| c.close())).await;
        self.inner.quic.close().await;
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}
