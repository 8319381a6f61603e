//! Streams the application dropped before the peer closed its side: our FIN is sent and
//! the stream stays in the table, without a reader, until the peer's FIN; it is reset only
//! when the peer keeps sending past a byte cap or has not closed within a grace period.
//!
//! Why not reset at once: a reset tells the peer to throw away what it has not read yet
//! (js-libp2p does exactly that), so a responder that writes its answer, closes and drops
//! the stream would destroy the answer it just sent. rust-libp2p and go-yamux close a
//! finished stream the same way.
//!
//! What a lingering stream can make us hold is bounded: it counts against
//! `Config::max_streams`, its data is counted and discarded (never buffered), its window
//! is returned to the connection budget, and its deadline entry is compacted away once it
//! is stale. No IO and no clock here: deadlines come from the `now` of `drop_stream`.

use std::time::Instant;

use super::frame::{Flags, Header};
use super::session::{put, Session};

impl Session {
    /// Turns a stream the application dropped (our FIN already queued) into a lingering
    /// one: invisible, unread data released, waiting for the peer's FIN until
    /// `now + dropped_stream_grace`.
    pub(crate) fn start_lingering(&mut self, now: Instant, id: u32) {
        let deadline = now
            .checked_add(self.config.dropped_stream_grace)
            .unwrap_or(now);
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        self.events.remove(id, stream);
        stream.queued = false;
        stream.events = 0;
        stream.visible = false;
        stream.write_closed = true;
        stream.write_blocked = false;
        stream.recv.clear();
        // Nothing is buffered from here on: the window stops counting against the budget.
        self.granted_total = self
            .granted_total
            .saturating_sub(u64::from(stream.window_size));
        stream.window_size = 0;
        stream.linger_until = Some(deadline);
        self.num_lingering += 1;
        self.lingering.push_back((deadline, id));
        // Stale entries (streams that closed before their deadline) are only skipped when
        // they reach the front; bound them here.
        if self.lingering.len() > 2 * self.config.max_streams + 16 {
            let streams = &self.streams;
            self.lingering
                .retain(|&(at, id)| streams.get(&id).is_some_and(|s| s.linger_until == Some(at)));
        }
    }

    /// Data (`len` bytes, already checked against the window) on a lingering stream:
    /// counted and discarded. Resets the stream once the peer has sent more than
    /// `dropped_stream_max_bytes` since we dropped it.
    pub(crate) fn discard_lingering(&mut self, id: u32, len: u32) {
        let cap = self.config.dropped_stream_max_bytes;
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        stream.discarded = stream.discarded.saturating_add(len);
        if stream.discarded > cap {
            tracing::debug!(
                stream = id,
                bytes = stream.discarded,
                cap,
                "peer kept sending on a stream we dropped; resetting it"
            );
            self.reset_lingering(id);
        }
    }

    /// Resets every lingering stream whose grace ended by `now`.
    pub(crate) fn expire_lingering(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.lingering.front() {
            if deadline > now {
                break;
            }
            self.lingering.pop_front();
            let current = self
                .streams
                .get(&id)
                .is_some_and(|s| s.linger_until == Some(deadline));
            if current {
                tracing::debug!(
                    stream = id,
                    "peer did not close a stream we dropped; resetting it"
                );
                self.reset_lingering(id);
            }
        }
    }

    /// The earliest lingering deadline, possibly of a stream that has finished since (a
    /// spurious wake-up, never a missed one).
    pub(crate) fn next_linger_deadline(&self) -> Option<Instant> {
        self.lingering.front().map(|&(at, _)| at)
    }

    fn reset_lingering(&mut self, id: u32) {
        put(&mut self.out, Header::window_update(id, Flags::RST, 0));
        self.remove_stream(id);
    }
}
