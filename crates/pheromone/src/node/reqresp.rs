//! Request/response over one stream per request: the IO half of [`super::wire`].
//!
//! The requester opens a stream with lazy multistream-select (the proposal and the request
//! leave together, no extra round trip), writes `uvarint length ‖ bytes` and reads
//! `status ‖ uvarint length ‖ bytes`. In long mode it keeps the stream for its next request
//! of the same protocol (see `request_streams.rs`); in short mode it half-closes after the
//! request. The responder reads requests (refusing one unread when its length is over the
//! limit) and answers each until the requester half-closes. Reads take `Bytes` chunks from
//! the stream and slice the body out of them when it arrived in one piece.
//!
//! This file knows nothing of peers, pools or handlers; it also classifies failures so the
//! caller can tell "never reached the peer" (safe to retry) from "lost mid-way".

use super::request_streams::{RequestStream, RequestStreams};
use crate::connection::{Connection, ConnectionError, Stream};
use crate::deadline::ReusableTimer;
use crate::negotiate;
use bytes::{Bytes, BytesMut};
use pheromone_core::reqresp::wire::{self, Header, Status, WireError};
use std::io;
use tokio::io::AsyncWriteExt;

/// Requests up to this size are copied behind their length prefix and written once;
/// larger ones are written in place, after the prefix.
pub(super) const COALESCE_LIMIT: usize = 16 * 1024;

/// A decoded response.
#[derive(Debug)]
pub(super) struct Response {
    pub(super) status: Status,
    pub(super) body: Bytes,
}

/// Why reading one frame failed.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The stream failed.
    Io(io::Error),
    /// The bytes are not a valid frame (or announce one over the limit).
    Wire(WireError),
    /// The stream ended inside a frame.
    Truncated {
        /// Bytes of the frame that arrived.
        got: usize,
        /// Bytes the frame needs (0 while the header itself is incomplete).
        want: usize,
    },
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

impl From<WireError> for ReadError {
    fn from(e: WireError) -> Self {
        ReadError::Wire(e)
    }
}

/// Why a request did not produce a response.
#[derive(Debug)]
pub(super) enum RequestError {
    /// No stream could be opened; nothing was sent.
    Open(ConnectionError),
    /// The protocol name cannot be proposed; nothing was sent.
    InvalidProtocol(String),
    /// The peer reset the stream before accepting it: it never saw the request.
    NotAccepted,
    /// The peer refused the protocol during negotiation.
    Refused,
    /// The stream or connection failed after the peer accepted the stream.
    Lost(io::Error),
    /// The response broke the wire format (or is over our limit).
    Wire(WireError),
    /// The stream ended before a whole response arrived.
    Truncated {
        /// Bytes that arrived.
        got: usize,
        /// Bytes expected.
        want: usize,
    },
    /// The call's deadline passed before the response arrived.
    TimedOut,
}

/// Reads one frame whose header `decode` recognises. `Ok(None)` when the stream ends
/// before its first byte.
pub(super) async fn read_frame(
    stream: &mut Stream,
    decode: impl Fn(&[u8]) -> Result<Option<Header>, WireError>,
) -> Result<Option<(Header, Bytes)>, ReadError> {
    // The first chunk is kept as `Bytes` so a frame that arrived whole is sliced, not copied.
    let mut first: Option<Bytes> = None;
    let mut acc = BytesMut::new();
    let header = loop {
        let decoded = decode(first.as_deref().unwrap_or(&acc))?;
        if let Some(header) = decoded {
            break header;
        }
        let have = first.as_ref().map_or(acc.len(), Bytes::len);
        match stream.read_chunk().await? {
            None if have == 0 => return Ok(None),
            None => return Err(ReadError::Truncated { got: have, want: 0 }),
            Some(chunk) if first.is_none() && acc.is_empty() => first = Some(chunk),
            Some(chunk) => {
                if let Some(f) = first.take() {
                    acc.extend_from_slice(&f);
                }
                acc.extend_from_slice(&chunk);
            }
        }
    };
    let need = header.frame_len();
    if let Some(f) = &first {
        if f.len() >= need {
            return Ok(Some((header, f.slice(header.header_len..need))));
        }
    }
    if let Some(f) = first.take() {
        acc.extend_from_slice(&f);
    }
    // `need` was checked against the caller's limit by `decode`.
    acc.reserve(need.saturating_sub(acc.len()));
    while acc.len() < need {
        match stream.read_chunk().await? {
            Some(chunk) => acc.extend_from_slice(&chunk),
            None => {
                return Err(ReadError::Truncated {
                    got: acc.len(),
                    want: need,
                })
            }
        }
    }
    Ok(Some((header, acc.freeze().slice(header.header_len..need))))
}

/// Writes `head` (a lazy protocol proposal, or nothing on a kept stream) and a request
/// frame; half-closes the stream when it carries no further request.
async fn write_request(
    stream: &mut Stream,
    out: &mut BytesMut,
    payload: &[u8],
    half_close: bool,
) -> io::Result<()> {
    wire::encode_request_header(payload.len(), out);
    if payload.len() <= COALESCE_LIMIT {
        out.extend_from_slice(payload);
        stream.write_all(out).await?;
    } else {
        stream.write_all(out).await?;
        stream.write_all(payload).await?;
    }
    if half_close {
        stream.shutdown().await?;
    }
    Ok(())
}

/// Sends one request on a new stream of `conn`, half-closes it and reads the response:
/// the stream's only exchange (short mode). The lazy protocol proposal and the request
/// leave in one write.
pub(super) async fn request(
    conn: &Connection,
    protocol: &str,
    payload: &[u8],
    max_reply: usize,
) -> Result<Response, RequestError> {
    let (mut stream, mut head) = open(conn, protocol, payload.len())?;
    exchange(&mut stream, &mut head, payload, max_reply, true).await
}

/// One request on a long-mode connection.
pub(super) struct Call<'a> {
    pub(super) protocol: &'a str,
    pub(super) payload: &'a [u8],
    pub(super) max_reply: usize,
    pub(super) deadline: tokio::time::Instant,
}

/// Sends one request on a stream of `conn` kept from an earlier request of the call's
/// protocol (a new one when none is idle) and reads the response by its deadline, leaving
/// the stream open. The caller hands the stream back to `streams` for the next request.
pub(super) async fn request_reusing(
    conn: &Connection,
    streams: &RequestStreams,
    call: Call<'_>,
) -> Result<(Response, RequestStream), RequestError> {
    let Call {
        protocol,
        payload,
        max_reply,
        deadline,
    } = call;
    if let Some(kept) = streams.take(conn, protocol) {
        let (response, kept) = on_kept(kept, payload, max_reply, deadline).await?;
        if response.status != Status::Reopen {
            return Ok((response, kept));
        }
        // The responder's access rules changed since the stream was negotiated; it did not
        // handle the request. A new stream's negotiation decides.
    }
    // Boxed: taken once per stream, its state would otherwise enlarge every request's
    // future.
    Box::pin(async {
        let (mut stream, mut buf) = open(conn, protocol, payload.len())?;
        let mut timer = ReusableTimer::new(deadline);
        let exchange = exchange(&mut stream, &mut buf, payload, max_reply, false);
        let response = timer
            .until(deadline, exchange)
            .await
            .ok_or(RequestError::TimedOut)??;
        Ok((response, RequestStream { stream, timer, buf }))
    })
    .await
}

/// One request on a kept stream, written from the stream's own buffer (no allocation)
/// and bounded by its own timer.
async fn on_kept(
    mut kept: RequestStream,
    payload: &[u8],
    max_reply: usize,
    deadline: tokio::time::Instant,
) -> Result<(Response, RequestStream), RequestError> {
    kept.buf.clear();
    kept.buf.reserve(request_len(0, payload.len()));
    let exchange = exchange(&mut kept.stream, &mut kept.buf, payload, max_reply, false);
    let response = kept
        .timer
        .until(deadline, exchange)
        .await
        .ok_or(RequestError::TimedOut)??;
    Ok((response, kept))
}

/// Bytes a request frame takes behind `prefix` bytes of negotiation, as far as it is
/// written in one piece.
fn request_len(prefix: usize, payload: usize) -> usize {
    prefix + wire::request_header_len(payload) + payload.min(COALESCE_LIMIT)
}

/// Opens a stream on `conn` with a lazy proposal of `protocol` written into the returned
/// buffer (it leaves with the request).
fn open(
    conn: &Connection,
    protocol: &str,
    payload: usize,
) -> Result<(Stream, BytesMut), RequestError> {
    let mut stream = conn.open_stream().map_err(RequestError::Open)?;
    let mut head = BytesMut::with_capacity(request_len(protocol.len() + 32, payload));
    negotiate::propose_lazy(&mut stream, protocol, &mut head)
        .map_err(|e| RequestError::InvalidProtocol(e.to_string()))?;
    Ok((stream, head))
}

/// Writes the request behind `head` and reads the response.
async fn exchange(
    stream: &mut Stream,
    head: &mut BytesMut,
    payload: &[u8],
    max_reply: usize,
    half_close: bool,
) -> Result<Response, RequestError> {
    // A write that fails (the peer refused the request unread and reset the stream) still
    // leaves its answer readable: read it before reporting the write error.
    let written = write_request(stream, head, payload, half_close).await;
    let read = read_frame(stream, |buf| wire::decode_response_header(buf, max_reply)).await;
    match read {
        Ok(Some((header, body))) => Ok(Response {
            status: header.status,
            body,
        }),
        Ok(None) => Err(match written {
            Err(e) => classify(stream, e),
            Ok(()) => RequestError::Truncated { got: 0, want: 1 },
        }),
        Err(ReadError::Io(e)) => Err(classify(stream, e)),
        Err(ReadError::Wire(e)) => Err(RequestError::Wire(e)),
        Err(ReadError::Truncated { got, want }) => Err(RequestError::Truncated { got, want }),
    }
}

/// Sorts a stream failure: a negotiation refusal, a reset before the peer accepted the
/// stream, or a loss after it did.
fn classify(stream: &Stream, e: io::Error) -> RequestError {
    if e.kind() == io::ErrorKind::Unsupported {
        return RequestError::Refused;
    }
    if is_stream_reset(&e) && !stream.is_acknowledged() {
        return RequestError::NotAccepted;
    }
    RequestError::Lost(e)
}

/// Whether `e` is the peer resetting this one stream (not the connection failing).
pub(super) fn is_stream_reset(e: &io::Error) -> bool {
    crate::connection::is_stream_reset(e)
}

/// Reads a request of at most `max` bytes. `Ok(None)` when the stream ends before a byte.
pub(super) async fn read_request(
    stream: &mut Stream,
    max: usize,
) -> Result<Option<Bytes>, ReadError> {
    Ok(
        read_frame(stream, |buf| wire::decode_request_header(buf, max))
            .await?
            .map(|(_, body)| body),
    )
}

/// Writes a response (`head`, then `body`), and closes our side of the stream when it
/// carries no further request.
pub(super) async fn write_response(
    stream: &mut Stream,
    head: &mut BytesMut,
    body: &[u8],
    half_close: bool,
) -> io::Result<()> {
    if body.len() <= COALESCE_LIMIT {
        head.extend_from_slice(body);
        stream.write_all(head).await?;
    } else {
        stream.write_all(head).await?;
        stream.write_all(body).await?;
    }
    if half_close {
        stream.shutdown().await?;
    }
    Ok(())
}
