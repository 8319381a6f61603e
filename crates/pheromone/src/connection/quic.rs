//! A connection over QUIC: quinn's connection and its streams behind the same
//! [`Connection`](super::Connection) and [`Stream`](super::Stream) handles as a yamux one.
//!
//! QUIC brings its own streams, flow control, keep-alive and driver (quinn's endpoint task
//! runs every connection of a socket), so there is no per-connection task and no muxer
//! here: this file keeps what the handles report (traffic, stream counts, what identify
//! said) and does the two things QUIC lacks: a graceful close and "going away". QUIC has
//! no GoAway, so a closing side lowers the peer's stream credit to zero, waits (up to the
//! close grace) for its open streams to end and for what they sent to be acknowledged, and
//! only then sends CONNECTION_CLOSE, which would otherwise discard data still in flight.

use super::ConnectionError;
use futures::future::BoxFuture;
use futures::FutureExt;
use pheromone_core::identity::PeerId;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::Notify;

/// Finished send streams whose acknowledgement a close still waits for, at most. Beyond it
/// the oldest is forgotten (quinn still delivers it; only a close right after might cut
/// it short).
const MAX_LINGERING: usize = 256;

/// The application error code of a graceful close that found every stream the peer had
/// opened and we had accepted ended, and what we sent on them acknowledged: a stream of the
/// peer's that has heard nothing from us was never served and may be retried elsewhere.
/// ("dr", chosen to mean nothing to other implementations.)
pub(super) const CLOSE_DRAINED: u32 = 0x6472;

/// The application error code of a close that could not wait for that (the close grace
/// ran out, or an endpoint shuts down).
const CLOSE_NORMAL: u32 = 0;

/// The stream error code of a stream we refused unseen: our stream limit, or we are
/// closing. ("rf")
pub(super) const STREAM_REFUSED: u32 = 0x7266;

/// The protocol of the stream a closing pheromone node opens to say "going away" (QUIC's
/// stand-in for yamux's GoAway; see `docs/protocols/quic.md`). A peer that does not speak it
/// answers `na` and nothing else happens.
pub(crate) const GOAWAY_PROTOCOL: &str = "/pheromone/quic-goaway/1.0.0";

/// The shared half of a QUIC connection.
pub(crate) struct QuicShared {
    pub(crate) conn: quinn::Connection,
    pub(crate) peer: PeerId,
    remote_protocols: Mutex<Option<Arc<[String]>>>,
    /// Stream payload carried, both ways.
    pub(crate) traffic: crate::metrics::Traffic,
    /// The endpoint's counters, set when the endpoint adopts the connection.
    pub(crate) counters: std::sync::OnceLock<Arc<crate::metrics::Counters>>,
    streams_total: AtomicU64,
    open_streams: AtomicUsize,
    closing: AtomicBool,
    /// The peer refused one of our streams because it is closing: open no more here.
    remote_going_away: AtomicBool,
    /// Signalled when the connection starts closing and whenever a stream ends.
    changed: Notify,
    /// Acknowledgements of finished send streams that a graceful close waits for.
    lingering: Mutex<Vec<BoxFuture<'static, ()>>>,
    close_grace: Duration,
    /// Streams open at once on this connection, both directions (the peer's QUIC credit
    /// caps its own at the same number).
    max_streams: usize,
    /// The receiving half of the goaway stream we sent, kept so that the peer may still
    /// confirm the protocol (dropping it would stop the peer's sending, failing its
    /// negotiation before its handler ran).
    goaway: Mutex<Option<quinn::RecvStream>>,
}

impl QuicShared {
    pub(crate) fn new(
        conn: quinn::Connection,
        peer: PeerId,
        close_grace: Duration,
        max_streams: usize,
    ) -> Self {
        Self {
            conn,
            peer,
            remote_protocols: Mutex::new(None),
            traffic: crate::metrics::Traffic::default(),
            counters: std::sync::OnceLock::new(),
            streams_total: AtomicU64::new(0),
            open_streams: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            remote_going_away: AtomicBool::new(false),
            changed: Notify::new(),
            lingering: Mutex::new(Vec::new()),
            close_grace,
            max_streams,
            goaway: Mutex::new(None),
        }
    }

    /// Opens a bidirectional stream now, or fails: QUIC's stream credit is what the peer
    /// allows, and a caller that finds none gets [`ConnectionError::StreamLimit`] as with
    /// yamux (the stream is announced with its first write).
    pub(super) fn open_stream(
        &self,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), ConnectionError> {
        if let Some(e) = self.conn.close_reason() {
            return Err(self.map_error(e));
        }
        if self.closing.load(Ordering::Acquire) {
            return Err(ConnectionError::ClosedLocally { peer: self.peer });
        }
        if self.num_streams() >= self.max_streams {
            return Err(ConnectionError::StreamLimit {
                peer: self.peer,
                reason: format!("{} streams open, the limit", self.max_streams),
            });
        }
        let mut open = std::pin::pin!(self.conn.open_bi());
        match open.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(pair)) => {
                self.stream_started();
                Ok(pair)
            }
            Poll::Ready(Err(e)) => Err(self.map_error(e)),
            Poll::Pending => Err(ConnectionError::StreamLimit {
                peer: self.peer,
                reason: "the peer's QUIC stream credit is used up".into(),
            }),
        }
    }

    pub(super) async fn accept_stream(
        &self,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), ConnectionError> {
        loop {
            match self.conn.accept_bi().await {
                // We are closing, or our own streams took the room the peer's credit left
                // it: refuse this one unseen, as yamux would (see `sort_error` in
                // stream.rs for what the peer makes of it).
                Ok((mut send, mut recv))
                    if self.closing.load(Ordering::Acquire)
                        || self.num_streams() >= self.max_streams =>
                {
                    tracing::debug!(peer = %self.peer, limit = self.max_streams, "QUIC stream refused: closing or at the stream limit");
                    let _ = send.reset(STREAM_REFUSED.into());
                    let _ = recv.stop(STREAM_REFUSED.into());
                }
                Ok(pair) => {
                    self.stream_started();
                    return Ok(pair);
                }
                Err(e) => return Err(self.map_error(e)),
            }
        }
    }

    fn stream_started(&self) {
        self.streams_total.fetch_add(1, Ordering::Relaxed);
        self.open_streams.fetch_add(1, Ordering::AcqRel);
    }

    /// A stream handle was dropped; `acked` resolves once what it sent is acknowledged.
    pub(super) fn stream_ended(&self, acked: BoxFuture<'static, ()>) {
        {
            let mut lingering = self.lingering.lock().unwrap_or_else(|e| e.into_inner());
            let mut cx = Context::from_waker(Waker::noop());
            lingering.retain_mut(|f| f.poll_unpin(&mut cx).is_pending());
            if lingering.len() >= MAX_LINGERING {
                drop(lingering.remove(0));
            }
            lingering.push(acked);
        }
        self.open_streams.fetch_sub(1, Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// Our stream as a quinn error mapped to ours.
    pub(super) fn map_error(&self, e: quinn::ConnectionError) -> ConnectionError {
        let peer = self.peer;
        match e {
            quinn::ConnectionError::ApplicationClosed(_)
            | quinn::ConnectionError::ConnectionClosed(_) => {
                ConnectionError::ClosedByRemote { peer }
            }
            quinn::ConnectionError::LocallyClosed => ConnectionError::ClosedLocally { peer },
            quinn::ConnectionError::TimedOut => ConnectionError::KeepAliveTimeout { peer },
            other => ConnectionError::Quic {
                peer,
                reason: other.to_string(),
            },
        }
    }

    /// The peer refused a stream of ours unseen (see `sort_error` in stream.rs), or said it
    /// is going away: open no more streams here.
    pub(crate) fn remote_refused(&self) {
        if !self.remote_going_away.swap(true, Ordering::AcqRel) {
            self.changed.notify_waiters();
        }
    }

    /// Whether no new stream should be opened here: closing, closed, or the peer refuses.
    pub(super) fn is_going_away(&self) -> bool {
        self.is_closed() || self.remote_going_away.load(Ordering::Acquire)
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closing.load(Ordering::Acquire) || self.conn.close_reason().is_some()
    }

    pub(super) fn streams_total(&self) -> u64 {
        self.streams_total.load(Ordering::Relaxed)
    }

    pub(super) fn num_streams(&self) -> usize {
        self.open_streams.load(Ordering::Acquire)
    }

    pub(super) fn set_remote_protocols(&self, protocols: Arc<[String]>) {
        *self
            .remote_protocols
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(protocols);
    }

    pub(super) fn remote_protocols(&self) -> Option<Arc<[String]>> {
        self.remote_protocols
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn remote_supports(&self, protocol: &str) -> Option<bool> {
        self.remote_protocols
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|list| list.iter().any(|p| p == protocol))
    }

    /// Waits until no new stream may be opened here (closing or closed).
    pub(super) async fn going_away(&self) {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if self.is_going_away() {
                return;
            }
            tokio::select! {
                _ = changed => {}
                _ = self.conn.closed() => return,
            }
        }
    }

    /// Closes gracefully (see the module header) and waits until the connection is gone.
    pub(super) async fn close(&self) {
        if !self.closing.swap(true, Ordering::AcqRel) {
            self.changed.notify_waiters();
            self.conn.set_max_concurrent_bi_streams(0u32.into());
            self.send_goaway();
            let deadline = tokio::time::Instant::now() + self.close_grace;
            // Open streams first: they may still write.
            let mut drained = false;
            loop {
                let changed = self.changed.notified();
                let mut changed = std::pin::pin!(changed);
                changed.as_mut().enable();
                if self.conn.close_reason().is_some() {
                    break;
                }
                if self.num_streams() == 0 {
                    drained = true;
                    break;
                }
                tokio::select! {
                    _ = changed => {}
                    _ = self.conn.closed() => break,
                    _ = tokio::time::sleep_until(deadline) => break,
                }
            }
            let waiting: Vec<_> =
                std::mem::take(&mut *self.lingering.lock().unwrap_or_else(|e| e.into_inner()));
            let acked = futures::future::join_all(waiting);
            tokio::select! {
                _ = acked => {}
                _ = self.conn.closed() => drained = false,
                _ = tokio::time::sleep_until(deadline) => drained = false,
            }
            // quinn's close replaces the reason streams report with "locally closed": a
            // connection the peer closed meanwhile keeps the peer's reason (its "drained"
            // tells our unanswered streams they were never served).
            if self.conn.close_reason().is_none() {
                let code = if drained { CLOSE_DRAINED } else { CLOSE_NORMAL };
                self.conn.close(code.into(), b"closed");
            }
        }
        self.conn.closed().await;
    }

    /// Tells the peer we are going away: a stream proposing [`GOAWAY_PROTOCOL`], finished at
    /// once. It is not one of the connection's streams (no count, no wait); without stream
    /// credit left it is skipped, and the peer learns from refusals instead.
    fn send_goaway(&self) {
        let mut open = std::pin::pin!(self.conn.open_bi());
        let Poll::Ready(Ok((mut send, recv))) =
            open.as_mut().poll(&mut Context::from_waker(Waker::noop()))
        else {
            return;
        };
        use pheromone_core::multistream::wire::Message;
        let mut bytes = Vec::with_capacity(64);
        Message::Header.encode(&mut bytes);
        Message::Protocol(GOAWAY_PROTOCOL).encode(&mut bytes);
        // A fresh stream has credit for far more than these few bytes.
        {
            let written = send.write_chunk(bytes::Bytes::from(bytes));
            let mut written = std::pin::pin!(written);
            let _ = written
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()));
        }
        let _ = send.finish();
        *self.goaway.lock().unwrap_or_else(|e| e.into_inner()) = Some(recv);
    }

    pub(super) async fn closed(&self) -> ConnectionError {
        let e = self.conn.closed().await;
        self.map_error(e)
    }
}
