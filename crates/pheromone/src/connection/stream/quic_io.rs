//! A [`Stream`](super::Stream) over QUIC: reading chunks from and writing to the quinn
//! stream pair, and sorting quinn's errors into refusals and the rest.

use super::*;

impl QuicIo {
    pub(super) fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        let polled = {
            let mut read = std::pin::pin!(self.recv.read_chunk(usize::MAX, true));
            read.as_mut().poll(cx)
        };
        match polled {
            Poll::Ready(Ok(Some(chunk))) => {
                self.received = true;
                Poll::Ready(Ok(Some(chunk.bytes)))
            }
            Poll::Ready(Ok(None)) => Poll::Ready(Ok(None)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.sort_error(e.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Writes as much of `prefix` as quinn takes now; what is left, if anything.
    pub(super) fn write_prefix(&mut self, mut prefix: Bytes) -> io::Result<Option<Bytes>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        while !prefix.is_empty() {
            match Pin::new(&mut self.send).poll_write(&mut cx, &prefix) {
                Poll::Ready(Ok(n)) => prefix.advance(n),
                Poll::Ready(Err(e)) => return Err(self.sort_error(e.into())),
                Poll::Pending => return Ok(Some(prefix)),
            }
        }
        Ok(None)
    }

    /// Registers `cx` to be woken when quinn takes bytes again.
    pub(super) fn poll_blocked<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match Pin::new(&mut self.send).poll_write(cx, &[]) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.sort_error(e.into()))),
            // Room appeared meanwhile: have the caller try again at once.
            Poll::Ready(Ok(_)) => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }

    pub(super) fn poll_write_chunk(
        &mut self,
        cx: &mut Context<'_>,
        chunk: &mut Bytes,
    ) -> Poll<io::Result<usize>> {
        let mut bufs = [std::mem::take(chunk)];
        let result = {
            let mut write = std::pin::pin!(self.send.write_chunks(&mut bufs));
            write.as_mut().poll(cx)
        };
        // quinn advanced the chunk past what it took.
        *chunk = std::mem::take(&mut bufs[0]);
        match result {
            Poll::Ready(Ok(written)) => Poll::Ready(Ok(written.bytes)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.sort_error(e.into()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl QuicIo {
    /// Sorts a quinn stream error. A refusal — the peer reset or stopped the stream with
    /// the refusal code, or closed the connection with the "drained" code (every stream it
    /// accepted had ended) before sending us a byte here — means no application of the
    /// peer's saw the stream, as an unacknowledged yamux reset does: it becomes a
    /// [`StreamRefused`](crate::connection::StreamRefused) reset, the stream reports itself
    /// unacknowledged (so a request may be retried elsewhere) and the connection going
    /// away. Anything else stays quinn's error.
    pub(super) fn sort_error(&mut self, e: io::Error) -> io::Error {
        use crate::connection::quic::{CLOSE_DRAINED, STREAM_REFUSED};
        let drained = |c: &quinn::ConnectionError| {
            matches!(c, quinn::ConnectionError::ApplicationClosed(a)
                if a.error_code == quinn::VarInt::from_u32(CLOSE_DRAINED))
        };
        let refusal = quinn::VarInt::from_u32(STREAM_REFUSED);
        let refused = e.get_ref().is_some_and(|inner| {
            if let Some(r) = inner.downcast_ref::<quinn::ReadError>() {
                match r {
                    quinn::ReadError::Reset(code) => *code == refusal,
                    quinn::ReadError::ConnectionLost(c) => !self.received && drained(c),
                    _ => false,
                }
            } else if let Some(w) = inner.downcast_ref::<quinn::WriteError>() {
                match w {
                    quinn::WriteError::Stopped(code) => *code == refusal,
                    quinn::WriteError::ConnectionLost(c) => !self.received && drained(c),
                    _ => false,
                }
            } else {
                false
            }
        });
        if !refused {
            tracing::trace!(peer = %self.shared.peer, error = ?e.get_ref(), received = self.received, "QUIC stream error");
            return e;
        }
        self.refused = true;
        self.shared.remote_refused();
        io::Error::new(
            io::ErrorKind::ConnectionReset,
            crate::connection::StreamRefused {
                peer: self.shared.peer,
            },
        )
    }
}
