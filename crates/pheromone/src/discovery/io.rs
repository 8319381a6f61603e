//! The bytes of the kad protocol on streams: the inbound handler (read one framed request,
//! hand it to the driver, write its response; a few requests per stream at most) and the
//! outbound request (connect, open a stream, write, read one framed response).
//!
//! Every read is capped by the core's frame limits (`kad::wire::MAX_REQUEST_LEN`,
//! `MAX_RESPONSE_LEN`) before anything is buffered, and every stream has a deadline. No kad
//! message is interpreted here: that is the state machine's job.

use super::task::{Ctx, Internal};
use crate::connection::{Connection, Stream};
use crate::negotiate::NegotiateError;
use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, Shared};
use futures::FutureExt;
use pheromone_core::addr::Multiaddr;
use pheromone_core::identity::PeerId;
use pheromone_core::kad::{wire, FailureReason, RequestId};
use pheromone_core::multistream::NegotiationError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// How long identify may take to tell us an inbound peer's listen addresses.
const IDENTIFY_WAIT: Duration = Duration::from_secs(5);

/// What a read of one frame found.
enum Frame {
    /// A whole frame, its length prefix included.
    Whole(Bytes),
    /// The stream ended cleanly before any byte of a frame.
    End,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Io(std::io::Error),
    #[error(transparent)]
    Wire(pheromone_core::kad::WireError),
    #[error("the stream ended in the middle of a message")]
    Truncated,
}

/// Reads one length-prefixed frame of at most `max` bytes into `buf` (which may hold bytes
/// read before) and splits it off.
async fn read_frame(
    stream: &mut Stream,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Frame, ReadError> {
    loop {
        if let Some((_, used)) = wire::split_frame(buf, max).map_err(ReadError::Wire)? {
            return Ok(Frame::Whole(buf.split_to(used).freeze()));
        }
        match stream.read_buf(buf).await {
            Ok(0) if buf.is_empty() => return Ok(Frame::End),
            Ok(0) => return Err(ReadError::Truncated),
            Ok(_) => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// The dialable addresses each connection vouches for, computed once per connection: the
/// dialled address of an outbound direct connection, identify's listen addresses for an
/// inbound one, nothing for a relayed circuit.
#[derive(Default)]
pub(super) struct AddrBook {
    by_conn:
        Mutex<HashMap<crate::connection::ConnectionId, Shared<BoxFuture<'static, Vec<Multiaddr>>>>>,
}

impl AddrBook {
    /// The addresses `conn` vouches for (resolved once, shared by every caller).
    pub(super) fn addrs(
        &self,
        ctx: &Arc<Ctx>,
        conn: &Connection,
    ) -> Shared<BoxFuture<'static, Vec<Multiaddr>>> {
        let mut map = self.by_conn.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = map.get(&conn.id()) {
            return f.clone();
        }
        let info = conn.info().clone();
        let fut: BoxFuture<'static, Vec<Multiaddr>> = if info.relay.is_some() {
            // A circuit's remote address is the relay's: nothing to dial the peer at.
            futures::future::ready(Vec::new()).boxed()
        } else {
            match info.direction {
                crate::connection::Direction::Outbound => {
                    futures::future::ready(vec![Multiaddr::from_socket_addr(info.remote_addr)])
                        .boxed()
                }
                crate::connection::Direction::Inbound => {
                    let listen = ctx.connector.listen_addrs(conn.clone());
                    async move {
                        tokio::time::timeout(IDENTIFY_WAIT, listen)
                            .await
                            .unwrap_or_default()
                    }
                    .boxed()
                }
            }
        };
        let shared = fut.shared();
        map.insert(conn.id(), shared.clone());
        shared
    }

    /// Forgets a closed connection.
    pub(super) fn remove(&self, id: &crate::connection::ConnectionId) {
        self.by_conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Forgets every connection not in `live`.
    pub(super) fn retain(&self, live: &std::collections::HashSet<crate::connection::ConnectionId>) {
        self.by_conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| live.contains(id));
    }
}

/// Serves one inbound kad stream.
pub(super) async fn serve_inbound(ctx: Arc<Ctx>, conn: Connection, mut stream: Stream) {
    let peer = conn.remote_peer();
    let Ok(_slot) = ctx.inbound_slots.clone().try_acquire_owned() else {
        tracing::debug!(%peer, "too many inbound kad streams; resetting");
        ctx.stats
            .inbound_rejected
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stream.reset();
        return;
    };
    let addrs = ctx.addr_book.addrs(&ctx, &conn);
    let timeout = ctx.config.inbound_timeout;
    let mut buf = BytesMut::new();
    for _ in 0..ctx.config.max_requests_per_stream.max(1) {
        let frame = match tokio::time::timeout(
            timeout,
            read_frame(&mut stream, &mut buf, wire::MAX_REQUEST_LEN),
        )
        .await
        {
            Ok(Ok(Frame::Whole(frame))) => frame,
            Ok(Ok(Frame::End)) => return,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "bad inbound kad stream; resetting");
                stream.reset();
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, ?timeout, "inbound kad stream too slow; resetting");
                stream.reset();
                return;
            }
        };
        let vouched = tokio::time::timeout(timeout, addrs.clone())
            .await
            .unwrap_or_default();
        tracing::trace!(%peer, conn = %conn.id(), vouched = vouched.len(), "kad request in");
        let (reply, answer) = oneshot::channel();
        let request = Internal::Inbound {
            conn: conn.clone(),
            addrs: vouched,
            frame,
            reply,
        };
        if ctx.internal.send(request).await.is_err() {
            stream.reset();
            return;
        }
        let Ok(response) = answer.await else {
            // The state machine refused the request (malformed, overloaded).
            stream.reset();
            return;
        };
        let written = tokio::time::timeout(timeout, async {
            stream.write_all(&response).await?;
            stream.flush().await
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            stream.reset();
            return;
        }
    }
    let _ = stream.shutdown().await;
}

/// Whether a read error is the peer refusing the protocol in negotiation.
fn refused(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<NegotiateError>())
        .is_some_and(|n| {
            matches!(
                n,
                NegotiateError::Negotiation(
                    NegotiationError::ProtocolRejected { .. }
                        | NegotiationError::AllRejected { .. }
                )
            )
        })
}

/// Sends one request to `peer` and reads its response; the driver gets the outcome.
pub(super) async fn send_request(
    ctx: Arc<Ctx>,
    id: RequestId,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    bytes: Bytes,
) {
    let deadline = ctx.config.kad.request_timeout;
    let result = tokio::time::timeout(deadline, request(&ctx, peer, addrs, &bytes))
        .await
        .unwrap_or(Err(FailureReason::Timeout));
    match &result {
        Ok(frame) => tracing::trace!(%peer, ?id, len = frame.len(), "kad response"),
        Err(reason) => tracing::debug!(%peer, ?id, ?reason, "kad request failed"),
    }
    let _ = ctx.internal.send(Internal::Response { id, result }).await;
}

async fn request(
    ctx: &Arc<Ctx>,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    bytes: &[u8],
) -> Result<Bytes, FailureReason> {
    let conn = match super::connector::existing(&ctx.endpoint, &peer) {
        Some(conn) => conn,
        None => {
            let _slot = ctx
                .dial_slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| FailureReason::Dial)?;
            ctx.stats
                .dials
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match ctx.connector.connect(peer, addrs).await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "kad dial failed");
                    ctx.stats
                        .dials_failed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Err(FailureReason::Dial);
                }
            }
        }
    };
    let mut stream = ctx
        .endpoint
        .open_stream(&conn, ctx.config.protocol())
        .await
        .map_err(|_| FailureReason::Io)?;
    if stream.write_all(bytes).await.is_err() {
        stream.reset();
        return Err(FailureReason::Io);
    }
    let mut buf = BytesMut::new();
    match read_frame(&mut stream, &mut buf, wire::MAX_RESPONSE_LEN).await {
        Ok(Frame::Whole(frame)) => {
            let _ = stream.shutdown().await;
            Ok(frame)
        }
        Err(ReadError::Io(e)) if refused(&e) => Err(FailureReason::Unsupported),
        Ok(Frame::End) | Err(_) => {
            stream.reset();
            Err(FailureReason::Io)
        }
    }
}
