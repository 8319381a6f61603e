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

/// Proposes `protocol` and returns at once (the "lazy" optimisation): the caller writes its
/// request right behind the proposal, and the peer's confirmation — or refusal, as an
/// `io::Error` wrapping [`NegotiateError`] — is read on the stream's first read.
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

/// The lazy proposal of [`dialer_lazy`] without writing it: the proposal's bytes are
/// appended to `out`, for the caller to send together with its first message in one write.
/// The confirmation is checked on the stream's first read, as with [`dialer_lazy`].
pub fn propose_lazy(
    stream: &mut Stream,
    protocol: &str,
    out: &mut BytesMut,
) -> Result<(), NegotiateError> {
    let mut dialer = Dialer::lazy(protocol.to_owned())?;
    while let Some(bytes) = dialer.poll_transmit() {
        out.extend_from_slice(&bytes);
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
    mut accept: impl FnMut(&str) -> bool,
) -> Result<(String, Stream), NegotiateError> {
    // Like `run_listener`, but reading whole chunks: a stream's first chunk usually holds
    // the proposal and the request behind it, so one copy into `buf` serves both, where
    // `read_buf` into an empty buffer would grow it in small steps.
    let mut listener = Listener::new(supported)?;
    let mut buf = BytesMut::new();
    let protocol = loop {
        if !buf.is_empty() {
            listener.handle_input_with(&mut buf, &mut accept);
        }
        flush_transmits(&mut stream, || listener.poll_transmit()).await?;
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
    Ok((protocol, stream))
}
