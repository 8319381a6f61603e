//! The dialling side of forwarding: [`forward`] binds a local TCP listener and splices
//! each accepted connection to a new `/x/NAME` stream to one peer. It never listens
//! anywhere but the address it is given.

use super::splice::{self, splice};
use super::{
    log_end, protocol_for, Counters, ForwardError, ForwardInfo, ACCEPT_BACKOFF, OPEN_TIMEOUT,
};
use crate::node::{DispatchOptions, Node, Target};
use pheromone_core::identity::PeerId;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
