//! Per-stream state: ids, flow-control counters, the receive buffer and event bits.
//!
//! Only bookkeeping lives here; which frames to send and when is the session's business
//! (`session.rs`, `inbound.rs`). Nothing here writes to the outgoing buffer.

use std::collections::VecDeque;
use std::fmt;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

use super::frame::DEFAULT_WINDOW;

/// A stream's id: odd for streams the client opened, even for the server's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(u32);

impl StreamId {
    /// Wraps a raw id (for logs, tests and drivers that keep ids in tables).
    pub const fn new(id: u32) -> Self {
        StreamId(id)
    }

    /// The raw id as on the wire.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({})", self.0)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Where a stream is in its life, as the application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamState {
    /// Both directions open.
    Open,
    /// We sent FIN; the peer may still send.
    WriteClosed,
    /// The peer sent FIN; we may still send. Buffered data can still be read.
    ReadClosed,
    /// Both sides sent FIN. Buffered data can still be read; then drop the stream.
    Closed,
    /// The peer reset the stream; drop it.
    Reset,
}

/// What [`Session::read`](super::Session::read) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The next chunk of the stream, in order. Never empty.
    Data(Bytes),
    /// Nothing buffered now; wait for [`Event::Readable`](super::Event::Readable).
    Pending,
    /// The peer closed its side and everything it sent was read.
    Eof,
}

/// What [`Session::read_copy`](super::Session::read_copy) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyOutcome {
    /// This many bytes (at least one) were handed to the caller, in order.
    Copied(usize),
    /// Nothing buffered now; wait for [`Event::Readable`](super::Event::Readable).
    Pending,
    /// The peer closed its side and everything it sent was read.
    Eof,
}

/// Event bits a stream may have pending; each is queued at most once.
pub(crate) const EV_READABLE: u8 = 1;
pub(crate) const EV_WRITABLE: u8 = 2;
pub(crate) const EV_RESET: u8 = 4;

/// Received, not yet read data of one stream, in order.
///
/// Large bodies are kept as the `Bytes` split off the input (zero copy); small ones are
/// appended to `tail`, whose spare capacity is reused, so trickled bytes neither allocate
/// per frame nor pin the driver's buffers. A zero-copy chunk still pins the whole receive
/// buffer it is a slice of: when the driver finds too many buffers pinned by unread data,
/// [`RecvBuf::unshare`] copies those chunks out.
#[derive(Debug, Default)]
pub(crate) struct RecvBuf {
    chunks: VecDeque<Chunk>,
    tail: BytesMut,
    len: usize,
}

/// One stored piece of received data.
#[derive(Debug)]
struct Chunk {
    data: Bytes,
    /// A slice of the driver's receive buffer (as opposed to memory of its own).
    shared: bool,
}

impl RecvBuf {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn push_copy(&mut self, data: &[u8]) {
        self.tail.extend_from_slice(data);
        self.len += data.len();
    }

    pub(crate) fn push_shared(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        if !self.tail.is_empty() {
            let data = self.tail.split().freeze();
            self.chunks.push_back(Chunk {
                data,
                shared: false,
            });
        }
        self.len += data.len();
        self.chunks.push_back(Chunk { data, shared: true });
    }

    /// Replaces every chunk that is a slice of a receive buffer with a copy of its own, so
    /// that the buffer can be reused or freed; returns the bytes copied.
    pub(crate) fn unshare(&mut self) -> usize {
        let mut copied = 0;
        for chunk in self.chunks.iter_mut().filter(|c| c.shared) {
            chunk.data = Bytes::copy_from_slice(&chunk.data);
            chunk.shared = false;
            copied += chunk.data.len();
        }
        copied
    }

    /// Takes up to `max` (at least 1) bytes from the front.
    pub(crate) fn pop(&mut self, max: usize) -> Option<Bytes> {
        let max = max.max(1);
        let chunk = match self.chunks.front_mut() {
            Some(front) if front.data.len() > max => front.data.split_to(max),
            Some(_) => self.chunks.pop_front()?.data,
            None if self.tail.is_empty() => return None,
            None if self.tail.len() > max => self.tail.split_to(max).freeze(),
            None => self.tail.split().freeze(),
        };
        self.len -= chunk.len();
        Some(chunk)
    }

    /// Hands up to `max` bytes from the front to `sink`, in order and in as many slices as
    /// they are stored in; returns how many. Small data stays in `tail`, whose capacity is
    /// then reused: reading this way allocates nothing.
    pub(crate) fn copy_out(&mut self, max: usize, mut sink: impl FnMut(&[u8])) -> usize {
        let mut copied = 0;
        while copied < max {
            let want = max - copied;
            if let Some(front) = self.chunks.front_mut() {
                let front = &mut front.data;
                let n = front.len().min(want);
                sink(&front[..n]);
                if n == front.len() {
                    self.chunks.pop_front();
                } else {
                    front.advance(n);
                }
                copied += n;
            } else if !self.tail.is_empty() {
                let n = self.tail.len().min(want);
                sink(&self.tail[..n]);
                if n == self.tail.len() {
                    // Keeps the capacity (and the next small frame's bytes go there).
                    self.tail.clear();
                } else {
                    self.tail.advance(n);
                }
                copied += n;
            } else {
                break;
            }
        }
        self.len -= copied;
        copied
    }

    /// Drops everything buffered and the memory behind it.
    pub(crate) fn clear(&mut self) {
        *self = RecvBuf::default();
    }
}

/// Everything the session knows about one stream.
#[derive(Debug)]
pub(crate) struct Stream {
    /// We opened it (as opposed to the peer).
    pub(crate) outbound: bool,
    /// The application holds its id (outbound, or inbound and accepted). Events are only
    /// raised for visible streams.
    pub(crate) visible: bool,
    /// Outbound only: the peer sent ACK.
    pub(crate) acknowledged: bool,

    /// Bytes we may still send before the peer grants more.
    pub(crate) send_window: u32,
    /// We sent FIN.
    pub(crate) write_closed: bool,
    /// A write came up short for lack of window; raise Writable when window arrives.
    pub(crate) write_blocked: bool,

    /// Bytes the peer may still send us.
    pub(crate) recv_window: u32,
    /// Total window granted: `recv_window + recv.len() + unacked_credit`. Never shrinks
    /// while the stream lives; the excess over [`DEFAULT_WINDOW`] is taken from the
    /// connection budget.
    pub(crate) window_size: u32,
    /// Bytes the application read that we have not yet given back as window.
    pub(crate) unacked_credit: u32,
    pub(crate) recv: RecvBuf,
    /// The peer sent FIN.
    pub(crate) read_closed: bool,
    /// The peer sent RST (kept as a tombstone until the application drops the id).
    pub(crate) reset: bool,
    /// A Readable event may be raised: set on every read, cleared when one is queued.
    pub(crate) read_armed: bool,

    /// The application dropped the stream before the peer's FIN: we sent ours and wait
    /// for the peer's until this deadline, discarding what it sends (see `linger.rs`).
    pub(crate) linger_until: Option<Instant>,
    /// Bytes the peer sent after the application dropped the stream (discarded).
    pub(crate) discarded: u32,

    /// `EV_*` bits waiting for `poll_event`.
    pub(crate) events: u8,
    /// The id is in the session's event queue (at most once).
    pub(crate) queued: bool,
}

impl Stream {
    pub(crate) fn new(outbound: bool) -> Self {
        Stream {
            outbound,
            visible: outbound,
            acknowledged: false,
            send_window: DEFAULT_WINDOW,
            write_closed: false,
            write_blocked: false,
            recv_window: DEFAULT_WINDOW,
            window_size: DEFAULT_WINDOW,
            unacked_credit: 0,
            recv: RecvBuf::default(),
            read_closed: false,
            reset: false,
            read_armed: true,
            linger_until: None,
            discarded: 0,
            events: 0,
            queued: false,
        }
    }

    pub(crate) fn state(&self) -> StreamState {
        match (self.reset, self.write_closed, self.read_closed) {
            (true, _, _) => StreamState::Reset,
            (false, false, false) => StreamState::Open,
            (false, true, false) => StreamState::WriteClosed,
            (false, false, true) => StreamState::ReadClosed,
            (false, true, true) => StreamState::Closed,
        }
    }

    /// Whether a reader would find something new: data, end of stream or reset.
    pub(crate) fn has_read_news(&self) -> bool {
        !self.recv.is_empty() || self.read_closed || self.reset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recv_buf_keeps_order_across_copied_and_shared_chunks() {
        let mut buf = RecvBuf::default();
        buf.push_copy(b"ab");
        buf.push_copy(b"c");
        buf.push_shared(Bytes::from_static(b"defg"));
        buf.push_copy(b"h");
        assert_eq!(buf.len(), 8);
        assert_eq!(buf.pop(2).as_deref(), Some(&b"ab"[..]));
        assert_eq!(buf.pop(100).as_deref(), Some(&b"c"[..]));
        assert_eq!(buf.pop(3).as_deref(), Some(&b"def"[..]));
        assert_eq!(buf.pop(0).as_deref(), Some(&b"g"[..]), "max 0 means 1");
        assert_eq!(buf.pop(100).as_deref(), Some(&b"h"[..]));
        assert_eq!(buf.pop(100), None);
        assert!(buf.is_empty());
    }

    #[test]
    fn state_names_directions() {
        let mut stream = Stream::new(true);
        assert_eq!(stream.state(), StreamState::Open);
        stream.write_closed = true;
        assert_eq!(stream.state(), StreamState::WriteClosed);
        stream.read_closed = true;
        assert_eq!(stream.state(), StreamState::Closed);
        stream.reset = true;
        assert_eq!(stream.state(), StreamState::Reset);
    }
}
