//! The state a connection's driver and its streams share: the yamux session and the wakers
//! of everything waiting on it.
//!
//! Every method takes the lock for a few non-blocking steps and releases it before waking
//! anyone; nothing here awaits. Errors are stored once (`closed`) and handed to every later
//! caller, so a stream learns why its connection died.

use super::ConnectionError;
use pheromone_core::identity::PeerId;
use pheromone_core::yamux::{self, Session, StreamId};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// Wakers of one stream's reader and writer.
#[derive(Default)]
pub(super) struct StreamWakers {
    pub(super) reader: Option<Waker>,
    pub(super) writer: Option<Waker>,
}

/// Everything behind the lock.
pub(super) struct State {
    pub(super) session: Session,
    pub(super) wakers: HashMap<StreamId, StreamWakers>,
    /// Writers parked because the outgoing buffer is above the high-water mark.
    pub(super) parked_writers: Vec<Waker>,
    pub(super) accept_waker: Option<Waker>,
    pub(super) driver_waker: Option<Waker>,
    pub(super) close_wakers: Vec<Waker>,
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
    pub(super) peer: PeerId,
    pub(super) high_water: usize,
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
    pub(crate) fn new(session: Session, peer: PeerId, high_water: usize) -> Self {
        Self {
            state: Mutex::new(State {
                session,
                wakers: HashMap::new(),
                parked_writers: Vec::new(),
                accept_waker: None,
                driver_waker: None,
                close_wakers: Vec::new(),
                closed: None,
                closing: false,
                rtt: None,
                streams_total: 0,
            }),
            peer,
            high_water,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug elsewhere; keep serving with the state as
        // it was rather than poisoning every stream of the connection.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
        let driver = state.driver_waker.clone();
        drop(state);
        if let Some(w) = driver {
            w.wake();
        }
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

    pub(super) fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamId, ConnectionError>> {
        let mut state = self.lock();
        if let Some(id) = state.session.accept_stream() {
            state.wakers.insert(id, StreamWakers::default());
            state.streams_total += 1;
            let driver = state.driver_waker.clone();
            drop(state);
            // Accepting may queue an ACK for the driver to send.
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
        let state = self.lock();
        state.closed.is_some()
            || state.closing
            || state.session.remote_go_away().is_some()
            || state.session.local_go_away().is_some()
    }

    /// Whether the peer acknowledged (accepted) a stream we opened; true for inbound ones.
    pub(super) fn is_acknowledged(&self, id: StreamId) -> bool {
        self.lock().session.is_acknowledged(id).unwrap_or(false)
    }

    pub(super) fn streams_total(&self) -> u64 {
        self.lock().streams_total
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
        let driver = state.driver_waker.clone();
        drop(state);
        if let Some(w) = driver {
            w.wake();
        }
    }

    pub(super) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<ConnectionError> {
        let mut state = self.lock();
        match &state.closed {
            Some(e) => Poll::Ready(e.clone()),
            None => {
                // A waiter polled again (in a `select!` loop) must not add a waker per poll.
                if !state.close_wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    state.close_wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// Records why the connection ended and wakes everyone waiting on it.
    pub(super) fn fail(&self, error: ConnectionError) {
        let mut state = self.lock();
        if state.closed.is_none() {
            state.closed = Some(error);
        }
        let mut to_wake = ToWake::default();
        for (_, w) in state.wakers.iter_mut() {
            to_wake.push(w.reader.take());
            to_wake.push(w.writer.take());
        }
        for w in state.parked_writers.drain(..) {
            to_wake.push(Some(w));
        }
        to_wake.push(state.accept_waker.take());
        for w in state.close_wakers.drain(..) {
            to_wake.push(Some(w));
        }
        drop(state);
        to_wake.wake();
    }
}
