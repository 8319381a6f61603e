//! Discovery: the Kademlia DHT ([`pheromone_core::kad::Kademlia`]) run over an endpoint's
//! connections, and the connection manager that keeps a node among a healthy set of peers.
//!
//! One driver task owns the state machine and feeds it `(now, input)`: connection events
//! (the dialled address of an outbound connection, identify's listen addresses of an
//! inbound one — a relayed circuit vouches for none), whole request frames from inbound
//! kad streams, response frames or failures of its own requests, commands from
//! [`Discovery`] handles, and its timer. Each outbound request runs on a task of its own:
//! reuse a connection or dial the given addresses (at most
//! [`DiscoveryConfig::max_parallel_dials`] dials at once), open a stream under the kad
//! protocol id, write, read one framed response. The same task keeps the connection count
//! between the watermarks and redials bootstrap and static peers with backoff (the rules
//! are in `manager.rs`).
//!
//! The wire, the table rules and the lookup algorithm live in the core and are described
//! in `docs/protocols/kad.md`; this module only moves bytes, timers and connections.
//!
//! # Layout
//!
//! - `config.rs`: [`DiscoveryConfig`].
//! - `connector.rs`: how the service dials and learns listen addresses (alone on an
//!   endpoint, or through a node).
//! - `io.rs`: inbound and outbound kad streams.
//! - `task.rs`: the driver task.
//! - `manager.rs`: the connection manager's decisions.

mod config;
pub(crate) mod connector;
mod io;
mod manager;
mod task;

pub use config::DiscoveryConfig;
pub use pheromone_core::kad::{Metrics as KadMetrics, QueryOutcome};

use crate::endpoint::Endpoint;
use pheromone_core::addr::Multiaddr;
use pheromone_core::identity::PeerId;
use pheromone_core::kad::KadError;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

/// Why a discovery call failed.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The lookup converged without anyone naming the peer: it is not in the DHT (or no
    /// longer). Retrying later may help.
    #[error("{peer} was not found in the DHT ({messages} requests sent)")]
    NotFound {
        /// The peer looked for.
        peer: PeerId,
        /// Requests the lookup sent.
        messages: u32,
    },
    /// The lookup ran out of time (`kad.query_timeout`).
    #[error("the lookup timed out after {duration:?}")]
    TimedOut {
        /// How long it ran.
        duration: Duration,
    },
    /// The lookup did not start: the table is empty (bootstrap first, or add a bootstrap
    /// peer) or too many lookups run already.
    #[error("lookup refused: the routing table is empty or too many lookups are running")]
    Refused,
    /// An address given for a peer is unusable (unspecified, port 0, names another peer,
    /// our own ID).
    #[error("unusable address: {0}")]
    BadAddress(KadError),
    /// The discovery task has stopped (the node or endpoint is closing).
    #[error("the discovery service has stopped")]
    Stopped,
}

/// Addresses found for a peer, and what the lookup cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPeer {
    /// The peer.
    pub peer: PeerId,
    /// Its addresses as the DHT knows them (not yet verified by a dial).
    pub addrs: Vec<Multiaddr>,
    /// Requests in the chain that named it: 0 when our own table or a connection knew it,
    /// 1 when a peer of our table did.
    pub hops: u32,
    /// Requests the lookup sent.
    pub messages: u32,
    /// Requests that failed or timed out.
    pub failures: u32,
    /// How long the lookup took.
    pub duration: Duration,
}

/// The result of a bootstrap (a lookup of our own ID, then random ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrapped {
    /// The closest peers that answered, closest first.
    pub closest: Vec<PeerId>,
    /// Entries in the table afterwards.
    pub table_size: usize,
    /// Requests the lookup sent.
    pub messages: u32,
    /// Requests that failed.
    pub failures: u32,
    /// How long it took.
    pub duration: Duration,
}

/// One table entry, as of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySnapshot {
    /// The peer.
    pub peer: PeerId,
    /// Its addresses, most recently confirmed first.
    pub addrs: Vec<Multiaddr>,
    /// How long ago we last heard from it.
    pub last_seen: Duration,
    /// Whether we hold a connection to it.
    pub connected: bool,
}

/// One non-empty bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSnapshot {
    /// Its index: peers at XOR distance `[2^index, 2^(index+1))`.
    pub index: usize,
    /// Entries, least recently seen first.
    pub entries: Vec<EntrySnapshot>,
    /// Replacement candidates, oldest first.
    pub replacements: Vec<EntrySnapshot>,
}

/// The routing table at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSnapshot {
    /// Our own peer ID (the table's centre).
    pub local: PeerId,
    /// The non-empty buckets, closest (lowest index) first.
    pub buckets: Vec<BucketSnapshot>,
}

impl TableSnapshot {
    /// Entries in the table proper (replacements not counted).
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.entries.len()).sum()
    }

    /// Whether the table has no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry's peer.
    pub fn peers(&self) -> Vec<PeerId> {
        self.buckets
            .iter()
            .flat_map(|b| b.entries.iter().map(|e| e.peer))
            .collect()
    }
}

/// Counters of the service: the state machine's, plus the IO side's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DiscoveryMetrics {
    /// The state machine's counters (requests, responses, malformed, evictions …).
    pub kad: KadMetrics,
    /// Entries in the table.
    pub table_size: usize,
    /// Peers with a live direct connection.
    pub connected_peers: usize,
    /// Lookups running.
    pub running_queries: usize,
    /// Dials started (for requests and by the manager).
    pub dials: u64,
    /// Dials that failed.
    pub dials_failed: u64,
    /// Peers the manager disconnected above the high watermark.
    pub pruned: u64,
    /// Redials of bootstrap and static peers.
    pub redials: u64,
    /// Inbound kad streams reset because too many were open.
    pub inbound_rejected: u64,
}

/// Commands from handles to the driver.
pub(crate) enum Command {
    Bootstrap {
        reply: oneshot::Sender<Result<Bootstrapped, DiscoveryError>>,
    },
    FindPeer {
        peer: PeerId,
        reply: oneshot::Sender<Result<FoundPeer, DiscoveryError>>,
    },
    AddAddress {
        peer: PeerId,
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), DiscoveryError>>,
    },
    RemovePeer {
        peer: PeerId,
    },
    Table {
        reply: oneshot::Sender<TableSnapshot>,
    },
    Metrics {
        reply: oneshot::Sender<DiscoveryMetrics>,
    },
}

/// A handle on a running discovery service; cheap to clone. The service stops when the
/// endpoint closes or every handle is dropped.
#[derive(Clone)]
pub struct Discovery {
    commands: mpsc::Sender<Command>,
    local: PeerId,
    protocol: Arc<str>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("local", &self.local)
            .field("protocol", &self.protocol)
            .finish()
    }
}

impl Discovery {
    /// Starts the service on a bare endpoint: installs the kad protocol handler, dials the
    /// bootstrap and static peers, bootstraps, and keeps the connections between the
    /// watermarks. (A [`Node`](crate::Node) starts its own from
    /// [`NodeConfig::discovery`](crate::node::NodeConfig::discovery).)
    pub fn spawn(endpoint: &Endpoint, config: DiscoveryConfig) -> Discovery {
        let connector = Arc::new(connector::EndpointConnector::new(endpoint.clone()));
        Self::spawn_with(endpoint, config, connector)
    }

    pub(crate) fn spawn_with(
        endpoint: &Endpoint,
        config: DiscoveryConfig,
        connector: Arc<dyn connector::Connector>,
    ) -> Discovery {
        let protocol: Arc<str> = Arc::from(config.protocol());
        let commands = task::spawn(endpoint, config, connector, Instant::now());
        Discovery {
            commands,
            local: endpoint.peer_id(),
            protocol,
        }
    }

    /// The protocol id the service speaks.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, DiscoveryError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| DiscoveryError::Stopped)?;
        answer.await.map_err(|_| DiscoveryError::Stopped)
    }

    /// Looks up our own ID (filling the buckets near us and telling the peers near us we
    /// exist), then random keys; returns when the self-lookup ends. Needs a table entry:
    /// a bootstrap peer, or [`add_address`](Self::add_address).
    pub async fn bootstrap(&self) -> Result<Bootstrapped, DiscoveryError> {
        self.call(|reply| Command::Bootstrap { reply }).await?
    }

    /// Resolves `peer` to addresses through the DHT (at once when our table or a
    /// connection knows it).
    pub async fn find_peer(&self, peer: PeerId) -> Result<FoundPeer, DiscoveryError> {
        self.call(|reply| Command::FindPeer { peer, reply }).await?
    }

    /// Puts a peer we vouch for straight into the table.
    pub async fn add_address(&self, peer: PeerId, addr: Multiaddr) -> Result<(), DiscoveryError> {
        self.call(|reply| Command::AddAddress { peer, addr, reply })
            .await?
    }

    /// Removes a peer from the table (a replacement takes its place).
    pub async fn remove_peer(&self, peer: PeerId) -> Result<(), DiscoveryError> {
        self.commands
            .send(Command::RemovePeer { peer })
            .await
            .map_err(|_| DiscoveryError::Stopped)
    }

    /// The routing table now.
    pub async fn table(&self) -> Result<TableSnapshot, DiscoveryError> {
        self.call(|reply| Command::Table { reply }).await
    }

    /// Counters.
    pub async fn metrics(&self) -> Result<DiscoveryMetrics, DiscoveryError> {
        self.call(|reply| Command::Metrics { reply }).await
    }
}
