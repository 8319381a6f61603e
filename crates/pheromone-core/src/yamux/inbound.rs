//! Handling of frames from the peer: parsing the input buffer, opening, accepting,
//! closing and resetting streams on the peer's word, flow-control checks, pings and
//! go-aways.
//!
//! Every input is hostile: lengths are capped from the header alone, ids are checked
//! against what was really opened, and every violation is a typed, connection-fatal error.
//! Data bodies are split off the input (or copied when small), never allocated per frame.

use std::time::Instant;

use bytes::{Buf, BytesMut};

use super::error::YamuxError;
use super::frame::{self, Flags, FrameType, GoAwayCode, Header, DEFAULT_WINDOW, HEADER_LEN};
use super::session::{put, Session};
use super::stream::{RecvBuf, Stream, EV_READABLE, EV_RESET, EV_WRITABLE};

/// A data frame body still in the input buffer. It is consumed exactly once: delivered to
/// a stream, or skipped when dropped (ignored frames, errors).
struct Body<'a> {
    input: &'a mut BytesMut,
    len: usize,
}

impl Body<'_> {
    fn deliver_to(mut self, recv: &mut RecvBuf, copy_threshold: usize) {
        let len = std::mem::take(&mut self.len);
        if len == 0 {
        } else if len < copy_threshold {
            recv.push_copy(&self.input[..len]);
            self.input.advance(len);
        } else {
            recv.push_shared(self.input.split_to(len).freeze());
        }
    }
}

impl Drop for Body<'_> {
    fn drop(&mut self) {
        self.input.advance(self.len);
    }
}

impl Session {
    /// Feeds received plaintext: consumes every complete frame at the front of `input` and
    /// leaves a trailing partial frame there for the next call.
    ///
    /// An `Err` is a protocol violation by the peer (or [`YamuxError::SessionClosed`] after
    /// an earlier failure): the session has queued a go away with
    /// [`GoAwayCode::ProtocolError`] in [`outgoing`](Session::outgoing), is dead, and the
    /// connection should be closed once that is sent.
    pub fn handle_input(&mut self, now: Instant, input: &mut BytesMut) -> Result<(), YamuxError> {
        if self.failed {
            return Err(YamuxError::SessionClosed);
        }
        if !input.is_empty() {
            self.last_input_at = now;
        }
        match self.process(now, input) {
            Ok(()) => Ok(()),
            Err(err) => {
                tracing::debug!(%err, "yamux protocol violation by peer");
                Err(self.fail(err, Some(GoAwayCode::ProtocolError)))
            }
        }
    }

    fn process(&mut self, now: Instant, input: &mut BytesMut) -> Result<(), YamuxError> {
        if !self.continue_partial_data(input)? {
            return Ok(());
        }
        while let Some(header) = frame::peek_header(input, self.max_body)? {
            match header.frame_type {
                FrameType::Data => {
                    let len = header.length as usize;
                    if input.len() - HEADER_LEN < len {
                        // Reject what the header alone proves wrong now, then hand over
                        // the part of the body that is here: buffering a large frame
                        // until it is whole would cost a copy of every byte.
                        self.check_stream_frame(&header)?;
                        input.advance(HEADER_LEN);
                        return self.start_partial_data(header, input);
                    }
                    input.advance(HEADER_LEN);
                    self.on_stream_frame(header, Body { input, len })?;
                }
                FrameType::WindowUpdate => {
                    input.advance(HEADER_LEN);
                    self.on_stream_frame(header, Body { input, len: 0 })?;
                }
                FrameType::Ping => {
                    input.advance(HEADER_LEN);
                    self.on_ping(now, header);
                }
                FrameType::GoAway => {
                    input.advance(HEADER_LEN);
                    self.on_go_away(header)?;
                }
            }
        }
        Ok(())
    }

    /// Delivers the first `input.len()` bytes of a data frame whose body is longer, as a
    /// frame of its own with the opening flags (SYN, ACK); the rest, with the closing flags
    /// (FIN, RST), is remembered in `partial_data`. The frame was checked whole.
    fn start_partial_data(
        &mut self,
        header: Header,
        input: &mut BytesMut,
    ) -> Result<(), YamuxError> {
        let avail = input.len() as u32;
        let closing =
            Flags::from_bits(header.flags.bits() & (Flags::FIN.bits() | Flags::RST.bits()));
        let opening = Flags::from_bits(header.flags.bits() & !closing.bits());
        let first = Header {
            flags: opening,
            length: avail,
            ..header
        };
        self.partial_data = Some(Header {
            flags: closing,
            length: header.length - avail,
            ..header
        });
        self.on_stream_frame(
            first,
            Body {
                input,
                len: avail as usize,
            },
        )
    }

    /// Continues a data frame begun in an earlier call. `Ok(true)` when it is complete and
    /// the next frame header may be parsed.
    fn continue_partial_data(&mut self, input: &mut BytesMut) -> Result<bool, YamuxError> {
        let Some(rest) = self.partial_data.take() else {
            return Ok(true);
        };
        let len = rest.length as usize;
        if input.len() >= len {
            self.on_stream_frame(rest, Body { input, len })?;
            return Ok(true);
        }
        let avail = input.len() as u32;
        self.partial_data = Some(Header {
            length: rest.length - avail,
            ..rest
        });
        if avail > 0 {
            let part = Header {
                flags: Flags::NONE,
                length: avail,
                ..rest
            };
            self.on_stream_frame(
                part,
                Body {
                    input,
                    len: avail as usize,
                },
            )?;
        }
        Ok(false)
    }

    /// The checks of [`Session::on_stream_frame`] that need no state change, for a data
    /// frame whose body has not fully arrived.
    fn check_stream_frame(&self, header: &Header) -> Result<(), YamuxError> {
        let id = header.stream_id;
        if id == 0 {
            return Err(YamuxError::WrongStreamId {
                frame_type: header.frame_type,
                stream_id: id,
            });
        }
        let window = if header.flags.contains(Flags::SYN) {
            self.check_syn(id)?;
            DEFAULT_WINDOW
        } else {
            match self.streams.get(&id) {
                Some(stream) if !stream.reset => stream.recv_window,
                Some(_) => return Ok(()),
                None if self.was_opened(id) => return Ok(()),
                None => return Err(YamuxError::UnknownStream(id)),
            }
        };
        if header.length > window {
            return Err(YamuxError::WindowExceeded {
                stream: id,
                len: header.length,
                window,
            });
        }
        Ok(())
    }

    fn check_syn(&self, id: u32) -> Result<(), YamuxError> {
        if !self.is_remote_id(id) {
            return Err(YamuxError::InvalidStreamId(id));
        }
        if id <= self.max_inbound_id {
            return Err(YamuxError::DuplicateStream(id));
        }
        Ok(())
    }

    /// Whether a new inbound stream may be created now.
    fn admits_inbound(&self) -> bool {
        self.local_go_away.is_none()
            && self.streams.len() < self.config.max_streams
            && self.accept_queue.len() < self.config.max_pending_accept
    }

    /// A data or window update frame.
    fn on_stream_frame(&mut self, header: Header, body: Body<'_>) -> Result<(), YamuxError> {
        let id = header.stream_id;
        let flags = header.flags;
        if id == 0 {
            return Err(YamuxError::WrongStreamId {
                frame_type: header.frame_type,
                stream_id: id,
            });
        }
        if flags.contains(Flags::SYN) {
            self.check_syn(id)?;
            if header.frame_type == FrameType::Data && header.length > DEFAULT_WINDOW {
                return Err(YamuxError::WindowExceeded {
                    stream: id,
                    len: header.length,
                    window: DEFAULT_WINDOW,
                });
            }
            self.max_inbound_id = id;
            if !self.admits_inbound() {
                tracing::debug!(stream = id, "refusing inbound yamux stream");
                put(&mut self.out, Header::window_update(id, Flags::RST, 0));
                return Ok(());
            }
            self.granted_total += u64::from(DEFAULT_WINDOW);
            self.streams.insert(id, Stream::new(false));
            self.accept_queue.push_back(id);
            self.events.incoming();
        }
        let Some(stream) = self.streams.get_mut(&id) else {
            // Frames for a stream we already dropped or reset are a race, not a fault.
            return if self.was_opened(id) {
                Ok(())
            } else {
                Err(YamuxError::UnknownStream(id))
            };
        };
        if stream.reset {
            return Ok(());
        }
        if stream.linger_until.is_some() {
            // The body, if any, is skipped when `body` drops.
            return self.on_lingering_frame(header);
        }
        if flags.contains(Flags::ACK) && stream.outbound {
            stream.acknowledged = true;
        }
        if header.frame_type == FrameType::WindowUpdate {
            stream.send_window = stream.send_window.saturating_add(header.length);
            if stream.write_blocked && stream.send_window > 0 && !stream.write_closed {
                stream.write_blocked = false;
                self.events.notify(id, stream, EV_WRITABLE);
            }
        } else {
            let len = header.length;
            if len > stream.recv_window {
                return Err(YamuxError::WindowExceeded {
                    stream: id,
                    len,
                    window: stream.recv_window,
                });
            }
            stream.recv_window -= len;
            // Data after the peer's FIN is its bug; it is counted but not delivered.
            if len > 0 && !stream.read_closed {
                body.deliver_to(&mut stream.recv, self.config.copy_threshold);
                self.events.notify(id, stream, EV_READABLE);
            }
        }
        if flags.contains(Flags::FIN) && !stream.read_closed {
            stream.read_closed = true;
            self.events.notify(id, stream, EV_READABLE);
        }
        if flags.contains(Flags::RST) {
            self.on_remote_reset(id);
        }
        Ok(())
    }

    /// A data or window update frame for a stream the application dropped: data is
    /// checked against the window, counted and discarded; the peer's FIN or RST ends it.
    fn on_lingering_frame(&mut self, header: Header) -> Result<(), YamuxError> {
        let id = header.stream_id;
        let Some(stream) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        if header.frame_type == FrameType::Data {
            let len = header.length;
            if len > stream.recv_window {
                return Err(YamuxError::WindowExceeded {
                    stream: id,
                    len,
                    window: stream.recv_window,
                });
            }
            stream.recv_window -= len;
            if len > 0 {
                self.discard_lingering(id, len);
            }
        }
        if header.flags.contains(Flags::FIN) || header.flags.contains(Flags::RST) {
            // Both sides closed (or the peer gave up): nothing is left to wait for.
            self.remove_stream(id);
        }
        Ok(())
    }

    /// The peer reset (or refused) a stream. Unaccepted streams vanish; others stay as a
    /// tombstone so the application learns of it, with their window released. Data the
    /// peer completed with FIN before resetting stays readable: a peer that answers, closes
    /// and drops its stream without reading our side (as identify responders do) has still
    /// delivered its whole answer.
    fn on_remote_reset(&mut self, id: u32) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if !stream.visible {
            self.remove_stream(id);
            return;
        }
        stream.reset = true;
        stream.write_blocked = false;
        if !stream.read_closed {
            stream.recv.clear();
        }
        self.granted_total = self
            .granted_total
            .saturating_sub(u64::from(stream.window_size));
        stream.window_size = 0;
        self.events.notify(id, stream, EV_RESET);
    }

    fn on_ping(&mut self, now: Instant, header: Header) {
        // rust-libp2p may ping on a stream id; echo whatever id came.
        if header.flags.contains(Flags::SYN) {
            let reply = Header {
                flags: Flags::ACK,
                ..header
            };
            put(&mut self.out, reply);
        } else if header.flags.contains(Flags::ACK) {
            if let Some((nonce, sent)) = self.ping_outstanding {
                if nonce == header.length {
                    self.ping_outstanding = None;
                    self.events.rtt(now.saturating_duration_since(sent));
                }
            }
        }
    }

    fn on_go_away(&mut self, header: Header) -> Result<(), YamuxError> {
        if header.stream_id != 0 {
            return Err(YamuxError::WrongStreamId {
                frame_type: header.frame_type,
                stream_id: header.stream_id,
            });
        }
        if self.remote_go_away.is_none() {
            let code = GoAwayCode::from_u32(header.length);
            self.remote_go_away = Some(code);
            self.events.go_away(code);
        }
        Ok(())
    }
}
