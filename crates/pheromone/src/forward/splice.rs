//! Splicing a TCP connection and a mesh stream: bytes copied both ways at once, each end's
//! EOF passed on as a half-close of the other, an error or a cancellation on either side
//! turned into an abort of both (yamux RST, TCP RST), live byte counters. From TCP to the
//! mesh the bytes go through a buffer of ours (the stream copies them into its send queue);
//! from the mesh to TCP the stream's received chunks are written as they are, without a
//! copy of ours.
//!
//! This module opens nothing and decides nothing about access; its callers hand it two
//! connected ends.

use super::Counters;
use crate::connection::Stream;
use crate::node::NodeStream;
use bytes::{Buf, Bytes};
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Copy buffer per direction. Large enough that a read from the mesh takes a whole yamux
/// chunk and a TCP write moves many segments; two of these live per spliced connection.
const BUFFER: usize = 128 * 1024;

/// A mesh stream that can be aborted and read chunk by chunk.
pub(crate) trait MeshStream: AsyncRead + AsyncWrite + Unpin {
    /// Aborts the stream: the peer sees a reset, not an orderly end.
    fn abort(&mut self);

    /// The next received chunk, without copying it; `None` at the end of the stream.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>>;
}

impl MeshStream for Stream {
    fn abort(&mut self) {
        self.reset();
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        self.poll_read_chunk(cx)
    }
}

impl MeshStream for NodeStream {
    fn abort(&mut self) {
        self.get_mut().reset();
    }

    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        self.get_mut().poll_read_chunk(cx)
    }
}

/// Which end of a splice failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The local TCP connection.
    Tcp,
    /// The stream to the peer.
    Mesh,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Tcp => "tcp",
            Side::Mesh => "mesh",
        })
    }
}

/// How a splice ended.
#[derive(Debug)]
pub(crate) enum SpliceEnd {
    /// Both directions reached EOF and were passed on.
    Done,
    /// One end failed; both were aborted.
    Failed(Side, io::Error),
    /// The forward was removed; both ends were aborted.
    Cancelled,
}

/// The mesh-to-TCP direction: received chunks written to TCP as they are.
#[derive(Default)]
struct ChunkPipe {
    /// The part of the last chunk TCP has not taken yet.
    pending: Bytes,
    read_done: bool,
    need_flush: bool,
    done: bool,
}

impl ChunkPipe {
    /// Moves chunks from `mesh` to `tcp` until the mesh stream ends and `tcp` is shut down,
    /// or an error (tagged with the side it came from).
    fn poll_copy<M: MeshStream>(
        &mut self,
        cx: &mut Context<'_>,
        mesh: &mut M,
        tcp: &mut TcpStream,
        count: &AtomicU64,
    ) -> Poll<Result<(), (Side, io::Error)>> {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.pending.is_empty() && !self.read_done {
                match mesh.poll_chunk(cx) {
                    Poll::Ready(Ok(Some(chunk))) => self.pending = chunk,
                    Poll::Ready(Ok(None)) => self.read_done = true,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err((Side::Mesh, e))),
                    Poll::Pending => {
                        if self.need_flush {
                            ready!(Pin::new(&mut *tcp).poll_flush(cx))
                                .map_err(|e| (Side::Tcp, e))?;
                            self.need_flush = false;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while !self.pending.is_empty() {
                let n = ready!(Pin::new(&mut *tcp).poll_write(cx, &self.pending))
                    .map_err(|e| (Side::Tcp, e))?;
                if n == 0 {
                    return Poll::Ready(Err((Side::Tcp, io::ErrorKind::WriteZero.into())));
                }
                self.pending.advance(n);
                self.need_flush = true;
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
            if self.read_done {
                // The mesh stream ended: half-close TCP, which goes on carrying the other
                // direction.
                ready!(Pin::new(&mut *tcp).poll_shutdown(cx)).map_err(|e| (Side::Tcp, e))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// The TCP-to-mesh direction's copy state.
struct Pipe {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    read_done: bool,
    need_flush: bool,
    done: bool,
}

impl Pipe {
    fn new() -> Self {
        Self {
            buf: vec![0; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            read_done: false,
            need_flush: false,
            done: false,
        }
    }

    /// Copies from `r` to `w` until `r` ends and `w` is shut down, or an error (tagged with
    /// the side it came from).
    #[allow(clippy::too_many_arguments)]
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut R,
        r_side: Side,
        w: &mut W,
        w_side: Side,
        count: &AtomicU64,
    ) -> Poll<Result<(), (Side, io::Error)>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        if self.done {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.start == self.end && !self.read_done {
                let mut rb = ReadBuf::new(&mut self.buf);
                match Pin::new(&mut *r).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            self.read_done = true;
                        } else {
                            self.start = 0;
                            self.end = n;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err((r_side, e))),
                    Poll::Pending => {
                        if self.need_flush {
                            ready!(Pin::new(&mut *w).poll_flush(cx)).map_err(|e| (w_side, e))?;
                            self.need_flush = false;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while self.start < self.end {
                let n = ready!(Pin::new(&mut *w).poll_write(cx, &self.buf[self.start..self.end]))
                    .map_err(|e| (w_side, e))?;
                if n == 0 {
                    return Poll::Ready(Err((w_side, io::ErrorKind::WriteZero.into())));
                }
                self.start += n;
                self.need_flush = true;
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
            if self.read_done {
                // EOF on the reading side: a half-close of the writing side, which goes on
                // carrying the other direction.
                ready!(Pin::new(&mut *w).poll_shutdown(cx)).map_err(|e| (w_side, e))?;
                self.done = true;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// Copies between `tcp` and `mesh` until both directions ended, one end failed, or `cancel`
/// fires; on failure or cancellation aborts both ends. Bytes from the mesh to TCP count
/// as `bytes_in`, the other way as `bytes_out`.
pub(crate) async fn splice<M: MeshStream>(
    tcp: &mut TcpStream,
    mesh: &mut M,
    counters: &Counters,
    cancel: &CancellationToken,
) -> SpliceEnd {
    let mut to_mesh = Pipe::new();
    let mut to_tcp = ChunkPipe::default();
    let copy = poll_fn(|cx| {
        let out_done =
            match to_mesh.poll_copy(cx, tcp, Side::Tcp, mesh, Side::Mesh, &counters.bytes_out) {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => true,
                Poll::Pending => false,
            };
        match to_tcp.poll_copy(cx, mesh, tcp, &counters.bytes_in) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) if out_done => Poll::Ready(Ok(())),
            _ => Poll::Pending,
        }
    });
    let end = tokio::select! {
        result = copy => match result {
            Ok(()) => SpliceEnd::Done,
            Err((side, e)) => SpliceEnd::Failed(side, e),
        },
        () = cancel.cancelled() => SpliceEnd::Cancelled,
    };
    if !matches!(end, SpliceEnd::Done) {
        abort(tcp, mesh);
    }
    end
}

/// Aborts both ends: a reset on the stream, an RST on the TCP connection (zero linger, so
/// closing it does not look like an orderly end to the local program).
pub(crate) fn abort<M: MeshStream>(tcp: &mut TcpStream, mesh: &mut M) {
    mesh.abort();
    reset_tcp(tcp);
}

/// Makes the coming close of `tcp` send an RST instead of a FIN.
pub(crate) fn reset_tcp(tcp: &TcpStream) {
    let _ = socket2::SockRef::from(tcp).set_linger(Some(Duration::ZERO));
}
