//! What a protocol handler is: the [`RequestHandler`] and [`StreamHandler`] traits (also
//! implemented by closures), the [`Peer`] a handler is told about, and [`HandlerError`].
//!
//! The traits use `impl Future` returns so handlers are plain `async fn`s; the node stores
//! them type-erased (`Erased*`) behind an `Arc`. Nothing here touches the network.

use crate::connection::{ConnectionId, Direction, Stream, Transport};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use pheromone_core::addr::Multiaddr;
use pheromone_core::identity::PeerId;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

/// The remote end of a request or stream: its verified peer ID, the name it announced (if
/// known) and the address of the connection it came on.
#[derive(Debug, Clone)]
pub struct Peer {
    pub(super) id: PeerId,
    pub(super) name: Option<Arc<str>>,
    pub(super) addr: SocketAddr,
    pub(super) transport: Transport,
    pub(super) connection: ConnectionId,
    pub(super) direction: Direction,
}

impl Peer {
    /// The peer's verified ID.
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// The human name the peer announced in identify, if it sent one and it has arrived.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The remote socket address of the connection.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The transport of that connection (TCP, QUIC, or a relayed circuit).
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The same address as a multiaddr of its transport, with the peer's `/p2p/` suffix.
    pub fn multiaddr(&self) -> Multiaddr {
        let addr = crate::connection::socket_multiaddr(self.addr, self.transport);
        addr.clone().with_p2p(self.id).unwrap_or(addr)
    }

    /// Which connection carried the request.
    pub fn connection_id(&self) -> ConnectionId {
        self.connection
    }

    /// Whether we dialled that connection or the peer did.
    pub fn direction(&self) -> Direction {
        self.direction
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name} ({}) at {}", self.id, self.addr),
            None => write!(f, "{} at {}", self.id, self.addr),
        }
    }
}

/// A handler's failure: its message goes back to the requester, which sees
/// [`DispatchError::HandlerFailed`](super::DispatchError::HandlerFailed).
///
/// Any `std::error::Error` converts into it, so `?` works in handlers; for plain text use
/// [`HandlerError::msg`].
pub struct HandlerError {
    message: String,
}

impl HandlerError {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(e: E) -> Self {
        Self::msg(e)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HandlerError").field(&self.message).finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a request handler returns: a reply, no reply, or a failure.
pub type HandlerResult = Result<Option<Bytes>, HandlerError>;

/// Answers requests of one protocol: gets the peer and the request bytes, returns an
/// optional reply. Closures `Fn(Peer, Bytes) -> impl Future<Output = HandlerResult>`
/// implement it.
///
/// ```
/// use pheromone::node::{HandlerResult, Peer, RequestHandler};
/// use bytes::Bytes;
///
/// struct Upper;
///
/// impl RequestHandler for Upper {
///     async fn handle(&self, _peer: Peer, request: Bytes) -> HandlerResult {
///         Ok(Some(Bytes::from(request.to_ascii_uppercase())))
///     }
/// }
/// ```
pub trait RequestHandler: Send + Sync + 'static {
    /// Handles one request. The reply must fit the node's maximum message size.
    fn handle(&self, peer: Peer, request: Bytes) -> impl Future<Output = HandlerResult> + Send;
}

impl<F, Fut> RequestHandler for F
where
    F: Fn(Peer, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send,
{
    fn handle(&self, peer: Peer, request: Bytes) -> impl Future<Output = HandlerResult> + Send {
        self(peer, request)
    }
}

/// Serves raw streams of one protocol: gets the peer and a bidirectional stream it owns
/// from then on. Closures `Fn(Peer, Stream) -> impl Future<Output = ()>` implement it.
pub trait StreamHandler: Send + Sync + 'static {
    /// Serves one stream until done; dropping the stream ends it.
    fn handle(&self, peer: Peer, stream: Stream) -> impl Future<Output = ()> + Send;
}

impl<F, Fut> StreamHandler for F
where
    F: Fn(Peer, Stream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    fn handle(&self, peer: Peer, stream: Stream) -> impl Future<Output = ()> + Send {
        self(peer, stream)
    }
}

/// A request handler with its type erased.
pub(super) type ErasedRequestHandler =
    Arc<dyn Fn(Peer, Bytes) -> BoxFuture<'static, HandlerResult> + Send + Sync>;

/// A stream handler with its type erased.
pub(super) type ErasedStreamHandler =
    Arc<dyn Fn(Peer, Stream) -> BoxFuture<'static, ()> + Send + Sync>;

pub(super) fn erase_request<H: RequestHandler>(handler: H) -> ErasedRequestHandler {
    let handler = Arc::new(handler);
    Arc::new(move |peer, request| {
        let handler = handler.clone();
        async move { handler.handle(peer, request).await }.boxed()
    })
}

pub(super) fn erase_stream<H: StreamHandler>(handler: H) -> ErasedStreamHandler {
    let handler = Arc::new(handler);
    Arc::new(move |peer, stream| {
        let handler = handler.clone();
        async move { handler.handle(peer, stream).await }.boxed()
    })
}
