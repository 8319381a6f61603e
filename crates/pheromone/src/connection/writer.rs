//! The sending half of a connection: the one place where bytes are encrypted and written
//! to the socket. Only the driver task owns a [`Writer`]; streams never touch the socket.
//!
//! # How bytes leave
//!
//! 1. Anyone with something to send — a stream's write, FIN, reset or window update, an
//!    accept's ACK, the driver answering a ping — appends yamux frames to the session's
//!    outgoing buffer under the connection's one lock. That buffer is the send queue; it
//!    is bounded: stream writes take at most what fits below
//!    [`ConnectionConfig::send_buffer_high_water`](super::ConnectionConfig), and a bulk
//!    transfer less (`stream::allowance`), so that it always leaves room for the short
//!    writes of the other streams. A writer with no room parks. A large owned chunk
//!    (`Stream::poll_write_owned`, the relay's splice) is not copied: only its frame
//!    header is queued, and the chunk waits beside the queue (`State::bodies`, counted
//!    against the same mark) until the writer seals it in place.
//! 2. A task other than the driver then calls [`Shared::send_queued`]: the first one after
//!    a flush sets `State::send_requested` and wakes the driver; the others see the flag
//!    and only append.
//! 3. The driver, woken for queued bytes, takes the whole queue in one swap (clearing the
//!    flag under the same lock), seals it into as few Noise frames as the frame size
//!    allows and writes them with one system call. The runtime polls a task it just woke
//!    right after the waking task's poll, so whatever that task wrote in its poll leaves
//!    together. When the driver's last read woke several tasks (many streams' responses
//!    arrived together), it first yields once so that they all run and queue their
//!    writes, which then leave together ([`Writer::poll_send`]); with one stream busy,
//!    that yield would only cost a wake-up.
//! 4. What the socket does not take waits in the [`SendBuffer`]; the queue is not taken
//!    again until that is gone, so a slow socket fills the queue and parks the writers
//!    (back-pressure), and at most one queue's worth of ciphertext waits beside it. Taking
//!    the queue wakes the parked writers, oldest first; since writers park in the order
//!    they ran out of room, streams that all want more than their share take turns.
//!
//! Lock discipline: the connection has one lock (`Shared::lock`, the session and the
//! wakers). It is held only to append to or take the queue and to update wakers, never
//! while encrypting, never across a system call, never across an `.await`; wakers are
//! woken after it is released. The sealer and the ciphertext need no lock: only
//! this type, owned by the driver, touches them.

use super::secure::{Sealer, SecureError};
use super::send_buffer::SendBuffer;
use super::shared::{Shared, ToWake};
use super::ConnectionError;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::future::Future;
use std::task::{Context, Poll, Waker};

/// Socket writes in one [`Writer::poll_send`] before yielding to other tasks.
const WRITES_PER_POLL: usize = 16;

/// What a [`Writer::poll_send`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// Nothing is queued or waiting: every byte is in the socket.
    All,
    /// Bytes are queued; the driver yielded so that other ready tasks can add theirs, and
    /// is polled again once they ran.
    Deferred,
    /// The socket is full; the driver is woken when it becomes writable.
    Blocked,
    /// The write budget of this poll is spent; the driver has asked to be polled again.
    Yielded,
}

/// The driver's sending state: the Noise or TLS sealer and the ciphertext not yet taken
/// by the socket.
pub(super) struct Writer {
    sender: Sealer,
    /// Ciphertext waiting for the socket (sealed straight into it).
    buf: SendBuffer,
    /// The plaintext taken from the session's queue, swapped with it so that neither
    /// buffer reallocates.
    plain: BytesMut,
    /// The owned bodies taken with it (see `State::bodies`).
    bodies: VecDeque<(usize, Bytes)>,
    /// Where the yield for the queued bytes stands (see [`Writer::poll_send`]).
    deferral: Deferral,
}

/// The one yield a queue waits for before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deferral {
    /// No yield made for the bytes queued now.
    None,
    /// Yielded during the current poll of the driver: nothing is sent until the next one.
    Waiting,
    /// Yielded in an earlier poll: send.
    Due,
}

impl Writer {
    pub(super) fn new(sender: Sealer) -> Self {
        Self {
            sender,
            buf: SendBuffer::with_capacity(256 * 1024),
            plain: BytesMut::with_capacity(256 * 1024),
            bodies: VecDeque::new(),
            deferral: Deferral::None,
        }
    }

    /// Called at the start of every poll of the driver: a yield made in an earlier poll
    /// has let the other tasks run.
    pub(super) fn begin_poll(&mut self) {
        if self.deferral == Deferral::Waiting {
            self.deferral = Deferral::Due;
        }
    }

    /// Whether ciphertext waits for the socket.
    pub(super) fn has_backlog(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Sends what the session has queued, as far as the socket takes it. With `batch`, a
    /// queue that another task asked to send is first left for one scheduling round: the
    /// driver yields, and sends in its next poll (see the module docs). Without it, it
    /// goes at once.
    pub(super) fn poll_send(
        &mut self,
        shared: &Shared,
        cx: &mut Context<'_>,
        batch: bool,
    ) -> Result<Sent, ConnectionError> {
        for _ in 0..WRITES_PER_POLL {
            if self.buf.is_empty() {
                if let Some(sent) = self.take_queue(shared, cx, batch)? {
                    return Ok(sent);
                }
            }
            match shared.socket.try_write(self.buf.pending()) {
                Ok(0) => return Err(ConnectionError::ClosedByRemote { peer: shared.peer }),
                Ok(n) => self.buf.advance(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    match shared.socket.poll_write_ready(cx) {
                        Poll::Pending => return Ok(Sent::Blocked),
                        Poll::Ready(Err(e)) => return Err(io_error(shared, &e)),
                        // Stale readiness: the next `try_write` clears it or makes progress.
                        Poll::Ready(Ok(())) => {}
                    }
                }
                Err(e) => return Err(io_error(shared, &e)),
            }
        }
        cx.waker().wake_by_ref();
        Ok(Sent::Yielded)
    }

    /// Takes the session's queue and seals it into the ciphertext buffer; `Some` when there
    /// is nothing to write now (the queue is empty, or the driver yields first).
    fn take_queue(
        &mut self,
        shared: &Shared,
        cx: &mut Context<'_>,
        batch: bool,
    ) -> Result<Option<Sent>, ConnectionError> {
        if batch && self.deferral == Deferral::Waiting {
            return Ok(Some(Sent::Deferred));
        }
        let mut state = shared.lock();
        if state.queued() == 0 {
            state.send_requested = false;
            self.deferral = Deferral::None;
            // Nobody parks on an empty queue, but a parked writer must never outlive the
            // bytes it waited behind.
            let parked = std::mem::take(&mut state.parked_writers);
            drop(state);
            parked.into_iter().for_each(Waker::wake);
            return Ok(Some(Sent::All));
        }
        if batch && state.send_requested && self.deferral == Deferral::None {
            // Streams woken together (by one read of many responses, say) write one after
            // the other; yielding once lets them all queue before this one system call.
            // `send_requested` stays set, so they do not wake us again meanwhile.
            drop(state);
            self.deferral = Deferral::Waiting;
            yield_once(cx);
            return Ok(Some(Sent::Deferred));
        }
        state.send_requested = false;
        self.deferral = Deferral::None;
        state.takes += 1;
        std::mem::swap(state.session.outgoing(), &mut self.plain);
        std::mem::swap(&mut state.bodies, &mut self.bodies);
        state.body_bytes = 0;
        let mut to_wake = ToWake::default();
        for w in state.parked_writers.drain(..) {
            to_wake.push(Some(w));
        }
        drop(state);
        to_wake.wake();
        let sealed = self.seal_taken();
        self.plain.clear();
        self.bodies.clear();
        sealed.map_err(|e| ConnectionError::secure(shared.peer, e))?;
        Ok(None)
    }

    /// Seals the taken queue into the ciphertext buffer: the plaintext with every owned
    /// body at its place, each body sealed straight from its chunk.
    fn seal_taken(&mut self) -> Result<(), SecureError> {
        let Writer {
            sender,
            buf,
            plain,
            bodies,
            ..
        } = self;
        let control = sender.control_len();
        if control > 0 {
            buf.append_with(control, |room| sender.seal_control_into(room))?;
        }
        let mut at = 0;
        for (offset, body) in bodies.iter() {
            let head = &plain[at..*offset];
            buf.append_with(sender.sealed_len(head.len() + body.len()), |room| {
                sender.seal_pair_into(head, body, room)
            })?;
            at = *offset;
        }
        let rest = &plain[at..];
        if !rest.is_empty() {
            buf.append_with(sender.sealed_len(rest.len()), |room| {
                sender.seal_pair_into(rest, &[], room)
            })?;
        }
        Ok(())
    }
}

/// Has the runtime poll this task again after the tasks that are ready to run now (tokio
/// defers the wake-up until its worker runs out of work or polls its IO driver, at most
/// a few dozen task polls later); outside tokio the task is woken at once.
fn yield_once(cx: &mut Context<'_>) {
    let yielded = std::pin::pin!(tokio::task::yield_now());
    // The first poll hands the waker to the scheduler and is always pending.
    let _ = yielded.poll(cx);
}

fn io_error(shared: &Shared, e: &std::io::Error) -> ConnectionError {
    ConnectionError::Io {
        peer: shared.peer,
        reason: e.to_string(),
    }
}
