//! The read side of [`Stream`]: `AsyncRead`, copying straight out of the session (or
//! quinn) into the caller's buffer.

use super::*;

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // The caller's buffer may arrive partly filled (tokio's `read_to_end` does this).
        let filled_at_entry = buf.filled().len();
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread[..n]);
            this.unread.advance(n);
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let result =
            if this.refused.is_some() || this.confirmation.is_some() || this.prefix.is_some() {
                // A negotiation to finish or report first: read it chunk by chunk.
                this.poll_read_chunks(cx, buf)
            } else {
                this.poll_copy(cx, buf)
            };
        match result {
            // Something was read already: return it rather than wait for more.
            Poll::Pending if buf.filled().len() != filled_at_entry => Poll::Ready(Ok(())),
            other => other,
        }
    }
}

impl Stream {
    /// Copies what the session holds for this stream straight into `buf` (no `Bytes` per
    /// chunk, no allocation), under one lock; over QUIC, what quinn holds.
    fn poll_copy(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.eof {
            return Poll::Ready(Ok(()));
        }
        if let Io::Quic(q) = &mut self.io {
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let before = buf.filled().len();
            return match q.recv.poll_read_buf(cx, buf) {
                Poll::Ready(Ok(())) => {
                    let n = buf.filled().len() - before;
                    if n == 0 {
                        self.eof = true;
                    } else {
                        q.received = true;
                        self.count_in(n);
                    }
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(q.sort_error(e.into()))),
                Poll::Pending => Poll::Pending,
            };
        }
        let Io::Yamux { id, shared, .. } = &self.io else {
            return Poll::Ready(Ok(()));
        };
        let id = *id;
        let mut state = shared.lock();
        let queued = state.session.outgoing().len();
        let outcome = state
            .session
            .read_copy(id, buf.remaining(), |bytes| buf.put_slice(bytes));
        let window_update = state.session.outgoing().len() > queued;
        let result = match outcome {
            Ok(CopyOutcome::Copied(n)) => {
                self.count_in(n);
                Poll::Ready(Ok(()))
            }
            Ok(CopyOutcome::Eof) => {
                self.eof = true;
                Poll::Ready(Ok(()))
            }
            Ok(CopyOutcome::Pending) => match &state.closed {
                Some(e) => Poll::Ready(Err(e.clone().into())),
                None => {
                    if let Some(w) = state.wakers.get_mut(&id) {
                        w.reader = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
            },
            Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, e))),
        };
        if window_update {
            shared.send_queued(state);
        }
        result
    }

    /// Fills `buf` from chunks while a negotiation is pending or was refused (the chunk
    /// path checks the confirmation and reports a refusal).
    fn poll_read_chunks(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while buf.remaining() > 0 {
            if self.unread.is_empty() {
                match self.poll_chunk(cx) {
                    Poll::Ready(Ok(Some(chunk))) => self.unread = chunk,
                    Poll::Ready(Ok(None)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            let n = self.unread.len().min(buf.remaining());
            buf.put_slice(&self.unread[..n]);
            self.unread.advance(n);
        }
        Poll::Ready(Ok(()))
    }
}
