//! The responder side: turning the user's handlers into endpoint stream handlers.
//!
//! A request stream is read (within the request timeout, refusing an oversized request
//! unread), the peer's pending count is checked, the handler runs (a panic becomes a
//! "handler failed" answer, not a dead task), and the answer is written. Access control
//! already happened in negotiation; nothing here sees a refused peer. In short mode the
//! connection is closed once the answer is out.

use super::handler::{ErasedRequestHandler, ErasedStreamHandler, Peer};
use super::pending::PeerCounter;
use super::reqresp::{self, ReadError};
use super::request_streams::KEPT_BUFFER_MAX;
use super::ConnectionMode;
use super::{Inner, NodeError};
use crate::connection::{Connection, Stream};
use crate::deadline::IdleLimit;
use crate::endpoint::StreamHandler as EndpointHandler;
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use pheromone_core::identity::PeerId;
use pheromone_core::multistream::Dialer;
use pheromone_core::reqresp::wire::{self, Status, WireError};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Whether a request stream carries another request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Again,
    Done,
}

/// What a request stream's loop carries from one request to the next.
struct KeptStream {
    /// Long mode: the stream may carry further requests.
    reuse: bool,
    /// How long to wait for the stream's first request.
    wait: Duration,
    /// Bounds the wait for each later request (set after the first).
    idle: Option<IdleLimit>,
    /// The peer as handlers see it, looked up once per stream.
    remote: Option<Peer>,
    /// The access rules the peer was last checked against.
    access_generation: u64,
    /// The peer's count of requests in flight, looked up once per stream.
    pending: PeerCounter,
    /// The answer being written; its allocation serves every request on the stream.
    out: BytesMut,
}

/// Longest a handler waits for the identify answer that carries its peer's name.
const NAME_WAIT: Duration = Duration::from_secs(2);

/// Checks that `protocol` is a name multistream-select can carry.
pub(super) fn check_protocol(protocol: &str) -> Result<(), NodeError> {
    Dialer::lazy(protocol.to_owned())
        .map(drop)
        .map_err(|e| NodeError::InvalidProtocol {
            protocol: protocol.to_owned(),
            reason: e.to_string(),
        })
}

/// The endpoint handler serving `handler`'s requests.
pub(super) fn request_handler(
    node: Weak<Inner>,
    protocol: &str,
    handler: ErasedRequestHandler,
) -> EndpointHandler {
    let protocol: Arc<str> = Arc::from(protocol);
    Arc::new(move |conn, stream| {
        let node = node.clone();
        let handler = handler.clone();
        let protocol = protocol.clone();
        async move {
            if let Some(inner) = node.upgrade() {
                inner.serve_request(&handler, &protocol, conn, stream).await;
            }
        }
        .boxed()
    })
}

/// The endpoint handler giving streams to `handler`.
pub(super) fn stream_handler(node: Weak<Inner>, handler: ErasedStreamHandler) -> EndpointHandler {
    Arc::new(move |conn, stream| {
        let node = node.clone();
        let handler = handler.clone();
        async move {
            if let Some(inner) = node.upgrade() {
                inner.serve_stream(&handler, conn, stream).await;
            }
        }
        .boxed()
    })
}

impl Inner {
    /// The peer on `conn`, with its name if known or about to be.
    async fn peer_for(&self, conn: &Connection) -> Peer {
        let info = conn.info();
        let mut name = self.swarm.book().name(&info.remote_peer);
        if name.is_none() {
            if let Ok(Some(record)) =
                tokio::time::timeout(NAME_WAIT, self.swarm.identified(conn)).await
            {
                name = record.name.clone();
            }
        }
        Peer {
            id: info.remote_peer,
            name,
            addr: info.remote_addr,
            transport: info.transport,
            connection: info.id,
            direction: info.direction,
        }
    }

    /// Answers the requests on one stream: one in short mode, in long mode each until the
    /// requester half-closes the stream (or leaves it idle past the responder's limit).
    async fn serve_request(
        self: Arc<Self>,
        handler: &ErasedRequestHandler,
        protocol: &str,
        conn: Connection,
        mut stream: Stream,
    ) {
        let mut kept = KeptStream {
            reuse: self.config.mode == ConnectionMode::Long,
            wait: self.config.request_timeout,
            idle: None,
            remote: None,
            // Negotiation checked access just now, under this generation or a later one.
            access_generation: self.endpoint.access_generation(),
            pending: self.pending_in.counter(conn.remote_peer()),
            out: BytesMut::new(),
        };
        while self
            .serve_one(handler, protocol, &conn, &mut stream, &mut kept)
            .await
            == Next::Again
        {
            kept.idle
                .get_or_insert_with(|| IdleLimit::new(self.config.responder_stream_idle()))
                .touch();
        }
        self.finished_with(&conn);
    }

    /// Whether `peer` may still use `protocol` on a stream negotiated under the access
    /// rules of `kept.access_generation`.
    fn still_allowed(&self, protocol: &str, peer: &PeerId, kept: &mut KeptStream) -> bool {
        let now = self.endpoint.access_generation();
        if now == kept.access_generation {
            return true;
        }
        kept.access_generation = now;
        self.endpoint.allows(protocol, peer)
    }

    /// Reads one request (the first within `kept.wait`, later ones within the idle limit),
    /// runs the handler and answers.
    async fn serve_one(
        &self,
        handler: &ErasedRequestHandler,
        protocol: &str,
        conn: &Connection,
        stream: &mut Stream,
        kept: &mut KeptStream,
    ) -> Next {
        let peer = conn.remote_peer();
        let max = self.config.max_message_size;
        let mut out = std::mem::take(&mut kept.out);
        out.clear();
        let Some(_slot) = kept.pending.acquire() else {
            let limit = self.pending_in.limit();
            tracing::warn!(%peer, protocol, limit, "too many requests from this peer; answering busy");
            wire::encode_limit_response(Status::Busy, limit, &mut out);
            // The request stays unread, so the stream cannot carry another one.
            return self
                .answer(conn, stream, &mut out, Bytes::new(), false)
                .await;
        };
        let read = reqresp::read_request(stream, max);
        let read = match &mut kept.idle {
            // The first request: within the request timeout.
            None => crate::deadline::within(kept.wait, read).await.ok(),
            Some(idle) => idle.within(read).await,
        };
        let request = match read {
            Some(Ok(Some(request))) => request,
            Some(Ok(None)) => {
                // The requester is done with the stream: end ours too.
                let _ = stream.shutdown().await;
                return Next::Done;
            }
            Some(Err(ReadError::Wire(WireError::TooLarge { len, max }))) => {
                if let Some(suppressed) =
                    crate::throttle::negotiation().allow(("request", "too large"))
                {
                    tracing::warn!(%peer, protocol, size = len, limit = max, suppressed, "refusing oversized request");
                }
                wire::encode_limit_response(Status::TooLarge, max, &mut out);
                return self
                    .answer(conn, stream, &mut out, Bytes::new(), false)
                    .await;
            }
            Some(Err(ReadError::Wire(e))) => {
                tracing::debug!(%peer, protocol, error = %e, "malformed request");
                let text = format!("malformed request: {e}");
                wire::encode_text_response(Status::Error, &text, &mut out);
                return self
                    .answer(conn, stream, &mut out, Bytes::new(), false)
                    .await;
            }
            Some(Err(e)) => {
                tracing::debug!(%peer, protocol, error = ?e, "request stream failed");
                return Next::Done;
            }
            None => {
                tracing::debug!(%peer, protocol, "no request within the time allowed");
                let _ = stream.shutdown().await;
                return Next::Done;
            }
        };
        if !self.still_allowed(protocol, &peer, kept) {
            if let Some(suppressed) = crate::throttle::negotiation().allow(("kept", "refused")) {
                tracing::info!(%peer, protocol, suppressed, "refused on a kept stream: access changed");
            }
            wire::encode_response(Status::Reopen, &[], &mut out);
            return self
                .answer(conn, stream, &mut out, Bytes::new(), false)
                .await;
        }
        let remote = match &kept.remote {
            Some(remote) => remote.clone(),
            None => kept.remote.insert(self.peer_for(conn).await).clone(),
        };
        let outcome = AssertUnwindSafe(handler(remote, request))
            .catch_unwind()
            .await;
        let body = encode_outcome(outcome, max, &mut out, protocol, &peer);
        let next = self.answer(conn, stream, &mut out, body, kept.reuse).await;
        // Kept for the next answer unless a large reply grew it.
        if out.capacity() <= KEPT_BUFFER_MAX {
            kept.out = out;
        }
        next
    }

    /// Writes an answer (`head` then `body`); closes our side of the stream unless it may
    /// carry another request.
    async fn answer(
        &self,
        conn: &Connection,
        stream: &mut Stream,
        head: &mut BytesMut,
        body: Bytes,
        keep_open: bool,
    ) -> Next {
        match reqresp::write_response(stream, head, &body, !keep_open).await {
            Ok(()) if keep_open => Next::Again,
            Ok(()) => Next::Done,
            Err(e) => {
                tracing::debug!(peer = %conn.remote_peer(), error = %e, "could not write the answer");
                Next::Done
            }
        }
    }

    /// Short mode: the connection has served its purpose.
    fn finished_with(&self, conn: &Connection) {
        if self.config.mode == ConnectionMode::Short {
            let conn = conn.clone();
            self.swarm.tasks().spawn(async move { conn.close().await });
        }
    }

    async fn serve_stream(
        self: Arc<Self>,
        handler: &ErasedStreamHandler,
        conn: Connection,
        stream: Stream,
    ) {
        let remote = self.peer_for(&conn).await;
        let _open = self.streams_open.acquire(conn.remote_peer());
        if AssertUnwindSafe(handler(remote, stream))
            .catch_unwind()
            .await
            .is_err()
        {
            tracing::error!(peer = %conn.remote_peer(), "stream handler panicked");
        }
        self.finished_with(&conn);
    }
}

/// Encodes the handler's outcome into `out`; returns the reply body to send behind it.
fn encode_outcome(
    outcome: std::thread::Result<super::handler::HandlerResult>,
    max: usize,
    out: &mut BytesMut,
    protocol: &str,
    peer: &PeerId,
) -> Bytes {
    match outcome {
        Ok(Ok(Some(reply))) if reply.len() > max => {
            tracing::warn!(%peer, protocol, size = reply.len(), limit = max, "reply over the size limit not sent");
            let text = format!(
                "reply of {} bytes exceeds the responder's limit of {max} bytes",
                reply.len()
            );
            wire::encode_text_response(Status::Error, &text, out);
            Bytes::new()
        }
        Ok(Ok(Some(reply))) => {
            // Room for the reply too: `answer` writes a small one behind its header.
            out.reserve(
                1 + wire::request_header_len(reply.len())
                    + reply.len().min(reqresp::COALESCE_LIMIT),
            );
            wire::encode_response_header(Status::Reply, reply.len(), out);
            reply
        }
        Ok(Ok(None)) => {
            wire::encode_response(Status::NoReply, &[], out);
            Bytes::new()
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, protocol, error = %e, "handler failed");
            wire::encode_text_response(Status::HandlerFailed, e.message(), out);
            Bytes::new()
        }
        Err(_) => {
            tracing::error!(%peer, protocol, "request handler panicked");
            wire::encode_text_response(Status::HandlerFailed, "handler panicked", out);
            Bytes::new()
        }
    }
}
