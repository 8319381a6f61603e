//! The driver task: owns the [`Kademlia`] state machine and the connection [`Manager`],
//! feeds them connection events, stream frames, commands and timers, and carries out what
//! they ask (requests on new streams, responses, dials, prunes).
//!
//! Nothing here blocks: stream IO and dials run on tasks of their own and report back
//! through one bounded channel ([`Internal`]).

use super::connector::Connector;
use super::io::{self, AddrBook};
use super::manager::{Action, Candidate, ConnectedPeer, Limits, Manager};
use super::{
    Bootstrapped, BucketSnapshot, Command, DiscoveryConfig, DiscoveryError, DiscoveryMetrics,
    EntrySnapshot, FoundPeer, TableSnapshot,
};
use crate::connection::{Connection, ConnectionId};
use crate::endpoint::{Access, Endpoint, EndpointEvent};
use bytes::Bytes;
use futures::FutureExt;
use pheromone_core::addr::Multiaddr;
use pheromone_core::identity::PeerId;
use pheromone_core::kad::{
    Direction, Entry, Event, FailureReason, InboundId, Input, Kademlia, Key, Output, QueryId,
    QueryKind, QueryOutcome, QueryResult, RequestId,
};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{broadcast as events, mpsc, oneshot, Semaphore};

/// Reports from IO tasks waiting for the driver.
const INTERNAL_QUEUE: usize = 1024;
/// Commands from handles waiting for the driver.
const COMMAND_QUEUE: usize = 256;

/// Counters bumped by IO tasks.
#[derive(Default)]
pub(super) struct Stats {
    pub(super) dials: AtomicU64,
    pub(super) dials_failed: AtomicU64,
    pub(super) inbound_rejected: AtomicU64,
}

/// What the IO tasks share with the driver.
pub(super) struct Ctx {
    pub(super) endpoint: Endpoint,
    pub(super) config: DiscoveryConfig,
    pub(super) connector: Arc<dyn Connector>,
    pub(super) internal: mpsc::Sender<Internal>,
    pub(super) dial_slots: Arc<Semaphore>,
    pub(super) inbound_slots: Arc<Semaphore>,
    pub(super) addr_book: AddrBook,
    pub(super) stats: Stats,
}

/// Reports from IO tasks.
pub(super) enum Internal {
    /// A whole request frame from an inbound stream; the response goes to `reply`
    /// (dropped when the state machine refuses the request).
    Inbound {
        /// The connection the request came on.
        conn: Connection,
        /// What the connection vouches for as the peer's addresses.
        addrs: Vec<Multiaddr>,
        frame: Bytes,
        reply: oneshot::Sender<Bytes>,
    },
    /// The outcome of one of our requests.
    Response {
        id: RequestId,
        result: Result<Bytes, FailureReason>,
    },
    /// The addresses a new connection vouches for are known.
    Vouched {
        conn: ConnectionId,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        direction: Direction,
    },
    /// A dial of pinned peer `index` ended.
    PinnedDialled {
        index: usize,
        result: Result<(PeerId, Multiaddr), String>,
    },
    /// A manager dial of a table peer ended.
    Dialled { peer: PeerId, ok: bool },
}

enum Waiting {
    Bootstrap(oneshot::Sender<Result<Bootstrapped, DiscoveryError>>),
    Find(oneshot::Sender<Result<FoundPeer, DiscoveryError>>),
}

pub(super) fn spawn(
    endpoint: &Endpoint,
    config: DiscoveryConfig,
    connector: Arc<dyn Connector>,
    now: Instant,
) -> mpsc::Sender<Command> {
    let (internal, internal_rx) = mpsc::channel(INTERNAL_QUEUE);
    let (commands, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let seed: u64 = rand::random();
    let limits = Limits {
        low: config.low_watermark,
        high: config.high_watermark.max(config.low_watermark),
        grace: config.prune_grace,
        redial_initial: config.redial_initial,
        redial_max: config.redial_max.max(config.redial_initial),
    };
    let manager = Manager::new(limits, &config.bootstrap, &config.static_peers, now, seed);
    let mut kad = Kademlia::new(endpoint.peer_id(), config.kad.clone(), now, seed);
    for addr in config.bootstrap.iter().chain(&config.static_peers) {
        if let Some(peer) = addr.peer_id() {
            if let Err(e) = kad.add_address(now, peer, addr.clone().without_p2p()) {
                tracing::warn!(%addr, error = %e, "bootstrap address refused");
            }
        }
    }
    let ctx = Arc::new(Ctx {
        endpoint: endpoint.clone(),
        dial_slots: Arc::new(Semaphore::new(config.max_parallel_dials.max(1))),
        inbound_slots: Arc::new(Semaphore::new(config.max_inbound_streams.max(1))),
        addr_book: AddrBook::default(),
        stats: Stats::default(),
        connector,
        internal,
        config,
    });
    let weak = Arc::downgrade(&ctx);
    endpoint.set_handler(
        ctx.config.protocol(),
        Arc::new(move |conn: Connection, stream| {
            let weak = weak.clone();
            async move {
                if let Some(ctx) = weak.upgrade() {
                    io::serve_inbound(ctx, conn, stream).await;
                }
            }
            .boxed()
        }),
        Access::Open,
    );
    let auto_bootstrap = ctx.config.bootstrap.iter().any(|a| a.peer_id().is_some());
    let driver = Driver {
        kad,
        manager,
        events: endpoint.events(),
        ctx,
        waiting: HashMap::new(),
        inbound: HashMap::new(),
        next_inbound: 0,
        conns: HashMap::new(),
        pruned: 0,
        redials: 0,
    };
    tokio::spawn(driver.run(internal_rx, commands_rx, auto_bootstrap));
    commands
}

/// A connected peer's live connections, with when the driver first saw each.
#[derive(Default)]
struct PeerConns {
    ids: HashMap<ConnectionId, Instant>,
}

struct Driver {
    kad: Kademlia,
    manager: Manager,
    events: events::Receiver<EndpointEvent>,
    ctx: Arc<Ctx>,
    waiting: HashMap<QueryId, Waiting>,
    inbound: HashMap<InboundId, oneshot::Sender<Bytes>>,
    next_inbound: u64,
    conns: HashMap<PeerId, PeerConns>,
    pruned: u64,
    redials: u64,
}

impl Driver {
    async fn run(
        mut self,
        mut internal: mpsc::Receiver<Internal>,
        mut commands: mpsc::Receiver<Command>,
        auto_bootstrap: bool,
    ) {
        for conn in self.ctx.endpoint.connections() {
            self.connection_up(conn);
        }
        if auto_bootstrap {
            self.kad.bootstrap(Instant::now());
        }
        let mut tick = tokio::time::interval(self.ctx.config.maintenance_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.drain();
            let deadline = self.kad.poll_timeout();
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => return,
                },
                Some(report) = internal.recv() => self.internal(report),
                event = self.events.recv() => match event {
                    Ok(EndpointEvent::ConnectionEstablished(conn)) => self.connection_up(conn),
                    Ok(EndpointEvent::ConnectionClosed { info, .. }) => {
                        self.connection_down(info.remote_peer, info.id);
                    }
                    Err(events::error::RecvError::Lagged(_)) => self.resync(),
                    Err(events::error::RecvError::Closed) => return,
                },
                () = timer => self.kad.handle_timeout(Instant::now()),
                _ = tick.tick() => {
                    if self.ctx.endpoint.is_closing() {
                        return;
                    }
                    self.maintain();
                }
            }
        }
    }

    // ---- connections ---------------------------------------------------------------

    fn connection_up(&mut self, conn: Connection) {
        let peer = conn.remote_peer();
        let entry = self.conns.entry(peer).or_default();
        if entry.ids.insert(conn.id(), Instant::now()).is_some() {
            return;
        }
        let direction = match conn.info().direction {
            crate::connection::Direction::Outbound => Direction::Outbound,
            crate::connection::Direction::Inbound => Direction::Inbound,
        };
        let addrs = self.ctx.addr_book.addrs(&self.ctx, &conn);
        if let Some(ready) = addrs.peek() {
            let input = Input::Connected {
                peer,
                addrs: ready.clone(),
                direction,
            };
            let _ = self.kad.handle_input(Instant::now(), input);
            return;
        }
        // Identify has to answer first; until then the peer counts as connected with no
        // address, so a lookup finding it knows it is reachable.
        let _ = self.kad.handle_input(
            Instant::now(),
            Input::Connected {
                peer,
                addrs: Vec::new(),
                direction,
            },
        );
        let internal = self.ctx.internal.clone();
        let id = conn.id();
        tokio::spawn(async move {
            let addrs = addrs.await;
            let _ = internal
                .send(Internal::Vouched {
                    conn: id,
                    peer,
                    addrs,
                    direction,
                })
                .await;
        });
    }

    fn connection_down(&mut self, peer: PeerId, id: ConnectionId) {
        self.ctx.addr_book.remove(&id);
        let Some(entry) = self.conns.get_mut(&peer) else {
            return;
        };
        entry.ids.remove(&id);
        if entry.ids.is_empty() {
            self.conns.remove(&peer);
            let _ = self
                .kad
                .handle_input(Instant::now(), Input::Disconnected { peer });
        }
    }

    fn resync(&mut self) {
        let live = self.ctx.endpoint.connections();
        let ids: HashSet<ConnectionId> = live.iter().map(Connection::id).collect();
        let gone: Vec<(PeerId, ConnectionId)> = self
            .conns
            .iter()
            .flat_map(|(p, c)| c.ids.keys().map(move |id| (*p, *id)))
            .filter(|(_, id)| !ids.contains(id))
            .collect();
        for (peer, id) in gone {
            self.connection_down(peer, id);
        }
        for conn in live {
            self.connection_up(conn);
        }
        self.ctx.addr_book.retain(&ids);
    }

    // ---- inputs --------------------------------------------------------------------

    fn internal(&mut self, report: Internal) {
        let now = Instant::now();
        match report {
            Internal::Inbound {
                conn,
                addrs,
                frame,
                reply,
            } => {
                let peer = conn.remote_peer();
                // The request can overtake the endpoint's event for its connection; a
                // requester left out of the table here would stay out until it asks again.
                if !conn.is_closed() {
                    self.connection_up(conn);
                }
                if !addrs.is_empty() && self.conns.contains_key(&peer) {
                    let _ = self.kad.handle_input(
                        now,
                        Input::Connected {
                            peer,
                            addrs,
                            direction: Direction::Inbound,
                        },
                    );
                }
                let id = InboundId(self.next_inbound);
                self.next_inbound += 1;
                let input = Input::InboundRequest {
                    peer,
                    id,
                    bytes: &frame,
                };
                match self.kad.handle_input(now, input) {
                    Ok(()) => {
                        self.inbound.insert(id, reply);
                    }
                    Err(e) => tracing::debug!(%peer, error = %e, "kad request refused"),
                }
            }
            Internal::Response { id, result } => {
                let input = match &result {
                    Ok(frame) => Input::Response { id, bytes: frame },
                    Err(reason) => Input::RequestFailed {
                        id,
                        reason: *reason,
                    },
                };
                if let Err(e) = self.kad.handle_input(now, input) {
                    tracing::debug!(error = %e, "kad response refused");
                }
            }
            Internal::Vouched {
                conn,
                peer,
                addrs,
                direction,
            } => {
                let live = self
                    .conns
                    .get(&peer)
                    .is_some_and(|c| c.ids.contains_key(&conn));
                if live && !addrs.is_empty() {
                    let input = Input::Connected {
                        peer,
                        addrs,
                        direction,
                    };
                    let _ = self.kad.handle_input(now, input);
                }
            }
            Internal::PinnedDialled { index, result } => {
                let ok = match result {
                    Ok((peer, addr)) => {
                        let bootstrap = self
                            .manager
                            .pinned()
                            .get(index)
                            .is_some_and(|p| p.bootstrap);
                        let _ = self.kad.add_address(now, peer, addr.without_p2p());
                        // Back from an outage with a thin table: join again.
                        if bootstrap && self.kad.table().len() < self.kad.config().k {
                            self.kad.bootstrap(now);
                        }
                        Ok(peer)
                    }
                    Err(e) => {
                        tracing::debug!(index, error = %e, "dial of a pinned peer failed");
                        Err(())
                    }
                };
                self.manager.pinned_dialled(index, ok, now);
            }
            Internal::Dialled { peer, ok } => self.manager.dialled(peer, ok, now),
        }
    }

    fn command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Bootstrap { reply } => {
                let id = self.kad.bootstrap(now);
                self.waiting.insert(id, Waiting::Bootstrap(reply));
            }
            Command::FindPeer { peer, reply } => {
                let id = self.kad.find_peer(now, peer);
                self.waiting.insert(id, Waiting::Find(reply));
            }
            Command::AddAddress { peer, addr, reply } => {
                let result = self
                    .kad
                    .add_address(now, peer, addr)
                    .map(drop)
                    .map_err(DiscoveryError::BadAddress);
                let _ = reply.send(result);
            }
            Command::RemovePeer { peer } => {
                self.kad.remove_peer(&peer);
            }
            Command::Table { reply } => {
                let _ = reply.send(self.snapshot(now));
            }
            Command::Metrics { reply } => {
                let stats = &self.ctx.stats;
                let _ = reply.send(DiscoveryMetrics {
                    kad: self.kad.metrics(),
                    table_size: self.kad.table().len(),
                    connected_peers: self.connected_peers().len(),
                    running_queries: self.kad.running_queries(),
                    dials: stats.dials.load(Ordering::Relaxed),
                    dials_failed: stats.dials_failed.load(Ordering::Relaxed),
                    pruned: self.pruned,
                    redials: self.redials,
                    inbound_rejected: stats.inbound_rejected.load(Ordering::Relaxed),
                });
            }
        }
    }

    fn snapshot(&self, now: Instant) -> TableSnapshot {
        let table = self.kad.table();
        let entry = |e: &Entry| EntrySnapshot {
            peer: e.peer,
            addrs: e.addrs.clone(),
            last_seen: now.saturating_duration_since(e.last_seen),
            connected: self.conns.contains_key(&e.peer),
        };
        let buckets = table
            .non_empty_buckets()
            .map(|index| BucketSnapshot {
                index,
                entries: table.bucket(index).iter().map(entry).collect(),
                replacements: table.replacements(index).iter().map(entry).collect(),
            })
            .collect();
        TableSnapshot {
            local: self.kad.local_peer(),
            buckets,
        }
    }

    // ---- outputs -------------------------------------------------------------------

    fn drain(&mut self) {
        while let Some(output) = self.kad.poll_output() {
            match output {
                Output::SendRequest {
                    id,
                    peer,
                    addrs,
                    bytes,
                } => {
                    tokio::spawn(io::send_request(self.ctx.clone(), id, peer, addrs, bytes));
                }
                Output::SendResponse { id, bytes } => {
                    if let Some(reply) = self.inbound.remove(&id) {
                        let _ = reply.send(bytes);
                    }
                }
                Output::Event(Event::QueryFinished(result)) => self.finished(result),
                Output::Event(Event::PeerAdded { peer, bucket, .. }) => {
                    tracing::trace!(%peer, bucket, "kad peer added");
                }
                Output::Event(Event::PeerEvicted { peer, promoted }) => {
                    tracing::trace!(%peer, ?promoted, "kad peer evicted");
                    // The operator vouches for bootstrap and static peers: one failed
                    // request (a connection replaced under it, a restart) does not remove
                    // them; the manager redials them if they are really gone.
                    let pinned = self
                        .manager
                        .pinned()
                        .iter()
                        .find(|p| p.peer == Some(peer))
                        .map(|p| p.addr.clone());
                    if let Some(addr) = pinned {
                        let _ = self
                            .kad
                            .add_address(Instant::now(), peer, addr.without_p2p());
                    }
                }
            }
        }
    }

    fn finished(&mut self, result: QueryResult) {
        self.ctx.endpoint.counters().lookup_finished(&result);
        if let (QueryKind::FindPeer(peer), QueryOutcome::Found(addrs)) =
            (&result.kind, &result.outcome)
        {
            self.ctx.connector.learned(*peer, addrs);
        }
        let Some(waiting) = self.waiting.remove(&result.id) else {
            return;
        };
        let failed = |result: &QueryResult| match &result.outcome {
            QueryOutcome::TimedOut => DiscoveryError::TimedOut {
                duration: result.duration,
            },
            QueryOutcome::Refused => DiscoveryError::Refused,
            _ => DiscoveryError::NotFound {
                peer: match result.kind {
                    QueryKind::FindPeer(p) => p,
                    _ => self.kad.local_peer(),
                },
                messages: result.messages,
            },
        };
        match waiting {
            Waiting::Find(reply) => {
                let answer = match (&result.kind, &result.outcome) {
                    (QueryKind::FindPeer(peer), QueryOutcome::Found(addrs)) => Ok(FoundPeer {
                        peer: *peer,
                        addrs: addrs.clone(),
                        hops: result.hops,
                        messages: result.messages,
                        failures: result.failures,
                        duration: result.duration,
                    }),
                    _ => Err(failed(&result)),
                };
                let _ = reply.send(answer);
            }
            Waiting::Bootstrap(reply) => {
                let answer = match result.outcome {
                    QueryOutcome::Completed | QueryOutcome::TimedOut
                        if !self.kad.table().is_empty() =>
                    {
                        Ok(Bootstrapped {
                            closest: result.closest.clone(),
                            table_size: self.kad.table().len(),
                            messages: result.messages,
                            failures: result.failures,
                            duration: result.duration,
                        })
                    }
                    _ => Err(failed(&result)),
                };
                let _ = reply.send(answer);
            }
        }
    }

    // ---- connection manager --------------------------------------------------------

    /// Live direct connections by peer.
    fn connected_peers(&self) -> HashMap<PeerId, Vec<Connection>> {
        let mut peers: HashMap<PeerId, Vec<Connection>> = HashMap::new();
        for conn in self.ctx.endpoint.connections() {
            if conn.info().relay.is_none() && !conn.is_closed() && !conn.is_going_away() {
                peers.entry(conn.remote_peer()).or_default().push(conn);
            }
        }
        peers
    }

    fn maintain(&mut self) {
        let now = Instant::now();
        let peers = self.connected_peers();
        let table = self.kad.table();
        let connected: Vec<ConnectedPeer> = peers
            .iter()
            .map(|(peer, conns)| {
                let entry = table.get(peer);
                // The youngest connection decides: a fresh one was made for a reason.
                let age = conns
                    .iter()
                    .map(|c| {
                        self.conns
                            .get(peer)
                            .and_then(|p| p.ids.get(&c.id()))
                            .map_or(std::time::Duration::ZERO, |since| {
                                now.saturating_duration_since(*since)
                            })
                    })
                    .min()
                    .unwrap_or_default();
                ConnectedPeer {
                    peer: *peer,
                    bucket: entry.and_then(|_| table.bucket_of(&Key::from_peer(peer))),
                    last_seen: entry.map(|e| e.last_seen),
                    age,
                    keep: self.ctx.connector.protected(peer)
                        || self.ctx.connector.in_use(peer, conns),
                }
            })
            .collect();
        let candidates: Vec<Candidate> = table
            .non_empty_buckets()
            .flat_map(|b| table.bucket(b).iter().map(move |e| (b, e)))
            .map(|(bucket, e)| Candidate {
                peer: e.peer,
                bucket,
                addrs: e.addrs.clone(),
            })
            .collect();
        let free = self.ctx.dial_slots.available_permits();
        for action in self.manager.tick(now, &connected, &candidates, free) {
            match action {
                Action::DialPinned { index } => self.dial_pinned(index),
                Action::Dial { peer, addrs } => self.dial(peer, addrs),
                Action::Prune { peer } => {
                    self.pruned += 1;
                    tracing::debug!(%peer, "pruning connection above the high watermark");
                    for conn in peers.get(&peer).cloned().unwrap_or_default() {
                        tokio::spawn(async move { conn.close().await });
                    }
                }
            }
        }
    }

    fn dial_pinned(&mut self, index: usize) {
        let Some(pinned) = self.manager.pinned().get(index) else {
            return;
        };
        self.redials += 1;
        let addr = pinned.addr.clone();
        let peer = pinned.peer;
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let result = match ctx.dial_slots.clone().acquire_owned().await {
                Err(_) => Err("service stopped".to_owned()),
                Ok(_slot) => {
                    ctx.stats.dials.fetch_add(1, Ordering::Relaxed);
                    let conn = match peer {
                        Some(peer) => ctx.connector.connect(peer, vec![addr.clone()]).await,
                        None => ctx.connector.dial_addr(addr.clone()).await,
                    };
                    if conn.is_err() {
                        ctx.stats.dials_failed.fetch_add(1, Ordering::Relaxed);
                    }
                    conn.map(|c| (c.remote_peer(), addr))
                }
            };
            let _ = ctx
                .internal
                .send(Internal::PinnedDialled { index, result })
                .await;
        });
    }

    fn dial(&mut self, peer: PeerId, addrs: Vec<Multiaddr>) {
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let ok = match ctx.dial_slots.clone().acquire_owned().await {
                Err(_) => false,
                Ok(_slot) => {
                    ctx.stats.dials.fetch_add(1, Ordering::Relaxed);
                    let ok = ctx.connector.connect(peer, addrs).await.is_ok();
                    if !ok {
                        ctx.stats.dials_failed.fetch_add(1, Ordering::Relaxed);
                    }
                    ok
                }
            };
            let _ = ctx.internal.send(Internal::Dialled { peer, ok }).await;
        });
    }
}
