//! The bytes of an overlay on streams: the inbound handler of its protocol (frames on a
//! neighbour's stream, or one request and its response at a time), and the tasks that
//! send a request or make a dial for it.
//!
//! Every read is capped by the overlay's [`max_message_len`] before anything is buffered
//! for it, and every stream and dial has a deadline. Nothing here interprets a message.
//!
//! [`max_message_len`]: pheromone_core::overlay::Overlay::max_message_len

use super::Counters;
use crate::connection::{Connection, Stream};
use crate::endpoint::Access;
use crate::negotiate::NegotiateError;
use crate::swarm::{ConnectError, Swarm};
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use pheromone_core::addr::Multiaddr;
use pheromone_core::identity::PeerId;
use pheromone_core::multistream::NegotiationError;
use pheromone_core::overlay::{DialFailure, DialId, RequestFailure, RequestId};
use pheromone_core::varint;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Something a peer sent, on its way to the driver.
pub(super) enum Inbound {
    /// A whole frame on a neighbour stream. The driver sets `refused` when the overlay
    /// refuses it, and the reader then resets the stream.
    Frame {
        conn: Connection,
        frame: Bytes,
        refused: Arc<AtomicBool>,
    },
    /// A whole request; its response goes to `reply` (dropped when the overlay refuses it).
    Request {
        conn: Connection,
        request: Bytes,
        reply: oneshot::Sender<Bytes>,
    },
}

/// The outcome of something the driver asked for.
pub(super) enum Done {
    Response {
        id: RequestId,
        result: Result<Bytes, RequestFailure>,
    },
    Dial {
        id: DialId,
        result: Result<PeerId, DialFailure>,
    },
}

/// What inbound handlers need.
#[derive(Clone)]
pub(super) struct InboundCtx {
    pub(super) swarm: Swarm,
    pub(super) protocol: String,
    pub(super) max_len: usize,
    pub(super) timeout: Duration,
    pub(super) max_requests_per_stream: usize,
    pub(super) slots: Arc<Semaphore>,
    pub(super) to_driver: mpsc::Sender<Inbound>,
    pub(super) counters: Arc<Counters>,
}

/// Installs the handler of the overlay's protocol: frames or requests.
pub(super) fn serve(ctx: InboundCtx, requests: bool) {
    let endpoint = ctx.swarm.endpoint().clone();
    let protocol = ctx.protocol.clone();
    endpoint.set_handler(
        &protocol,
        Arc::new(move |conn: Connection, stream: Stream| {
            let ctx = ctx.clone();
            if requests {
                serve_requests(ctx, conn, stream).boxed()
            } else {
                read_frames(ctx, conn, stream).boxed()
            }
        }),
        Access::Open,
    );
}

/// Reads one varint-prefixed frame of at most `max` bytes; `None` at a clean end.
async fn read_frame(
    stream: &mut Stream,
    buf: &mut BytesMut,
    max: usize,
) -> std::io::Result<Option<Bytes>> {
    loop {
        match varint::decode_frame(buf, max) {
            Ok(Some(frame)) => return Ok(Some(frame)),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
        match stream.read_buf(buf).await? {
            0 if buf.is_empty() => return Ok(None),
            0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the stream ended in the middle of a frame",
                ))
            }
            _ => {}
        }
    }
}

async fn read_frames(ctx: InboundCtx, conn: Connection, mut stream: Stream) {
    let peer = conn.remote_peer();
    let refused = Arc::new(AtomicBool::new(false));
    let mut buf = BytesMut::with_capacity(8 * 1024);
    loop {
        let frame = match read_frame(&mut stream, &mut buf, ctx.max_len).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(%peer, protocol = ctx.protocol, error = %e, "bad framing; resetting the stream");
                stream.reset();
                return;
            }
        };
        let input = Inbound::Frame {
            conn: conn.clone(),
            frame,
            refused: refused.clone(),
        };
        if ctx.to_driver.send(input).await.is_err() || refused.load(Ordering::Relaxed) {
            stream.reset();
            return;
        }
    }
}

async fn serve_requests(ctx: InboundCtx, conn: Connection, mut stream: Stream) {
    let peer = conn.remote_peer();
    let Ok(_slot) = ctx.slots.clone().try_acquire_owned() else {
        tracing::debug!(%peer, protocol = ctx.protocol, "too many inbound request streams; resetting");
        Counters::bump(&ctx.counters.inbound_rejected);
        stream.reset();
        return;
    };
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    for _ in 0..ctx.max_requests_per_stream.max(1) {
        let read =
            tokio::time::timeout(ctx.timeout, read_frame(&mut stream, &mut buf, ctx.max_len));
        let request = match read.await {
            Ok(Ok(Some(request))) => request,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::debug!(%peer, protocol = ctx.protocol, error = %e, "bad inbound request; resetting");
                stream.reset();
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, protocol = ctx.protocol, "inbound request stream too slow; resetting");
                stream.reset();
                return;
            }
        };
        // The overlay learns the peer as a neighbour with the addresses identify gives.
        let _ = tokio::time::timeout(ctx.timeout, ctx.swarm.identified(&conn)).await;
        let (reply, answer) = oneshot::channel();
        let input = Inbound::Request {
            conn: conn.clone(),
            request,
            reply,
        };
        if ctx.to_driver.send(input).await.is_err() {
            stream.reset();
            return;
        }
        let Ok(response) = answer.await else {
            // Refused (malformed, overloaded).
            stream.reset();
            return;
        };
        out.clear();
        varint::encode_frame(&response, &mut out);
        let written = tokio::time::timeout(ctx.timeout, async {
            stream.write_all(&out).await?;
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

/// What an outbound request needs.
#[derive(Clone)]
pub(super) struct OutboundCtx {
    pub(super) swarm: Swarm,
    pub(super) protocol: String,
    pub(super) max_len: usize,
    pub(super) timeout: Duration,
    pub(super) request_slots: Arc<Semaphore>,
    pub(super) dial_slots: Arc<Semaphore>,
    pub(super) done: mpsc::Sender<Done>,
    pub(super) counters: Arc<Counters>,
}

/// Sends one request and reads its response; the driver gets the outcome.
pub(super) async fn send_request(
    ctx: OutboundCtx,
    id: RequestId,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    request: Bytes,
) {
    let result = match ctx.request_slots.clone().acquire_owned().await {
        Err(_) => Err(RequestFailure::Io),
        Ok(_slot) => tokio::time::timeout(ctx.timeout, exchange(&ctx, peer, addrs, &request))
            .await
            .unwrap_or(Err(RequestFailure::Timeout)),
    };
    if let Err(reason) = &result {
        tracing::debug!(%peer, protocol = ctx.protocol, ?id, ?reason, "request failed");
    }
    let _ = ctx.done.send(Done::Response { id, result }).await;
}

async fn exchange(
    ctx: &OutboundCtx,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    request: &[u8],
) -> Result<Bytes, RequestFailure> {
    let conn = match ctx.swarm.current(&peer) {
        Some(conn) => conn,
        None => {
            let _slot = ctx
                .dial_slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| RequestFailure::Dial)?;
            Counters::bump(&ctx.counters.request_dials);
            let dialled = if addrs.is_empty() {
                ctx.swarm.connect(peer).await
            } else {
                ctx.swarm.connect_at(peer, addrs).await
            };
            dialled.map_err(|e| {
                tracing::debug!(%peer, error = %e, "dial for a request failed");
                Counters::bump(&ctx.counters.request_dials_failed);
                RequestFailure::Dial
            })?
        }
    };
    let mut stream = ctx
        .swarm
        .endpoint()
        .open_stream(&conn, &ctx.protocol)
        .await
        .map_err(|_| RequestFailure::Io)?;
    let mut out = BytesMut::with_capacity(request.len() + varint::MAX_LEN);
    varint::encode_frame(request, &mut out);
    if let Err(e) = stream.write_all(&out).await {
        stream.reset();
        return Err(if refused(&e) {
            RequestFailure::Unsupported
        } else {
            RequestFailure::Io
        });
    }
    let mut buf = BytesMut::new();
    match read_frame(&mut stream, &mut buf, ctx.max_len).await {
        Ok(Some(response)) => {
            let _ = stream.shutdown().await;
            Ok(response)
        }
        Err(e) if refused(&e) => Err(RequestFailure::Unsupported),
        Ok(None) | Err(_) => {
            stream.reset();
            Err(RequestFailure::Io)
        }
    }
}

/// Makes a dial the overlay asked for; the driver gets the outcome.
pub(super) async fn dial(
    ctx: OutboundCtx,
    id: DialId,
    peer: Option<PeerId>,
    addrs: Vec<Multiaddr>,
) {
    let result = match ctx.dial_slots.clone().acquire_owned().await {
        Err(_) => Err(DialFailure::Refused),
        Ok(_slot) => {
            let attempt = async {
                match peer {
                    Some(peer) if addrs.is_empty() => ctx.swarm.connect(peer).await,
                    Some(peer) => ctx.swarm.connect_at(peer, addrs.clone()).await,
                    None => {
                        let mut last = Err(ConnectError::Closed);
                        for addr in &addrs {
                            last = ctx.swarm.dial_addr(addr).await;
                            if last.is_ok() {
                                break;
                            }
                        }
                        last
                    }
                }
            };
            match tokio::time::timeout(ctx.timeout, attempt).await {
                Ok(Ok(conn)) => Ok(conn.remote_peer()),
                Ok(Err(ConnectError::ConnectionLimit { .. } | ConnectError::Closed)) => {
                    Err(DialFailure::Refused)
                }
                Ok(Err(e)) => {
                    tracing::debug!(?peer, error = %e, "overlay dial failed");
                    Err(DialFailure::Unreachable)
                }
                Err(_) => Err(DialFailure::Unreachable),
            }
        }
    };
    let result = match (result, peer) {
        (Ok(got), Some(want)) if got != want => Err(DialFailure::WrongPeer),
        (other, _) => other,
    };
    let _ = ctx.done.send(Done::Dial { id, result }).await;
}
