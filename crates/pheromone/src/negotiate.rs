//! multistream-select over real streams: the IO half of [`pheromone_core::multistream`].
//!
//! The generic functions run a negotiation on any `AsyncRead + AsyncWrite` with a caller
//! buffer, leaving bytes that follow the negotiation in that buffer (the upgrade hands them
//! to Noise). The [`Stream`] functions push such bytes back into the stream. No function
//! here has a deadline of its own; callers wrap them in one.

use crate::connection::{Direction, Stream};
use bytes::BytesMut;
use pheromone_core::multistream::{Dialer, Listener, NegotiationError};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a protocol could not be agreed on a stream or socket.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NegotiateError {
    /// The stream failed while negotiating.
    #[error("stream failed during protocol negotiation: {0}")]
    Io(#[from] std::io::Error),
    /// The peer refused, or broke the multistream-select protocol.
    #[error(transparent)]
    Negotiation(#[from] NegotiationError),
}

/// Writes everything a negotiation state machine wants sent.
async fn flush_transmits<S: AsyncWrite + Unpin>(
    io: &mut S,
    mut next: impl FnMut() -> Option<bytes::Bytes>,
) -> std::io::Result<()> {
    let mut wrote = false;
    while let Some(bytes) = next() {
        io.write_all(&bytes).await?;
        wrote = true;
    }
    if wrote {
        io.flush().await?;
    }
    Ok(())
}

/// Runs a dialer until it has an outcome. With a lazy dialer that is "may write" at once
/// for writing, but this function waits for the confirmation too.
pub(crate) async fn run_dialer<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    mut dialer: Dialer,
) -> Result<String, NegotiateError> {
    loop {
        flush_transmits(io, || dialer.poll_transmit()).await?;
        if let Some(outcome) = dialer.poll_outcome() {
            return Ok(outcome?);
        }
        if io.read_buf(buf).await? == 0 {
            dialer.handle_eof();
        } else {
            dialer.handle_input(buf);
        }
    }
}

/// Answers one negotiation: `accept` decides each proposal. Bytes after the agreed
/// proposal stay in `buf`.
pub(crate) async fn run_listener<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    supported: Vec<String>,
    mut accept: impl FnMut(&str) -> bool,
) -> Result<String, NegotiateError> {
    let mut listener = Listener::new(supported)?;
    loop {
        if !buf.is_empty() {
            listener.handle_input_with(buf, &mut accept);
        }
        flush_transmits(io, || listener.poll_transmit()).await?;
        if let Some(outcome) = listener.poll_outcome() {
            return Ok(outcome?);
        }
        if io.read_buf(buf).await? == 0 {
            listener.handle_eof();
        }
    }
}

/// Proposes `protocol` on a fresh outbound stream and waits for the peer to accept it.
pub async fn dialer(mut stream: Stream, protocol: &str) -> Result<Stream, NegotiateError> {
    let dialer = Dialer::new(vec![protocol.to_owned()])?;
    let mut buf = BytesMut::new();
    run_dialer(&mut stream, &mut buf, dialer).await?;
    stream.push_unread(buf.freeze());
    stream.set_protocol(protocol, Direction::Outbound);
    Ok(stream)
}

/// Proposes `protocol` and returns at once (the "lazy" optimisation). The peer's
/// confirmation — or refusal, as an `io::Error` of kind `Unsupported` wrapping
/// [`NegotiateError`] — is read on the stream's first read.
///
/// Writes are safe whatever the peer answers: where identify said the peer speaks
/// `protocol`, the caller's first write follows the proposal at once (0-RTT, as go-libp2p
/// does for protocols its peerstore lists); otherwise the first write waits for the
/// confirmation, because a listener that answers `na` reads whatever follows as its next
/// proposal (js-libp2p then aborts the stream, and data shaped like a proposal would be
/// taken for one). A stream that only reads never waits.
pub async fn dialer_lazy(mut stream: Stream, protocol: &str) -> Result<Stream, NegotiateError> {
    let mut dialer = Dialer::lazy(protocol.to_owned())?;
    let mut proposal = Vec::new();
    while let Some(bytes) = dialer.poll_transmit() {
        proposal.extend_from_slice(&bytes);
    }
    // Sent in front of the caller's first write, so proposal and request share a frame.
    stream.set_prefix(proposal.into());
    stream.expect_confirmation(dialer);
    stream.set_protocol(protocol, Direction::Outbound);
    Ok(stream)
}

/// The lazy proposal of [`dialer_lazy`] for a caller that sends its first message in one
/// write: when the peer is known to speak `protocol`, the proposal's bytes are appended to
/// `out` to go out with that message; otherwise they are queued on the stream, and the
/// first write waits for the confirmation, as with [`dialer_lazy`].
pub fn propose_lazy(
    stream: &mut Stream,
    protocol: &str,
    out: &mut BytesMut,
) -> Result<(), NegotiateError> {
    let mut dialer = Dialer::lazy(protocol.to_owned())?;
    let mut proposal = Vec::new();
    while let Some(bytes) = dialer.poll_transmit() {
        proposal.extend_from_slice(&bytes);
    }
    if stream.peer_speaks(protocol) {
        out.extend_from_slice(&proposal);
    } else {
        stream.set_prefix(proposal.into());
    }
    stream.expect_confirmation(dialer);
    stream.set_protocol(protocol, Direction::Outbound);
    Ok(())
}

/// Answers the negotiation on an inbound stream; `accept` decides each proposal (protocol
/// registered and allowed for this peer). The agreed protocol and the stream.
pub async fn listener(
    mut stream: Stream,
    supported: Vec<String>,
    accept: impl FnMut(&str) -> bool,
) -> Result<(String, Stream), NegotiateError> {
    let protocol = listen_on(&mut stream, supported, accept).await?;
    Ok((protocol, stream))
}

/// [`listener`] on a borrowed stream, so that the caller keeps it when the negotiation
/// fails or its deadline passes (and can reset it: a failed negotiation is an error, not
/// an orderly end).
pub async fn listen_on(
    stream: &mut Stream,
    supported: Vec<String>,
    mut accept: impl FnMut(&str) -> bool,
) -> Result<String, NegotiateError> {
    // Like `run_listener`, but reading whole chunks: a stream's first chunk usually holds
    // the proposal and the request behind it, so one copy into `buf` serves both, where
    // `read_buf` into an empty buffer would grow it in small steps.
    let mut listener = Listener::new(supported)?;
    let mut buf = BytesMut::new();
    let protocol = loop {
        if !buf.is_empty() {
            listener.handle_input_with(&mut buf, &mut accept);
        }
        flush_transmits(stream, || listener.poll_transmit()).await?;
        if let Some(outcome) = listener.poll_outcome() {
            break outcome?;
        }
        match stream.read_chunk().await? {
            Some(chunk) => buf.extend_from_slice(&chunk),
            None => listener.handle_eof(),
        }
    };
    stream.push_unread(buf.freeze());
    stream.set_protocol(&protocol, Direction::Inbound);
    Ok(protocol)
}
