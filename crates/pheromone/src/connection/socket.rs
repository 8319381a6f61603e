//! What a connection runs over: a TCP socket, or a relayed circuit — a stream of another
//! connection whose far end is spliced, hop by hop, to the peer.
//!
//! The driver speaks to both through the readiness interface tokio's `TcpStream` offers
//! (`poll_read_ready` / `try_read`, `poll_write_ready` / `try_write`, `shutdown`), callable
//! through a shared reference, so the driver's sending half (`writer.rs`) works the same
//! over a circuit. The handshake in [`crate::upgrade`] uses the `AsyncRead` /
//! `AsyncWrite` side. This file only adapts; it frames and encrypts nothing.

use super::stream::Stream;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use pheromone_core::identity::PeerId;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The byte pipe under one connection.
pub(crate) enum Socket {
    /// A direct TCP connection.
    Tcp(TcpStream),
    /// A relayed circuit: a stream of a connection to the first relay (boxed: it is much
    /// larger than a socket and rarer).
    Circuit(Box<Circuit>),
}

/// A circuit's end: the relay stream, plus a chunk read ahead by a readiness check.
pub(crate) struct Circuit {
    inner: Mutex<CircuitInner>,
    /// The first relay's socket address (what the connection reports as remote).
    relay_addr: SocketAddr,
    local_addr: SocketAddr,
    /// The first relay's peer ID.
    relay: PeerId,
}

struct CircuitInner {
    stream: Stream,
    /// Bytes taken from the stream by a readiness check and not yet read.
    pending: Bytes,
    eof: bool,
}

impl Circuit {
    /// Wraps a negotiated relay stream whose far end reaches the peer.
    pub(crate) fn new(
        stream: Stream,
        relay: PeerId,
        relay_addr: SocketAddr,
        local_addr: SocketAddr,
    ) -> Self {
        Self {
            inner: Mutex::new(CircuitInner {
                stream,
                pending: Bytes::new(),
                eof: false,
            }),
            relay_addr,
            local_addr,
            relay,
        }
    }

    fn lock(&self) -> MutexGuard<'_, CircuitInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The first relay on the way to the peer.
    pub(crate) fn relay(&self) -> PeerId {
        self.relay
    }
}

impl CircuitInner {
    /// Fills `pending` from the stream; `Ready(Ok)` when there are bytes or the end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.pending.is_empty() || self.eof {
            return Poll::Ready(Ok(()));
        }
        match self.stream.poll_read_chunk(cx) {
            Poll::Ready(Ok(Some(chunk))) => {
                self.pending = chunk;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(None)) => {
                self.eof = true;
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Like a non-blocking socket read: `WouldBlock` when nothing is there.
    fn try_take(&mut self, max: usize) -> io::Result<Bytes> {
        // A no-op waker: the driver re-registers its own through `poll_read_ready` before
        // it waits.
        let mut cx = Context::from_waker(Waker::noop());
        match self.poll_fill(&mut cx) {
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Ready(Ok(())) => {
                let n = self.pending.len().min(max);
                Ok(self.pending.split_to(n))
            }
        }
    }
}

/// Reads what the socket has into `buf`, at most `max` bytes. A read that comes back
/// shorter than the room it was offered has emptied the socket's receive queue, so the
/// readiness is cleared at once, as tokio's own `poll_read` does: otherwise the next
/// readiness check would pass and cost a `recv` that only returns `WouldBlock`, one per
/// message in request/response traffic. Readiness that arrived after the read is kept
/// (tokio compares the event it cleared with the current one).
fn try_read_tcp(socket: &TcpStream, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
    let offered = max.min(buf.capacity() - buf.len());
    let mut got = 0;
    let result = socket.try_io(tokio::io::Interest::READABLE, || {
        got = socket.try_read_buf(&mut buf.limit(max))?;
        if got > 0 && got < offered {
            // Drained: report it as `WouldBlock` so `try_io` clears the readiness.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(got)
    });
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        other => other,
    }
}

impl Socket {
    /// Waits until a read may make progress.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Socket::Tcp(s) => s.poll_read_ready(cx),
            Socket::Circuit(c) => c.lock().poll_fill(cx),
        }
    }

    /// Reads without waiting into `buf`'s spare room, at most `max` bytes (`Ok(0)` at the
    /// end).
    pub(crate) fn try_read_buf(&self, buf: &mut BytesMut, max: usize) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => try_read_tcp(s, buf, max),
            Socket::Circuit(c) => {
                let chunk = c.lock().try_take(max)?;
                buf.extend_from_slice(&chunk);
                Ok(chunk.len())
            }
        }
    }

    /// Reads without waiting into `buf` (`Ok(0)` at the end).
    pub(crate) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.try_read(buf),
            Socket::Circuit(c) => {
                let chunk = c.lock().try_take(buf.len())?;
                buf[..chunk.len()].copy_from_slice(&chunk);
                Ok(chunk.len())
            }
        }
    }

    /// Waits until a write may make progress.
    pub(crate) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Socket::Tcp(s) => s.poll_write_ready(cx),
            Socket::Circuit(c) => c.lock().stream.poll_write_ready(cx),
        }
    }

    /// Writes without waiting; `WouldBlock` when nothing fits.
    pub(crate) fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.try_write(data),
            Socket::Circuit(c) => {
                let mut cx = Context::from_waker(Waker::noop());
                match Pin::new(&mut c.lock().stream).poll_write(&mut cx, data) {
                    Poll::Ready(result) => result,
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }

    /// Shuts one or both directions: a TCP shutdown, or on a circuit our FIN (write) or a
    /// reset (both), which the relays pass on.
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => socket2::SockRef::from(s).shutdown(how),
            Socket::Circuit(c) => {
                let mut inner = c.lock();
                match how {
                    Shutdown::Read => Ok(()),
                    Shutdown::Write => {
                        let mut cx = Context::from_waker(Waker::noop());
                        match Pin::new(&mut inner.stream).poll_shutdown(&mut cx) {
                            Poll::Ready(result) => result,
                            Poll::Pending => Ok(()),
                        }
                    }
                    Shutdown::Both => {
                        inner.stream.reset();
                        Ok(())
                    }
                }
            }
        }
    }

    /// The remote end's address (the first relay's, for a circuit).
    pub(crate) fn peer_addr(&self) -> SocketAddr {
        match self {
            Socket::Tcp(s) => s.peer_addr().unwrap_or_else(|_| unspecified()),
            Socket::Circuit(c) => c.relay_addr,
        }
    }

    /// Our end's address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        match self {
            Socket::Tcp(s) => s.local_addr().unwrap_or_else(|_| unspecified()),
            Socket::Circuit(c) => c.local_addr,
        }
    }

    /// The first relay, for a circuit.
    pub(crate) fn relay(&self) -> Option<PeerId> {
        match self {
            Socket::Tcp(_) => None,
            Socket::Circuit(c) => Some(c.relay()),
        }
    }
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Circuit(c) => {
                let mut inner = c.lock();
                match inner.poll_fill(cx) {
                    Poll::Ready(Ok(())) => {
                        let n = inner.pending.len().min(buf.remaining());
                        buf.put_slice(&inner.pending[..n]);
                        inner.pending.advance(n);
                        Poll::Ready(Ok(()))
                    }
                    other => other,
                }
            }
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, data),
            Socket::Circuit(c) => Pin::new(&mut c.lock().stream).poll_write(cx, data),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Circuit(c) => Pin::new(&mut c.lock().stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Circuit(c) => Pin::new(&mut c.lock().stream).poll_shutdown(cx),
        }
    }
}
