//! The serving side of forwarding: [`expose`] answers `/x/NAME` streams from the peers its
//! [`Access`] admits and splices each to a new TCP connection to the target. Refused peers
//! never reach the target; nothing here decides who is admitted beyond the allow-list it
//! is given.

use super::splice::splice;
use super::{log_end, protocol_for, Counters, ExposeInfo, ForwardError, CONNECT_TIMEOUT};
use crate::connection::Stream;
use crate::node::{Access, Node, Peer};
use pheromone_core::identity::PeerId;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
