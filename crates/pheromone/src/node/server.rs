//! The responder side: turning the user's handlers into endpoint stream handlers.
//!
//! A request stream is read (within the request timeout, refusing an oversized request
//! unread), the peer's pending count is checked, the handler runs (a panic becomes a
//! "handler failed" answer, not a dead task), and the answer is written. Access control
//! already happened in negotiation; nothing here sees a refused peer. In short mode the
//! connection is closed once the answer is out.

use super::config::ConnectionMode;
use super::handler::{ErasedRequestHandler, ErasedStreamHandler, Peer};
use super::reqresp::{self, ReadError};
use super::wire::{self, Status, WireError};
use super::{Inner, NodeError};
use crate::connection::{Connection, Stream};
use crate::endpoint::StreamHandler as EndpointHandler;
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use pheromone_core::multistream::Dialer;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};
use std::time::Duration;

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
        let mut name = self.lock_directory().name(&info.remote_peer);
        if name.is_none() {
            let pending = self
                .identifying
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&info.id)
                .cloned();
            if let Some(exchange) = pending {
                let _ = tokio::time::timeout(NAME_WAIT, exchange).await;
                name = self.lock_directory().name(&info.remote_peer);
            }
        }
        Peer {
            id: info.remote_peer,
            name,
            addr: info.remote_addr,
            connection: info.id,
            direction: info.direction,
        }
    }

    async fn serve_request(
        self: Arc<Self>,
        handler: &ErasedRequestHandler,
        protocol: &str,
        conn: Connection,
        mut stream: Stream,
    ) {
        let peer = conn.remote_peer();
        let max = self.config.max_message_size;
        let mut out = BytesMut::new();
        let Some(_slot) = self.pending_in.acquire(peer) else {
            let limit = self.pending_in.limit();
            tracing::warn!(%peer, protocol, limit, "too many requests from this peer; answering busy");
            wire::encode_limit_response(Status::Busy, limit, &mut out);
            self.answer(&conn, &mut stream, out, Bytes::new()).await;
            return;
        };
        let timeout = self.config.request_timeout;
        let request = match crate::deadline::within(
            timeout,
            reqresp::read_request(&mut stream, max),
        )
        .await
        {
            Ok(Ok(Some(request))) => request,
            Ok(Ok(None)) => return,
            Ok(Err(ReadError::Wire(WireError::TooLarge { len, max }))) => {
                tracing::warn!(%peer, protocol, size = len, limit = max, "refusing oversized request");
                wire::encode_limit_response(Status::TooLarge, max, &mut out);
                self.answer(&conn, &mut stream, out, Bytes::new()).await;
                return;
            }
            Ok(Err(ReadError::Wire(e))) => {
                tracing::debug!(%peer, protocol, error = %e, "malformed request");
                wire::encode_text_response(
                    Status::Error,
                    &format!("malformed request: {e}"),
                    &mut out,
                );
                self.answer(&conn, &mut stream, out, Bytes::new()).await;
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, protocol, error = ?e, "request stream failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, protocol, ?timeout, "no request within the timeout");
                return;
            }
        };
        let remote = self.peer_for(&conn).await;
        let outcome = AssertUnwindSafe(handler(remote, request))
            .catch_unwind()
            .await;
        let mut body = Bytes::new();
        match outcome {
            Ok(Ok(Some(reply))) if reply.len() > max => {
                tracing::warn!(%peer, protocol, size = reply.len(), limit = max, "reply over the size limit not sent");
                let text = format!(
                    "reply of {} bytes exceeds the responder's limit of {max} bytes",
                    reply.len()
                );
                wire::encode_text_response(Status::Error, &text, &mut out);
            }
            Ok(Ok(Some(reply))) => {
                wire::encode_response_header(Status::Reply, reply.len(), &mut out);
                body = reply;
            }
            Ok(Ok(None)) => wire::encode_response(Status::NoReply, &[], &mut out),
            Ok(Err(e)) => {
                tracing::debug!(%peer, protocol, error = %e, "handler failed");
                wire::encode_text_response(Status::HandlerFailed, e.message(), &mut out);
            }
            Err(_) => {
                tracing::error!(%peer, protocol, "request handler panicked");
                wire::encode_text_response(Status::HandlerFailed, "handler panicked", &mut out);
            }
        }
        self.answer(&conn, &mut stream, out, body).await;
    }

    /// Writes an answer (`head` then `body`), closes the stream and, in short mode, the
    /// connection.
    async fn answer(&self, conn: &Connection, stream: &mut Stream, head: BytesMut, body: Bytes) {
        let written = reqresp::write_response(stream, head, &body).await;
        if let Err(e) = written {
            tracing::debug!(peer = %conn.remote_peer(), error = %e, "could not write the answer");
        }
        self.finished_with(conn);
    }

    /// Short mode: the connection has served its purpose.
    fn finished_with(&self, conn: &Connection) {
        if self.config.mode == ConnectionMode::Short {
            let conn = conn.clone();
            self.tasks.spawn(async move { conn.close().await });
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
