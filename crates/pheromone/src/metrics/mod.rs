//! Metrics: what a node counts about itself, in the Prometheus / OpenMetrics model, for a
//! program to read ([`NodeMetrics::protocols`], [`NodeMetrics::encode`]) or to expose in a
//! registry of its own ([`NodeMetrics::collector`] is a `prometheus_client` collector).
//!
//! Two kinds of sources, so that counting costs nothing on the data path:
//! - **counted as it happens** ([`Counters`], owned by the endpoint): connections opened and
//!   closed, dial errors, handshake latency, streams, bytes and request latency per
//!   protocol, DHT lookups. Each is a relaxed atomic add at a point that happens once per
//!   connection, stream, write call or request — never per byte, never under a lock.
//! - **read at scrape time** ([`collector`]): the counters the state machines and services
//!   keep anyway (node, route, relay, kad, broadcast, exec, forward). DHT and broadcast
//!   counters live in their tasks and are fetched by [`NodeMetrics::refresh`] (every scrape
//!   through [`NodeMetrics::encode`], and every few seconds in the background).
//!
//! Labels stay low-cardinality: no peer IDs; a protocol label only for protocols the node
//! serves or the library's own, everything else `other`. Every metric is listed in
//! `docs/observability.md`. Nothing here opens a socket: serving `/metrics` over HTTP is
//! the daemon's job.

mod collector;
mod histogram;
mod protocols;
mod services;

pub use collector::NodeCollector;
pub use services::{ExecCollector, ForwardsCollector};

use crate::connection::{ConnectionInfo, Direction};
use crate::endpoint::DialError;
use crate::transport::TransportError;
use crate::upgrade::UpgradeError;
use histogram::{AtomicHistogram, HOP_BOUNDS, LATENCY_BOUNDS};
pub(crate) use protocols::{ProtocolCounters, ProtocolTable};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a node whose metrics were asked for refreshes the counters kept in tasks.
pub(crate) const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// Why a dial failed, as the `cause` label of `pheromone_dial_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DialCause {
    UnsupportedAddress,
    Resolve,
    Refused,
    Timeout,
    Unreachable,
    Handshake,
    WrongPeer,
    Limit,
}

impl DialCause {
    const ALL: [DialCause; 8] = [
        DialCause::UnsupportedAddress,
        DialCause::Resolve,
        DialCause::Refused,
        DialCause::Timeout,
        DialCause::Unreachable,
        DialCause::Handshake,
        DialCause::WrongPeer,
        DialCause::Limit,
    ];

    fn label(self) -> &'static str {
        match self {
            DialCause::UnsupportedAddress => "unsupported_address",
            DialCause::Resolve => "resolve",
            DialCause::Refused => "refused",
            DialCause::Timeout => "timeout",
            DialCause::Unreachable => "unreachable",
            DialCause::Handshake => "handshake",
            DialCause::WrongPeer => "wrong_peer",
            DialCause::Limit => "limit",
        }
    }

    fn of(error: &DialError) -> Self {
        match error {
            DialError::UnsupportedAddress { .. } => DialCause::UnsupportedAddress,
            DialError::ConnectionLimit { .. } | DialError::Resource(_) => DialCause::Limit,
            DialError::Transport(t) => match t {
                TransportError::Resolve { .. } => DialCause::Resolve,
                TransportError::ConnectTimeout { .. } => DialCause::Timeout,
                TransportError::Connect { source, .. }
                    if source.kind() == std::io::ErrorKind::ConnectionRefused =>
                {
                    DialCause::Refused
                }
                _ => DialCause::Unreachable,
            },
            DialError::Upgrade(u) => match u.as_ref() {
                UpgradeError::Timeout { .. } => DialCause::Timeout,
                UpgradeError::Resource(_) => DialCause::Limit,
                UpgradeError::Noise {
                    source: pheromone_core::noise::NoiseError::PeerIdMismatch { .. },
                    ..
                } => DialCause::WrongPeer,
                _ => DialCause::Handshake,
            },
        }
    }
}

/// `direction` label values, indexed by [`dir_index`].
const DIRECTIONS: [&str; 2] = ["inbound", "outbound"];
/// `transport` and `path` label values of a connection, indexed by [`path_index`].
const PATHS: [(&str, &str); 3] = [("tcp", "direct"), ("quic", "direct"), ("relay", "relayed")];

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Inbound => 0,
        Direction::Outbound => 1,
    }
}

fn path_index(info: &ConnectionInfo) -> usize {
    match info.transport {
        _ if info.relay.is_some() => 2,
        crate::connection::Transport::Quic => 1,
        crate::connection::Transport::Tcp => 0,
        _ => 2,
    }
}

/// `kind` and `outcome` labels of DHT lookups.
const LOOKUP_KINDS: [&str; 3] = ["bootstrap", "refresh", "find_peer"];
const LOOKUP_OUTCOMES: [&str; 5] = ["found", "not_found", "completed", "timed_out", "refused"];

/// The endpoint's event counters (see the module doc). One per endpoint, shared by its
/// connections and the node above it.
#[derive(Debug)]
pub(crate) struct Counters {
    /// `[direction][transport and path]`.
    opened: [[AtomicU64; 3]; 2],
    closed: [[AtomicU64; 3]; 2],
    /// By direction.
    handshake: [AtomicHistogram; 2],
    handshake_failures: [AtomicU64; 2],
    dial_errors: [AtomicU64; DialCause::ALL.len()],
    pub(crate) protocols: ProtocolTable,
    /// `[kind][outcome]`.
    lookups: [[AtomicU64; LOOKUP_OUTCOMES.len()]; LOOKUP_KINDS.len()],
    lookup_hops: AtomicHistogram,
    lookup_duration: AtomicHistogram,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            opened: Default::default(),
            closed: Default::default(),
            handshake: [
                AtomicHistogram::new(LATENCY_BOUNDS),
                AtomicHistogram::new(LATENCY_BOUNDS),
            ],
            handshake_failures: Default::default(),
            dial_errors: Default::default(),
            protocols: ProtocolTable::new(),
            lookups: Default::default(),
            lookup_hops: AtomicHistogram::new(HOP_BOUNDS),
            lookup_duration: AtomicHistogram::new(LATENCY_BOUNDS),
        }
    }
}

impl Counters {
    pub(crate) fn connection_opened(&self, info: &ConnectionInfo) {
        self.opened[dir_index(info.direction)][path_index(info)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connection_closed(&self, info: &ConnectionInfo) {
        self.closed[dir_index(info.direction)][path_index(info)].fetch_add(1, Ordering::Relaxed);
    }

    /// A handshake finished (`Ok`) or failed, after `elapsed`.
    pub(crate) fn handshake<T, E>(
        &self,
        direction: Direction,
        elapsed: Duration,
        result: &Result<T, E>,
    ) {
        let d = dir_index(direction);
        match result {
            Ok(_) => self.handshake[d].observe_duration(elapsed),
            Err(_) => {
                self.handshake_failures[d].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn dial_failed(&self, error: &DialError) {
        let cause = DialCause::of(error);
        let i = DialCause::ALL.iter().position(|c| *c == cause).unwrap_or(0);
        self.dial_errors[i].fetch_add(1, Ordering::Relaxed);
    }

    /// A request of `protocol` we sent ended after `elapsed`.
    pub(crate) fn request_finished(&self, protocol: &str, elapsed: Duration, ok: bool) {
        let counters = self.protocols.get(protocol);
        if ok {
            counters.requests_ok.fetch_add(1, Ordering::Relaxed);
            counters.request_duration.observe_duration(elapsed);
        } else {
            counters.requests_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A DHT lookup ended.
    pub(crate) fn lookup_finished(&self, result: &pheromone_core::kad::QueryResult) {
        use pheromone_core::kad::{QueryKind, QueryOutcome};
        let kind = match result.kind {
            QueryKind::Bootstrap => 0,
            QueryKind::Refresh => 1,
            QueryKind::FindPeer(_) => 2,
        };
        let outcome = match result.outcome {
            QueryOutcome::Found(_) => 0,
            QueryOutcome::NotFound => 1,
            QueryOutcome::Completed => 2,
            QueryOutcome::TimedOut => 3,
            QueryOutcome::Refused => 4,
        };
        self.lookups[kind][outcome].fetch_add(1, Ordering::Relaxed);
        if !matches!(result.outcome, QueryOutcome::Refused) {
            self.lookup_hops.observe(f64::from(result.hops));
            self.lookup_duration.observe_duration(result.duration);
        }
    }
}

/// Bytes carried by one connection's streams (payload, after yamux), both ways.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
}

/// What passed over one protocol label, as [`NodeMetrics::protocols`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProtocolTraffic {
    /// The protocol, or `other` for every protocol without a label of its own.
    pub protocol: String,
    /// Streams the peers opened to us.
    pub streams_inbound: u64,
    /// Streams we opened.
    pub streams_outbound: u64,
    /// Stream payload received.
    pub bytes_in: u64,
    /// Stream payload sent.
    pub bytes_out: u64,
    /// Our requests ([`Node::dispatch`](crate::Node::dispatch)) that got a reply.
    pub requests_ok: u64,
    /// Our requests that failed.
    pub requests_failed: u64,
}

/// Counters kept in tasks, as of the last refresh.
#[derive(Debug, Default, Clone)]
struct Cache {
    discovery: Option<crate::discovery::DiscoveryMetrics>,
    broadcast: Option<pheromone_core::broadcast::Metrics>,
}

/// A node's metrics: a cloneable handle, from [`Node::metrics`](crate::Node::metrics).
/// It does not keep the node alive; once the node is gone only the endpoint's counters
/// remain.
#[derive(Clone)]
pub struct NodeMetrics {
    shared: Arc<Shared>,
}

struct Shared {
    node: crate::node::WeakNode,
    counters: Arc<Counters>,
    cache: Mutex<Cache>,
    started: std::time::SystemTime,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

impl NodeMetrics {
    pub(crate) fn new(node: &crate::Node) -> Self {
        Self {
            shared: Arc::new(Shared {
                node: node.downgrade(),
                counters: node.endpoint().counters().clone(),
                cache: Mutex::new(Cache::default()),
                started: std::time::SystemTime::now(),
            }),
        }
    }

    /// Fetches the counters kept in the DHT and broadcast tasks (the rest is read live).
    pub async fn refresh(&self) {
        let Some(node) = self.shared.node.upgrade() else {
            return;
        };
        let discovery = match node.discovery() {
            Some(d) => d.metrics().await.ok(),
            None => None,
        };
        let broadcast = node.broadcast_metrics().await.ok();
        let mut cache = self.lock_cache();
        if discovery.is_some() {
            cache.discovery = discovery;
        }
        if broadcast.is_some() {
            cache.broadcast = broadcast;
        }
    }

    /// Refreshes every [`REFRESH_INTERVAL`] until `cancel` fires.
    pub(crate) async fn refresh_every(self, cancel: tokio_util::sync::CancellationToken) {
        loop {
            self.refresh().await;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(REFRESH_INTERVAL) => {}
            }
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.shared.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A `prometheus_client` collector of every metric of this node, to register in a
    /// registry of your own (`registry.register_collector(Box::new(metrics.collector()))`).
    /// DHT and broadcast counters are as of the last refresh (at most a few seconds old).
    pub fn collector(&self) -> NodeCollector {
        NodeCollector::new(self.clone())
    }

    /// A registry holding only this node's collector.
    pub fn registry(&self) -> prometheus_client::registry::Registry {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(self.collector()));
        registry
    }

    /// Refreshes, then encodes every metric in the OpenMetrics text format (what a
    /// `/metrics` endpoint serves, `# EOF` included).
    pub async fn encode(&self) -> String {
        self.refresh().await;
        encode_registry(&self.registry())
    }

    /// Streams, bytes and requests per protocol label, sorted, `other` last.
    pub fn protocols(&self) -> Vec<ProtocolTraffic> {
        self.shared
            .counters
            .protocols
            .entries()
            .into_iter()
            .map(|(protocol, c)| ProtocolTraffic {
                protocol,
                streams_inbound: c.streams_inbound.load(Ordering::Relaxed),
                streams_outbound: c.streams_outbound.load(Ordering::Relaxed),
                bytes_in: c.bytes_in.load(Ordering::Relaxed),
                bytes_out: c.bytes_out.load(Ordering::Relaxed),
                requests_ok: c.requests_ok.load(Ordering::Relaxed),
                requests_failed: c.requests_failed.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The broadcast counters as of the last refresh.
    pub fn broadcast(&self) -> Option<pheromone_core::broadcast::Metrics> {
        self.lock_cache().broadcast
    }

    /// The DHT's counters as of the last refresh.
    pub fn discovery(&self) -> Option<crate::discovery::DiscoveryMetrics> {
        self.lock_cache().discovery
    }
}

/// Encodes a registry in the OpenMetrics text format.
pub fn encode_registry(registry: &prometheus_client::registry::Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; a collector's own error would end the text early,
    // which a scraper reports as a bad scrape.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    out
}

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
