//! The state a connection's driver and its streams share: the yamux session and the wakers
//! of everything waiting on it.
//!
//! Every method takes the lock for a few non-blocking steps and releases it before waking
//! anyone; nothing here awaits. Errors are stored once (`closed`) and handed to every later
//! caller, so a stream learns why its connection died.
//!
//! Sending is write-through: whoever queued bytes in the session (a stream's write, a read
//! that returns window, the driver) encrypts and writes them to the socket at once if the
//! writer lock is free and the socket takes them, so a request costs no wake-up of the
//! driver task. Only when the socket is full, or another task holds the writer, is the
//! driver woken to finish the job. A large stream write goes one step further: only its
//! frame header is queued, and its body is sealed straight from the caller's buffer, so
//! the body is read once, by the cipher ([`Shared::send_through`]). Lock order: `writer`
//! before `state`.

use super::send_buffer::SendBuffer;
use super::socket::Socket;
use super::ConnectionError;
use bytes::BytesMut;
use pheromone_core::identity::PeerId;
use pheromone_core::noise::{encrypted_len, NoiseSender};
use pheromone_core::yamux::{self, Session, StreamId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Wakers of one stream's reader and writer.
#[derive(Default)]
pub(super) struct StreamWakers {
    pub(super) reader: Option<Waker>,
    pub(super) writer: Option<Waker>,
    /// A writer waiting for the peer's protocol confirmation: woken with the reader.
    pub(super) gate: Option<Waker>,
}

/// Everything behind the lock.
pub(super) struct State {
    pub(super) session: Session,
    /// foldhash (seeded per process): looked up on every read and write.
    pub(super) wakers: HashMap<StreamId, StreamWakers, foldhash::fast::RandomState>,
    /// Writers parked because the outgoing buffer is above the high-water mark.
    pub(super) parked_writers: Vec<Waker>,
    pub(super) accept_waker: Option<Waker>,
    pub(super) driver_waker: Option<Waker>,
    pub(super) close_wakers: Vec<Waker>,
    /// Tasks waiting for the connection to stop taking new streams (GoAway either way,
    /// closing, closed).
    pub(super) going_away_wakers: Vec<Waker>,
    /// Set once: why the connection ended.
    pub(super) closed: Option<ConnectionError>,
    /// `close()` was called: GoAway is queued and the driver winds down.
    pub(super) closing: bool,
    pub(super) rtt: Option<Duration>,
    /// Streams opened or accepted so far, both directions (never decreases).
    pub(super) streams_total: u64,
}

/// The sending half: the Noise sender and the ciphertext not yet taken by the socket.
pub(super) struct Writer {
    sender: NoiseSender,
    /// Ciphertext waiting for the socket (sealed straight into it).
    buf: SendBuffer,
    /// The plaintext buffer swapped with the session's outgoing one, so neither reallocates.
    spare: BytesMut,
}

/// What a flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flush {
    /// Everything queued is in the socket.
    Done,
    /// The socket is full; the driver must wait for it to become writable.
    Blocked,
}

/// The shared half of a connection.
pub(crate) struct Shared {
    state: Mutex<State>,
    writer: Mutex<Writer>,
    pub(super) socket: Socket,
    pub(super) peer: PeerId,
    pub(super) high_water: usize,
    /// Ciphertext waiting in the writer: its length, readable without the writer lock.
    backlog: AtomicUsize,
    /// A writer parked on `parked_writers` until `backlog` falls below `high_water`.
    backlog_waiters: AtomicBool,
    /// The protocols the peer listed in identify, once known: proposals of these may carry
    /// data before the peer's confirmation (see `Stream`'s negotiation gate).
    remote_protocols: Mutex<Option<Arc<[String]>>>,
    /// Stream payload carried, both ways (relaxed adds per read chunk and write call).
    pub(crate) traffic: crate::metrics::Traffic,
    /// The endpoint's counters, set when the endpoint adopts the connection; streams find
    /// their protocol's counters there at negotiation.
    pub(crate) counters: std::sync::OnceLock<std::sync::Arc<crate::metrics::Counters>>,
}

/// Wakers collected under the lock, woken after it is released.
#[derive(Default)]
pub(super) struct ToWake(Vec<Waker>);

impl ToWake {
    pub(super) fn push(&mut self, waker: Option<Waker>) {
        if let Some(w) = waker {
            self.0.push(w);
        }
    }

    pub(super) fn wake(self) {
        for w in self.0 {
            w.wake();
        }
    }
}

impl Shared {
    pub(crate) fn new(
        session: Session,
        socket: Socket,
        sender: NoiseSender,
        peer: PeerId,
        high_water: usize,
    ) -> Self {
        Self {
            writer: Mutex::new(Writer {
                sender,
                buf: SendBuffer::with_capacity(256 * 1024),
                spare: BytesMut::with_capacity(256 * 1024),
            }),
            socket,
            remote_protocols: Mutex::new(None),
            state: Mutex::new(State {
                session,
                wakers: HashMap::default(),
                parked_writers: Vec::new(),
                accept_waker: None,
                driver_waker: None,
                close_wakers: Vec::new(),
                going_away_wakers: Vec::new(),
                closed: None,
                closing: false,
                rtt: None,
                streams_total: 0,
            }),
            peer,
            high_water,
            backlog: AtomicUsize::new(0),
            backlog_waiters: AtomicBool::new(false),
            traffic: crate::metrics::Traffic::default(),
            counters: std::sync::OnceLock::new(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug elsewhere; keep serving with the state as
        // it was rather than poisoning every stream of the connection.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Encrypts what the session has queued and writes what the socket takes without
    /// blocking. Callers hold the writer; see [`Shared::flush_or_wake`] for the usual entry.
    pub(super) fn flush_locked(&self, writer: &mut Writer) -> Result<Flush, ConnectionError> {
        loop {
            if writer.buf.is_empty() && !self.take_outgoing(writer)? {
                return Ok(Flush::Done);
            }
            match self.socket.try_write(writer.buf.pending()) {
                Ok(0) => return Err(ConnectionError::ClosedByRemote { peer: self.peer }),
                Ok(n) => {
                    writer.buf.advance(n);
                    self.note_backlog(writer);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                Err(e) => {
                    return Err(ConnectionError::Io {
                        peer: self.peer,
                        reason: e.to_string(),
                    })
                }
            }
        }
    }

    /// Moves the session's outgoing plaintext into the writer as ciphertext; false when
    /// there was nothing to move.
    fn take_outgoing(&self, writer: &mut Writer) -> Result<bool, ConnectionError> {
        let mut state = self.lock();
        if state.session.outgoing().is_empty() {
            return Ok(false);
        }
        self.seal_outgoing(state, writer, &[])?;
        Ok(true)
    }

    /// Seals what the session queued, then `body`, into the writer's buffer; releases the
    /// state lock first (sealing takes the time, and the writer lock keeps the order).
    fn seal_outgoing(
        &self,
        mut state: MutexGuard<'_, State>,
        writer: &mut Writer,
        body: &[u8],
    ) -> Result<(), ConnectionError> {
        let mut to_wake = ToWake::default();
        std::mem::swap(state.session.outgoing(), &mut writer.spare);
        for w in state.parked_writers.drain(..) {
            to_wake.push(Some(w));
        }
        drop(state);
        to_wake.wake();
        let Writer { sender, buf, spare } = writer;
        let result = buf.append_with(encrypted_len(spare.len() + body.len()), |room| {
            sender.encrypt_pair_into(spare, body, room)
        });
        spare.clear();
        self.note_backlog(writer);
        result.map(|_| ()).map_err(|e| ConnectionError::Noise {
            peer: self.peer,
            reason: e.to_string(),
        })
    }

    /// The writer, if no one else holds it: then a large write may be sealed straight
    /// from the caller's buffer ([`Shared::send_through`]).
    pub(super) fn try_writer(&self) -> Option<MutexGuard<'_, Writer>> {
        match self.writer.try_lock() {
            Ok(writer) => Some(writer),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Whether the ciphertext waiting for the socket is above the high-water mark; if so,
    /// the writers the caller parks on `parked_writers` (holding the state lock from this
    /// call until then) are woken once it falls below. Large writes wait for that rather
    /// than be copied into the session's queue behind a full socket, where the copy would
    /// only wait to be sealed.
    pub(super) fn over_backlog(&self) -> bool {
        if self.backlog.load(Ordering::SeqCst) < self.high_water {
            return false;
        }
        self.backlog_waiters.store(true, Ordering::SeqCst);
        // Checked again after announcing the wait: a flush that drained the backlog before
        // it saw the announcement has lowered the count, and the caller goes on instead.
        self.backlog.load(Ordering::SeqCst) >= self.high_water
    }

    /// Records the writer's backlog and wakes writers waiting for it to fall.
    fn note_backlog(&self, writer: &Writer) {
        let backlog = writer.buf.pending().len();
        self.backlog.store(backlog, Ordering::SeqCst);
        if backlog < self.high_water && self.backlog_waiters.swap(false, Ordering::SeqCst) {
            let parked = std::mem::take(&mut self.lock().parked_writers);
            for w in parked {
                w.wake();
            }
        }
    }

    /// Sends a data frame whose header the session just queued
    /// ([`Session::write_header`](pheromone_core::yamux::Session::write_header)) with
    /// `body` sealed straight from the caller's buffer: the body is read once, by the
    /// cipher, instead of being copied into the session's queue first. Writes the socket
    /// at once unless the connection is corked; the driver finishes what the socket does
    /// not take.
    pub(super) fn send_through(
        &self,
        state: MutexGuard<'_, State>,
        mut writer: MutexGuard<'_, Writer>,
        body: &[u8],
    ) -> Result<(), ConnectionError> {
        if let Err(e) = self.seal_outgoing(state, &mut writer, body) {
            drop(writer);
            self.fail(e.clone());
            return Err(e);
        }
        if super::cork::defer_flush(self) {
            return Ok(());
        }
        let flushed = matches!(self.flush_locked(&mut writer), Ok(Flush::Done));
        drop(writer);
        if !flushed {
            self.wake_driver();
        }
        Ok(())
    }

    /// The driver's flush: waits for the writer lock (held only for non-blocking steps).
    pub(super) fn flush(&self) -> Result<Flush, ConnectionError> {
        let mut writer = self.lock_writer();
        self.flush_locked(&mut writer)
    }

    /// Sends what was just queued from the caller's task if it can be done at once, and
    /// otherwise wakes the driver to do it.
    pub(super) fn flush_or_wake(&self) {
        if super::cork::defer_flush(self) {
            return;
        }
        let flushed = match self.writer.try_lock() {
            Ok(mut writer) => matches!(self.flush_locked(&mut writer), Ok(Flush::Done)),
            Err(_) => false,
        };
        if !flushed {
            self.wake_driver();
        }
    }

    pub(super) fn wake_driver(&self) {
        let driver = self.lock().driver_waker.clone();
        if let Some(w) = driver {
            w.wake();
        }
    }

    pub(super) fn open_stream(&self) -> Result<StreamId, ConnectionError> {
        let mut state = self.lock();
        if let Some(e) = &state.closed {
            return Err(e.clone());
        }
        if state.closing {
            return Err(ConnectionError::ClosedLocally { peer: self.peer });
        }
        let id = state
            .session
            .open_stream()
            .map_err(|e| self.yamux_open_error(e))?;
        state.wakers.insert(id, StreamWakers::default());
        state.streams_total += 1;
        // The SYN leaves with the stream's first write, read, flush or drop, whichever
        // comes first, so it shares a frame with the request.
        Ok(id)
    }

    fn yamux_open_error(&self, e: yamux::YamuxError) -> ConnectionError {
        match e {
            yamux::YamuxError::RemoteGoAway(_) | yamux::YamuxError::LocalGoAway => {
                ConnectionError::GoingAway { peer: self.peer }
            }
            yamux::YamuxError::TooManyStreams(_) => ConnectionError::StreamLimit {
                peer: self.peer,
                reason: e.to_string(),
            },
            other => ConnectionError::Yamux {
                peer: self.peer,
                reason: other.to_string(),
            },
        }
    }

    /// The next inbound stream. Accepting queues its ACK; `send_ack` has the driver send
    /// it now, otherwise it leaves with the stream's first flush.
    pub(super) fn poll_accept(
        &self,
        cx: &mut Context<'_>,
        send_ack: bool,
    ) -> Poll<Result<StreamId, ConnectionError>> {
        let mut state = self.lock();
        if let Some(id) = state.session.accept_stream() {
            state.wakers.insert(id, StreamWakers::default());
            state.streams_total += 1;
            let driver = state.driver_waker.clone().filter(|_| send_ack);
            drop(state);
            if let Some(w) = driver {
                w.wake();
            }
            return Poll::Ready(Ok(id));
        }
        if let Some(e) = &state.closed {
            return Poll::Ready(Err(e.clone()));
        }
        state.accept_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    pub(super) fn is_closed(&self) -> bool {
        let state = self.lock();
        state.closed.is_some() || state.closing
    }

    pub(super) fn is_going_away(&self) -> bool {
        self.lock().is_going_away()
    }

    /// Ready once no new stream can be opened here any more (see
    /// [`Shared::is_going_away`]).
    pub(super) fn poll_going_away(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        if state.is_going_away() {
            return Poll::Ready(());
        }
        if !state
            .going_away_wakers
            .iter()
            .any(|w| w.will_wake(cx.waker()))
        {
            state.going_away_wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Whether the peer acknowledged (accepted) a stream we opened; true for inbound ones.
    pub(super) fn is_acknowledged(&self, id: StreamId) -> bool {
        self.lock().session.is_acknowledged(id).unwrap_or(false)
    }

    pub(super) fn streams_total(&self) -> u64 {
        self.lock().streams_total
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

    /// Whether the peer listed `protocol` in identify; `None` before identify answered.
    pub(super) fn remote_supports(&self, protocol: &str) -> Option<bool> {
        self.remote_protocols
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|list| list.iter().any(|p| p == protocol))
    }

    pub(super) fn num_streams(&self) -> usize {
        self.lock().session.num_streams()
    }

    pub(super) fn rtt(&self) -> Option<Duration> {
        self.lock().rtt
    }

    pub(super) fn begin_close(&self) {
        let mut state = self.lock();
        if state.closing || state.closed.is_some() {
            return;
        }
        state.closing = true;
        state.session.go_away(yamux::GoAwayCode::Normal);
        let mut to_wake = ToWake::default();
        to_wake.push(state.driver_waker.clone());
        state.take_going_away_wakers(&mut to_wake);
        drop(state);
        to_wake.wake();
    }

    pub(super) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<ConnectionError> {
        let mut state = self.lock();
        match &state.closed {
            Some(e) => Poll::Ready(e.clone()),
            None => {
                // A future polled again (e.g. in a `select!` loop) must not add a waker
                // each time.
                if !state.close_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    state.close_wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// Records why the connection ended, shuts the socket down (the handle and streams may
    /// keep `Shared` alive, but the peer must see the end now) and wakes everyone waiting.
    pub(super) fn fail(&self, error: ConnectionError) {
        self.shutdown(std::net::Shutdown::Both);
        self.mark_closed(error);
    }

    /// Shuts the socket down in one or both directions (errors mean it is gone already).
    pub(super) fn shutdown(&self, how: std::net::Shutdown) {
        if let Err(e) = self.socket.shutdown(how) {
            tracing::trace!(peer = %self.peer, error = %e, "socket shutdown failed");
        }
    }

    /// Records why the connection ended and wakes everyone waiting on it, leaving the
    /// socket to the caller (a local close still lingers for the peer's end).
    pub(super) fn mark_closed(&self, error: ConnectionError) {
        let mut state = self.lock();
        if state.closed.is_none() {
            state.closed = Some(error);
        }
        let mut to_wake = ToWake::default();
        for (_, w) in state.wakers.iter_mut() {
            to_wake.push(w.reader.take());
            to_wake.push(w.writer.take());
            to_wake.push(w.gate.take());
        }
        for w in state.parked_writers.drain(..) {
            to_wake.push(Some(w));
        }
        to_wake.push(state.accept_waker.take());
        for w in state.close_wakers.drain(..) {
            to_wake.push(Some(w));
        }
        state.take_going_away_wakers(&mut to_wake);
        drop(state);
        to_wake.wake();
    }
}

impl State {
    pub(super) fn is_going_away(&self) -> bool {
        self.closed.is_some()
            || self.closing
            || self.session.remote_go_away().is_some()
            || self.session.local_go_away().is_some()
    }

    /// Hands the going-away waiters to `to_wake` (the connection just stopped taking new
    /// streams).
    pub(super) fn take_going_away_wakers(&mut self, to_wake: &mut ToWake) {
        for w in self.going_away_wakers.drain(..) {
            to_wake.push(Some(w));
        }
    }
}
