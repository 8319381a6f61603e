//! The node as the daemon sees it: one library [`Node`] plus what the CLI needs on top of
//! it — when each connection began, the last ping RTT, the direct-message inbox, the peer
//! store (fed from connection events) and the tasks keeping dialled links up, the tight
//! keep-alive on each peer's long-mode link, and turning a `PEER` argument into a peer
//! the node can reach.
//!
//! Everything the control server does to the network goes through [`Net`]. The node does
//! the real work: it learns peers' names in identify, dials and keeps connections in the
//! configured [`Mode`] (long: one pooled link per peer; short: a link per request, closed
//! after the reply), answers `/pheromone/msg/1.0.0` with the inbox's request handler, and
//! runs topic broadcast. `connect` adds a route to the node (with no alias: names come
//! from identify). This module knows nothing about the control socket or JSON beyond
//! returning the control protocol's types.

mod mesh;
mod msg;

pub use mesh::NEIGHBOUR_KEEPALIVE;

use super::config::{validate_name, Mode, Settings};
use super::errors::{dispatch_error, node_error, pubsub_error, unknown_name};
use super::inbox::Inbox;
use super::observe::activity::{short_id, Activity};
use super::peerstore::PeerStore;
use super::protocols::{MessageHandler, ID_LEN, MSG_PROTOCOL, MSG_PROTOCOL_V2};
use crate::control_proto::{
    ConnectionSummary, ControlError, ErrorCode, PeerInfo, PeerRef, Status, MAX_MESSAGE,
};
use pheromone::connection::ConnectionId;
use pheromone::discovery::DiscoveryConfig;
use pheromone::exec::{ExecConfig, ExecEnv, ExecService};
use pheromone::forward::Forwards;
use pheromone::node::{Limits, NodeStream};
use pheromone::pubsub::Subscription;
use pheromone::{
    Access, Connection, ConnectionMode, Direction, EndpointConfig, EndpointEvent, Keypair,
    Multiaddr, Node, NodeError, PeerId,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A message (request and ack, retries included) must finish within this.
pub const MSG_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts at one message when the link fails under it (same id each time, so the
/// receiver stores it once).
const MSG_ATTEMPTS: u32 = 3;
/// Pause before the first retry; doubled for the next.
const MSG_RETRY_PAUSE: Duration = Duration::from_millis(300);
/// Requests a peer may have in flight with us at once (and we with it). Each may carry a
/// message of up to [`MAX_MESSAGE`] bytes, so this bounds what one peer can make us hold.
const MAX_PENDING_PER_PEER: usize = 32;
/// Short mode: an inbound connection unused this long is closed. Long mode keeps links
/// until they fail (the keep-alive notices a dead one).
const SHORT_MODE_IDLE: Duration = Duration::from_secs(30);

/// The route alias the daemon gives every peer it connects to: none. People name peers by
/// the names they announce in identify, or by peer ID.
const NO_ALIAS: &str = "";

/// A `PEER` argument, resolved.
#[derive(Debug, Clone)]
pub struct Target {
    /// The peer.
    pub peer: PeerId,
    /// Where to dial it if the node knows no way to it yet (from a `/p2p/` multiaddr).
    pub addr: Option<Multiaddr>,
}

/// The daemon's node: a cloneable handle.
#[derive(Clone)]
pub struct Net {
    inner: Arc<Inner>,
}

struct Inner {
    node: Node,
    mode: Mode,
    started: Instant,
    inbox: Inbox,
    /// The peers met, on disk.
    peer_store: PeerStore,
    // A std mutex: nothing awaits while it is held.
    book: Mutex<PeerBook>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// Exposed services and forwarded ports.
    forwards: Forwards,
    /// The exec service (registered only when some peer is allowed); taken at close.
    exec: Mutex<Option<ExecService>>,
    /// What happened lately, for the dashboard.
    activity: Arc<Activity>,
    /// Where the metrics and the dashboard are served, once they are.
    urls: std::sync::OnceLock<super::observe::Urls>,
    /// Names the operator bound to peers; a std mutex, nothing awaits while it is held.
    aliases: Mutex<super::aliases::AliasBook>,
}

/// What we know about peers beyond the node's own tables.
#[derive(Default)]
struct PeerBook {
    /// When each live connection was established.
    since: HashMap<ConnectionId, SystemTime>,
    /// The last RTT a `ping` measured, per connected peer.
    ping_rtt: HashMap<PeerId, Duration>,
    /// Peers the operator disconnected: bootstrap does not redial them until `connect`.
    parked: HashSet<PeerId>,
    /// Peers a redial task keeps linked (see `redial.rs`).
    kept: HashSet<PeerId>,
}

impl From<Mode> for ConnectionMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Long => ConnectionMode::Long,
            Mode::Short => ConnectionMode::Short,
        }
    }
}

impl Net {
    /// Builds the node for `settings` (not yet listening) and starts following its
    /// connections.
    pub async fn start(keypair: Keypair, settings: &Settings) -> anyhow::Result<Self> {
        let (inbox, opened) = Inbox::open(
            &settings.data_dir,
            settings.inbox_max_messages,
            settings.inbox_max_bytes,
        )?;
        if let Some(aside) = &opened.moved_aside {
            tracing::warn!(moved_to = %aside.display(), "the inbox log was not an inbox log; moved it aside and started an empty inbox");
        }
        if opened.dropped_tail > 0 {
            tracing::warn!(bytes = opened.dropped_tail, "the inbox log ended in a torn or corrupt record (a crash mid-write); cut it at the last good record");
        }
        if opened.messages > 0 {
            tracing::info!(
                messages = opened.messages,
                "inbox: messages waiting from before the restart"
            );
        }
        let (peer_store, loaded) = PeerStore::load(&settings.data_dir)?;
        if let Some((why, moved)) = &loaded.fallback {
            let moved = moved.as_ref().map_or_else(
                || "left in place".to_owned(),
                |p| format!("moved to {}", p.display()),
            );
            tracing::warn!(file = super::peerstore::PEERS_FILE, reason = %why, %moved, "the peer store is unusable; starting with no remembered peers");
        }
        let mut endpoint = EndpointConfig::default();
        let limits = &settings.resources.limits;
        endpoint.resources = limits.clone();
        endpoint.connection.yamux.keepalive_interval = settings.keepalive_interval;
        endpoint.connection.yamux.keepalive_timeout = settings.keepalive_timeout;
        if settings.perf {
            endpoint.perf = Some(Access::Open);
        }
        // The daemon keeps its links itself (bootstrap redial, the operator's connect and
        // disconnect, which must stick): the DHT answers and makes lookups but does not
        // dial peers to fill a quota.
        let discovery = DiscoveryConfig {
            low_watermark: 0,
            ..DiscoveryConfig::default()
        };
        let mut builder = Node::builder()
            .keypair(keypair)
            .discovery(settings.dht.then_some(discovery))
            .mode(settings.mode.into())
            .happy_eyeballs_delay(settings.happy_eyeballs_delay)
            .endpoint_config(endpoint)
            .max_message_size(MAX_MESSAGE + ID_LEN)
            .request_timeout(MSG_TIMEOUT)
            .idle_timeout(match settings.mode {
                Mode::Long => None,
                Mode::Short => Some(SHORT_MODE_IDLE),
            })
            .limits(Limits {
                max_pending_requests_per_peer: MAX_PENDING_PER_PEER,
                max_inbound_connections: limits.max_inbound_connections,
                max_outbound_connections: limits.max_outbound_connections,
                ..Limits::default()
            })
            .relay(settings.resources.relay.clone())
            .handle_requests(
                MSG_PROTOCOL,
                MessageHandler {
                    inbox: inbox.clone(),
                    with_id: false,
                },
            )
            .handle_requests(
                MSG_PROTOCOL_V2,
                MessageHandler {
                    inbox: inbox.clone(),
                    with_id: true,
                },
            );
        if let Some(name) = &settings.name {
            builder = builder.name(name.clone());
        }
        let node = builder.build().await?;
        let exec = ExecConfig {
            allow: settings.exec_allow.clone(),
            allow_shell: settings.exec_shell,
            programs: settings.exec_programs.clone(),
            env: if settings.exec_inherit_env {
                ExecEnv::Inherit
            } else {
                ExecEnv::Cleared
            },
            ..ExecConfig::default()
        };
        let exec = match node.serve_exec(exec) {
            Ok(exec) => exec,
            Err(e) => {
                node.close().await;
                return Err(e.into());
            }
        };
        let forwards = Forwards::new(&node);
        let net = Net {
            inner: Arc::new(Inner {
                node,
                mode: settings.mode,
                started: Instant::now(),
                inbox,
                peer_store,
                book: Mutex::new(PeerBook::default()),
                tasks: TaskTracker::new(),
                cancel: CancellationToken::new(),
                forwards,
                exec: Mutex::new(Some(exec)),
                activity: Arc::default(),
                urls: std::sync::OnceLock::new(),
                aliases: Mutex::new(super::aliases::AliasBook::from_config(&settings.aliases)),
            }),
        };
        let events = net.inner.node.endpoint().events();
        let this = net.clone();
        net.inner.tasks.spawn(this.follow_events(events));
        let this = net.clone();
        net.inner.tasks.spawn(this.save_peer_store());
        let neighbour_keepalive = (
            settings
                .keepalive_interval
                .map_or(NEIGHBOUR_KEEPALIVE.0, |i| i.min(NEIGHBOUR_KEEPALIVE.0)),
            settings.keepalive_timeout.min(NEIGHBOUR_KEEPALIVE.1),
        );
        let this = net.clone();
        let node_events = net.inner.node.events();
        net.inner
            .tasks
            .spawn(this.tighten_neighbour_keepalive(node_events, neighbour_keepalive));
        Ok(net)
    }

    fn book(&self) -> std::sync::MutexGuard<'_, PeerBook> {
        self.inner.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The operator's alias book.
    pub fn aliases(&self) -> std::sync::MutexGuard<'_, super::aliases::AliasBook> {
        self.inner
            .aliases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The library node.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// The link mode the node runs in.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// The direct-message inbox.
    pub fn inbox(&self) -> &Inbox {
        &self.inner.inbox
    }

    /// Exposed services and forwarded ports.
    pub fn forwards(&self) -> &Forwards {
        &self.inner.forwards
    }

    /// What happened lately (peers, pings, broadcasts, routes, exec, forwards).
    pub fn activity(&self) -> &Activity {
        &self.inner.activity
    }

    /// The exec service's counters and collector, while it runs.
    pub fn exec_service<T>(&self, f: impl FnOnce(&ExecService) -> T) -> Option<T> {
        let exec = self.inner.exec.lock().unwrap_or_else(|e| e.into_inner());
        exec.as_ref().map(f)
    }

    /// Records where the metrics and dashboard are served (once, at start).
    pub fn set_urls(&self, urls: super::observe::Urls) {
        let _ = self.inner.urls.set(urls);
    }

    /// Where the metrics and dashboard are served.
    pub fn urls(&self) -> super::observe::Urls {
        self.inner.urls.get().cloned().unwrap_or_default()
    }

    /// Whether peers may run commands here: how many peers are allowed, and what they may
    /// run.
    pub fn exec_allowed(&self) -> Option<(usize, String)> {
        let exec = self.inner.exec.lock().unwrap_or_else(|e| e.into_inner());
        let service = exec.as_ref()?;
        let config = service.config();
        let what = match (&config.programs, config.allow_shell) {
            (Some(programs), _) => format!("only {}", programs.join(", ")),
            (None, true) => "any program and shell command lines".to_owned(),
            (None, false) => "any program (sh included)".to_owned(),
        };
        service.is_enabled().then_some((config.allow.len(), what))
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
                    if info.relay.is_none() {
                        // The address we dialled is where it listens; an inbound link's
                        // source port is not, so those wait for identify's addresses.
                        let dialled: Vec<Multiaddr> = match info.direction {
                            Direction::Outbound => vec![info.remote_multiaddr()],
                            Direction::Inbound => Vec::new(),
                        };
                        let outbound = info.direction == Direction::Outbound;
                        self.inner.peer_store.connected(
                            info.remote_peer,
                            outbound,
                            &dialled,
                            self.peer_name(&info.remote_peer),
                            unix_secs(SystemTime::now()),
                        );
                    }
                    let this = self.clone();
                    let info = info.clone();
                    self.inner
                        .tasks
                        .spawn(async move { this.note_connected(&info).await });
                }
                Ok(EndpointEvent::ConnectionClosed { info, error }) => {
                    tracing::info!(peer = %info.remote_peer, %error, "disconnected");
                    if info.relay.is_none() {
                        self.inner
                            .peer_store
                            .disconnected(info.remote_peer, unix_secs(SystemTime::now()));
                    }
                    let who = self
                        .peer_name(&info.remote_peer)
                        .unwrap_or_else(|| short_id(&info.remote_peer.to_string()));
                    self.inner.activity.record(
                        "peer_disconnected",
                        format!("{who} disconnected: {error}"),
                        Some(info.remote_peer.to_string()),
                        None,
                        None,
                    );
                    let still_connected = !self.live_connections(&info.remote_peer).is_empty();
                    let mut book = self.book();
                    book.since.remove(&info.id);
                    if !still_connected {
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

    /// Records a new connection in the activity log, by the peer's name if identify
    /// tells it soon (a new peer's name arrives a round trip after its connection).
    async fn note_connected(&self, info: &pheromone::ConnectionInfo) {
        let at = super::observe::activity::now_ms();
        let mut name = self.peer_name(&info.remote_peer);
        for _ in 0..20 {
            if name.is_some() || self.inner.cancel.is_cancelled() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            name = self.peer_name(&info.remote_peer);
        }
        if info.relay.is_none() {
            let announced = self
                .inner
                .node
                .swarm()
                .peer_record(&info.remote_peer)
                .map(|r| r.listen_addrs.clone())
                .unwrap_or_default();
            self.inner
                .peer_store
                .identified(info.remote_peer, &announced, name.clone());
        }
        let who = name.unwrap_or_else(|| short_id(&info.remote_peer.to_string()));
        let path = if info.relay.is_some() {
            "relayed"
        } else {
            "direct"
        };
        self.inner.activity.record_at(
            at,
            "peer_connected",
            format!(
                "{who} connected ({}, {path})",
                direction_name(info.direction)
            ),
            Some(info.remote_peer.to_string()),
            None,
            None,
        );
    }

    /// The name `peer` announced in identify, if it is one we can show.
    pub fn peer_name(&self, peer: &PeerId) -> Option<String> {
        // A hostile name (control characters, a fake peer ID) is not shown to a person.
        self.inner
            .node
            .peer_name(peer)
            .filter(|n| validate_name(n).is_ok())
    }

    /// Live connections to `peer`, direct or relayed.
    pub(super) fn live_connections(&self, peer: &PeerId) -> Vec<Connection> {
        self.inner
            .node
            .endpoint()
            .connections()
            .into_iter()
            .filter(|c| c.remote_peer() == *peer && !c.is_closed())
            .collect()
    }

    /// This node's status.
    pub fn status(&self) -> Status {
        let node = &self.inner.node;
        Status {
            peer_id: node.peer_id().to_string(),
            name: node.name().map(str::to_owned),
            listen_addrs: self
                .listen_addrs()
                .iter()
                .map(ToString::to_string)
                .collect(),
            mode: self.inner.mode.as_str().to_owned(),
            connections: node
                .endpoint()
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
        let node = &self.inner.node;
        let interfaces: Vec<IpAddr> = if_addrs::get_if_addrs()
            .map(|list| list.into_iter().map(|i| i.ip()).collect())
            .unwrap_or_default();
        let mut out = Vec::new();
        for bound in node.listen_addrs() {
            let quic = bound.is_quic();
            let Some(socket) = bound.tcp_socket_addr().or_else(|| bound.quic_socket_addr()) else {
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
                    let at = SocketAddr::new(*ip, socket.port());
                    let addr = if quic {
                        Multiaddr::from_quic_socket_addr(at)
                    } else {
                        Multiaddr::from_socket_addr(at)
                    };
                    out.push(addr.clone().with_p2p(node.peer_id()).unwrap_or(addr));
                }
            }
        }
        out
    }

    /// Connected peers, oldest connection first.
    pub fn peers(&self) -> Vec<PeerInfo> {
        let mut by_peer: BTreeMap<PeerId, Vec<Connection>> = BTreeMap::new();
        for conn in self.inner.node.endpoint().connections() {
            if !conn.is_closed() {
                by_peer.entry(conn.remote_peer()).or_default().push(conn);
            }
        }
        let now = SystemTime::now();
        let names: HashMap<PeerId, Option<String>> =
            by_peer.keys().map(|p| (*p, self.peer_name(p))).collect();
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
                // The connection new streams go to: the swarm's pooled one.
                let current = self.inner.node.swarm().current(&peer);
                let transport = current.as_ref().unwrap_or(oldest).transport();
                PeerInfo {
                    peer_id: peer.to_string(),
                    name: names.get(&peer).cloned().flatten(),
                    addrs: conns
                        .iter()
                        .map(|c| c.info().remote_multiaddr().to_string())
                        .collect(),
                    direction: direction_name(oldest.info().direction).to_owned(),
                    since: unix_secs(since),
                    connected_secs: now.duration_since(since).unwrap_or_default().as_secs(),
                    rtt_ms: rtt.map(|d| d.as_secs_f64() * 1000.0),
                    transport: Some(transport.as_str().to_owned()),
                    connections: conns
                        .iter()
                        .map(|c| ConnectionSummary {
                            transport: c.transport().as_str().to_owned(),
                            direction: direction_name(c.info().direction).to_owned(),
                            addr: c.info().remote_multiaddr().to_string(),
                        })
                        .collect(),
                    relay: if conns.iter().any(|c| c.info().relay.is_none()) {
                        None
                    } else {
                        oldest.info().relay.map(|r| r.to_string())
                    },
                    cipher: Some(oldest.info().cipher.as_str().to_owned()),
                }
            })
            .collect();
        peers.sort_by_key(|p| p.since);
        peers
    }

    /// The names peers announced, sorted, for an error's hint.
    fn known_names(&self) -> Vec<String> {
        let mut peers: Vec<PeerId> = self
            .inner
            .node
            .endpoint()
            .connections()
            .iter()
            .map(Connection::remote_peer)
            .collect();
        peers.extend(self.inner.node.contacts().iter().map(|r| r.peer));
        let mut names: Vec<String> = peers.iter().filter_map(|p| self.peer_name(p)).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Turns a `PEER` argument (peer ID, unique name, or multiaddr with `/p2p/`) into a
    /// peer.
    pub fn resolve(&self, spec: &str) -> Result<Target, ControlError> {
        let target = if spec.is_empty() {
            return Err(ControlError::new(ErrorCode::BadRequest, "empty peer"));
        } else if spec.starts_with('/') {
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
            let peer = self.inner.node.resolve(spec).map_err(|e| match e {
                NodeError::UnknownName { name } => unknown_name(&name, &self.known_names()),
                other => node_error(&other),
            })?;
            Target { peer, addr: None }
        };
        if target.peer == self.inner.node.peer_id() {
            return Err(ControlError::new(
                ErrorCode::BadRequest,
                format!("{spec} is this node itself"),
            ));
        }
        Ok(target)
    }

    /// Makes sure the node can reach the target: when it came with an address and the
    /// node has neither a link nor a route to the peer, adds a route through it.
    pub async fn reach(&self, target: &Target) -> Result<PeerId, ControlError> {
        if let Some(addr) = &target.addr {
            let node = &self.inner.node;
            let routed = node.contacts().iter().any(|r| r.peer == target.peer);
            if !routed && !node.is_connected(&target.peer) {
                node.add_contact(NO_ALIAS, addr)
                    .await
                    .map_err(|e| node_error(&e))?;
            }
        }
        Ok(target.peer)
    }

    /// Dials `addr_text` (`host:port` or a multiaddr) and adds a route to the peer there,
    /// or reuses the link to the `/p2p/` peer it names; returns the peer as `peers` shows
    /// it. In short mode the link closes again once the peer is identified.
    pub async fn connect(&self, addr_text: &str) -> Result<PeerInfo, ControlError> {
        let node = &self.inner.node;
        let addr = pheromone::parse_dial_address(addr_text).map_err(|e| {
            ControlError::new(
                ErrorCode::BadRequest,
                format!("bad address {addr_text:?}: {e}"),
            )
        })?;
        if addr.peer_id() == Some(node.peer_id()) {
            return Err(ControlError::new(
                ErrorCode::BadRequest,
                format!("{addr} is this node itself"),
            ));
        }
        let route = node
            .add_contact(NO_ALIAS, &addr)
            .await
            .map_err(|e| node_error(&e))?;
        self.book().parked.remove(&route.peer);
        // A link the operator made is kept (redialled when lost) by this side only, so the
        // other side's `disconnect` sticks; links the connection manager makes are its own
        // to keep or prune, and bootstrap links have their own supervisor.
        if self.inner.mode == Mode::Long {
            self.keep_linked(route.peer, false);
        }
        let peer = route.peer.to_string();
        if let Some(info) = self.peers().into_iter().find(|p| p.peer_id == peer) {
            return Ok(info);
        }
        if self.inner.mode == Mode::Long {
            return Err(ControlError::new(
                ErrorCode::DialFailed,
                format!("connection to {peer} closed right after it was made"),
            ));
        }
        // Short mode: the peer was reached and identified, and its link closed again.
        let now = SystemTime::now();
        Ok(PeerInfo {
            name: self.peer_name(&route.peer),
            peer_id: peer,
            addrs: vec![route.addr.without_p2p().to_string()],
            direction: direction_name(Direction::Outbound).to_owned(),
            since: unix_secs(now),
            connected_secs: 0,
            rtt_ms: None,
            transport: None,
            connections: Vec::new(),
            relay: None,
            cipher: None,
        })
    }

    /// Closes every connection to the peer; how many there were. Bootstrap leaves the
    /// peer alone until the next `connect` to it.
    pub async fn disconnect(&self, spec: &str) -> Result<(PeerId, usize), ControlError> {
        let target = self.resolve(spec)?;
        let conns = self.live_connections(&target.peer);
        if conns.is_empty() {
            return Err(ControlError::new(
                ErrorCode::NotConnected,
                format!("not connected to {}", target.peer),
            ));
        }
        self.book().parked.insert(target.peer);
        self.inner.node.disconnect(&target.peer).await;
        // Connections the node does not track (none today) close too.
        futures::future::join_all(conns.iter().map(Connection::close)).await;
        Ok((target.peer, conns.len()))
    }

    /// Whether the operator disconnected `peer` (and bootstrap must not redial it).
    pub fn is_parked(&self, peer: &PeerId) -> bool {
        self.book().parked.contains(peer)
    }

    /// The peer as events name it: its name and the address of a live link, else of its
    /// route.
    pub fn peer_ref(&self, peer: &PeerId) -> PeerRef {
        let addr = self
            .live_connections(peer)
            .first()
            .map(|c| c.info().remote_multiaddr().to_string())
            .or_else(|| {
                self.inner
                    .node
                    .contacts()
                    .into_iter()
                    .find(|r| r.peer == *peer)
                    .map(|r| r.addr.without_p2p().to_string())
            })
            .unwrap_or_default();
        PeerRef {
            peer_id: peer.to_string(),
            name: self.peer_name(peer),
            addr,
        }
    }

    /// Opens a stream of `protocol` to the peer, over its link in long mode or a link of
    /// its own in short mode (closed when the stream is dropped).
    pub async fn open_stream(
        &self,
        peer: &PeerId,
        protocol: &str,
    ) -> Result<NodeStream, ControlError> {
        self.inner
            .node
            .open_stream(peer, protocol)
            .await
            .map_err(|e| dispatch_error(&e))
    }

    /// The transport of the connection new streams to `peer` go to (the swarm's pooled
    /// one, else any live one): `tcp`, `quic` or `relay`.
    pub fn transport_to(&self, peer: &PeerId) -> Option<&'static str> {
        let current = self.inner.node.swarm().current(peer);
        let conn = current.or_else(|| self.live_connections(peer).into_iter().next())?;
        Some(conn.transport().as_str())
    }

    /// Remembers a ping's RTT for `peers`.
    pub fn record_rtt(&self, peer: PeerId, rtt: Duration) {
        self.book().ping_rtt.insert(peer, rtt);
    }

    /// Publishes on a topic; the message's id in hex.
    pub async fn broadcast(&self, topic: &str, data: Vec<u8>) -> Result<String, ControlError> {
        let id = self
            .inner
            .node
            .broadcast(topic, data)
            .await
            .map_err(|e| pubsub_error(&e))?;
        Ok(hex(id.as_bytes()))
    }

    /// Subscribes to a topic.
    pub async fn subscribe(&self, topic: &str) -> Result<Subscription, ControlError> {
        self.inner
            .node
            .subscribe(topic)
            .await
            .map_err(|e| pubsub_error(&e))
    }

    /// Stops following events and closes the node gracefully.
    pub async fn close(&self) {
        self.inner.cancel.cancel();
        self.inner.forwards.close().await;
        let exec = self
            .inner
            .exec
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(exec) = exec {
            exec.close().await;
        }
        self.inner.node.close().await;
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
