//! Session roles and the limits a session enforces.
//!
//! Plain data only: the values are read by [`Session::new`](super::Session::new), which
//! clamps the ones that would break the protocol (see each field). Nothing here touches
//! the network or the clock.

use std::time::Duration;

use super::frame::DEFAULT_WINDOW;

/// Which side of the connection a session is; it decides stream id parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The dialer: opens streams with odd ids.
    Client,
    /// The listener: opens streams with even ids.
    Server,
}

/// Limits and tuning of one yamux session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Most streams alive at once, both directions together (default 512, as rust-libp2p).
    /// An inbound SYN beyond it is answered with RST and the connection stays up;
    /// [`Session::open_stream`](super::Session::open_stream) fails beyond it. A stream
    /// counts until the application drops or resets it.
    pub max_streams: usize,
    /// Most inbound streams waiting for
    /// [`Session::accept_stream`](super::Session::accept_stream) (default 256). Beyond it
    /// inbound SYNs are answered with RST, so a slow application pushes back instead of
    /// buffering. Unaccepted streams only ever get the spec's initial 256 KiB window.
    pub max_pending_accept: usize,
    /// Receive window granted to each stream once accepted or opened (default 16 MiB, so one
    /// stream can fill a fast link with a few milliseconds of RTT). Values below the spec's
    /// initial 256 KiB are raised to it: windows can only grow on the wire.
    pub receive_window: u32,
    /// Cap on the sum of all streams' receive windows (default 256 MiB). Each stream always
    /// has the spec's initial 256 KiB; growing beyond it takes from this budget, so a peer
    /// that opens many streams cannot make us buffer `max_streams * receive_window`.
    pub max_connection_receive_window: u64,
    /// Largest data frame body we send (default 256 KiB; rust-libp2p accepts up to 1 MiB,
    /// go-yamux up to the window). Values below 1 are raised to 1.
    pub max_frame_data: u32,
    /// Received data frames with bodies shorter than this are copied into a per-stream
    /// buffer instead of being handed out as slices of the input buffer (default 8 KiB).
    /// A zero-copy slice keeps the driver's whole receive buffer alive, so without this a
    /// peer trickling one-byte frames could pin many buffers per byte of window.
    pub copy_threshold: usize,
    /// How often to send a keep-alive ping (default 15 s); `None` sends none (pings from
    /// the peer are still answered).
    pub keepalive_interval: Option<Duration>,
    /// How long the connection may stay silent after a keep-alive ping before the session
    /// fails with [`YamuxError::KeepaliveTimeout`](super::YamuxError::KeepaliveTimeout)
    /// (default 20 s, as the libp2p ping protocol's timeout). Any received byte counts as
    /// life, so a pong queued behind bulk data does not kill a busy link.
    pub keepalive_timeout: Duration,
    /// How long a stream the application dropped before the peer closed its side waits
    /// for the peer's FIN (default 10 s). Dropping sends our FIN; the stream then stays in
    /// the table, counted against [`max_streams`](Config::max_streams), until the peer
    /// closes or resets it. Past this it is reset (RST).
    pub dropped_stream_grace: Duration,
    /// Most bytes the peer may still send on a stream the application dropped (default
    /// 64 KiB). They are counted and discarded, never buffered; beyond this the stream is
    /// reset (RST) at once.
    pub dropped_stream_max_bytes: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_streams: 512,
            max_pending_accept: 256,
            receive_window: 16 * 1024 * 1024,
            max_connection_receive_window: 256 * 1024 * 1024,
            max_frame_data: 256 * 1024,
            copy_threshold: 8 * 1024,
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_timeout: Duration::from_secs(20),
            dropped_stream_grace: Duration::from_secs(10),
            dropped_stream_max_bytes: 64 * 1024,
        }
    }
}

impl Config {
    /// The config with values that would break the protocol clamped (see field docs).
    pub(crate) fn normalized(mut self) -> Self {
        self.receive_window = self.receive_window.max(DEFAULT_WINDOW);
        self.max_frame_data = self.max_frame_data.max(1);
        self
    }
}
