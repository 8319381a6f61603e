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

    /// Waits until a write may make progress: the connection's send queue is below its
    /// high-water mark and the stream has send window (for QUIC: quinn takes bytes). Used
    /// where the stream stands in for a socket (a relayed circuit).
    pub(super) fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let (id, shared, queued_since_take) = match &mut self.io {
            Io::Yamux {
                id,
                shared,
                queued_since_take,
            } => (*id, &*shared, queued_since_take),
            // An empty write waits exactly while quinn would refuse bytes.
            Io::Quic(q) => {
                return match Pin::new(&mut q.send).poll_write(cx, &[]) {
                    Poll::Ready(Ok(_)) => Poll::Ready(Ok(())),
                    Poll::Ready(Err(e)) => Poll::Ready(Err(q.sort_error(e.into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        };
        let mut state = shared.lock();
        if let Some(e) = &state.closed {
            return Poll::Ready(Err(e.clone().into()));
        }
        // A circuit writes bulk (the inner connection's ciphertext): ready once a bulk
        // write may queue something, as `poll_write` decides.
        let bulk = shared.high_water;
        if allowance(queued_since_take, bulk, shared.high_water, &mut state) == 0 {
            state.parked_writers.push(cx.waker().clone());
            // The next take of the queue wakes us; make sure the driver is on it.
            shared.send_queued(state);
            return Poll::Pending;
        }
        match state.session.send_window(id) {
            Some(0) => {
                if let Some(w) = state.wakers.get_mut(&id) {
                    w.writer = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            // A window, or a stream the session no longer knows: the write reports which.
            _ => Poll::Ready(Ok(())),
        }
    }

    /// Writes the front of `chunk`, an owned buffer, and advances it past what was taken.
    /// A large chunk is not copied into the send queue: the queue gets its frame header
    /// and the writer seals the body straight from the chunk (a relay's splice passes the
    /// chunks it received on this way); over QUIC quinn keeps the chunk itself. Small ones
    /// are copied as by `poll_write`, where they share frames with the rest. Waits and
    /// fails as `poll_write` does.
    pub(crate) fn poll_write_owned(
        &mut self,
        cx: &mut Context<'_>,
        chunk: &mut Bytes,
    ) -> Poll<io::Result<usize>> {
        if chunk.len() < OWNED_MIN {
            let n = std::task::ready!(Pin::new(&mut *self).poll_write(cx, chunk))?;
            chunk.advance(n);
            return Poll::Ready(Ok(n));
        }
        match self.poll_write_gate(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        let prefix = self.prefix.take();
        let (id, shared, queued_since_take) = match &mut self.io {
            Io::Yamux {
                id,
                shared,
                queued_since_take,
            } => (*id, &*shared, queued_since_take),
            Io::Quic(q) => {
                if let Some(prefix) = prefix {
                    self.prefix = q.write_prefix(prefix)?;
                    if self.prefix.is_some() {
                        return q.poll_blocked(cx);
                    }
                }
                let result = q.poll_write_chunk(cx, chunk);
                if let Poll::Ready(Ok(n)) = &result {
                    self.count_out(*n);
                }
                return result;
            }
        };
        let mut state = shared.lock();
        if let Some(e) = &state.closed {
            return Poll::Ready(Err(e.clone().into()));
        }
        let room = allowance(
            queued_since_take,
            chunk.len(),
            shared.high_water,
            &mut state,
        );
        if room == 0 {
            self.prefix = prefix;
            state.parked_writers.push(cx.waker().clone());
            shared.send_queued(state);
            return Poll::Pending;
        }
        let mut queued = false;
        if let Some(prefix) = prefix {
            if let Err(e) = queue_prefix(&mut state.session, id, &prefix) {
                return Poll::Ready(Err(e));
            }
            queued = true;
        }
        let result = match state.session.write_header(id, chunk.len().min(room)) {
            Ok(0) => {
                if let Some(w) = state.wakers.get_mut(&id) {
                    w.writer = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Ok(n) => {
                // The body goes right behind the header just queued.
                let at = state.session.outgoing().len();
                state.bodies.push_back((at, chunk.split_to(n)));
                state.body_bytes += n;
                queued_since_take.1 += n;
                queued = true;
                Poll::Ready(Ok(n))
            }
            Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, e))),
        };
        if queued {
            shared.send_queued(state);
        }
        result
    }
}

impl QuicIo {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        let polled = {
            let mut read = std::pin::pin!(self.recv.read_chunk(usize::MAX, true));
            read.as_mut().poll(cx)
        };
        match polled {
            Poll::Ready(Ok(Some(chunk))) => {
                self.received = true;
                Poll::Ready(Ok(Some(chunk.bytes)))
            }
            Poll::Ready(Ok(None)) => Poll::Ready(Ok(None)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.sort_error(e.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes as much of `prefix` as quinn takes now; what is left, if anything.
    fn write_prefix(&mut self, mut prefix: Bytes) -> io::Result<Option<Bytes>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while !prefix.is_empty() {
            match Pin::new(&mut self.send).poll_write(&mut cx, &prefix) {
                Poll::Ready(Ok(n)) => prefix.advance(n),
                Poll::Ready(Err(e)) => return Err(self.sort_error(e.into())),
                Poll::Pending => return Ok(Some(prefix)),
            }
        }
        Ok(None)
    }

    /// Registers `cx` to be woken when quinn takes bytes again.
    fn poll_blocked<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match Pin::new(&mut self.send).poll_write(cx, &[]) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.sort_error(e.into()))),
            // Room appeared meanwhile: have the caller try again at once.
            Poll::Ready(Ok(_)) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write_chunk(
        &mut self,
        cx: &mut Context<'_>,
        chunk: &mut Bytes,
    ) -> Poll<io::Result<usize>> {
        let mut bufs = [std::mem::take(chunk)];
        let result = {
            let mut write = std::pin::pin!(self.send.write_chunks(&mut bufs));
            write.as_mut().poll(cx)
        };
        // quinn advanced the chunk past what it took.
        *chunk = std::mem::take(&mut bufs[0]);
        match result {
            Poll::Ready(Ok(written)) => Poll::Ready(Ok(written.bytes)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.sort_error(e.into()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl QuicIo {
    /// Sorts a quinn stream error. A refusal — the peer reset or stopped the stream with
    /// the refusal code, or closed the connection with the "drained" code (every stream it
    /// accepted had ended) before sending us a byte here — means no application of the
    /// peer's saw the stream, as an unacknowledged yamux reset does: it becomes a
    /// [`StreamRefused`](super::StreamRefused) reset, the stream reports itself
    /// unacknowledged (so a request may be retried elsewhere) and the connection going
    /// away. Anything else stays quinn's error.
    fn sort_error(&mut self, e: io::Error) -> io::Error {
        use super::quic::{CLOSE_DRAINED, STREAM_REFUSED};
        let drained = |c: &quinn::ConnectionError| {
            matches!(c, quinn::ConnectionError::ApplicationClosed(a)
                if a.error_code == quinn::VarInt::from_u32(CLOSE_DRAINED))
        };
        let refusal = quinn::VarInt::from_u32(STREAM_REFUSED);
        let refused = e.get_ref().is_some_and(|inner| {
            if let Some(r) = inner.downcast_ref::<quinn::ReadError>() {
                match r {
                    quinn::ReadError::Reset(code) => *code == refusal,
                    quinn::ReadError::ConnectionLost(c) => !self.received && drained(c),
                    _ => false,
                }
            } else if let Some(w) = inner.downcast_ref::<quinn::WriteError>() {
                match w {
                    quinn::WriteError::Stopped(code) => *code == refusal,
                    quinn::WriteError::ConnectionLost(c) => !self.received && drained(c),
                    _ => false,
                }
            } else {
                false
            }
        });
        if !refused {
            tracing::trace!(peer = %self.shared.peer, error = ?e.get_ref(), received = self.received, "QUIC stream error");
            return e;
        }
        self.refused = true;
        self.shared.remote_refused();
        io::Error::new(
            io::ErrorKind::ConnectionReset,
            super::StreamRefused {
                peer: self.shared.peer,
            },
        )
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

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The caller's buffer may arrive partly filled (tokio's `read_to_end` does this).
        let filled_at_entry = buf.filled().len();
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread[..n]);
            this.unread.advance(n);
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let result =
            if this.refused.is_some() || this.confirmation.is_some() || this.prefix.is_some() {
                // A negotiation to finish or report first: read it chunk by chunk.
                this.poll_read_chunks(cx, buf)
            } else {
                this.poll_copy(cx, buf)
            };
        match result {
            // Something was read already: return it rather than wait for more.
            Poll::Pending if buf.filled().len() != filled_at_entry => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

impl Stream {
    /// Copies what the session holds for this stream straight into `buf` (no `Bytes` per
    /// chunk, no allocation), under one lock; over QUIC, what quinn holds.
    fn poll_copy(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.eof {
            return Poll::Ready(Ok(()));
        }
        if let Io::Quic(q) = &mut self.io {
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            return match q.recv.poll_read_buf(cx, buf) {
                Poll::Ready(Ok(())) => {
                    let n = buf.filled().len() - before;
                    if n == 0 {
                        self.eof = true;
                    } else {
                        q.received = true;
                        self.count_in(n);
                    }
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(q.sort_error(e.into()))),
                Poll::Pending => Poll::Pending,
            };
        }
        let Io::Yamux { id, shared, .. } = &self.io else {
            return Poll::Ready(Ok(()));
        };
        let id = *id;
        let mut state = shared.lock();
        let queued = state.session.outgoing().len();
        let outcome = state
            .session
            .read_copy(id, buf.remaining(), |bytes| buf.put_slice(bytes));
        let window_update = state.session.outgoing().len() > queued;
        let result = match outcome {
            Ok(CopyOutcome::Copied(n)) => {
                self.count_in(n);
                Poll::Ready(Ok(()))
            }
            Ok(CopyOutcome::Eof) => {
                self.eof = true;
                Poll::Ready(Ok(()))
            }
            Ok(CopyOutcome::Pending) => match &state.closed {
                Some(e) => Poll::Ready(Err(e.clone().into())),
                None => {
                    if let Some(w) = state.wakers.get_mut(&id) {
                        w.reader = Some(cx.waker().clone());
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

    /// Fills `buf` from chunks while a negotiation is pending or was refused (the chunk
    /// path checks the confirmation and reports a refusal).
    fn poll_read_chunks(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while buf.remaining() > 0 {
            if self.unread.is_empty() {
                match self.poll_chunk(cx) {
                    Poll::Ready(Ok(Some(chunk))) => self.unread = chunk,
                    Poll::Ready(Ok(None)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let n = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread[..n]);
            self.unread.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_write_gate(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        let prefix = this.prefix.take();
        let (id, shared, queued_since_take) = match &mut this.io {
            Io::Yamux {
                id,
                shared,
                queued_since_take,
            } => (*id, &*shared, queued_since_take),
            Io::Quic(q) => {
                if let Some(prefix) = prefix {
                    this.prefix = q.write_prefix(prefix)?;
                    if this.prefix.is_some() {
                        return q.poll_blocked(cx);
                    }
                }
                let result = match Pin::new(&mut q.send).poll_write(cx, data) {
                    Poll::Ready(Err(e)) => Poll::Ready(Err(q.sort_error(e.into()))),
                    Poll::Ready(Ok(n)) => Poll::Ready(Ok(n)),
                    Poll::Pending => Poll::Pending,
                };
                if let Poll::Ready(Ok(n)) = &result {
                    this.count_out(*n);
                }
                return result;
            }
        };
        let mut state = shared.lock();
        if let Some(e) = &state.closed {
            return Poll::Ready(Err(e.clone().into()));
        }
        // The queue is bounded: a write takes what it may ([`allowance`]) and parks while
        // that is nothing. Taking the queue wakes the parked writers, oldest first.
        let room = allowance(queued_since_take, data.len(), shared.high_water, &mut state);
        if room == 0 && !data.is_empty() {
            this.prefix = prefix;
            state.parked_writers.push(cx.waker().clone());
            shared.send_queued(state);
            return Poll::Pending;
        }
        let mut queued = false;
        if let Some(prefix) = prefix {
            if let Err(e) = queue_prefix(&mut state.session, id, &prefix) {
                return Poll::Ready(Err(e));
            }
            queued = true;
        }
        let mut sent = 0;
        let result = match state.session.write(id, &data[..data.len().min(room)]) {
            Ok(0) if !data.is_empty() => {
                // The send window is exhausted: the peer's window update wakes us.
                if let Some(w) = state.wakers.get_mut(&id) {
                    w.writer = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Ok(n) => {
                queued |= n > 0;
                queued_since_take.1 += n;
                sent = n;
                Poll::Ready(Ok(n))
            }
            Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, e))),
        };
        if queued {
            shared.send_queued(state);
        } else {
            drop(state);
        }
        if sent > 0 {
            this.count_out(sent);
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Every write is already handed to the driver (or quinn), which sends it once the
        // tasks ready to run have queued theirs; a pending protocol proposal is handed over
        // now.
        Poll::Ready(self.get_mut().send_prefix())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.send_prefix()?;
        if let Io::Quic(q) = &mut this.io {
            if this.prefix.is_some() {
                return q.poll_blocked(cx);
            }
        }
        match this.poll_confirmed(cx, true) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        match &mut this.io {
            Io::Yamux { id, shared, .. } => {
                let mut state = shared.lock();
                let result = state.session.close_write(*id);
                shared.send_queued(state);
                match result {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, e))),
                }
            }
            // Finishing twice, or a stream the peer stopped, is a finished stream.
            Io::Quic(q) => {
                let _ = q.send.finish();
                Poll::Ready(Ok(()))
            }
        }
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
