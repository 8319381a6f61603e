//! The yamux session state machine: stream table, flow control, keep-alive, and the
//! application-facing commands (open, accept, read, write, close, reset, go away).
//!
//! Frames from the peer are handled in `inbound.rs`, queries about the session's state in
//! `inspect.rs`; this file holds the type, its commands and the shared helpers. No IO and no clock: time comes in as `now`, bytes go
//! out through [`Session::outgoing`].

use std::collections::{HashMap, VecDeque};

/// The session's streams by ID. Seeded foldhash: every frame looks its stream up, SipHash
/// cost more than the rest of that lookup, and a per-process seed still keeps a peer from
/// choosing colliding IDs.
pub(crate) type StreamMap = HashMap<u32, Stream, foldhash::fast::RandomState>;
use std::time::Instant;

use bytes::{BufMut, BytesMut};

use super::config::{Config, Mode};
use super::error::{StreamError, YamuxError};
use super::event::{Event, EventQueue};
use super::frame::{Flags, GoAwayCode, Header, DEFAULT_WINDOW, HEADER_LEN};
use super::stream::{CopyOutcome, ReadOutcome, Stream, StreamId, StreamState, EV_READABLE};

/// One yamux session over one connection, without IO.
///
/// # Calling contract
///
/// The driver (one task per connection) owns the session and:
///
/// 1. Appends every received plaintext byte to one input `BytesMut` and calls
///    [`handle_input`](Session::handle_input) with it. Complete frames are consumed; a
///    partial frame stays in the buffer for the next call. Received data is handed to
///    readers as slices of that buffer, so keep reusing it (`reserve`, not a new buffer).
/// 2. After **every** call into the session (input, timeout, or an application command),
///    sends what [`outgoing`](Session::outgoing) holds (drain it, e.g. `split()` or
///    `advance`), then calls [`poll_event`](Session::poll_event) until `None` and routes the
///    events to the application, then re-arms its timer for
///    [`poll_timeout`](Session::poll_timeout) and calls
///    [`handle_timeout`](Session::handle_timeout) when it fires.
/// 3. Applies backpressure: writes are bounded by the peer's windows, but the session
///    cannot see the socket. While `outgoing()` holds more than the driver wants buffered,
///    it should stop servicing application writes (and, if it must, stop reading input).
/// 4. On an `Err` from `handle_input` or `handle_timeout`, sends what `outgoing()` still
///    holds (a go-away naming the error, when it was the peer's fault) and closes the
///    connection. All later calls fail with [`YamuxError::SessionClosed`] /
///    [`StreamError::SessionClosed`].
/// 5. Passes every id the application got from [`open_stream`](Session::open_stream) or
///    [`accept_stream`](Session::accept_stream) to [`drop_stream`](Session::drop_stream) or
///    [`reset`](Session::reset) exactly once when the application is done with it; until
///    then the stream counts against [`Config::max_streams`].
///
/// # Interop notes
///
/// Streams are opened with a window update carrying SYN, sent by `open_stream` itself, so
/// the peer learns about the stream even if we only read; inbound streams are
/// acknowledged (ACK) when accepted. Both frames carry the window growth beyond the spec's
/// 256 KiB. FIN and RST go out as empty window updates, as go-yamux does; rust-libp2p and
/// go-yamux accept both forms. Dropping a stream closes it with FIN, never RST (see
/// [`drop_stream`](Session::drop_stream)): js-libp2p discards unread data on a reset, so a
/// reset behind an answer would destroy it. Stream ids from the peer must increase (every known
/// implementation allocates them in order); a SYN for an id not above the last one is a
/// protocol error.
#[derive(Debug)]
pub struct Session {
    mode: Mode,
    pub(crate) config: Config,
    pub(crate) streams: StreamMap,
    /// Our next id; `u64` so that running past `u32::MAX` is noticed, not wrapped.
    next_outbound_id: u64,
    /// Highest id the peer opened; lower ids of its parity are closed or rejected.
    pub(crate) max_inbound_id: u32,
    /// Inbound streams not yet accepted, in id order (ids only increase).
    pub(crate) accept_queue: VecDeque<u32>,
    pub(crate) out: BytesMut,
    pub(crate) events: EventQueue,
    pub(crate) local_go_away: Option<GoAwayCode>,
    pub(crate) remote_go_away: Option<GoAwayCode>,
    pub(crate) failed: bool,
    /// Sum of all streams' `window_size`, checked against
    /// [`Config::max_connection_receive_window`].
    pub(crate) granted_total: u64,
    /// Largest data body that can be valid: no window we grant exceeds it.
    pub(crate) max_body: u32,
    next_ping_at: Option<Instant>,
    /// Opaque value and send time of the unanswered keep-alive ping.
    pub(crate) ping_outstanding: Option<(u32, Instant)>,
    ping_nonce: u32,
    pub(crate) last_input_at: Instant,
    /// The rest of a data frame whose header and first bytes were consumed: the body still
    /// to come (length) and the flags that apply at its end (FIN, RST).
    pub(crate) partial_data: Option<Header>,
    /// Dropped streams waiting for the peer's FIN, by deadline (see `linger.rs`). Entries
    /// of streams that finished meanwhile are stale and skipped; the queue is compacted
    /// when stale entries pile up, so it stays within twice `max_streams`.
    pub(crate) lingering: VecDeque<(Instant, u32)>,
    /// Streams in the table with `linger_until` set.
    pub(crate) num_lingering: usize,
}

/// Appends a frame header to the outgoing buffer.
pub(crate) fn put(out: &mut BytesMut, header: Header) {
    header.encode(out);
}

/// Grows a stream's window toward `target` as far as the connection budget allows,
/// returning the growth (to add to the next window update).
pub(crate) fn grow_window(
    granted_total: &mut u64,
    budget: u64,
    target: u32,
    stream: &mut Stream,
) -> u32 {
    let want = target.saturating_sub(stream.window_size);
    let free = budget.saturating_sub(*granted_total);
    let extra = u32::try_from(free.min(u64::from(want))).unwrap_or(want);
    stream.window_size += extra;
    stream.recv_window += extra;
    *granted_total += u64::from(extra);
    extra
}

impl Session {
    /// A session for one side of a fresh connection.
    ///
    /// `config` values that would break the protocol are clamped (see [`Config`]).
    pub fn new(mode: Mode, config: Config, now: Instant) -> Self {
        let config = config.normalized();
        let next_ping_at = config.keepalive_interval.and_then(|i| now.checked_add(i));
        Session {
            mode,
            max_body: config.receive_window,
            config,
            streams: StreamMap::default(),
            next_outbound_id: match mode {
                Mode::Client => 1,
                Mode::Server => 2,
            },
            max_inbound_id: 0,
            accept_queue: VecDeque::new(),
            out: BytesMut::new(),
            events: EventQueue::new(),
            local_go_away: None,
            remote_go_away: None,
            failed: false,
            granted_total: 0,
            next_ping_at,
            ping_outstanding: None,
            ping_nonce: 0,
            last_input_at: now,
            partial_data: None,
            lingering: VecDeque::new(),
            num_lingering: 0,
        }
    }

    /// Our side of the connection.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether `id` has the parity of streams the peer opens.
    pub(crate) fn is_remote_id(&self, id: u32) -> bool {
        let odd = id % 2 == 1;
        match self.mode {
            Mode::Client => !odd,
            Mode::Server => odd,
        }
    }

    /// Whether a stream with this id existed at some point (so frames for it are a
    /// harmless race, not a violation).
    pub(crate) fn was_opened(&self, id: u32) -> bool {
        if self.is_remote_id(id) {
            id <= self.max_inbound_id
        } else {
            u64::from(id) < self.next_outbound_id
        }
    }

    /// Opens a stream. The SYN (a window update carrying our window growth) is queued in
    /// [`outgoing`](Session::outgoing) right away; data may follow before the peer's ACK.
    pub fn open_stream(&mut self) -> Result<StreamId, YamuxError> {
        if self.failed {
            return Err(YamuxError::SessionClosed);
        }
        if let Some(code) = self.remote_go_away {
            return Err(YamuxError::RemoteGoAway(code));
        }
        if self.local_go_away.is_some() {
            return Err(YamuxError::LocalGoAway);
        }
        if self.streams.len() >= self.config.max_streams {
            return Err(YamuxError::TooManyStreams(self.config.max_streams));
        }
        let id =
            u32::try_from(self.next_outbound_id).map_err(|_| YamuxError::StreamIdsExhausted)?;
        self.next_outbound_id += 2;
        let mut stream = Stream::new(true);
        self.granted_total += u64::from(DEFAULT_WINDOW);
        let extra = grow_window(
            &mut self.granted_total,
            self.config.max_connection_receive_window,
            self.config.receive_window,
            &mut stream,
        );
        put(&mut self.out, Header::window_update(id, Flags::SYN, extra));
        self.streams.insert(id, stream);
        Ok(StreamId::new(id))
    }

    /// The next inbound stream, if any; sends its ACK (with our window growth).
    ///
    /// Also re-arms [`Event::IncomingStream`]: call this until it returns `None`.
    pub fn accept_stream(&mut self) -> Option<StreamId> {
        if self.failed {
            return None;
        }
        let next = self.accept_queue.pop_front();
        self.events.rearm_incoming(self.accept_queue.is_empty());
        let id = next?;
        let stream = self.streams.get_mut(&id)?;
        stream.visible = true;
        let extra = if stream.read_closed {
            0
        } else {
            grow_window(
                &mut self.granted_total,
                self.config.max_connection_receive_window,
                self.config.receive_window,
                stream,
            )
        };
        put(&mut self.out, Header::window_update(id, Flags::ACK, extra));
        if stream.has_read_news() {
            self.events.notify(id, stream, EV_READABLE);
        }
        Some(StreamId::new(id))
    }

    fn visible_stream(&mut self, id: StreamId) -> Result<&mut Stream, StreamError> {
        if self.failed {
            return Err(StreamError::SessionClosed);
        }
        match self.streams.get_mut(&id.get()) {
            Some(stream) if stream.visible => Ok(stream),
            _ => Err(StreamError::UnknownStream(id)),
        }
    }

    /// Queues up to `data.len()` bytes on the stream, as many as its send window allows, in
    /// data frames of at most [`Config::max_frame_data`] bytes; returns how many.
    ///
    /// `Ok(0)` for non-empty `data` means the window is exhausted: wait for
    /// [`Event::Writable`]. Any short write arms that event.
    pub fn write(&mut self, id: StreamId, data: &[u8]) -> Result<usize, StreamError> {
        let max_frame = self.config.max_frame_data as usize;
        let n = self.take_send_window(id, data.len(), usize::MAX)?;
        let out = &mut self.out;
        out.reserve(n + HEADER_LEN * n.div_ceil(max_frame));
        for chunk in data[..n].chunks(max_frame) {
            put(out, Header::data(id.get(), Flags::NONE, chunk.len() as u32));
            out.put_slice(chunk);
        }
        Ok(n)
    }

    /// Takes up to `want` bytes of the stream's send window, at most `cap`, for a write;
    /// returns how many. A write the window cuts short arms [`Event::Writable`].
    fn take_send_window(
        &mut self,
        id: StreamId,
        want: usize,
        cap: usize,
    ) -> Result<usize, StreamError> {
        let stream = self.visible_stream(id)?;
        if stream.reset {
            return Err(StreamError::Reset(id));
        }
        if stream.write_closed {
            return Err(StreamError::WriteClosed(id));
        }
        let n = want.min(stream.send_window as usize);
        stream.write_blocked = n < want;
        let n = n.min(cap);
        // `n` fits in u32: it is at most the send window.
        stream.send_window -= n as u32;
        Ok(n)
    }

    /// Queues the header of one data frame of up to `len` bytes whose body the caller
    /// sends itself; returns the body's length (as many bytes as the send window and
    /// [`Config::max_frame_data`] allow), and `Ok(0)` as [`write`](Session::write) does.
    ///
    /// The header is the last thing in [`outgoing`](Session::outgoing) when this returns:
    /// the caller must send what `outgoing()` holds, then exactly that many body bytes, and
    /// only then anything queued later. A connection that encrypts straight from the
    /// application's buffer can use this to skip copying the body into the queue.
    pub fn write_header(&mut self, id: StreamId, len: usize) -> Result<usize, StreamError> {
        let max_frame = self.config.max_frame_data as usize;
        let n = self.take_send_window(id, len, max_frame)?;
        if n > 0 {
            put(&mut self.out, Header::data(id.get(), Flags::NONE, n as u32));
        }
        Ok(n)
    }

    /// The next chunk of received data (see [`ReadOutcome`]). Same as
    /// [`read_up_to`](Session::read_up_to) without a limit.
    pub fn read(&mut self, id: StreamId) -> Result<ReadOutcome, StreamError> {
        self.read_up_to(id, usize::MAX)
    }

    /// The next chunk of received data, at most `max` bytes (0 counts as 1).
    ///
    /// Chunks are slices of the input buffer where possible (zero copy). Reading gives the
    /// peer its window back: a window update goes out once half the window has been read.
    /// Also re-arms [`Event::Readable`] for the stream.
    pub fn read_up_to(&mut self, id: StreamId, max: usize) -> Result<ReadOutcome, StreamError> {
        let stream = self.readable_stream(id)?;
        let Some(chunk) = stream.recv.pop(max) else {
            return Ok(if stream.read_closed {
                ReadOutcome::Eof
            } else {
                ReadOutcome::Pending
            });
        };
        self.credit(id, chunk.len());
        Ok(ReadOutcome::Data(chunk))
    }

    /// Hands up to `max` bytes (0 counts as 1) of received data to `sink`, in order, as
    /// one or more slices: for a caller that copies them into a buffer of its own anyway
    /// (an `AsyncRead`). Unlike [`read_up_to`](Session::read_up_to) this allocates nothing,
    /// also for small frames, whose bytes stay in a buffer the stream reuses. Window
    /// updates and [`Event::Readable`] as for `read_up_to`.
    pub fn read_copy(
        &mut self,
        id: StreamId,
        max: usize,
        sink: impl FnMut(&[u8]),
    ) -> Result<CopyOutcome, StreamError> {
        let stream = self.readable_stream(id)?;
        let n = stream.recv.copy_out(max.max(1), sink);
        if n == 0 {
            return Ok(if stream.read_closed {
                CopyOutcome::Eof
            } else {
                CopyOutcome::Pending
            });
        }
        self.credit(id, n);
        Ok(CopyOutcome::Copied(n))
    }

    /// A stream the application may read from, with its readable event re-armed.
    fn readable_stream(&mut self, id: StreamId) -> Result<&mut Stream, StreamError> {
        if self.failed {
            return Err(StreamError::SessionClosed);
        }
        let stream = match self.streams.get_mut(&id.get()) {
            Some(stream) if stream.visible => stream,
            _ => return Err(StreamError::UnknownStream(id)),
        };
        stream.read_armed = true;
        if stream.reset && !stream.read_closed {
            return Err(StreamError::Reset(id));
        }
        Ok(stream)
    }

    /// Counts `n` bytes the application read from stream `id` as window to give back, and
    /// queues the window update once half the window is owed: a tiny update per read would
    /// cost a frame per read.
    fn credit(&mut self, id: StreamId, n: usize) {
        let budget = self.config.max_connection_receive_window;
        let target = self.config.receive_window;
        let Some(stream) = self.streams.get_mut(&id.get()) else {
            return;
        };
        if stream.read_closed {
            return;
        }
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        stream.unacked_credit = stream.unacked_credit.saturating_add(n);
        if stream.unacked_credit >= stream.window_size / 2 {
            let extra = grow_window(&mut self.granted_total, budget, target, stream);
            let delta = stream.unacked_credit.saturating_add(extra);
            stream.recv_window = stream.recv_window.saturating_add(stream.unacked_credit);
            stream.unacked_credit = 0;
            put(
                &mut self.out,
                Header::window_update(id.get(), Flags::NONE, delta),
            );
        }
    }

    /// Half-closes the stream: sends FIN; the peer may keep sending. Idempotent.
    pub fn close_write(&mut self, id: StreamId) -> Result<(), StreamError> {
        let stream = self.visible_stream(id)?;
        if stream.reset {
            return Err(StreamError::Reset(id));
        }
        if !stream.write_closed {
            stream.write_closed = true;
            stream.write_blocked = false;
            put(
                &mut self.out,
                Header::window_update(id.get(), Flags::FIN, 0),
            );
        }
        Ok(())
    }

    /// Resets the stream (RST) and forgets it; the id becomes unknown. No-op for unknown ids.
    pub fn reset(&mut self, id: StreamId) {
        let Some(stream) = self.streams.get(&id.get()) else {
            return;
        };
        if !stream.visible || self.failed {
            return;
        }
        // A fully closed stream is already gone on the peer's side.
        if !matches!(stream.state(), StreamState::Reset | StreamState::Closed) {
            put(
                &mut self.out,
                Header::window_update(id.get(), Flags::RST, 0),
            );
        }
        self.remove_stream(id.get());
    }

    /// The application dropped its handle at `now`: the id becomes unknown, and the
    /// stream ends the way the yamux spec and other implementations expect — with a FIN,
    /// never a reset of our own making, so nothing we wrote is destroyed by our close.
    ///
    /// Closed or reset streams are simply forgotten. Otherwise our FIN goes out (if not
    /// sent yet); unread data is discarded. A stream whose peer already sent FIN is then
    /// gone. One whose peer may still send lingers without a reader until the peer's FIN:
    /// it keeps counting against [`Config::max_streams`], what arrives on it is discarded,
    /// and it is reset (RST) if the peer sends more than
    /// [`Config::dropped_stream_max_bytes`] or has not closed within
    /// [`Config::dropped_stream_grace`] (see [`poll_timeout`](Session::poll_timeout)).
    pub fn drop_stream(&mut self, now: Instant, id: StreamId) {
        let Some(stream) = self.streams.get(&id.get()) else {
            return;
        };
        if !stream.visible || self.failed {
            return;
        }
        let state = stream.state();
        if matches!(state, StreamState::Open | StreamState::ReadClosed) {
            put(
                &mut self.out,
                Header::window_update(id.get(), Flags::FIN, 0),
            );
        }
        match state {
            StreamState::Open | StreamState::WriteClosed => self.start_lingering(now, id.get()),
            _ => self.remove_stream(id.get()),
        }
    }

    /// Removes a stream from every table and returns its window to the budget.
    pub(crate) fn remove_stream(&mut self, id: u32) {
        let Some(stream) = self.streams.remove(&id) else {
            return;
        };
        if stream.linger_until.is_some() {
            self.num_lingering -= 1;
        }
        self.events.remove(id, &stream);
        self.granted_total = self
            .granted_total
            .saturating_sub(u64::from(stream.window_size));
        if !stream.visible {
            if let Ok(pos) = self.accept_queue.binary_search(&id) {
                self.accept_queue.remove(pos);
            }
        }
    }

    /// Sends go away with `code` (once): the peer should open no more streams, and we open
    /// and admit none (new SYNs get RST). Existing streams, and streams already waiting in
    /// [`accept_stream`](Session::accept_stream), continue.
    ///
    /// rust-libp2p treats any go away as the end of the connection; go-yamux lets
    /// existing streams finish.
    pub fn go_away(&mut self, code: GoAwayCode) {
        if self.failed || self.local_go_away.is_some() {
            return;
        }
        self.local_go_away = Some(code);
        put(&mut self.out, Header::go_away(code));
    }

    /// Bytes to send to the peer, in order. The driver drains them (see the contract).
    pub fn outgoing(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// The next event, or `None` when there is nothing to report.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop(&mut self.streams)
    }

    /// When [`handle_timeout`](Session::handle_timeout) wants to run next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed {
            return None;
        }
        let deadline = self.ping_outstanding.and_then(|(_, sent)| {
            sent.max(self.last_input_at)
                .checked_add(self.config.keepalive_timeout)
        });
        [self.next_ping_at, deadline, self.next_linger_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Changes the keep-alive of a live session (tighter on the links an overlay relies
    /// on, so a link that dies silently is noticed in seconds): the next ping goes out
    /// `interval` after `now`, and a ping unanswered for `timeout` fails the session.
    pub fn set_keepalive(
        &mut self,
        interval: Option<std::time::Duration>,
        timeout: std::time::Duration,
        now: Instant,
    ) {
        self.config.keepalive_interval = interval;
        self.config.keepalive_timeout = timeout;
        self.next_ping_at = interval.and_then(|i| now.checked_add(i));
    }

    /// Runs the keep-alive: sends a ping when due; fails with
    /// [`YamuxError::KeepaliveTimeout`] when nothing was received for
    /// [`Config::keepalive_timeout`] after a ping. Resets dropped streams whose peer has
    /// not closed within [`Config::dropped_stream_grace`].
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), YamuxError> {
        if self.failed {
            return Err(YamuxError::SessionClosed);
        }
        self.expire_lingering(now);
        if let Some((_, sent)) = self.ping_outstanding {
            let silent_since = sent.max(self.last_input_at);
            if now.saturating_duration_since(silent_since) >= self.config.keepalive_timeout {
                let err = YamuxError::KeepaliveTimeout(self.config.keepalive_timeout);
                return Err(self.fail(err, None));
            }
        }
        if let (Some(at), Some(interval)) = (self.next_ping_at, self.config.keepalive_interval) {
            if now >= at {
                if self.ping_outstanding.is_none() {
                    self.ping_nonce = self.ping_nonce.wrapping_add(1);
                    put(&mut self.out, Header::ping(Flags::SYN, self.ping_nonce));
                    self.ping_outstanding = Some((self.ping_nonce, now));
                }
                self.next_ping_at = now.checked_add(interval);
            }
        }
        Ok(())
    }

    /// Marks the session failed, queues a go away with `code` if given, and drops all
    /// stream state; returns `err` for the caller to pass on.
    pub(crate) fn fail(&mut self, err: YamuxError, code: Option<GoAwayCode>) -> YamuxError {
        if !self.failed {
            self.failed = true;
            if let Some(code) = code {
                put(&mut self.out, Header::go_away(code));
                self.local_go_away = Some(code);
            }
            self.streams = StreamMap::default();
            self.accept_queue = VecDeque::new();
            self.lingering = VecDeque::new();
            self.num_lingering = 0;
            self.events.clear();
            self.granted_total = 0;
            self.ping_outstanding = None;
            self.next_ping_at = None;
        }
        err
    }
}
