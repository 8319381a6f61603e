//! Port forwarding over the mesh, like `ipfs p2p`: reach a TCP service on another node
//! through an encrypted stream, with no port opened to anyone else.
//!
//! - [`expose`] makes a node answer streams of protocol `/x/NAME` (from the peers its
//!   [`Access`] allows; others are refused during negotiation, logged, and never reach
//!   the target) and splice each to a new TCP connection to a target address.
//! - [`forward`] binds a local TCP listener and splices each accepted connection to a new
//!   `/x/NAME` stream to one peer.
//! - [`Forwards`] is a registry of both kinds for a daemon: add, list with counters
//!   ([`Forwards::snapshot`]), remove by name or listen address.
//!
//! A spliced connection copies both ways at once; an EOF on one end becomes a half-close
//! (yamux FIN or TCP FIN) of the other while the other direction keeps flowing, and an
//! error on either end aborts both (yamux RST, TCP RST). Removing an expose or a forward
//! stops new connections and aborts the ones in progress. The wire format is just the
//! bytes (`docs/protocols/forward.md`).
//!
//! This module holds no protocol state of its own and never blocks a thread: counters are
//! atomics and the registry's std mutex is released before every await.

mod error;
mod exposed;
mod forwarded;
mod splice;

pub use error::ForwardError;
pub use exposed::{expose, Exposed};
pub use forwarded::{forward, Forwarded};

use crate::node::{Access, Node, Target};
use pheromone_core::identity::PeerId;
use splice::SpliceEnd;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What every forwarding protocol name starts with.
pub const PROTOCOL_PREFIX: &str = "/x/";
/// Longest service name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// How long an exposed service may take to accept the TCP connection for a stream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening the stream for a forwarded connection may take, dial included.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed `accept` (out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The protocol name a service is exposed under: `/x/NAME`.
pub fn protocol_for(name: &str) -> Result<String, ForwardError> {
    let invalid = |reason| ForwardError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("it is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("it is longer than 128 bytes"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(invalid(
            "only ASCII letters, digits, '-', '_', '.' and ':' are allowed",
        ));
    }
    Ok(format!("{PROTOCOL_PREFIX}{name}"))
}

/// Live counters of one expose or forward.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Bytes received from peers (mesh → TCP).
    bytes_in: AtomicU64,
    /// Bytes sent to peers (TCP → mesh).
    bytes_out: AtomicU64,
    open: AtomicU64,
    total: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn stats(&self) -> ForwardStats {
        ForwardStats {
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            open: self.open.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }

    /// Counts a connection as open (and in the total) until the guard drops.
    fn opened(&self) -> OpenGuard<'_> {
        self.total.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self)
    }

    fn record(&self, end: &SpliceEnd) {
        if matches!(end, SpliceEnd::Failed(..)) {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct OpenGuard<'a>(&'a Counters);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counters of one expose or forward. "In" and "out" are seen from the mesh: `bytes_in`
/// came from peers, `bytes_out` went to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ForwardStats {
    /// Bytes received from peers and written to the local TCP side.
    pub bytes_in: u64,
    /// Bytes read from the local TCP side and sent to peers.
    pub bytes_out: u64,
    /// Connections being spliced right now.
    pub open: u64,
    /// Connections accepted since it was created (open, finished or failed).
    pub total: u64,
    /// Connections that failed: target refused, stream refused or failed, reset.
    pub failed: u64,
}

/// One exposed service, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExposeInfo {
    /// The service name.
    pub name: String,
    /// Its protocol, `/x/NAME`.
    pub protocol: String,
    /// Where accepted streams are connected to.
    pub target: SocketAddr,
    /// The peers allowed to use it, sorted; `None` if every peer is.
    pub allow: Option<Vec<PeerId>>,
    /// Its counters.
    pub stats: ForwardStats,
}

/// One forwarded local port, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForwardInfo {
    /// The service name on the peer.
    pub name: String,
    /// Its protocol, `/x/NAME`.
    pub protocol: String,
    /// The peer the service runs on.
    pub peer: PeerId,
    /// The local address accepting connections (the real port, also when `:0` was asked).
    pub listen: SocketAddr,
    /// Its counters.
    pub stats: ForwardStats,
}

/// Everything a [`Forwards`] registry holds, for listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ForwardsSnapshot {
    /// Exposed services, by name.
    pub exposed: Vec<ExposeInfo>,
    /// Forwarded ports, by listen address.
    pub forwarded: Vec<ForwardInfo>,
}

/// A node's exposed services and forwarded ports, for a daemon: add, list, remove.
///
/// A cloneable handle; dropping the last clone (or [`Forwards::close`]) removes
/// everything.
#[derive(Clone)]
pub struct Forwards {
    node: Node,
    table: Arc<Mutex<Table>>,
}

#[derive(Default)]
struct Table {
    exposed: BTreeMap<String, Exposed>,
    forwarded: BTreeMap<SocketAddr, Forwarded>,
}

impl std::fmt::Debug for Forwards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let table = self.lock();
        f.debug_struct("Forwards")
            .field("exposed", &table.exposed.len())
            .field("forwarded", &table.forwarded.len())
            .finish()
    }
}

impl Forwards {
    /// An empty registry for `node`.
    pub fn new(node: &Node) -> Self {
        Self {
            node: node.clone(),
            table: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`expose`]s a service and keeps it; fails if the name is exposed already.
    pub fn expose(
        &self,
        name: &str,
        target: SocketAddr,
        allow: Access,
    ) -> Result<ExposeInfo, ForwardError> {
        let mut table = self.lock();
        if table.exposed.contains_key(name) {
            return Err(ForwardError::AlreadyExposed {
                protocol: protocol_for(name)?,
            });
        }
        let exposed = expose(&self.node, name, target, allow)?;
        let info = exposed.info();
        table.exposed.insert(name.to_owned(), exposed);
        Ok(info)
    }

    /// Changes who may use an exposed service.
    pub fn set_allow(&self, name: &str, allow: Access) -> Result<ExposeInfo, ForwardError> {
        let table = self.lock();
        let exposed = table
            .exposed
            .get(name)
            .ok_or_else(|| ForwardError::NotExposed {
                name: name.to_owned(),
            })?;
        exposed.set_allow(allow);
        Ok(exposed.info())
    }

    /// [`forward`]s a local port and keeps it; fails if a forward already listens there.
    pub async fn forward(
        &self,
        name: &str,
        peer: impl Into<Target>,
        listen: SocketAddr,
    ) -> Result<ForwardInfo, ForwardError> {
        if listen.port() != 0 && self.lock().forwarded.contains_key(&listen) {
            return Err(ForwardError::AlreadyForwarded { addr: listen });
        }
        let forwarded = forward(&self.node, name, peer, listen).await?;
        let info = forwarded.info();
        self.lock().forwarded.insert(info.listen, forwarded);
        Ok(info)
    }

    /// Stops exposing `name` (aborting its connections); its final listing.
    pub async fn unexpose(&self, name: &str) -> Result<ExposeInfo, ForwardError> {
        let exposed = self
            .lock()
            .exposed
            .remove(name)
            .ok_or_else(|| ForwardError::NotExposed {
                name: name.to_owned(),
            })?;
        Ok(exposed.close().await)
    }

    /// Stops the forward listening on `listen` (aborting its connections; the port is
    /// free when this returns); its final listing.
    pub async fn unforward(&self, listen: SocketAddr) -> Result<ForwardInfo, ForwardError> {
        let forwarded = self
            .lock()
            .forwarded
            .remove(&listen)
            .ok_or(ForwardError::NotForwarded { addr: listen })?;
        Ok(forwarded.close().await)
    }

    /// Every exposed service and forwarded port with its counters.
    pub fn snapshot(&self) -> ForwardsSnapshot {
        let table = self.lock();
        ForwardsSnapshot {
            exposed: table.exposed.values().map(|e| e.info()).collect(),
            forwarded: table.forwarded.values().map(|f| f.info()).collect(),
        }
    }

    /// Removes everything, aborting every connection in progress.
    pub async fn close(&self) {
        let (exposed, forwarded) = {
            let mut table = self.lock();
            (
                std::mem::take(&mut table.exposed),
                std::mem::take(&mut table.forwarded),
            )
        };
        for e in exposed.into_values() {
            e.close().await;
        }
        for f in forwarded.into_values() {
            f.close().await;
        }
    }
}

fn log_end(name: &str, peer: &PeerId, end: &SpliceEnd) {
    match end {
        SpliceEnd::Done => tracing::debug!(service = %name, %peer, "forwarded connection done"),
        SpliceEnd::Failed(side, e) => {
            tracing::debug!(service = %name, %peer, %side, error = %e, "forwarded connection failed; both ends reset")
        }
        SpliceEnd::Cancelled => {
            tracing::debug!(service = %name, %peer, "forward removed; connection reset")
        }
    }
}
