//! The state a connection's driver and its streams share: the yamux session (whose
//! outgoing buffer is the connection's send queue) and the wakers of everything waiting on
//! it.
//!
//! Every method takes the one lock for a few non-blocking steps and releases it before
//! waking anyone; nothing here awaits, encrypts or touches the socket. Errors are stored
//! once (`closed`) and handed to every later caller, so a stream learns why its connection
//! died. How queued bytes reach the socket, and the lock discipline, are in `writer.rs`.

use super::socket::Socket;
use super::ConnectionError;
use bytes::Bytes;
use pheromone_core::identity::PeerId;
use pheromone_core::yamux::{self, Session, StreamId};
use std::collections::{HashMap, VecDeque};
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
    /// Writers parked because the send queue (the session's outgoing buffer) is at the
    /// high-water mark or their share of it is used; woken, oldest first, when the driver
    /// takes the queue.
    pub(super) parked_writers: Vec<Waker>,
    /// How many times the driver has taken the queue: a stream's share of the queue counts
    /// from the last take (see `stream::allowance`).
    pub(super) takes: u64,
    /// Owned data frame bodies handed over by `Stream::poll_write_owned`, each with the
    /// position in the session's outgoing buffer right after its frame header: the writer
    /// seals them in place there, so they are not copied into the queue.
    pub(super) bodies: VecDeque<(usize, Bytes)>,
    /// Bytes in `bodies`.
    pub(super) body_bytes: usize,
    /// Bytes were queued by a task other than the driver and the driver was woken to send
    /// them; cleared by the driver when it takes the queue. Later writers only append.
    pub(super) send_requested: bool,
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

/// The shared half of a connection.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Read and written only by the driver (its `Writer`); shared so that a shutdown can
    /// reach it from anywhere.
    pub(super) socket: Socket,
    pub(super) peer: PeerId,
    /// Most plaintext the send queue holds before stream writes park.
    pub(super) high_water: usize,
    /// The protocols the peer listed in identify, once known: proposals of these may carry
    /// data before the peer's confirmation (see `Stream`'s negotiation gate).
    remote_protocols: Mutex<Option<Arc<[String]>>>,
    /// Stream payload carried, both ways (relaxed adds per read chunk and write call).
    pub(crate) traffic: crate::metrics::Traffic,
    /// The endpoint's counters, set when the endpoint adopts the connection; streams find
    /// their protocol's counters there at negotiation.
    pub(crate) counters: std::sync::OnceLock<std::sync::Arc<crate::metrics::Counters>>,
    /// The receive-buffer memory the driver holds, counted by the endpoint's resource
    /// manager; set when the endpoint adopts the connection.
    pub(crate) memory: std::sync::OnceLock<crate::resources::MemoryGauge>,
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

    /// How many wakers were collected.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn wake(self) {
        for w in self.0 {
            w.wake();
        }
    }
}

impl Shared {
    pub(crate) fn new(session: Session, socket: Socket, peer: PeerId, high_water: usize) -> Self {
        Self {
            socket,
            remote_protocols: Mutex::new(None),
            state: Mutex::new(State {
                session,
                wakers: HashMap::default(),
                parked_writers: Vec::new(),
                takes: 0,
                bodies: VecDeque::new(),
                body_bytes: 0,
                send_requested: false,
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
            traffic: crate::metrics::Traffic::default(),
            counters: std::sync::OnceLock::new(),
            memory: std::sync::OnceLock::new(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug elsewhere; keep serving with the state as
        // it was rather than poisoning every stream of the connection.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Releases the lock after the caller queued bytes in the session, and has the driver
    /// send them: wakes it unless a wake-up for queued bytes is already on its way (the
    /// driver then takes these with the rest). See `writer.rs`.
    pub(super) fn send_queued(&self, mut state: MutexGuard<'_, State>) {
        if state.send_requested {
            return;
        }
        state.send_requested = true;
        let driver = state.driver_waker.clone();
        drop(state);
        if let Some(w) = driver {
            w.wake();
        }
    }

    /// Wakes the driver for something other than queued bytes (a close to carry out, a
    /// timer to re-arm).
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

    /// The next inbound stream. Accepting queues its ACK, which leaves with whatever the
    /// stream's handler writes in the same scheduling round (see `writer.rs`).
    pub(super) fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamId, ConnectionError>> {
        let mut state = self.lock();
        if let Some(id) = state.session.accept_stream() {
            state.wakers.insert(id, StreamWakers::default());
            state.streams_total += 1;
            self.send_queued(state);
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

    pub(super) fn set_keepalive(&self, interval: Option<Duration>, timeout: Duration) {
        let mut state = self.lock();
        if state.closing || state.closed.is_some() {
            return;
        }
        state
            .session
            .set_keepalive(interval, timeout, std::time::Instant::now());
        let driver = state.driver_waker.clone();
        drop(state);
        // The driver re-reads the session's next timeout when it runs.
        if let Some(driver) = driver {
            driver.wake();
        }
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
        // Nothing more is sent: let go of the chunks (often another connection's receive
        // buffers).
        state.bodies.clear();
        state.body_bytes = 0;
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
    /// Bytes waiting in the send queue: the session's outgoing buffer and the owned bodies
    /// beside it.
    pub(super) fn queued(&mut self) -> usize {
        self.session.outgoing().len() + self.body_bytes
    }

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
