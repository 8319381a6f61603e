//! yamux stream multiplexing, as specified by hashicorp/yamux `spec.md`, sans IO.
//!
//! One [`Session`] per connection turns received plaintext into stream events and data,
//! and application commands into frames in one outgoing buffer. It interoperates with
//! rust-libp2p's `yamux` and go-yamux. It never touches a socket or a clock: the driver
//! feeds bytes and `now` in and sends [`Session::outgoing`] out; the calling contract is on
//! [`Session`].
//!
//! Speed: received data is handed to readers as `Bytes` split off the input buffer (small
//! frames are copied, see [`Config::copy_threshold`]); writes append frames straight into
//! one `BytesMut`; windows default to 16 MiB per stream. Nothing on the data path
//! allocates per frame.
//!
//! Safety: every peer-controlled quantity is bounded — data bodies by the window we
//! granted (checked from the header, before buffering), streams by
//! [`Config::max_streams`] and [`Config::max_pending_accept`] (excess SYNs get RST), total
//! buffered data by [`Config::max_connection_receive_window`], the event queue by the
//! number of streams, streams the application dropped by the stream limit, a byte cap and
//! a grace period (their data is discarded). Violations are [`YamuxError`]s that end the
//! connection with a go away, never panics.
//!
//! ```
//! use std::time::Instant;
//! use bytes::BytesMut;
//! use pheromone_core::yamux::{Config, Event, Mode, ReadOutcome, Session};
//!
//! # #[allow(clippy::disallowed_methods)]
//! let now = Instant::now();
//! let mut client = Session::new(Mode::Client, Config::default(), now);
//! let mut server = Session::new(Mode::Server, Config::default(), now);
//!
//! let id = client.open_stream()?;
//! client.write(id, b"hello")?;
//! client.close_write(id)?;
//!
//! // The driver moves bytes: here straight from one session to the other.
//! let mut wire = client.outgoing().split();
//! server.handle_input(now, &mut wire)?;
//! assert_eq!(server.poll_event(), Some(Event::IncomingStream));
//! let inbound = server.accept_stream().expect("a stream");
//! assert_eq!(server.read(inbound)?, ReadOutcome::Data(bytes::Bytes::from_static(b"hello")));
//! assert_eq!(server.read(inbound)?, ReadOutcome::Eof);
//! server.drop_stream(now, inbound);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! - `frame.rs`: the wire codec ([`frame::Header`], [`frame::Frame`], [`frame::decode`]).
//! - `session.rs`: [`Session`] and the application commands; `inbound.rs`: frames from
//!   the peer; `linger.rs`: dropped streams waiting for the peer's FIN.
//! - `stream.rs`: per-stream state; `event.rs`: [`Event`] and its bounded queue.
//! - `config.rs`, `error.rs`: [`Config`], [`Mode`], [`YamuxError`], [`StreamError`].

pub mod frame;

mod config;
mod error;
mod event;
mod inbound;
mod inspect;
mod linger;
mod session;
mod stream;

#[cfg(test)]
mod tests;

pub use config::{Config, Mode};
pub use error::{StreamError, YamuxError};
pub use event::Event;
pub use frame::{GoAwayCode, HEADER_LEN};
pub use session::Session;
pub use stream::{CopyOutcome, ReadOutcome, StreamId, StreamState};

/// Fuzz target bodies for the yamux decoders; not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use std::time::{Duration, Instant};

    use bytes::BytesMut;

    use super::{frame, Config, Mode, ReadOutcome, Session};

    /// Decodes arbitrary bytes as a sequence of frames; must never panic.
    pub fn fuzz_decode_frame(data: &[u8]) {
        let mut buf = BytesMut::from(data);
        while let Ok(Some(frame)) = frame::decode(&mut buf, 1 << 20) {
            assert_eq!(frame.header.body_len() as usize, frame.body.len());
        }
    }

    /// Feeds arbitrary bytes into a session (mode and chunking chosen by the first byte),
    /// exercising accept, read, write, drop and timeouts between chunks. Must never panic
    /// and must keep the stream limits.
    pub fn fuzz_session_input(data: &[u8]) {
        let Some((&first, rest)) = data.split_first() else {
            return;
        };
        let mode = if first & 1 == 0 {
            Mode::Client
        } else {
            Mode::Server
        };
        let config = Config {
            max_streams: 8,
            max_pending_accept: 4,
            max_connection_receive_window: 1 << 20,
            max_frame_data: 64,
            copy_threshold: 16,
            keepalive_interval: Some(Duration::from_secs(1)),
            keepalive_timeout: Duration::from_secs(2),
            ..Config::default()
        };
        let (max_streams, max_pending) = (config.max_streams, config.max_pending_accept);
        // Only the base of a virtual clock; the session never reads it itself.
        #[allow(clippy::disallowed_methods)]
        let mut now = Instant::now();
        let mut session = Session::new(mode, config, now);
        let mut held = Vec::new();
        if first & 2 != 0 {
            if let Ok(id) = session.open_stream() {
                held.push(id);
            }
        }
        let chunk = 1 + usize::from(first >> 2) * 3;
        let mut input = BytesMut::new();
        for piece in rest.chunks(chunk) {
            input.extend_from_slice(piece);
            if session.handle_input(now, &mut input).is_err() {
                assert!(session.is_closed());
                assert!(session.handle_input(now, &mut input).is_err());
                return;
            }
            assert!(session.num_streams() <= max_streams);
            assert!(session.pending_accept() <= max_pending);
            while let Some(id) = session.accept_stream() {
                held.push(id);
            }
            while session.poll_event().is_some() {}
            for (i, &id) in held.iter().enumerate() {
                while let Ok(ReadOutcome::Data(bytes)) = session.read(id) {
                    assert!(!bytes.is_empty());
                }
                let _ = session.write(id, &piece[..piece.len().min(100)]);
                if i % 3 == 0 {
                    let _ = session.close_write(id);
                }
            }
            if piece.first().is_some_and(|b| b & 0x10 != 0) {
                if let Some(id) = held.pop() {
                    session.drop_stream(now, id);
                }
            }
            session.outgoing().clear();
            now += Duration::from_millis(500);
            if session.handle_timeout(now).is_err() {
                return;
            }
        }
    }
}
