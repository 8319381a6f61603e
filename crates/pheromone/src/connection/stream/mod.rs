//! One yamux stream as a tokio `AsyncRead + AsyncWrite`.
//!
//! Reads take `Bytes` chunks out of the session and keep the unread rest locally, so the
//! lock is taken once per chunk, not per caller buffer. Writes copy into the connection's
//! send queue (the session's outgoing buffer) and leave it to the driver to send (see
//! `writer.rs`); they wait when the send window is exhausted or the queue is at its
//! high-water mark. An owned chunk (`poll_write_owned`) of 16 KiB or more is not copied:
//! the writer seals it in place. A lazy protocol proposal the peer is not known to support holds the
//! first write back until the peer confirmed it. Dropping a stream tells the session, which
//! closes it with FIN (never a reset: that would destroy what we wrote).
//!
//! Over QUIC the same handle wraps a quinn stream pair (`Io::Quic`): reads and writes go to
//! quinn, which buffers, flow-controls and sends them; the negotiation logic here (lazy
//! proposals, the write gate, pushed-back bytes, counters) is shared by both.

use super::quic::QuicShared;
use super::shared::Shared;
use crate::negotiate::NegotiateError;
use bytes::{Buf, Bytes, BytesMut};
use pheromone_core::multistream::Dialer;
use pheromone_core::yamux::{CopyOutcome, ReadOutcome, StreamId, StreamState};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

mod quic_io;
mod read;
mod write;

/// Owned chunks of at least this many bytes are sealed in place by the writer
/// ([`Stream::poll_write_owned`]); smaller ones are copied into the send queue, where they
/// share Noise frames with the rest.
const OWNED_MIN: usize = 16 * 1024;

/// What a stream kept between exchanges can do next (see [`Stream::reuse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// Open both ways and drained: it can carry another exchange.
    Ready,
    /// Ended, half-ended, or holding unread bytes: it cannot.
    Ended,
    /// Its connection takes no new streams: it should be closed cleanly, not reused.
    WindingDown,
}

/// A bidirectional byte stream multiplexed over a [`Connection`](super::Connection).
pub struct Stream {
    io: Io,
    /// Received bytes handed out by the session but not yet read by the caller.
    unread: Bytes,
    eof: bool,
    /// A lazy protocol proposal whose confirmation has not been read yet.
    confirmation: Option<Box<PendingConfirmation>>,
    /// The peer refused our proposal (`Unsupported`) or broke the negotiation
    /// (`InvalidData`): reads and writes fail with this kind from then on.
    refused: Option<io::ErrorKind>,
    /// Negotiation bytes to send in front of the first write (or before the first read), so
    /// a lazy proposal and the request behind it leave in one frame.
    prefix: Option<Bytes>,
    /// Its protocol's counters, once negotiated (see [`Stream::set_protocol`]).
    meter: Option<Arc<crate::metrics::ProtocolCounters>>,
}

/// Where a stream's bytes go.
enum Io {
    /// A yamux stream of our own driver's session.
    Yamux {
        id: StreamId,
        shared: Arc<Shared>,
        /// The queue take (`State::takes`) this stream last wrote after, and the bytes it
        /// has queued since: its share of the send queue (see [`allowance`]).
        queued_since_take: (u64, usize),
    },
    /// A QUIC stream (boxed: two quinn handles and the connection's).
    Quic(Box<QuicIo>),
}

struct QuicIo {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    shared: Arc<QuicShared>,
    /// Whether any byte came from the peer on this stream.
    received: bool,
    /// Whether the peer refused the stream before serving it (see [`QuicIo::sort_error`]).
    refused: bool,
}

/// The lazy dialer and the bytes read while checking the listener's confirmation.
struct PendingConfirmation {
    dialer: Dialer,
    buf: BytesMut,
    /// The peer is not known to speak the protocol: the first write waits for the
    /// confirmation. A listener that refuses reads what follows the proposal as its next
    /// proposal (js-libp2p aborts the stream on it; any listener may misread data that
    /// happens to look like a proposal), so data goes behind a proposal unconfirmed only
    /// where identify said the peer supports it.
    gate_writes: bool,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let peer = match &self.io {
            Io::Yamux { shared, .. } => shared.peer,
            Io::Quic(q) => q.shared.peer,
        };
        f.debug_struct("Stream")
            .field("id", &self.id())
            .field("peer", &peer)
            .finish()
    }
}

impl Stream {
    pub(super) fn new(id: StreamId, shared: Arc<Shared>) -> Self {
        Self::with_io(Io::Yamux {
            id,
            shared,
            queued_since_take: (0, 0),
        })
    }

    pub(super) fn quic(
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        shared: Arc<QuicShared>,
    ) -> Self {
        Self::with_io(Io::Quic(Box::new(QuicIo {
            send,
            recv,
            shared,
            received: false,
            refused: false,
        })))
    }

    fn with_io(io: Io) -> Self {
        Self {
            io,
            unread: Bytes::new(),
            eof: false,
            confirmation: None,
            refused: None,
            prefix: None,
            meter: None,
        }
    }

    fn traffic(&self) -> &crate::metrics::Traffic {
        match &self.io {
            Io::Yamux { shared, .. } => &shared.traffic,
            Io::Quic(q) => &q.shared.traffic,
        }
    }

    /// Counts this stream as one of `protocol`'s, opened in `direction`, and its bytes
    /// from now on under that protocol's label (`other` for one the node does not serve).
    pub(crate) fn set_protocol(&mut self, protocol: &str, direction: super::Direction) {
        let counters = match &self.io {
            Io::Yamux { shared, .. } => shared.counters.get(),
            Io::Quic(q) => q.shared.counters.get(),
        };
        if let Some(counters) = counters {
            let meter = counters.protocols.get(protocol);
            meter.stream_opened(direction);
            // Bytes read along with the negotiation belong to the protocol.
            meter
                .bytes_in
                .fetch_add(self.unread.len() as u64, Ordering::Relaxed);
            self.meter = Some(meter);
        }
    }

    /// Counts `n` payload bytes received: one relaxed add per chunk, not per byte.
    fn count_in(&self, n: usize) {
        let n = n as u64;
        self.traffic().bytes_in.fetch_add(n, Ordering::Relaxed);
        if let Some(m) = &self.meter {
            m.bytes_in.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts `n` payload bytes sent: one relaxed add per write call.
    fn count_out(&self, n: usize) {
        let n = n as u64;
        self.traffic().bytes_out.fetch_add(n, Ordering::Relaxed);
        if let Some(m) = &self.meter {
            m.bytes_out.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The stream's number on the wire: the yamux stream id, or the QUIC stream id.
    pub fn id(&self) -> u64 {
        match &self.io {
            Io::Yamux { id, .. } => u64::from(id.get()),
            Io::Quic(q) => q.send.id().index(),
        }
    }

    /// Whether the peer accepted this stream (sent its ACK). A stream we opened that is
    /// reset while still unacknowledged was refused by the peer before any application on
    /// its side saw it (its stream limit, or it is going away), so a request on it was not
    /// processed and may be retried elsewhere. Always true for inbound streams.
    /// Over QUIC, false for a stream the peer refused (reset with our refusal code, or a
    /// draining close before it sent a byte: see `docs/protocols/quic.md`).
    pub fn is_acknowledged(&self) -> bool {
        match &self.io {
            Io::Yamux { id, shared, .. } => shared.is_acknowledged(*id),
            Io::Quic(q) => !q.refused,
        }
    }

    /// Whether the stream can carry another exchange of a protocol that frames its
    /// messages: both directions open, nothing received and unread, no negotiation
    /// pending, and the connection not going away.
    pub(crate) fn is_open_and_drained(&mut self) -> bool {
        self.reuse() == Reuse::Ready
    }

    /// Whether the stream, kept between exchanges, can carry another one; one look at the
    /// connection's state.
    pub(crate) fn reuse(&mut self) -> Reuse {
        if !self.unread.is_empty()
            || self.eof
            || self.confirmation.is_some()
            || self.prefix.is_some()
        {
            return Reuse::Ended;
        }
        let (id, shared) = match &mut self.io {
            Io::Yamux { id, shared, .. } => (*id, &*shared),
            Io::Quic(q) => {
                if q.shared.is_going_away() {
                    return Reuse::WindingDown;
                }
                // Reusable while a read would have to wait; what a read finds instead is
                // kept for the caller, and ends the reuse.
                let mut cx = Context::from_waker(std::task::Waker::noop());
                return match q.poll_chunk(&mut cx) {
                    Poll::Pending => Reuse::Ready,
                    Poll::Ready(Ok(Some(bytes))) => {
                        self.unread = bytes;
                        Reuse::Ended
                    }
                    Poll::Ready(Ok(None)) => {
                        self.eof = true;
                        Reuse::Ended
                    }
                    Poll::Ready(Err(_)) => Reuse::Ended,
                };
            }
        };
        let state = shared.lock();
        // A connection that takes no new streams is winding down: its streams are not
        // kept for more requests either.
        if state.is_going_away() {
            return Reuse::WindingDown;
        }
        if state.session.stream_state(id) == Some(StreamState::Open)
            && state.session.buffered(id) == Some(0)
        {
            Reuse::Ready
        } else {
            Reuse::Ended
        }
    }

    /// Resets the stream: the remote sees an error, not an orderly end.
    pub fn reset(&mut self) {
        match &mut self.io {
            Io::Yamux { id, shared, .. } => {
                let mut state = shared.lock();
                state.session.reset(*id);
                shared.send_queued(state);
            }
            Io::Quic(q) => {
                let _ = q.send.reset(0u32.into());
                let _ = q.recv.stop(0u32.into());
            }
        }
    }

    /// Queues `bytes` to go out in front of the first write (a lazy protocol proposal).
    pub(crate) fn set_prefix(&mut self, bytes: Bytes) {
        self.prefix = Some(bytes);
    }

    /// Sends a pending prefix now (before a read, which may wait for an answer to it).
    fn send_prefix(&mut self) -> io::Result<()> {
        let Some(prefix) = self.prefix.take() else {
            return Ok(());
        };
        match &mut self.io {
            Io::Yamux { id, shared, .. } => {
                let mut state = shared.lock();
                queue_prefix(&mut state.session, *id, &prefix)?;
                shared.send_queued(state);
                Ok(())
            }
            Io::Quic(q) => {
                // A fresh stream has credit for far more than a proposal; a connection
                // out of credit keeps the rest for the next write.
                let rest = q.write_prefix(prefix)?;
                self.prefix = rest;
                Ok(())
            }
        }
    }

    /// Puts bytes read past a negotiation back in front of the stream.
    pub(crate) fn push_unread(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        if self.unread.is_empty() {
            self.unread = bytes;
        } else {
            // Negotiation read less than a chunk; the chunk's rest follows its bytes.
            let mut joined = BytesMut::with_capacity(bytes.len() + self.unread.len());
            joined.extend_from_slice(&bytes);
            joined.extend_from_slice(&self.unread);
            self.unread = joined.freeze();
        }
    }

    /// Makes the first read check a lazy dialer's confirmation before returning data; the
    /// first write waits for it too unless the peer is known to speak the protocol (see
    /// [`Stream::peer_speaks`]).
    pub(crate) fn expect_confirmation(&mut self, dialer: Dialer) {
        let gate_writes = !dialer.may_write().is_some_and(|p| self.peer_speaks(p));
        self.confirmation = Some(Box::new(PendingConfirmation {
            dialer,
            buf: BytesMut::new(),
            gate_writes,
        }));
    }

    /// Whether the peer listed `protocol` in identify, so data may follow a proposal of it
    /// before the confirmation (0-RTT).
    pub(crate) fn peer_speaks(&self, protocol: &str) -> bool {
        let supports = match &self.io {
            Io::Yamux { shared, .. } => shared.remote_supports(protocol),
            Io::Quic(q) => q.shared.remote_supports(protocol),
        };
        supports == Some(true)
    }

    /// Holds a write back until the peer confirmed a proposal not known to be supported;
    /// fails it if the peer refused. Bytes read past the confirmation are kept for reads.
    fn poll_write_gate(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_confirmed(cx, false)
    }

    /// Waits for a pending confirmation: always when `closing` (our FIN must not reach a
    /// listener before its handler took the stream over: js-libp2p 3.x loses a FIN that
    /// arrives during its negotiation, and its handler then never sees the end), else only
    /// for gated writes.
    fn poll_confirmed(&mut self, cx: &mut Context<'_>, closing: bool) -> Poll<io::Result<()>> {
        if let Some(kind) = self.refused {
            return Poll::Ready(Err(refusal(kind)));
        }
        if !self
            .confirmation
            .as_ref()
            .is_some_and(|c| c.gate_writes || closing)
        {
            return Poll::Ready(Ok(()));
        }
        match self.poll_chunk_as(cx, true) {
            Poll::Ready(Ok(Some(bytes))) => {
                self.push_unread(bytes);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(None)) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.confirmation.is_none() => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Reads the next chunk as `Bytes` without copying; `None` at the end of the stream.
    pub async fn read_chunk(&mut self) -> io::Result<Option<Bytes>> {
        if !self.unread.is_empty() {
            return Ok(Some(std::mem::take(&mut self.unread)));
        }
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// Polls for the next chunk as `Bytes` without copying; `None` at the end of the
    /// stream. The poll form of [`Stream::read_chunk`], for splicing streams by hand.
    pub fn poll_read_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        if !self.unread.is_empty() {
            return Poll::Ready(Ok(Some(std::mem::take(&mut self.unread))));
        }
        self.poll_chunk(cx)
    }

    pub(super) fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        self.poll_chunk_as(cx, false)
    }

    /// [`Stream::poll_chunk`] for the reader, or for a writer waiting at the negotiation
    /// gate (`gate`), whose waker has a slot of its own so that a reader polling the same
    /// stream from another task is not forgotten.
    fn poll_chunk_as(
        &mut self,
        cx: &mut Context<'_>,
        gate: bool,
    ) -> Poll<io::Result<Option<Bytes>>> {
        if let Some(kind) = self.refused {
            return Poll::Ready(Err(refusal(kind)));
        }
        if self.prefix.is_some() {
            if let Err(e) = self.send_prefix() {
                return Poll::Ready(Err(e));
            }
        }
        let Some(mut pending) = self.confirmation.take() else {
            return self.poll_raw_chunk(cx, gate);
        };
        loop {
            match self.poll_raw_chunk(cx, gate) {
                Poll::Ready(Ok(Some(bytes))) => {
                    pending.buf.extend_from_slice(&bytes);
                    pending.dialer.handle_input(&mut pending.buf);
                }
                Poll::Ready(Ok(None)) => pending.dialer.handle_eof(),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.confirmation = Some(pending);
                    return Poll::Pending;
                }
            }
            match pending.dialer.poll_outcome() {
                None => continue,
                Some(Ok(_)) => {
                    let rest = pending.buf.split().freeze();
                    if rest.is_empty() {
                        return self.poll_raw_chunk(cx, gate);
                    }
                    return Poll::Ready(Ok(Some(rest)));
                }
                Some(Err(e)) => {
                    self.eof = true;
                    let kind = match e {
                        pheromone_core::multistream::NegotiationError::ProtocolRejected {
                            ..
                        } => io::ErrorKind::Unsupported,
                        _ => io::ErrorKind::InvalidData,
                    };
                    self.refused = Some(kind);
                    return Poll::Ready(Err(io::Error::new(kind, NegotiateError::from(e))));
                }
            }
        }
    }

    fn poll_raw_chunk(
        &mut self,
        cx: &mut Context<'_>,
        gate: bool,
    ) -> Poll<io::Result<Option<Bytes>>> {
        if self.eof {
            return Poll::Ready(Ok(None));
        }
        if let Io::Quic(q) = &mut self.io {
            let result = q.poll_chunk(cx);
            match &result {
                Poll::Ready(Ok(Some(bytes))) => self.count_in(bytes.len()),
                Poll::Ready(Ok(None)) => self.eof = true,
                _ => {}
            }
            return result;
        }
        let Io::Yamux { id, shared, .. } = &self.io else {
            return Poll::Ready(Ok(None));
        };
        let id = *id;
        let mut state = shared.lock();
        let queued = state.session.outgoing().len();
        let outcome = state.session.read(id);
        let window_update = state.session.outgoing().len() > queued;
        let result = match outcome {
            Ok(ReadOutcome::Data(bytes)) => {
                self.count_in(bytes.len());
                Poll::Ready(Ok(Some(bytes)))
            }
            Ok(ReadOutcome::Eof) => {
                self.eof = true;
                Poll::Ready(Ok(None))
            }
            Ok(ReadOutcome::Pending) => match &state.closed {
                Some(e) => Poll::Ready(Err(e.clone().into())),
                None => {
                    if let Some(w) = state.wakers.get_mut(&id) {
                        let slot = if gate { &mut w.gate } else { &mut w.reader };
                        *slot = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
            },
            Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, e))),
        };
        if window_update {
            shared.send_queued(state);
        }
        result
    }
}

/// How many bytes a stream may queue now, for a write of `len` bytes. The send queue holds
/// at most the high-water mark. A stream that has queued little since the driver last took
/// the queue (a request, an answer: at most a sixteenth of the mark, this write included)
/// may fill it to the brim. Beyond that — a bulk transfer — it may fill it only to three
/// quarters, and queue at most half the mark between two takes. So a bulk stream never
/// locks the short writes of the others out, and bulk streams take turns.
/// `queued_since_take` is the stream's record of the take it last wrote after and what it
/// queued since.
fn allowance(
    queued_since_take: &mut (u64, usize),
    len: usize,
    high_water: usize,
    state: &mut super::shared::State,
) -> usize {
    let room = high_water.saturating_sub(state.queued());
    if queued_since_take.0 != state.takes {
        *queued_since_take = (state.takes, 0);
    }
    let used = queued_since_take.1;
    if used + len <= high_water / 16 {
        return room;
    }
    let share = (high_water / 2).saturating_sub(used);
    room.saturating_sub(high_water / 4).min(share)
}

/// What reads and writes report after the negotiation failed (the first report carries the
/// negotiation error itself).
fn refusal(kind: io::ErrorKind) -> io::Error {
    io::Error::new(
        kind,
        "protocol negotiation failed: the peer refused or misbehaved",
    )
}

/// Queues a negotiation prefix whole in the session, ahead of anything written after it.
fn queue_prefix(
    session: &mut pheromone_core::yamux::Session,
    id: StreamId,
    prefix: &[u8],
) -> io::Result<()> {
    match session.write(id, prefix) {
        // A fresh stream has at least the spec's 256 KiB window; a proposal is < 1 KiB.
        Ok(n) if n == prefix.len() => Ok(()),
        Ok(_) => Err(io::Error::other(
            "stream window too small for the protocol proposal",
        )),
        Err(e) => Err(io::Error::new(io::ErrorKind::BrokenPipe, e)),
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.send_prefix();
        match &mut self.io {
            Io::Yamux { id, shared, .. } => {
                let mut state = shared.lock();
                let timer = state.session.poll_timeout();
                let queued = state.session.outgoing().len();
                state.session.drop_stream(std::time::Instant::now(), *id);
                // A stream left waiting for the peer's FIN arms a grace timer only the
                // driver runs.
                let rearm = state.session.poll_timeout() != timer;
                state.wakers.remove(id);
                // A closing driver waits for the last stream to go; a stream that ended
                // cleanly queues nothing, so nothing else would wake it.
                if state.closing || rearm {
                    drop(state);
                    shared.wake_driver();
                } else if state.session.outgoing().len() > queued {
                    shared.send_queued(state);
                }
            }
            Io::Quic(q) => {
                // quinn finishes the send side when the handle drops; a graceful close
                // waits until the peer acknowledged it.
                let acked = q.send.stopped();
                q.shared.stream_ended(Box::pin(async move {
                    let _ = acked.await;
                }));
            }
        }
    }
}
