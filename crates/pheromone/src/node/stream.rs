//! [`NodeStream`]: a raw stream to a peer opened through the node.
//!
//! In long mode it is a plain stream on the peer's pooled connection. In short mode the
//! connection exists for this stream alone, so dropping the stream closes it (gracefully,
//! on a spawned task, since `Drop` cannot wait).

use crate::connection::{Connection, Stream};
use pheromone_core::identity::PeerId;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A bidirectional byte stream to a peer, negotiated for one protocol.
#[derive(Debug)]
pub struct NodeStream {
    stream: Stream,
    peer: PeerId,
    /// Short mode: the connection made for this stream, closed when it is dropped.
    owned: Option<Connection>,
    /// Marks the peer as having a stream open (the connection manager spares it).
    _open: Option<super::pending::PendingGuard>,
}

impl NodeStream {
    pub(super) fn new(
        stream: Stream,
        peer: PeerId,
        owned: Option<Connection>,
        open: Option<super::pending::PendingGuard>,
    ) -> Self {
        Self {
            stream,
            peer,
            owned,
            _open: open,
        }
    }

    /// The peer on the other end.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// The underlying multiplexed stream.
    pub fn get_mut(&mut self) -> &mut Stream {
        &mut self.stream
    }
}

impl AsyncRead for NodeStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for NodeStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl Drop for NodeStream {
    fn drop(&mut self) {
        if let Some(conn) = self.owned.take() {
            // The stream's own drop runs after this body; the close waits for it anyway.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { conn.close().await });
            }
        }
    }
}
