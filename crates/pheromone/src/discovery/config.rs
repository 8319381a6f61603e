//! Settings of the discovery service: the Kademlia state machine's own
//! ([`pheromone_core::kad::Config`], protocol id included), the peers to start from, the
//! connection manager's watermarks, dial cap and redial backoff, and the limits of its
//! inbound streams.
//!
//! Plain data with defaults; nothing here opens a socket.

use pheromone_core::addr::Multiaddr;
use pheromone_core::kad;
use std::time::Duration;

/// Settings of [`Discovery`](super::Discovery).
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// The Kademlia state machine's settings. `kad.protocol` is the protocol id the
    /// service answers and speaks: `/pheromone/kad/1.0.0` by default,
    /// [`kad::IPFS_PROTOCOL`] (see [`DiscoveryConfig::ipfs`]) to talk to IPFS-style DHTs.
    pub kad: kad::Config,
    /// Bootstrap peers, `/ip4/…/tcp/…/p2p/<id>` (an address without `/p2p` is dialled to
    /// learn who answers). Dialled at start, put in the table, used for the first lookup,
    /// never pruned, and redialled with backoff when lost.
    pub bootstrap: Vec<Multiaddr>,
    /// Peers kept connected like bootstrap peers (dialled at start, redialled, never
    /// pruned) that the service does not bootstrap from.
    pub static_peers: Vec<Multiaddr>,
    /// Below this many connected peers the manager dials peers from the table.
    pub low_watermark: usize,
    /// Above this many connected peers the manager closes the least useful connections.
    pub high_watermark: usize,
    /// Dials the service runs at once (lookups and the manager together).
    pub max_parallel_dials: usize,
    /// How often the manager looks at the connections.
    pub maintenance_interval: Duration,
    /// A connection younger than this is never pruned: it was made for a reason that may
    /// not have produced a stream yet.
    pub prune_grace: Duration,
    /// First wait before redialling a lost bootstrap or static peer; doubled after each
    /// failure (±50% jitter) up to `redial_max`.
    pub redial_initial: Duration,
    /// Longest wait between redials of a bootstrap or static peer.
    pub redial_max: Duration,
    /// How long an inbound kad stream may take to deliver a whole request (and stay idle
    /// between requests) before it is reset.
    pub inbound_timeout: Duration,
    /// Inbound kad streams served at once; more are reset at once.
    pub max_inbound_streams: usize,
    /// Requests one inbound stream may carry (go-libp2p reuses its streams).
    pub max_requests_per_stream: usize,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            kad: kad::Config::default(),
            bootstrap: Vec::new(),
            static_peers: Vec::new(),
            low_watermark: 8,
            high_watermark: 32,
            max_parallel_dials: 8,
            maintenance_interval: Duration::from_secs(1),
            prune_grace: Duration::from_secs(20),
            redial_initial: Duration::from_secs(1),
            redial_max: Duration::from_secs(60),
            inbound_timeout: Duration::from_secs(10),
            max_inbound_streams: 256,
            max_requests_per_stream: 16,
        }
    }
}

impl DiscoveryConfig {
    /// The defaults speaking `/ipfs/kad/1.0.0`.
    pub fn ipfs() -> Self {
        Self {
            kad: kad::Config::ipfs(),
            ..Self::default()
        }
    }

    /// The protocol id spoken.
    pub fn protocol(&self) -> &str {
        &self.kad.protocol
    }

    /// The connection manager's part of these settings.
    pub(crate) fn manager(&self) -> pheromone_core::connmgr::Config {
        pheromone_core::connmgr::Config {
            bootstrap: self.bootstrap.clone(),
            static_peers: self.static_peers.clone(),
            low_watermark: self.low_watermark,
            high_watermark: self.high_watermark,
            max_parallel_dials: self.max_parallel_dials,
            maintenance_interval: self.maintenance_interval,
            prune_grace: self.prune_grace,
            redial_initial: self.redial_initial,
            redial_max: self.redial_max,
            ..pheromone_core::connmgr::Config::default()
        }
    }
}
