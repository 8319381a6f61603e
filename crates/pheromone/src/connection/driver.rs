//! The one task per connection: socket ⇄ Noise or TLS records ⇄ yamux session.
//!
//! A hand-written future rather than an `async fn` with `select!`, because it must read and
//! write at the same time (two peers both blocked on a full socket while neither reads would
//! deadlock) and it must not allocate per frame. Each poll: read what the socket has, decrypt
//! it in place and feed the session; send what the session queued ([`Writer`]: the only
//! code that encrypts and writes to the socket); arm the session's timer. The lock on the
//! shared state is held only for the session calls, never while decrypting or touching the
//! socket.
//!
//! A local close is a handshake, so that nothing in flight is lost to a TCP reset: send
//! GoAway; wait until no stream is left and the peer has answered with its own GoAway, or
//! until the close grace ends; flush; half-close the socket (FIN); then read and discard
//! until the peer closes too, at most another close grace. When the peer sends GoAway
//! first we answer with ours.

use super::read_buffers::{ReadBuffers, FRAME_ROOM};
use super::secure::{Opener, Sealer};
use super::shared::{Shared, ToWake};
use super::writer::{Sent, Writer};
use super::ConnectionError;
use bytes::{Buf, BytesMut};
use pheromone_core::multistream::Dialer;
use pheromone_core::yamux::{Event, YamuxError, HEADER_LEN};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::time::Sleep;

/// Most ciphertext one `read` call takes: two full Noise frames.
///
/// Small reads and rounds keep what was read in the core's cache (about 1 MiB of L2 here)
/// until it is decrypted and handed on. Measured on the relay bench: with reads of up to
/// 1 MiB and a 4 MiB round, relayed throughput was about a fifth lower than with 128 KiB
/// of each, and the direct link did not gain from the bigger reads either.
const READ_CHUNK: usize = 128 * 1024;
/// Bytes read from the socket in one round before the driver writes what is queued.
const READ_BUDGET: usize = 128 * 1024;
/// Read/write rounds in one poll before yielding to other tasks.
const ROUNDS_PER_POLL: usize = 16;
/// Bytes the remote's frames made the session queue (ping answers, RSTs for refused
/// streams) since the socket last drained, above which we stop reading. A peer that
/// provokes answers and never reads them would otherwise grow our send queue by what it
/// sends; this pushes back through TCP instead, and the keep-alive ends the connection if
/// the peer never drains it. 256 KiB is ~20,000 answers: no well-behaved peer gets near it
/// between two drains.
const MAX_PROVOKED_BACKLOG: usize = 256 * 1024;

/// Drives one connection until it closes.
pub(crate) struct Driver {
    shared: Arc<Shared>,
    receiver: Opener,
    writer: Writer,
    /// Ciphertext read from the socket, not yet decrypted (a partial frame at most).
    read_bufs: ReadBuffers,
    /// Plaintext not yet consumed by the session (a partial yamux frame at most).
    plain_in: BytesMut,
    /// Decrypted frames not yet fed to the session (kept to reuse its allocation).
    decrypted: Vec<BytesMut>,
    /// Bytes from the handshake wait in the buffers: process them before reading.
    feed_pending: bool,
    /// The lazy `/yamux/1.0.0` proposal still waiting for the listener's confirmation.
    muxer_confirmation: Option<Dialer>,
    timer: Pin<Box<Sleep>>,
    timer_deadline: Option<Instant>,
    /// `timer` was polled with this task's waker since it was last reset: it will wake us,
    /// and until it has fired polling it again only costs.
    timer_registered: bool,
    close_deadline: Option<Instant>,
    /// Set once our write side is shut down: the deadline for the peer's EOF.
    linger_deadline: Option<Instant>,
    /// Bytes the session queued in answer to input since the socket last drained (see
    /// [`MAX_PROVOKED_BACKLOG`]).
    provoked: usize,
    /// Tasks the last poll that read anything woke: when several, the writes they are
    /// about to make are batched (see [`Writer::poll_send`]).
    last_read_woke: usize,
    /// Tasks woken by the reads of the current poll.
    woke: usize,
    close_grace: std::time::Duration,
    /// Most receive-buffer memory this connection may hold before slices that unread
    /// streams keep of it are copied out (see `read_buffers.rs`).
    max_held: usize,
}

impl Driver {
    /// `leftover` is the ciphertext and plaintext read past the handshake;
    /// `muxer_confirmation` is the dialer's lazy `/yamux/1.0.0` proposal, whose answer must
    /// be the first plaintext we receive.
    pub(crate) fn new(
        shared: Arc<Shared>,
        (sender, receiver): (Sealer, Opener),
        leftover: (BytesMut, BytesMut),
        muxer_confirmation: Option<Dialer>,
        close_grace: std::time::Duration,
        max_held: usize,
    ) -> Self {
        let (read_buf, plain_in) = leftover;
        Self {
            shared,
            receiver,
            writer: Writer::new(sender),
            feed_pending: !read_buf.is_empty() || !plain_in.is_empty(),
            decrypted: Vec::new(),
            read_bufs: ReadBuffers::new(read_buf),
            plain_in,
            muxer_confirmation,
            timer: Box::pin(tokio::time::sleep(std::time::Duration::from_secs(3600))),
            timer_deadline: None,
            timer_registered: false,
            close_deadline: None,
            linger_deadline: None,
            provoked: 0,
            last_read_woke: 0,
            woke: 0,
            close_grace,
            max_held,
        }
    }

    /// Keeps the receive buffers within `max_held`: when slices that streams have not read
    /// pin more than that, the session copies them out and the freed buffers are trimmed.
    /// Reports what is held to the resource manager's gauge.
    fn bound_held_memory(&mut self) {
        if self.read_bufs.held() > self.max_held {
            // Free spares go first; only buffers that unread slices still pin cost a copy.
            self.read_bufs.trim(self.max_held);
            if self.read_bufs.held() > self.max_held {
                let copied = self.shared.lock().session.unshare_received();
                self.read_bufs.trim(self.max_held);
                tracing::trace!(peer = %self.peer(), copied, held = self.read_bufs.held(), "unread slices copied out of the receive buffers");
            }
        }
        if let Some(gauge) = self.shared.memory.get() {
            gauge.set(self.read_bufs.held() as u64);
        }
    }

    fn peer(&self) -> pheromone_core::identity::PeerId {
        self.shared.peer
    }

    /// Reads and processes what the socket has. `Ok(true)` when anything was read.
    fn poll_socket_read(&mut self, cx: &mut Context<'_>) -> Result<bool, ConnectionError> {
        if std::mem::take(&mut self.feed_pending) {
            self.decrypt_and_feed(true)?;
        }
        let mut total = 0;
        // Nothing is read while answers the peer provoked pile up unsent; the pending
        // write wakes us when the socket drains.
        while total < READ_BUDGET && self.provoked < MAX_PROVOKED_BACKLOG {
            match self.shared.socket.poll_read_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(Err(e)) => {
                    return Err(ConnectionError::Io {
                        peer: self.peer(),
                        reason: e.to_string(),
                    })
                }
                Poll::Ready(Ok(())) => {}
            }
            self.read_bufs.reserve(READ_CHUNK + FRAME_ROOM);
            self.bound_held_memory();
            let limit = self.read_bufs.read_limit().min(READ_CHUNK);
            let n = match self
                .shared
                .socket
                .try_read_buf(self.read_bufs.current(), limit)
            {
                Ok(0) => return Err(ConnectionError::ClosedByRemote { peer: self.peer() }),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    return Err(ConnectionError::Io {
                        peer: self.peer(),
                        reason: e.to_string(),
                    })
                }
            };
            total += n;
            self.read_bufs.note_read(n);
            self.decrypt_and_feed(false)?;
        }
        if total > 0 {
            self.last_read_woke = std::mem::take(&mut self.woke);
        }
        Ok(total > 0)
    }

    /// Decrypts complete frames and feeds the session; `force` feeds even when no new frame
    /// arrived (plaintext left over from the handshake).
    fn decrypt_and_feed(&mut self, force: bool) -> Result<(), ConnectionError> {
        while let Some(frame) = self
            .receiver
            .open(self.read_bufs.current())
            .map_err(|e| ConnectionError::secure(self.peer(), e))?
        {
            self.decrypted.push(frame);
        }
        if self.decrypted.is_empty() && !force {
            return Ok(());
        }
        if self.muxer_confirmation.is_some() {
            for frame in self.decrypted.drain(..) {
                self.plain_in.extend_from_slice(&frame);
            }
            if !self.check_muxer_confirmation()? {
                return Ok(());
            }
        }
        let now = Instant::now();
        let mut state = self.shared.lock();
        let queued_before = state.session.outgoing().len();
        let mut result = Ok(());
        if !self.plain_in.is_empty() {
            result = state.session.handle_input(now, &mut self.plain_in);
        }
        let mut frames = std::mem::take(&mut self.decrypted);
        for frame in frames.drain(..) {
            if result.is_err() {
                break;
            }
            result = feed_frame(&mut state.session, now, &mut self.plain_in, frame);
        }
        self.decrypted = frames;
        self.provoked += state.session.outgoing().len().saturating_sub(queued_before);
        let mut to_wake = ToWake::default();
        dispatch_events(&mut state, &mut to_wake);
        drop(state);
        self.woke += to_wake.len();
        to_wake.wake();
        result.map_err(|e| self.yamux_error(e))
    }

    /// Checks the listener's answer to our lazy `/yamux/1.0.0`; `Ok(true)` once confirmed.
    fn check_muxer_confirmation(&mut self) -> Result<bool, ConnectionError> {
        let Some(dialer) = self.muxer_confirmation.as_mut() else {
            return Ok(true);
        };
        dialer.handle_input(&mut self.plain_in);
        match dialer.poll_outcome() {
            None => Ok(false),
            Some(Ok(_)) => {
                self.muxer_confirmation = None;
                Ok(true)
            }
            Some(Err(e)) => Err(ConnectionError::Yamux {
                peer: self.peer(),
                reason: format!("remote refused {}: {e}", crate::upgrade::YAMUX_PROTOCOL),
            }),
        }
    }

    fn yamux_error(&self, e: YamuxError) -> ConnectionError {
        match e {
            YamuxError::KeepaliveTimeout(_) => {
                ConnectionError::KeepAliveTimeout { peer: self.peer() }
            }
            other => ConnectionError::Yamux {
                peer: self.peer(),
                reason: other.to_string(),
            },
        }
    }

    /// Sends what the session has queued (see [`Writer::poll_send`]), batching the writes
    /// of the tasks the last read woke when there were several. Once everything is out,
    /// the answers the peer provoked are gone too.
    fn poll_socket_write(&mut self, cx: &mut Context<'_>) -> Result<(), ConnectionError> {
        let batch = self.last_read_woke > 1;
        if self.writer.poll_send(&self.shared, cx, batch)? == Sent::All {
            self.provoked = 0;
        }
        Ok(())
    }

    /// Runs the session's timers. `Ok(true)` when a timer fired.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> Result<bool, ConnectionError> {
        let deadline = {
            let state = self.shared.lock();
            state.session.poll_timeout()
        };
        let deadline = match (deadline, self.close_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if deadline != self.timer_deadline {
            self.timer_deadline = deadline;
            self.timer_registered = false;
            if let Some(at) = deadline {
                self.timer
                    .as_mut()
                    .reset(tokio::time::Instant::from_std(at));
            }
        }
        if self.timer_deadline.is_none() || (self.timer_registered && !self.timer.is_elapsed()) {
            return Ok(false);
        }
        self.timer_registered = true;
        if self.timer.as_mut().poll(cx).is_pending() {
            return Ok(false);
        }
        self.timer_deadline = None;
        let now = Instant::now();
        let mut state = self.shared.lock();
        let result = state.session.handle_timeout(now);
        let mut to_wake = ToWake::default();
        dispatch_events(&mut state, &mut to_wake);
        drop(state);
        to_wake.wake();
        result.map_err(|e| self.yamux_error(e))?;
        Ok(true)
    }

    /// Whether a local close may half-close the socket: no stream left and the peer's
    /// GoAway received (after it no new stream of the peer can be on its way), or the grace
    /// is over; and everything flushed.
    fn ready_to_half_close(&mut self) -> bool {
        // `close_deadline` is set once a local close was noticed.
        let Some(deadline) = self.close_deadline else {
            return false;
        };
        if self.linger_deadline.is_some() {
            return false;
        }
        let mut state = self.shared.lock();
        // Streams we dropped and only the peer may still send on do not hold the close up:
        // everything we wrote on them is out with our FIN.
        let open = state.session.num_streams() - state.session.num_lingering();
        let quiet = open == 0 && state.session.remote_go_away().is_some();
        (quiet || Instant::now() >= deadline) && state.queued() == 0 && !self.writer.has_backlog()
    }

    /// Sends our FIN and starts lingering for the peer's: dropping a socket with unread
    /// bytes in it makes the kernel reset the connection, and the peer would lose replies it
    /// has not read yet. The connection counts as closed from here on.
    fn half_close(&mut self) {
        self.shared.shutdown(std::net::Shutdown::Write);
        self.linger_deadline = Some(Instant::now() + self.close_grace);
        tracing::debug!(peer = %self.peer(), "connection closed locally");
        self.shared
            .mark_closed(ConnectionError::ClosedLocally { peer: self.peer() });
    }

    /// After our FIN: discards what still arrives until the peer's EOF. True once the close
    /// is complete (EOF, an error, or the linger deadline passed).
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.linger_deadline else {
            return false;
        };
        let mut scratch = [0u8; 16 * 1024];
        for _ in 0..ROUNDS_PER_POLL {
            match self.shared.socket.poll_read_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(Err(_)) => return true,
                Poll::Ready(Ok(())) => {}
            }
            match self.shared.socket.try_read(&mut scratch) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return true,
            }
        }
        if Instant::now() >= deadline {
            return true;
        }
        if self.timer_deadline != Some(deadline) {
            self.timer_deadline = Some(deadline);
            self.timer_registered = false;
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
        }
        self.timer.as_mut().poll(cx).is_ready()
    }

    /// Registers this poll's waker and notices a local close (`close()` wakes the driver,
    /// so once per poll is enough).
    fn register_waker(&mut self, cx: &mut Context<'_>) {
        let mut state = self.shared.lock();
        match &state.driver_waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => {
                state.driver_waker = Some(cx.waker().clone());
                // The timer holds the old waker.
                self.timer_registered = false;
            }
        }
        if self.close_deadline.is_none() && state.closing {
            // Armed before `poll_timer` runs, so the timer wakes us when the grace ends.
            self.close_deadline = Some(Instant::now() + self.close_grace);
        }
    }

    fn poll_round(&mut self, cx: &mut Context<'_>) -> Result<bool, ConnectionError> {
        let read = self.poll_socket_read(cx)?;
        self.poll_socket_write(cx)?;
        let fired = self.poll_timer(cx)?;
        Ok(read || fired)
    }

    /// Best effort: push out whatever is queued (a GoAway after an error) without waiting.
    fn flush_now(&mut self, cx: &mut Context<'_>) {
        let _ = self.writer.poll_send(&self.shared, cx, false);
    }
}

/// Feeds one decrypted Noise frame to the session without copying it, except for the few
/// bytes that complete a frame header left over from the previous one (the session takes
/// partial data bodies as they come, so only a header can be left over).
fn feed_frame(
    session: &mut pheromone_core::yamux::Session,
    now: Instant,
    plain_in: &mut BytesMut,
    mut frame: BytesMut,
) -> Result<(), YamuxError> {
    if !plain_in.is_empty() {
        let take = HEADER_LEN.saturating_sub(plain_in.len()).min(frame.len());
        plain_in.extend_from_slice(&frame[..take]);
        frame.advance(take);
        session.handle_input(now, plain_in)?;
        if !plain_in.is_empty() {
            // Still not a whole frame (or more than a header was waiting): append the rest.
            plain_in.extend_from_slice(&frame);
            return session.handle_input(now, plain_in);
        }
    }
    *plain_in = frame;
    session.handle_input(now, plain_in)
}

/// Turns session events into wake-ups of the tasks waiting for them.
fn dispatch_events(state: &mut super::shared::State, to_wake: &mut ToWake) {
    while let Some(event) = state.session.poll_event() {
        match event {
            Event::IncomingStream => to_wake.push(state.accept_waker.take()),
            Event::Readable(id) => {
                if let Some(w) = state.wakers.get_mut(&id) {
                    to_wake.push(w.reader.take());
                    to_wake.push(w.gate.take());
                }
            }
            Event::Writable(id) => {
                if let Some(w) = state.wakers.get_mut(&id) {
                    to_wake.push(w.writer.take());
                }
            }
            Event::Reset(id) => {
                if let Some(w) = state.wakers.get_mut(&id) {
                    to_wake.push(w.reader.take());
                    to_wake.push(w.writer.take());
                    to_wake.push(w.gate.take());
                }
            }
            Event::GoAwayReceived(_) => {
                // Answer with ours: it tells a closing peer that no new stream of ours can
                // still be on its way, so it may shut the socket without losing one.
                state
                    .session
                    .go_away(pheromone_core::yamux::GoAwayCode::Normal);
                to_wake.push(state.accept_waker.take());
                state.take_going_away_wakers(to_wake);
            }
            Event::PingRtt(rtt) => state.rtt = Some(rtt),
            _ => {}
        }
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.register_waker(cx);
        this.writer.begin_poll();
        if this.linger_deadline.is_some() {
            if this.poll_linger(cx) {
                this.shared.shutdown(std::net::Shutdown::Both);
                return Poll::Ready(());
            }
            return Poll::Pending;
        }
        for _ in 0..ROUNDS_PER_POLL {
            match this.poll_round(cx) {
                Err(error) => {
                    let closing = this.shared.lock().closing;
                    let error = match error {
                        ConnectionError::ClosedByRemote { peer } if closing => {
                            ConnectionError::ClosedLocally { peer }
                        }
                        other => other,
                    };
                    tracing::debug!(peer = %this.peer(), %error, "connection ended");
                    this.flush_now(cx);
                    this.shared.fail(error);
                    return Poll::Ready(());
                }
                Ok(progress) => {
                    if this.ready_to_half_close() {
                        this.half_close();
                        // Poll again at once to start reading for the peer's EOF.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    if !progress {
                        return Poll::Pending;
                    }
                }
            }
        }
        // Out of rounds with work left: yield, and ask to be polled again.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
