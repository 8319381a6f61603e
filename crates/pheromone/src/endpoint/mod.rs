//! The endpoint: one identity, its listeners, the connections it dialled or accepted, and
//! the protocols it answers.
//!
//! Every connection, in either direction, gets a driver task and an inbound-stream task
//! that negotiates each new stream against the [`Router`] and hands it to the handler.
//! Ping and identify are always answered; perf only when enabled. The endpoint does not
//! pool connections by peer or redial — that is the node's job (`crate::node`, later) — but
//! it tracks every live connection so [`Endpoint::close`] can say goodbye to all of them.

mod config;
mod error;
mod protocol_book;
mod router;

pub use config::EndpointConfig;
pub use error::{DialError, OpenStreamError};
pub use router::{Access, StreamHandler};

use crate::connection::{
    Connection, ConnectionError, ConnectionId, ConnectionInfo, Direction, Socket, Stream,
};
use crate::negotiate;
use crate::protocols::{identify, perf, ping};
use crate::transport::{TcpListener, TcpTransport};
use crate::upgrade;
use futures::FutureExt;
use pheromone_core::addr::{Multiaddr, Protocol};
use pheromone_core::identify::IdentifyInfo;
use pheromone_core::identity::{Keypair, PeerId};
use pheromone_core::noise::StaticKey;
use router::Router;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, Semaphore};
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
    router: Router,
    transport: TcpTransport,
    listen_addrs: Mutex<Vec<SocketAddr>>,
    connections: Mutex<HashMap<ConnectionId, Connection>>,
    events: broadcast::Sender<EndpointEvent>,
    cancel: CancellationToken,
    tasks: TaskTracker,
    handshake_slots: Arc<Semaphore>,
    /// Called for every connection as it is adopted, before any stream on it is served and
    /// before `dial` returns it: the node's pool must see a connection before its peer can
    /// use it, which the lossy event channel cannot promise.
    on_connection: std::sync::RwLock<Option<ConnectionHook>>,
    /// What peers listed in identify, to seed new connections with (see `protocol_book`).
    protocol_book: Mutex<protocol_book::ProtocolBook>,
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
                keypair,
                transport: TcpTransport::new(config.tcp.clone()),
                handshake_slots: Arc::new(Semaphore::new(config.max_pending_handshakes)),
                config,
                router: Router::default(),
                listen_addrs: Mutex::new(Vec::new()),
                connections: Mutex::new(HashMap::new()),
                events,
                cancel: CancellationToken::new(),
                tasks: TaskTracker::new(),
                on_connection: std::sync::RwLock::new(None),
                protocol_book: Mutex::new(protocol_book::ProtocolBook::default()),
            }),
        };
        endpoint.register_builtin_protocols();
        endpoint
    }

    fn register_builtin_protocols(&self) {
        let idle = self.inner.config.ping_idle_timeout;
        self.set_handler(
            ping::PROTOCOL,
            Arc::new(move |_conn, stream| {
                async move {
                    if let Err(e) = ping::serve(stream, idle).await {
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

    fn identity(&self) -> (&Keypair, &StaticKey) {
        (&self.inner.keypair, &self.inner.static_key)
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
        self.inner
            .router
            .insert(protocol.to_owned(), handler, access);
    }

    /// Stops answering `protocol`; true if it was registered.
    pub fn remove_handler(&self, protocol: &str) -> bool {
        self.inner.router.remove(protocol)
    }

    /// Changes who may open `protocol`; false if it is not registered.
    pub fn set_access(&self, protocol: &str, access: Access) -> bool {
        self.inner.router.set_access(protocol, access)
    }

    /// A number that changes whenever a protocol's access rule changes or a protocol is
    /// removed: a stream serving many requests re-checks [`Endpoint::allows`] only then.
    pub(crate) fn access_generation(&self) -> u64 {
        self.inner.router.access_generation()
    }

    /// Whether `peer` may use `protocol` now (what negotiation would answer).
    pub(crate) fn allows(&self, protocol: &str, peer: &PeerId) -> bool {
        self.inner.router.allows(protocol, peer)
    }

    /// The protocols this endpoint answers.
    pub fn protocols(&self) -> Vec<String> {
        self.inner.router.protocols()
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

    /// Every live connection.
    pub fn connections(&self) -> Vec<Connection> {
        self.inner
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Starts listening on `addr` (`/ip4|ip6/…/tcp/PORT`; port 0 picks one) and returns the
    /// bound address with its real port and our `/p2p/` suffix.
    pub fn listen(&self, addr: &Multiaddr) -> Result<Multiaddr, DialError> {
        let socket_addr = addr
            .tcp_socket_addr()
            .ok_or_else(|| DialError::UnsupportedAddress {
                addr: addr.to_string(),
            })?;
        let listener = self.inner.transport.listen(socket_addr)?;
        let bound = listener.local_addr();
        self.inner
            .listen_addrs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(bound);
        let this = self.clone();
        self.inner
            .tasks
            .spawn(async move { this.accept_loop(listener).await });
        tracing::info!(addr = %bound, peer = %self.peer_id(), "listening");
        Ok(self.p2p_addr(bound))
    }

    fn p2p_addr(&self, addr: SocketAddr) -> Multiaddr {
        Multiaddr::from_socket_addr(addr)
            .with_p2p(self.peer_id())
            .unwrap_or_else(|_| Multiaddr::from_socket_addr(addr))
    }

    /// The addresses we listen on, with real ports and our `/p2p/` suffix.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        let addrs = self
            .inner
            .listen_addrs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        addrs.into_iter().map(|a| self.p2p_addr(a)).collect()
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
            let Ok(permit) = self.inner.handshake_slots.clone().try_acquire_owned() else {
                tracing::warn!(%remote, limit = self.inner.config.max_pending_handshakes, "too many handshakes in progress; dropping inbound connection");
                continue;
            };
            if self.count(Direction::Inbound) >= self.inner.config.max_inbound_connections {
                tracing::warn!(%remote, limit = self.inner.config.max_inbound_connections, "inbound connection limit reached; dropping");
                continue;
            }
            let this = self.clone();
            self.inner.tasks.spawn(async move {
                let result =
                    upgrade::inbound(Socket::Tcp(socket), this.identity(), &this.inner.config)
                        .await;
                drop(permit);
                match result {
                    Ok(upgraded) => {
                        this.adopt(upgraded);
                    }
                    Err(e) => tracing::debug!(%remote, error = %e, "inbound handshake failed"),
                }
            });
        }
    }

    fn count(&self, direction: Direction) -> usize {
        self.inner
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|c| c.info().direction == direction)
            .count()
    }

    /// Dials `addr` and upgrades the link; if the address ends in `/p2p/<id>`, the remote
    /// must prove it is that peer.
    pub async fn dial(&self, addr: &Multiaddr) -> Result<Connection, DialError> {
        let expected = addr.peer_id();
        let targets = self.resolve(addr).await?;
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
        if self.count(Direction::Outbound) >= self.inner.config.max_outbound_connections {
            return Err(DialError::ConnectionLimit {
                limit: self.inner.config.max_outbound_connections,
            });
        }
        let socket = self.inner.transport.dial(addr).await?;
        let upgraded = upgrade::outbound(
            Socket::Tcp(socket),
            self.identity(),
            expected,
            &self.inner.config,
        )
        .await?;
        Ok(self.adopt(upgraded))
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
    pub(crate) async fn adopt_circuit(
        &self,
        socket: Socket,
        direction: Direction,
        expected: Option<PeerId>,
    ) -> Result<Connection, upgrade::UpgradeError> {
        let upgraded = match direction {
            Direction::Outbound => {
                upgrade::outbound(socket, self.identity(), expected, &self.inner.config).await?
            }
            Direction::Inbound => {
                let _permit = self
                    .inner
                    .handshake_slots
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| upgrade::UpgradeError::Busy {
                        limit: self.inner.config.max_pending_handshakes,
                    })?;
                upgrade::inbound(socket, self.identity(), &self.inner.config).await?
            }
        };
        Ok(self.adopt(upgraded))
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

    /// Registers an upgraded connection: spawns its driver and inbound-stream task.
    fn adopt(&self, upgraded: upgrade::Upgraded) -> Connection {
        let upgrade::Upgraded { connection, driver } = upgraded;
        let info = connection.info().clone();
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
        self.inner.tasks.spawn(driver);
        let this = self.clone();
        let conn = connection.clone();
        self.inner
            .tasks
            .spawn(async move { this.serve_inbound_streams(conn).await });
        let _ = self
            .inner
            .events
            .send(EndpointEvent::ConnectionEstablished(connection.clone()));
        connection
    }

    async fn serve_inbound_streams(self, conn: Connection) {
        loop {
            let stream = tokio::select! {
                _ = self.inner.cancel.cancelled() => break,
                s = conn.accept_stream() => s,
            };
            let stream = match stream {
                Ok(s) => s,
                Err(_) => break,
            };
            let this = self.clone();
            let stream_conn = conn.clone();
            let mut serve: futures::future::BoxFuture<'static, ()> =
                Box::pin(async move { this.handle_inbound_stream(stream_conn, stream).await });
            // Most streams (a request whose bytes came with the SYN, answered at once) finish
            // in their first poll: run it here, and give a stream a task of its own only when
            // it has to wait. A spawn per stream would hand every request to the scheduler
            // (and often to the other worker thread). The future re-registers its wakers with
            // the new task on the task's first poll.
            let first = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
                    || serve.as_mut().poll(cx),
                )))
            })
            .await;
            match first {
                Ok(std::task::Poll::Ready(())) => {}
                Ok(std::task::Poll::Pending) => {
                    self.inner.tasks.spawn(serve);
                }
                Err(_) => {
                    tracing::error!(peer = %conn.remote_peer(), "inbound stream handler panicked")
                }
            }
        }
        let error = conn.closed().await;
        let info = conn.info().clone();
        self.inner
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&info.id);
        tracing::debug!(peer = %info.remote_peer, id = %info.id, %error, "connection closed");
        let _ = self.inner.events.send(EndpointEvent::ConnectionClosed {
            info: Box::new(info),
            error,
        });
    }

    async fn handle_inbound_stream(&self, conn: Connection, mut stream: Stream) {
        let peer = conn.remote_peer();
        let router = &self.inner.router;
        let timeout = self.inner.config.stream_negotiation_timeout;
        let negotiated = crate::deadline::within(
            timeout,
            negotiate::listen_on(&mut stream, router.protocols(), |proto| {
                router.allows(proto, &peer)
            }),
        )
        .await;
        // A dialer that gave up after our `na` gets an orderly end, so that it can still
        // read the `na`; a stream that broke the protocol or stalled is reset.
        let protocol = match negotiated {
            Ok(Ok(protocol)) => protocol,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "inbound stream negotiation failed");
                if !matches!(
                    e,
                    negotiate::NegotiateError::Negotiation(
                        pheromone_core::multistream::NegotiationError::PeerGaveUp { .. }
                    )
                ) {
                    stream.reset();
                }
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, ?timeout, "inbound stream negotiation timed out");
                stream.reset();
                return;
            }
        };
        match router.handler(&protocol) {
            Some(handler) => handler(conn, stream).await,
            None => tracing::debug!(%peer, protocol, "handler removed during negotiation"),
        }
    }

    /// Opens a stream to the connection's peer for `protocol`. The negotiation is lazy: the
    /// stream is returned at once and the peer's confirmation is checked on the first read.
    /// Where identify said the peer speaks `protocol`, the first write follows the proposal
    /// at once, so a request costs no extra round trip; otherwise it waits for the
    /// confirmation (see [`negotiate::dialer_lazy`]).
    pub async fn open_stream(
        &self,
        conn: &Connection,
        protocol: &str,
    ) -> Result<Stream, OpenStreamError> {
        let stream = conn.open_stream()?;
        Ok(negotiate::dialer_lazy(stream, protocol).await?)
    }

    /// Opens a stream for `protocol` and waits for the peer to accept it, so that a refusal
    /// is reported here rather than on the first read.
    pub async fn open_stream_confirmed(
        &self,
        conn: &Connection,
        protocol: &str,
    ) -> Result<Stream, OpenStreamError> {
        let stream = conn.open_stream()?;
        let timeout = self.inner.config.stream_negotiation_timeout;
        let stream = tokio::time::timeout(timeout, negotiate::dialer(stream, protocol))
            .await
            .map_err(|_| OpenStreamError::Timeout {
                protocol: protocol.to_owned(),
                timeout,
            })??;
        Ok(stream)
    }

    /// Pings the connection's peer over `/ipfs/ping/1.0.0`; the round-trip time.
    pub async fn ping(&self, conn: &Connection) -> Result<Duration, OpenStreamError> {
        let mut stream = self.open_stream(conn, ping::PROTOCOL).await?;
        let rtt = ping::ping(&mut stream, self.inner.config.stream_negotiation_timeout)
            .await
            .map_err(|e| OpenStreamError::Protocol {
                protocol: ping::PROTOCOL.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(rtt)
    }

    /// Asks the connection's peer who it is over `/ipfs/id/1.0.0`. The answer's public key
    /// must match the connection's authenticated peer.
    pub async fn identify(&self, conn: &Connection) -> Result<IdentifyInfo, OpenStreamError> {
        let stream = self.open_stream(conn, identify::PROTOCOL).await?;
        let timeout = self.inner.config.stream_negotiation_timeout;
        let fail = |reason: String| OpenStreamError::Protocol {
            protocol: identify::PROTOCOL.to_owned(),
            reason,
        };
        let info = tokio::time::timeout(timeout, identify::receive(stream))
            .await
            .map_err(|_| fail(format!("no reply within {timeout:?}")))?
            .map_err(|e| fail(e.to_string()))?;
        if info.public_key.to_peer_id() != conn.remote_peer() {
            return Err(fail(format!(
                "identify names {} but the connection is authenticated as {}",
                info.public_key.to_peer_id(),
                conn.remote_peer()
            )));
        }
        let protocols: Arc<[String]> = Arc::from(info.protocols.clone());
        conn.set_remote_protocols(protocols.clone());
        self.inner
            .protocol_book
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(conn.remote_peer(), protocols);
        Ok(info)
    }

    /// What we tell a peer in identify on `conn`.
    pub fn identify_info(&self, conn: &Connection) -> IdentifyInfo {
        IdentifyInfo {
            public_key: self.inner.keypair.public(),
            listen_addrs: self
                .listen_addrs()
                .into_iter()
                .map(|a| a.without_p2p())
                .collect(),
            protocols: self.protocols(),
            observed_addr: Some(Multiaddr::from_socket_addr(conn.info().remote_addr)),
            protocol_version: self.inner.config.protocol_version.clone(),
            agent_version: self.inner.config.agent_version.clone(),
            pheromone_name: self.inner.config.node_name.clone(),
        }
    }

    /// Stops listening, closes every connection gracefully and waits for all tasks.
    pub async fn close(&self) {
        self.inner.cancel.cancel();
        let conns = self.connections();
        futures::future::join_all(conns.iter().map(|c| c.close())).await;
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}
