//! Sans-IO tests: two sessions wired back to back, bytes moved by hand, time advanced by
//! hand; plus raw-frame injection for hostile peers.

mod copy;
mod flow;
mod hostile;
mod linger;
mod props;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::frame::{self, Frame, Header};
use super::{Config, Event, Mode, ReadOutcome, Session, StreamId, YamuxError};

/// A fixed base instant; the sessions only ever see it plus offsets.
#[allow(clippy::disallowed_methods)]
pub(super) fn t0() -> Instant {
    Instant::now()
}

/// A client and a server session connected by two in-memory byte pipes.
pub(super) struct Pair {
    pub(super) client: Session,
    pub(super) server: Session,
    pub(super) now: Instant,
    client_in: BytesMut,
    server_in: BytesMut,
}

impl Pair {
    pub(super) fn new() -> Self {
        Pair::with(Config::default(), Config::default())
    }

    pub(super) fn with(client: Config, server: Config) -> Self {
        let now = t0();
        Pair {
            client: Session::new(Mode::Client, client, now),
            server: Session::new(Mode::Server, server, now),
            now,
            client_in: BytesMut::new(),
            server_in: BytesMut::new(),
        }
    }

    /// Moves bytes both ways until neither side has anything to send.
    pub(super) fn pump(&mut self) {
        self.try_pump().expect("no protocol error");
    }

    pub(super) fn try_pump(&mut self) -> Result<(), YamuxError> {
        loop {
            let to_server = self.client.outgoing().split();
            let to_client = self.server.outgoing().split();
            if to_server.is_empty() && to_client.is_empty() {
                return Ok(());
            }
            if !to_server.is_empty() {
                self.server_in.extend_from_slice(&to_server);
                self.server.handle_input(self.now, &mut self.server_in)?;
            }
            if !to_client.is_empty() {
                self.client_in.extend_from_slice(&to_client);
                self.client.handle_input(self.now, &mut self.client_in)?;
            }
        }
    }

    /// Moves the time forward and runs both sides' timers if due.
    pub(super) fn advance(
        &mut self,
        by: Duration,
    ) -> (Result<(), YamuxError>, Result<(), YamuxError>) {
        self.now += by;
        let now = self.now;
        let run = |session: &mut Session| match session.poll_timeout() {
            Some(at) if at <= now => session.handle_timeout(now),
            _ => Ok(()),
        };
        (run(&mut self.client), run(&mut self.server))
    }

    /// Opens a stream on the client, accepts it on the server.
    pub(super) fn open(&mut self) -> (StreamId, StreamId) {
        let c = self.client.open_stream().expect("open");
        self.pump();
        let s = self.server.accept_stream().expect("inbound stream");
        assert_eq!(c, s);
        self.pump();
        (c, s)
    }
}

pub(super) fn events(session: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

/// Reads everything buffered now; returns the data and whether EOF was reached.
pub(super) fn read_all(session: &mut Session, id: StreamId) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        match session.read(id).expect("read") {
            ReadOutcome::Data(bytes) => out.extend_from_slice(&bytes),
            ReadOutcome::Pending => return (out, false),
            ReadOutcome::Eof => return (out, true),
        }
    }
}

/// Decodes every frame a session queued (and clears its outgoing buffer).
pub(super) fn sent_frames(session: &mut Session) -> Vec<Frame> {
    let mut out = session.outgoing().split();
    let mut frames = Vec::new();
    while let Some(frame) = frame::decode(&mut out, u32::MAX).expect("own frames decode") {
        frames.push(frame);
    }
    assert!(out.is_empty(), "no trailing partial frame");
    frames
}

/// Encodes raw frames as a hostile peer would send them.
pub(super) fn wire(frames: &[(Header, &[u8])]) -> BytesMut {
    let mut out = BytesMut::new();
    for (header, body) in frames {
        Frame {
            header: *header,
            body: Bytes::copy_from_slice(body),
        }
        .encode(&mut out);
    }
    out
}

/// Re-encodes decoded frames, to hand them to the other side after inspecting them.
pub(super) fn wire_of(frames: &[Frame]) -> BytesMut {
    let mut out = BytesMut::new();
    for frame in frames {
        frame.clone().encode(&mut out);
    }
    out
}
