//! Discovery: Kademlia and the connection manager (the core's
//! [`Discovery`](pheromone_core::discovery::Discovery) overlay) run by the generic
//! [overlay driver](crate::overlay) over the swarm, and the handle a program asks for
//! lookups.
//!
//! Every direct connection to a peer that speaks the kad protocol makes it a neighbour
//! (and a table entry); requests go to any peer on streams of their own, dialled through
//! the swarm; the manager's dials and prunes go through the swarm too (contacts and peers
//! in use are never pruned). Addresses a lookup finds are recorded in the swarm's peer
//! book. The wire, the table rules, the lookup algorithm and the manager's rules live in
//! the core (`docs/protocols/kad.md`); this module only waits for lookups' results.

mod config;

pub use config::DiscoveryConfig;
pub use pheromone_core::kad::{Metrics as KadMetrics, QueryOutcome};

use crate::overlay::{DriverConfig, OverlayDriver, OverlayHandle, Service};
use crate::swarm::Swarm;
use pheromone_core::addr::Multiaddr;
use pheromone_core::connmgr::ConnectionManager;
use pheromone_core::discovery::{Discovery as DiscoveryOverlay, Event};
use pheromone_core::identity::PeerId;
use pheromone_core::kad::{Entry, KadError, Kademlia, QueryId, QueryKind, QueryResult};
use pheromone_core::overlay::Overlay;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::oneshot;

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
    /// The discovery service has stopped (the node is closing).
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

enum Waiting {
    Bootstrap(oneshot::Sender<Result<Bootstrapped, DiscoveryError>>),
    Find(oneshot::Sender<Result<FoundPeer, DiscoveryError>>),
}

/// Lookups waiting for their results: the discovery overlay's [`Service`].
pub(crate) struct Lookups {
    waiting: HashMap<QueryId, Waiting>,
    swarm: Swarm,
}

impl Service<DiscoveryOverlay> for Lookups {
    fn on_event(&mut self, overlay: &mut DiscoveryOverlay, _: Instant, event: Event) {
        match event {
            Event::Kad(pheromone_core::kad::Event::QueryFinished(result)) => {
                self.finished(overlay.kad(), result);
            }
            Event::Kad(pheromone_core::kad::Event::PeerAdded { peer, bucket, .. }) => {
                tracing::trace!(%peer, bucket, "kad peer added");
            }
            Event::Kad(pheromone_core::kad::Event::PeerEvicted { peer, promoted }) => {
                tracing::trace!(%peer, ?promoted, "kad peer evicted");
            }
            Event::Manager(event) => tracing::trace!(?event, "connection manager"),
        }
    }
}

impl Lookups {
    fn finished(&mut self, kad: &Kademlia, result: QueryResult) {
        self.swarm.endpoint().counters().lookup_finished(&result);
        if let (QueryKind::FindPeer(peer), QueryOutcome::Found(addrs)) =
            (&result.kind, &result.outcome)
        {
            self.swarm.found(*peer, addrs);
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
                    _ => kad.local_peer_id(),
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
                    QueryOutcome::Completed | QueryOutcome::TimedOut if !kad.table().is_empty() => {
                        Ok(Bootstrapped {
                            closest: result.closest.clone(),
                            table_size: kad.table().len(),
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
}

/// A handle on a running discovery service; cheap to clone. The service stops when the
/// swarm closes.
#[derive(Clone)]
pub struct Discovery {
    handle: OverlayHandle<DiscoveryOverlay, Lookups>,
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
    /// Starts the service on `swarm`: installs the kad protocol handler, dials the
    /// bootstrap and static peers, bootstraps, and keeps the connections between the
    /// watermarks. (A [`Node`](crate::Node) starts its own from
    /// [`NodeConfig::discovery`](crate::node::NodeConfig::discovery).)
    pub fn start(swarm: &Swarm, config: DiscoveryConfig) -> Discovery {
        let now = crate::overlay::now();
        let seed: u64 = rand::random();
        let local = swarm.local_peer_id();
        let protocol: Arc<str> = Arc::from(config.protocol());
        let kad = Kademlia::new(local, config.kad.clone(), now, seed);
        let manager = ConnectionManager::new(local, config.manager(), now, seed);
        let mut overlay = DiscoveryOverlay::new(kad, manager, now);
        if config.bootstrap.iter().any(|a| a.peer_id().is_some()) {
            overlay.kad_mut().bootstrap(now);
        }
        let driver = DriverConfig {
            max_parallel_dials: config.max_parallel_dials,
            request_timeout: config.kad.request_timeout,
            inbound_timeout: config.inbound_timeout,
            max_requests_per_stream: config.max_requests_per_stream,
            max_inbound_streams: config.max_inbound_streams,
            ..DriverConfig::default()
        };
        let lookups = Lookups {
            waiting: HashMap::new(),
            swarm: swarm.clone(),
        };
        let handle = OverlayDriver::spawn(swarm, overlay, lookups, driver);
        Discovery {
            handle,
            local,
            protocol,
        }
    }

    /// The protocol id the service speaks.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    async fn lookup<T>(
        &self,
        start: impl FnOnce(&mut Kademlia, Instant) -> QueryId,
        wait: impl FnOnce(oneshot::Sender<Result<T, DiscoveryError>>) -> Waiting,
    ) -> Result<T, DiscoveryError> {
        let (reply, answer) = oneshot::channel();
        self.handle
            .with(|overlay, lookups, now| {
                let id = start(overlay.kad_mut(), now);
                lookups.waiting.insert(id, wait(reply));
            })
            .map_err(|_| DiscoveryError::Stopped)?;
        answer.await.map_err(|_| DiscoveryError::Stopped)?
    }

    /// Looks up our own ID (filling the buckets near us and telling the peers near us we
    /// exist); returns when the lookup ends. Needs a table entry: a bootstrap peer, or
    /// [`add_address`](Self::add_address).
    pub async fn bootstrap(&self) -> Result<Bootstrapped, DiscoveryError> {
        self.lookup(|kad, now| kad.bootstrap(now), Waiting::Bootstrap)
            .await
    }

    /// Resolves `peer` to addresses through the DHT (at once when our table or a
    /// connection knows it).
    pub async fn find_peer(&self, peer: PeerId) -> Result<FoundPeer, DiscoveryError> {
        self.lookup(|kad, now| kad.find_peer(now, peer), Waiting::Find)
            .await
    }

    /// Puts a peer we vouch for straight into the table.
    pub async fn add_address(&self, peer: PeerId, addr: Multiaddr) -> Result<(), DiscoveryError> {
        self.handle
            .with(|overlay, _, now| overlay.kad_mut().add_address(now, peer, addr))
            .map_err(|_| DiscoveryError::Stopped)?
            .map(drop)
            .map_err(DiscoveryError::BadAddress)
    }

    /// Removes a peer from the table (a replacement takes its place).
    pub async fn remove_peer(&self, peer: PeerId) -> Result<(), DiscoveryError> {
        self.handle
            .with(|overlay, _, _| {
                overlay.kad_mut().remove_peer(&peer);
            })
            .map_err(|_| DiscoveryError::Stopped)
    }

    /// The routing table now.
    pub async fn table(&self) -> Result<TableSnapshot, DiscoveryError> {
        let now = crate::overlay::now();
        Ok(self.handle.read(|overlay, lookups| {
            let table = overlay.kad().table();
            let entry = |e: &Entry| EntrySnapshot {
                peer: e.peer,
                addrs: e.addrs.clone(),
                last_seen: now.saturating_duration_since(e.last_seen),
                connected: lookups.swarm.current(&e.peer).is_some(),
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
                local: overlay.kad().local_peer_id(),
                buckets,
            }
        }))
    }

    /// Counters.
    pub async fn metrics(&self) -> Result<DiscoveryMetrics, DiscoveryError> {
        let driver = self.handle.driver_stats();
        Ok(self.handle.read(|overlay, _| {
            let manager = overlay.manager().metrics();
            DiscoveryMetrics {
                kad: overlay.kad().metrics(),
                table_size: overlay.kad().table().len(),
                connected_peers: overlay.manager().connected(),
                running_queries: overlay.kad().running_queries(),
                dials: manager.dials + driver.request_dials,
                dials_failed: manager.dials_failed + driver.request_dials_failed,
                pruned: manager.pruned,
                redials: manager.redials,
                inbound_rejected: driver.inbound_rejected,
            }
        }))
    }
}
