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
mod splice;

pub use error::ForwardError;

use crate::connection::Stream;
use crate::node::{Access, DispatchOptions, Node, Peer, Target};
use pheromone_core::identity::PeerId;
use splice::{splice, SpliceEnd};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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

fn allow_list(access: &Access) -> Option<Vec<PeerId>> {
    match access {
        Access::Open => None,
        Access::AllowList(peers) => {
            let mut peers: Vec<PeerId> = peers.iter().copied().collect();
            peers.sort();
            Some(peers)
        }
    }
}

/// What an expose's stream handler shares with its handle.
struct ExposeShared {
    name: String,
    target: SocketAddr,
    counters: Counters,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// An exposed service. Dropping the handle (or [`Exposed::close`]) stops serving
/// `/x/NAME` and aborts the connections in progress.
pub struct Exposed {
    node: Node,
    protocol: String,
    access: Mutex<Access>,
    shared: Arc<ExposeShared>,
    closed: AtomicBool,
}

impl std::fmt::Debug for Exposed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposed")
            .field("protocol", &self.protocol)
            .field("target", &self.shared.target)
            .finish()
    }
}

/// Makes `node` answer streams of `/x/NAME` from the peers `allow` admits, splicing each
/// to a new TCP connection to `target`. Peers not admitted are refused in negotiation
/// (and logged by the node); no connection to the target is made for them. An empty
/// allow-list admits nobody; [`Access::Open`] admits every authenticated peer.
///
/// Fails if the node already answers `/x/NAME`.
pub fn expose(
    node: &Node,
    name: &str,
    target: SocketAddr,
    allow: Access,
) -> Result<Exposed, ForwardError> {
    let protocol = protocol_for(name)?;
    if node.protocols().contains(&protocol) {
        return Err(ForwardError::AlreadyExposed { protocol });
    }
    let shared = Arc::new(ExposeShared {
        name: name.to_owned(),
        target,
        counters: Counters::default(),
        cancel: CancellationToken::new(),
        tasks: TaskTracker::new(),
    });
    let handler_shared = shared.clone();
    node.handle_streams_with(
        &protocol,
        move |peer: Peer, stream: Stream| {
            let shared = handler_shared.clone();
            async move { serve_exposed(&shared, peer, stream).await }
        },
        allow.clone(),
    )
    .map_err(|e| ForwardError::Node(Arc::new(e)))?;
    tracing::info!(%protocol, %target, allow = ?allow_list(&allow), "exposed");
    Ok(Exposed {
        node: node.clone(),
        protocol,
        access: Mutex::new(allow),
        shared,
        closed: AtomicBool::new(false),
    })
}

async fn serve_exposed(shared: &ExposeShared, peer: Peer, mut stream: Stream) {
    let _task = shared.tasks.token();
    if shared.cancel.is_cancelled() {
        stream.reset();
        return;
    }
    let counters = &shared.counters;
    let _open = counters.opened();
    let name = &shared.name;
    let target = shared.target;
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target));
    let mut tcp = match connect.await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            tracing::warn!(service = %name, %target, peer = %peer.id(), error = %e, "cannot connect to the exposed target");
            counters.failed.fetch_add(1, Ordering::Relaxed);
            stream.reset();
            return;
        }
        Err(_) => {
            tracing::warn!(service = %name, %target, peer = %peer.id(), "exposed target did not accept within {CONNECT_TIMEOUT:?}");
            counters.failed.fetch_add(1, Ordering::Relaxed);
            stream.reset();
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    tracing::debug!(service = %name, %target, peer = %peer.id(), "splicing exposed stream");
    let end = splice(&mut tcp, &mut stream, counters, &shared.cancel).await;
    log_end(name, &peer.id(), &end);
    counters.record(&end);
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

impl Exposed {
    /// The service name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// What it is and its counters.
    pub fn info(&self) -> ExposeInfo {
        ExposeInfo {
            name: self.shared.name.clone(),
            protocol: self.protocol.clone(),
            target: self.shared.target,
            allow: allow_list(&self.access.lock().unwrap_or_else(|e| e.into_inner())),
            stats: self.shared.counters.stats(),
        }
    }

    /// Changes who may open new streams (connections in progress are left alone).
    pub fn set_allow(&self, allow: Access) {
        self.node.set_access(&self.protocol, allow.clone());
        *self.access.lock().unwrap_or_else(|e| e.into_inner()) = allow;
    }

    /// Stops answering `/x/NAME`, aborts the connections in progress and waits for them
    /// to end; the final counters.
    pub async fn close(self) -> ExposeInfo {
        self.stop();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
        self.info()
    }

    fn stop(&self) {
        if !self.closed.swap(true, Ordering::SeqCst) {
            self.node.remove_handler(&self.protocol);
            self.shared.cancel.cancel();
            tracing::info!(protocol = %self.protocol, "unexposed");
        }
    }
}

impl Drop for Exposed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a forward's tasks share with its handle.
struct ForwardShared {
    name: String,
    protocol: String,
    peer: PeerId,
    listen: SocketAddr,
    counters: Counters,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// A forwarded local port. Dropping the handle (or [`Forwarded::close`]) closes the
/// listener and aborts the connections in progress.
pub struct Forwarded {
    shared: Arc<ForwardShared>,
}

impl std::fmt::Debug for Forwarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarded")
            .field("protocol", &self.shared.protocol)
            .field("peer", &self.shared.peer)
            .field("listen", &self.shared.listen)
            .finish()
    }
}

/// Binds a TCP listener on `listen` (port 0 picks one; see [`Forwarded::local_addr`]) and
/// splices each accepted connection to a new `/x/NAME` stream to `peer`. The peer is
/// resolved now (a peer ID, or a route or peer name); streams are opened per connection,
/// dialling if needed. A connection whose stream cannot be opened (refused, unreachable)
/// is reset.
pub async fn forward(
    node: &Node,
    name: &str,
    peer: impl Into<Target>,
    listen: SocketAddr,
) -> Result<Forwarded, ForwardError> {
    let protocol = protocol_for(name)?;
    let peer = node
        .resolve(peer)
        .map_err(|e| ForwardError::Peer(Arc::new(e)))?;
    let listen_error = |e: std::io::Error| ForwardError::Listen {
        addr: listen,
        reason: e.to_string(),
    };
    let listener = TcpListener::bind(listen).await.map_err(listen_error)?;
    let bound = listener.local_addr().map_err(listen_error)?;
    let shared = Arc::new(ForwardShared {
        name: name.to_owned(),
        protocol,
        peer,
        listen: bound,
        counters: Counters::default(),
        cancel: CancellationToken::new(),
        tasks: TaskTracker::new(),
    });
    shared
        .tasks
        .spawn(accept_loop(node.clone(), listener, shared.clone()));
    tracing::info!(protocol = %shared.protocol, %peer, listen = %bound, "forwarding");
    Ok(Forwarded { shared })
}

async fn accept_loop(node: Node, listener: TcpListener, shared: Arc<ForwardShared>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shared.cancel.cancelled() => return,
        };
        match accepted {
            Ok((tcp, from)) => {
                tracing::debug!(protocol = %shared.protocol, %from, "forwarding a connection");
                shared
                    .tasks
                    .spawn(serve_forwarded(node.clone(), tcp, shared.clone()));
            }
            Err(e) => {
                tracing::warn!(listen = %shared.listen, error = %e, "accept failed");
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    () = shared.cancel.cancelled() => return,
                }
            }
        }
    }
}

async fn serve_forwarded(node: Node, mut tcp: TcpStream, shared: Arc<ForwardShared>) {
    let counters = &shared.counters;
    let _open = counters.opened();
    let _ = tcp.set_nodelay(true);
    let options = DispatchOptions::new().timeout(OPEN_TIMEOUT);
    let opened = tokio::select! {
        opened = node.open_stream_with(shared.peer, &shared.protocol, &options) => opened,
        () = shared.cancel.cancelled() => {
            splice::reset_tcp(&tcp);
            return;
        }
    };
    drop(node);
    let mut stream = match opened {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(protocol = %shared.protocol, peer = %shared.peer, error = %e, "cannot open the forwarded stream; resetting the local connection");
            counters.failed.fetch_add(1, Ordering::Relaxed);
            splice::reset_tcp(&tcp);
            return;
        }
    };
    let end = splice(&mut tcp, &mut stream, counters, &shared.cancel).await;
    log_end(&shared.name, &shared.peer, &end);
    counters.record(&end);
}

impl Forwarded {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.listen
    }

    /// What it is and its counters.
    pub fn info(&self) -> ForwardInfo {
        let s = &self.shared;
        ForwardInfo {
            name: s.name.clone(),
            protocol: s.protocol.clone(),
            peer: s.peer,
            listen: s.listen,
            stats: s.counters.stats(),
        }
    }

    /// Closes the listener, aborts the connections in progress and waits until they and
    /// the listener are gone (the port is free when this returns); the final counters.
    pub async fn close(self) -> ForwardInfo {
        self.shared.cancel.cancel();
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
        tracing::info!(listen = %self.shared.listen, "unforwarded");
        self.info()
    }
}

impl Drop for Forwarded {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
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
