//! Errors of the yamux session: connection-level failures and per-stream refusals.
//!
//! [`YamuxError`] from [`Session::handle_input`](super::Session::handle_input) or
//! [`Session::handle_timeout`](super::Session::handle_timeout) is fatal for the connection;
//! [`StreamError`] only concerns the one stream an application call named. Only types live
//! here, no logic.

use std::time::Duration;

use thiserror::Error;

use super::frame::{FrameError, FrameType, GoAwayCode};
use super::stream::StreamId;

/// A connection-level failure, or a refusal to open a stream.
///
/// Every variant returned by `handle_input` is a protocol violation by the peer: the
/// session has queued a go-away with [`GoAwayCode::ProtocolError`] in
/// [`Session::outgoing`](super::Session::outgoing); send it, then close the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum YamuxError {
    /// The bytes were not a valid frame (wrong version, unknown type, oversized body).
    #[error("malformed yamux frame: {0}")]
    Frame(#[from] FrameError),
    /// The peer sent more data on a stream than the window we granted it.
    #[error(
        "stream {stream}: data frame of {len} bytes exceeds the remaining window of {window} bytes"
    )]
    WindowExceeded {
        /// The stream the frame was for.
        stream: u32,
        /// The frame's body length.
        len: u32,
        /// The window the peer had left.
        window: u32,
    },
    /// A frame without SYN named a stream that was never opened.
    #[error("frame for stream {0}, which was never opened")]
    UnknownStream(u32),
    /// A SYN named a stream id of our parity, or id 0.
    #[error("peer opened stream {0}, an id it may not use")]
    InvalidStreamId(u32),
    /// A SYN named an id that is in use or was used before (ids must increase).
    #[error("peer opened stream {0} twice")]
    DuplicateStream(u32),
    /// A frame was sent on the wrong stream id: data or window update on the session
    /// (id 0), or go away on a stream.
    #[error("{frame_type:?} frame on stream id {stream_id}")]
    WrongStreamId {
        /// The frame's type.
        frame_type: FrameType,
        /// The id it carried.
        stream_id: u32,
    },
    /// Nothing arrived for the configured time after a keep-alive ping: the peer or the
    /// path is gone. Close the connection.
    #[error("no keep-alive answer within {0:?}")]
    KeepaliveTimeout(Duration),
    /// The session already failed; it accepts no more input. Drop it.
    #[error("yamux session already failed")]
    SessionClosed,
    /// (`open_stream`) The peer sent go away: it accepts no new streams on this connection.
    /// Open the stream on another connection.
    #[error("peer sent go away ({0}), no new streams")]
    RemoteGoAway(GoAwayCode),
    /// (`open_stream`) We sent go away ourselves; no new streams on this connection.
    #[error("we sent go away, no new streams")]
    LocalGoAway,
    /// (`open_stream`) [`Config::max_streams`](super::Config::max_streams) streams are
    /// alive; drop some or use another connection.
    #[error("stream limit of {0} reached")]
    TooManyStreams(usize),
    /// (`open_stream`) All 2^31 stream ids of our parity were used; open a new connection.
    #[error("stream ids exhausted")]
    StreamIdsExhausted,
}

/// Why an operation on one stream failed. The connection is unaffected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The id names no stream the application holds: never returned by `open_stream` /
    /// `accept_stream`, or already dropped or reset. A bug in the caller.
    #[error("no such stream: {0}")]
    UnknownStream(StreamId),
    /// The peer reset the stream (or refused to open it); unread data was discarded. Drop it.
    #[error("stream {0} was reset by the peer")]
    Reset(StreamId),
    /// `write` after `close_write`.
    #[error("stream {0} is closed for writing")]
    WriteClosed(StreamId),
    /// The session failed; every stream is gone.
    #[error("yamux session failed")]
    SessionClosed,
}
