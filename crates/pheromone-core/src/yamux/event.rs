//! Events the session reports to its driver, and the bounded queue that holds them.
//!
//! Events are edge-triggered and coalesced: per stream a bit per kind plus "is queued"
//! flag, so the queue never holds a stream twice and never grows beyond the number of
//! streams; session-wide events are single slots. Nothing here touches frames.

use std::collections::VecDeque;
use std::time::Duration;

use super::frame::GoAwayCode;
use super::session::StreamMap;
use super::stream::{Stream, StreamId, EV_READABLE, EV_RESET, EV_WRITABLE};

/// Something the driver should act on; see [`Session::poll_event`](super::Session::poll_event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// [`Session::accept_stream`](super::Session::accept_stream) has at least one stream.
    /// Raised when the first one arrives after the last `accept_stream` call; call it until
    /// it returns `None`.
    IncomingStream,
    /// The stream has data, end of stream or a reset to read. Not raised again until the
    /// application calls `read` on it.
    Readable(StreamId),
    /// A stream whose `write` came up short got send window again.
    Writable(StreamId),
    /// The peer reset the stream, or refused it; reads and writes now fail. Drop it.
    Reset(StreamId),
    /// The peer sent go away: no new streams; existing ones may continue. A non-normal code
    /// usually means the peer is about to close the connection.
    GoAwayReceived(GoAwayCode),
    /// A keep-alive ping was answered after this round-trip time.
    PingRtt(Duration),
}

/// Pending events; see the module doc for why it is bounded.
#[derive(Debug)]
pub(crate) struct EventQueue {
    streams: VecDeque<u32>,
    incoming_armed: bool,
    incoming: bool,
    go_away: Option<GoAwayCode>,
    rtt: Option<Duration>,
}

impl EventQueue {
    pub(crate) fn new() -> Self {
        EventQueue {
            streams: VecDeque::new(),
            incoming_armed: true,
            incoming: false,
            go_away: None,
            rtt: None,
        }
    }

    /// A stream was queued for accepting.
    pub(crate) fn incoming(&mut self) {
        if self.incoming_armed {
            self.incoming_armed = false;
            self.incoming = true;
        }
    }

    /// The application called `accept_stream`: the next arrival is news again, and a
    /// pending notice is stale once nothing is left to accept.
    pub(crate) fn rearm_incoming(&mut self, nothing_left: bool) {
        self.incoming_armed = true;
        if nothing_left {
            self.incoming = false;
        }
    }

    pub(crate) fn go_away(&mut self, code: GoAwayCode) {
        self.go_away = Some(code);
    }

    pub(crate) fn rtt(&mut self, rtt: Duration) {
        self.rtt = Some(rtt);
    }

    /// Raises `bit` for a stream, unless the application cannot know it yet or it is
    /// already pending. Readable is also held back until the application read again.
    pub(crate) fn notify(&mut self, id: u32, stream: &mut Stream, bit: u8) {
        if !stream.visible {
            return;
        }
        if bit == EV_READABLE {
            if !stream.read_armed {
                return;
            }
            stream.read_armed = false;
        }
        if bit == EV_RESET {
            // A reset makes pending readable/writable news moot.
            stream.events = EV_RESET;
        } else {
            stream.events |= bit;
        }
        if !stream.queued {
            stream.queued = true;
            self.streams.push_back(id);
        }
    }

    /// Forgets a stream that is being removed.
    pub(crate) fn remove(&mut self, id: u32, stream: &Stream) {
        if stream.queued {
            self.streams.retain(|&queued| queued != id);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.streams.clear();
        self.incoming = false;
    }

    pub(crate) fn pop(&mut self, streams: &mut StreamMap) -> Option<Event> {
        if let Some(code) = self.go_away.take() {
            return Some(Event::GoAwayReceived(code));
        }
        if std::mem::take(&mut self.incoming) {
            return Some(Event::IncomingStream);
        }
        if let Some(rtt) = self.rtt.take() {
            return Some(Event::PingRtt(rtt));
        }
        while let Some(id) = self.streams.pop_front() {
            let Some(stream) = streams.get_mut(&id) else {
                continue;
            };
            stream.queued = false;
            let bit = if stream.events & EV_RESET != 0 {
                EV_RESET
            } else if stream.events & EV_READABLE != 0 {
                EV_READABLE
            } else if stream.events & EV_WRITABLE != 0 {
                EV_WRITABLE
            } else {
                continue;
            };
            stream.events &= !bit;
            if stream.events != 0 {
                stream.queued = true;
                self.streams.push_front(id);
            }
            let id = StreamId::new(id);
            return Some(match bit {
                EV_RESET => Event::Reset(id),
                EV_READABLE => Event::Readable(id),
                _ => Event::Writable(id),
            });
        }
        None
    }
}
