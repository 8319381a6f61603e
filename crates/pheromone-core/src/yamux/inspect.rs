//! What the application and the driver may ask a session about itself: stream states,
//! windows, buffered bytes, counts, go-away codes, and whether it is finished. Also the
//! one memory command the driver needs (`unshare_received`). Read-only apart from that; the
//! commands that change streams are in `session.rs`, the peer's frames in `inbound.rs`.

use super::frame::GoAwayCode;
use super::session::Session;
use super::stream::{Stream, StreamId, StreamState};

impl Session {
    /// The state of a stream the application holds, `None` for unknown ids.
    pub fn stream_state(&self, id: StreamId) -> Option<StreamState> {
        self.streams
            .get(&id.get())
            .filter(|s| s.visible)
            .map(Stream::state)
    }

    /// Bytes the stream may send right now, `None` for unknown ids.
    pub fn send_window(&self, id: StreamId) -> Option<u32> {
        self.streams
            .get(&id.get())
            .filter(|s| s.visible)
            .map(|s| s.send_window)
    }

    /// Bytes received on the stream and not yet read, `None` for unknown ids.
    pub fn buffered(&self, id: StreamId) -> Option<usize> {
        self.streams
            .get(&id.get())
            .filter(|s| s.visible)
            .map(|s| s.recv.len())
    }

    /// Whether the peer acknowledged a stream we opened (`None` for unknown ids; `true` for
    /// inbound streams).
    pub fn is_acknowledged(&self, id: StreamId) -> Option<bool> {
        self.streams
            .get(&id.get())
            .filter(|s| s.visible)
            .map(|s| s.acknowledged || !s.outbound)
    }

    /// Gives every received, unread chunk that is a slice of the driver's input buffer a
    /// copy of its own, so that the input buffers it pinned can be reused or freed; the
    /// bytes copied. The driver calls this when unread data pins more of its receive
    /// buffers than it allows a connection to hold: memory then follows what is buffered
    /// (bounded by the windows), not which buffers the frames happened to land in.
    pub fn unshare_received(&mut self) -> usize {
        self.streams.values_mut().map(|s| s.recv.unshare()).sum()
    }

    /// Bytes received and not yet read, over all streams.
    pub fn buffered_total(&self) -> usize {
        self.streams.values().map(|s| s.recv.len()).sum()
    }

    /// Streams alive, both directions, including those waiting to be accepted and those
    /// dropped but waiting for the peer's FIN: the number [`Config::max_streams`] caps.
    pub fn num_streams(&self) -> usize {
        self.streams.len()
    }

    /// Streams the application dropped that still wait for the peer's FIN (counted in
    /// [`num_streams`](Session::num_streams)).
    pub fn num_lingering(&self) -> usize {
        self.num_lingering
    }

    /// Inbound streams waiting for [`accept_stream`](Session::accept_stream).
    pub fn pending_accept(&self) -> usize {
        self.accept_queue.len()
    }

    /// The go-away code we sent, if any.
    pub fn local_go_away(&self) -> Option<GoAwayCode> {
        self.local_go_away
    }

    /// The go-away code the peer sent, if any.
    pub fn remote_go_away(&self) -> Option<GoAwayCode> {
        self.remote_go_away
    }

    /// Whether the session failed (protocol error or keep-alive timeout).
    pub fn is_closed(&self) -> bool {
        self.failed
    }

    /// Whether the connection has nothing left to do: failed, or a go away was sent or
    /// received and no stream is left. The driver may close it once `outgoing()` is flushed.
    pub fn is_finished(&self) -> bool {
        self.failed
            || ((self.local_go_away.is_some() || self.remote_go_away.is_some())
                && self.streams.is_empty())
    }
}
