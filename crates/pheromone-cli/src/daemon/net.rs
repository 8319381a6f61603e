//! The node as the daemon sees it: one [`Endpoint`] plus what the CLI needs on top of it —
//! peers' names, when each connection began, the direct-message inbox, and resolving a
//! `PEER` argument to a connection.
//!
//! Everything the control server does to the network goes through [`Net`]; when the
//! library's `Node` API lands, this file is the one to rewrite over it. Until then names
//! travel over our tiny `/pheromone/name/1.0.0` and direct messages over
//! `/pheromone/msg/1.0.0` (see [`super::protocols`]). This module knows nothing about the
//! control socket or JSON beyond returning the control protocol's types.

use super::config::{validate_name, Mode, MAX_NAME_LEN};
use super::errors::{dial_error, open_error, stream_error};
use super::inbox::Inbox;
use super::protocols::{
    exchange_message, serve_message, serve_name, MSG_PROTOCOL, MSG_TIMEOUT, NAME_PROTOCOL,
    NAME_TIMEOUT,
};
use super::wire::{self, Ack};
use crate::control_proto::{
    ControlError, ErrorCode, PeerInfo, PeerRef, RouteInfo, Status, MAX_MESSAGE,
};
use futures::FutureExt;
use pheromone::connection::ConnectionId;
use pheromone::{Access, Connection, Direction, Endpoint, EndpointEvent, Multiaddr, PeerId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the node is started with, beyond its endpoint.
#[derive(Debug, Clone)]
pub struct NetOptions {
    /// Our human name.
    pub name: Option<String>,
    /// Link mode (shown in `status`; behaviour comes with the Node API).
    pub mode: Mode,
    /// Inbox cap, in messages.
    pub inbox_max_messages: usize,
    /// Inbox cap, in bytes.
    pub inbox_max_bytes: usize,
}

/// A `PEER` argument, resolved.
#[derive(Debug, Clone)]
pub struct Target {
    /// The peer.
    pub peer: PeerId,
    /// Where to dial it if there is no connection yet (from a `/p2p/` multiaddr).
    pub addr: Option<Multiaddr>,
}

/// The daemon's node: a cloneable handle.
#[derive(Clone)]
pub struct Net {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    options: NetOptions,
    started: Instant,
    inbox: Inbox,
    // A std mutex: nothing awaits while it is held.
    book: Mutex<PeerBook>,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

/// What we know about peers beyond the endpoint's connection list.
#[derive(Default)]
struct PeerBook {
    /// Names peers told us; kept while we have a connection to them.
    names: HashMap<PeerId, String>,
    /// When each live connection was established.
    since: HashMap<ConnectionId, SystemTime>,
    /// The last RTT a `ping` measured, per peer.
    ping_rtt: HashMap<PeerId, Duration>,
}

impl Net {
    /// Wraps `endpoint`: registers the name and message protocols and starts following
    /// connection events. Call before listening or dialling so no connection is missed.
    pub fn start(endpoint: Endpoint, options: NetOptions) -> Self {
        let inbox = Inbox::new(options.inbox_max_messages, options.inbox_max_bytes);
        let net = Net {
            inner: Arc::new(Inner {
                endpoint,
                options,
                started: Instant::now(),
                inbox,
                book: Mutex::new(PeerBook::default()),
                tasks: TaskTracker::new(),
                cancel: CancellationToken::new(),
            }),
        };
        net.register_protocols();
        let events = net.inner.endpoint.events();
        let this = net.clone();
        net.inner.tasks.spawn(this.follow_events(events));
        net
    }

    fn book(&self) -> std::sync::MutexGuard<'_, PeerBook> {
        self.inner.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The endpoint underneath.
    pub fn endpoint(&self) -> &Endpoint {
        &self.inner.endpoint
    }

    /// The direct-message inbox.
    pub fn inbox(&self) -> &Inbox {
        &self.inner.inbox
    }

    fn register_protocols(&self) {
        let name = self.inner.options.name.clone().unwrap_or_default();
        self.inner.endpoint.set_handler(
            NAME_PROTOCOL,
            Arc::new(move |conn, stream| serve_name(conn, stream, name.clone()).boxed()),
            Access::Open,
        );
        let inbox = self.inner.inbox.clone();
        self.inner.endpoint.set_handler(
            MSG_PROTOCOL,
            Arc::new(move |conn, stream| serve_message(conn, stream, inbox.clone()).boxed()),
            Access::Open,
        );
    }

    async fn follow_events(self, mut events: tokio::sync::broadcast::Receiver<EndpointEvent>) {
        loop {
            let event = tokio::select! {
                _ = self.inner.cancel.cancelled() => return,
                event = events.recv() => event,
            };
            match event {
                Ok(EndpointEvent::ConnectionEstablished(conn)) => {
                    let info = conn.info();
                    tracing::info!(peer = %info.remote_peer, addr = %info.remote_addr, direction = ?info.direction, "connected");
                    self.book().since.insert(info.id, SystemTime::now());
                    let this = self.clone();
                    self.inner.tasks.spawn(async move {
                        this.learn_name(&conn).await;
                    });
                }
                Ok(EndpointEvent::ConnectionClosed { info, error }) => {
                    tracing::info!(peer = %info.remote_peer, %error, "disconnected");
                    let still_connected = self.live_connections(&info.remote_peer).len();
                    let mut book = self.book();
                    book.since.remove(&info.id);
                    if still_connected == 0 {
                        book.names.remove(&info.remote_peer);
                        book.ping_rtt.remove(&info.remote_peer);
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    // `peers` rebuilds from the endpoint's list, so nothing is lost for good.
                    tracing::warn!(missed = n, "connection events lagged");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Asks the peer on `conn` for its name and remembers it.
    async fn learn_name(&self, conn: &Connection) -> Option<String> {
        let peer = conn.remote_peer();
        let asked = async {
            let mut stream = self
                .inner
                .endpoint
                .open_stream_confirmed(conn, NAME_PROTOCOL)
                .await
                .map_err(|e| e.to_string())?;
            let body = wire::read_frame(&mut stream, MAX_NAME_LEN)
                .await
                .map_err(|e| e.to_string())?;
            String::from_utf8(body).map_err(|_| "name is not UTF-8".to_owned())
        };
        let name = match tokio::time::timeout(NAME_TIMEOUT, asked).await {
            Ok(Ok(name)) if name.is_empty() => return None,
            Ok(Ok(name)) => name,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "no name from peer");
                return None;
            }
            Err(_) => {
                tracing::debug!(%peer, "name exchange timed out");
                return None;
            }
        };
        if let Err(e) = validate_name(&name) {
            tracing::info!(%peer, error = %e, "peer sent an unusable name; ignoring it");
            return None;
        }
        if conn.is_closed() {
            return None;
        }
        self.book().names.insert(peer, name.clone());
        Some(name)
    }

    fn name_of(&self, peer: &PeerId) -> Option<String> {
        self.book().names.get(peer).cloned()
    }

    fn live_connections(&self, peer: &PeerId) -> Vec<Connection> {
        self.inner
            .endpoint
            .connections()
            .into_iter()
            .filter(|c| c.remote_peer() == *peer && !c.is_closed())
            .collect()
    }

    /// This node's status.
    pub fn status(&self) -> Status {
        let endpoint = &self.inner.endpoint;
        Status {
            peer_id: endpoint.peer_id().to_string(),
            name: self.inner.options.name.clone(),
            listen_addrs: self
                .listen_addrs()
                .iter()
                .map(ToString::to_string)
                .collect(),
            mode: self.inner.options.mode.as_str().to_owned(),
            connections: endpoint
                .connections()
                .iter()
                .filter(|c| !c.is_closed())
                .count(),
            uptime_secs: self.inner.started.elapsed().as_secs(),
            inbox_messages: self.inner.inbox.len(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    /// Dialable listen addresses with `/p2p/`: a wildcard bind is expanded to the
    /// addresses of this host's interfaces (link-local IPv6 left out: it needs a scope).
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        let endpoint = &self.inner.endpoint;
        let interfaces: Vec<IpAddr> = if_addrs::get_if_addrs()
            .map(|list| list.into_iter().map(|i| i.ip()).collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        for bound in endpoint.listen_addrs() {
            let Some(socket) = bound.tcp_socket_addr() else {
                continue;
            };
            if !socket.ip().is_unspecified() {
                out.push(bound);
                continue;
            }
            for ip in &interfaces {
                let same_family = ip.is_ipv4() == socket.is_ipv4();
                let link_local =
                    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
                if same_family && !link_local {
                    let addr = Multiaddr::from_socket_addr(SocketAddr::new(*ip, socket.port()));
                    out.push(addr.clone().with_p2p(endpoint.peer_id()).unwrap_or(addr));
                }
            }
        }
        out
    }

    /// Connected peers, oldest connection first.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut by_peer: BTreeMap<PeerId, Vec<Connection>> = BTreeMap::new();
        for conn in self.inner.endpoint.connections() {
            if !conn.is_closed() {
                by_peer.entry(conn.remote_peer()).or_default().push(conn);
            }
        }
        let now = SystemTime::now();
        let mut book = self.book();
        let live: HashSet<ConnectionId> = by_peer.values().flatten().map(|c| c.id()).collect();
        book.since.retain(|id, _| live.contains(id));
        let mut peers: Vec<PeerInfo> = by_peer
            .into_iter()
            .map(|(peer, mut conns)| {
                for c in &conns {
                    book.since.entry(c.id()).or_insert(now);
                }
                conns.sort_by_key(|c| book.since.get(&c.id()).copied());
                let oldest = &conns[0];
                let since = book.since.get(&oldest.id()).copied().unwrap_or(now);
                let rtt = conns
                    .iter()
                    .find_map(Connection::rtt)
                    .or_else(|| book.ping_rtt.get(&peer).copied());
                PeerInfo {
                    peer_id: peer.to_string(),
                    name: book.names.get(&peer).cloned(),
                    addrs: conns
                        .iter()
                        .map(|c| Multiaddr::from_socket_addr(c.info().remote_addr).to_string())
                        .collect(),
                    direction: direction_name(oldest.info().direction).to_owned(),
                    since: unix_secs(since),
                    connected_secs: now.duration_since(since).unwrap_or_default().as_secs(),
                    rtt_ms: rtt.map(|d| d.as_secs_f64() * 1000.0),
                    connections: conns.len(),
                }
            })
            .collect();
        peers.sort_by_key(|p| p.since);
        peers
    }

    /// What this node can reach: for now, its direct connections.
    pub fn routes(&self) -> Vec<RouteInfo> {
        self.peers()
            .into_iter()
            .map(|p| RouteInfo {
                peer_id: p.peer_id,
                name: p.name,
                via: "direct".to_owned(),
                hops: 1,
                addr: p.addrs.into_iter().next().unwrap_or_default(),
                rtt_ms: p.rtt_ms,
            })
            .collect()
    }

    /// Turns a `PEER` argument (peer ID, unique name, or multiaddr with `/p2p/`) into a
    /// peer.
    pub fn resolve(&self, spec: &str) -> Result<Target, ControlError> {
        let target = if spec.starts_with('/') {
            let addr: Multiaddr = spec.parse().map_err(|e| {
                ControlError::new(ErrorCode::BadRequest, format!("bad address {spec:?}: {e}"))
            })?;
            let peer = addr.peer_id().ok_or_else(|| {
                ControlError::new(
                    ErrorCode::BadRequest,
                    format!("{spec} has no /p2p/<peer id>; a PEER address must name the peer"),
                )
            })?;
            Target {
                peer,
                addr: Some(addr),
            }
        } else if let Ok(peer) = spec.parse::<PeerId>() {
            Target { peer, addr: None }
        } else {
            self.resolve_name(spec)?
        };
        if target.peer == self.inner.endpoint.peer_id() {
            return Err(ControlError::new(
                ErrorCode::BadRequest,
                format!("{spec} is this node itself"),
            ));
        }
        Ok(target)
    }

    fn resolve_name(&self, name: &str) -> Result<Target, ControlError> {
        let book = self.book();
        let mut matches: Vec<PeerId> = book
            .names
            .iter()
            .filter(|(_, n)| n.as_str() == name)
            .map(|(p, _)| *p)
            .collect();
        matches.sort();
        match matches.as_slice() {
            [peer] => Ok(Target {
                peer: *peer,
                addr: None,
            }),
            [] => {
                let mut known: Vec<&str> = book.names.values().map(String::as_str).collect();
                known.sort_unstable();
                known.dedup();
                let hint = if known.is_empty() {
                    "no connected peer has a name".to_owned()
                } else {
                    format!("known names: {}", known.join(", "))
                };
                Err(ControlError::new(
                    ErrorCode::UnknownPeer,
                    format!("unknown peer {name:?}: not a peer ID and no connected peer has that name ({hint})"),
                ))
            }
            many => {
                let candidates: Vec<String> = many.iter().map(ToString::to_string).collect();
                let mut error = ControlError::new(
                    ErrorCode::AmbiguousPeer,
                    format!(
                        "name {name:?} is ambiguous: {} peers have it ({}); use a peer ID",
                        candidates.len(),
                        candidates.join(", ")
                    ),
                );
                error.candidates = candidates;
                Err(error)
            }
        }
    }

    /// A live connection to the target: an existing one, else one dialled from its
    /// address.
    pub async fn connection(&self, target: &Target) -> Result<Connection, ControlError> {
        if let Some(conn) = self.live_connections(&target.peer).into_iter().next() {
            return Ok(conn);
        }
        match &target.addr {
            Some(addr) => {
                let conn = self.dial(addr).await?;
                self.learn_name(&conn).await;
                Ok(conn)
            }
            None => Err(ControlError::new(
                ErrorCode::NotConnected,
                format!(
                    "not connected to {}; run `pheromone connect <its address>` first \
                     (reaching peers through other nodes comes with routing)",
                    target.peer
                ),
            )),
        }
    }

    async fn dial(&self, addr: &Multiaddr) -> Result<Connection, ControlError> {
        self.inner
            .endpoint
            .dial(addr)
            .await
            .map_err(|e| dial_error(addr, &e))
    }

    /// Dials `addr_text` (`host:port` or a multiaddr), or reuses the connection to the
    /// `/p2p/` peer it names; returns the peer as `peers` would show it.
    pub async fn connect(&self, addr_text: &str) -> Result<PeerInfo, ControlError> {
        let addr = pheromone::parse_dial_address(addr_text).map_err(|e| {
            ControlError::new(
                ErrorCode::BadRequest,
                format!("bad address {addr_text:?}: {e}"),
            )
        })?;
        if addr.peer_id() == Some(self.inner.endpoint.peer_id()) {
            return Err(ControlError::new(
                ErrorCode::BadRequest,
                format!("{addr} is this node itself"),
            ));
        }
        let conn = match addr
            .peer_id()
            .and_then(|p| self.live_connections(&p).into_iter().next())
        {
            Some(existing) => existing,
            None => self.dial(&addr).await?,
        };
        if self.name_of(&conn.remote_peer()).is_none() {
            self.learn_name(&conn).await;
        }
        let peer = conn.remote_peer().to_string();
        self.peers()
            .into_iter()
            .find(|p| p.peer_id == peer)
            .ok_or_else(|| {
                ControlError::new(
                    ErrorCode::DialFailed,
                    format!("connection to {peer} closed right after it was made"),
                )
            })
    }

    /// Closes every connection to the peer; how many there were.
    pub async fn disconnect(&self, spec: &str) -> Result<(PeerId, usize), ControlError> {
        let target = self.resolve(spec)?;
        let conns = self.live_connections(&target.peer);
        if conns.is_empty() {
            return Err(ControlError::new(
                ErrorCode::NotConnected,
                format!("not connected to {}", target.peer),
            ));
        }
        futures::future::join_all(conns.iter().map(Connection::close)).await;
        Ok((target.peer, conns.len()))
    }

    /// The peer on `conn` as events name it.
    pub fn peer_ref(&self, conn: &Connection) -> PeerRef {
        PeerRef {
            peer_id: conn.remote_peer().to_string(),
            name: self.name_of(&conn.remote_peer()),
            addr: Multiaddr::from_socket_addr(conn.info().remote_addr).to_string(),
        }
    }

    /// The name of a peer, if it told us one.
    pub fn peer_name(&self, peer: &PeerId) -> Option<String> {
        self.name_of(peer)
    }

    /// One `/ipfs/ping/1.0.0` round trip.
    pub async fn ping(&self, conn: &Connection) -> Result<Duration, ControlError> {
        let rtt = self.inner.endpoint.ping(conn).await.map_err(|e| {
            let code = if conn.is_closed() {
                ErrorCode::StreamFailed
            } else {
                ErrorCode::Timeout
            };
            ControlError::new(code, e.to_string())
        })?;
        self.book().ping_rtt.insert(conn.remote_peer(), rtt);
        Ok(rtt)
    }

    /// Sends one direct message and waits for the receiver's ack.
    pub async fn send(&self, spec: &str, data: &[u8]) -> Result<PeerId, ControlError> {
        if data.len() > MAX_MESSAGE {
            return Err(ControlError::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "message of {} bytes is over the limit of {MAX_MESSAGE}",
                    data.len()
                ),
            ));
        }
        let target = self.resolve(spec)?;
        let conn = self.connection(&target).await?;
        let peer = conn.remote_peer();
        let stream = self
            .inner
            .endpoint
            .open_stream(&conn, MSG_PROTOCOL)
            .await
            .map_err(|e| open_error(&peer, MSG_PROTOCOL, e))?;
        let ack = tokio::time::timeout(MSG_TIMEOUT, exchange_message(stream, data))
            .await
            .map_err(|_| {
                ControlError::new(
                    ErrorCode::Timeout,
                    format!("{peer} did not acknowledge the message within {MSG_TIMEOUT:?}"),
                )
            })?
            .map_err(|e| stream_error(&peer, MSG_PROTOCOL, &e))?;
        match ack {
            Ack::Stored => Ok(peer),
            Ack::InboxFull => Err(ControlError::new(
                ErrorCode::InboxFull,
                format!(
                    "{peer}'s inbox is full; it must read its messages (`pheromone recv`) first"
                ),
            )),
            Ack::TooLarge => Err(ControlError::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "{peer} refused a message of {} bytes as too large",
                    data.len()
                ),
            )),
        }
    }

    /// Stops following events and closes the endpoint gracefully.
    pub async fn close(&self) {
        self.inner.cancel.cancel();
        self.inner.endpoint.close().await;
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Outbound => "outbound",
        Direction::Inbound => "inbound",
    }
}

/// Seconds since the Unix epoch.
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}
