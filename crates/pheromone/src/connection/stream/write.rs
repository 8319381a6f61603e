//! The write side of [`Stream`]: waiting for room, owned writes sealed in place, and
//! `AsyncWrite` (gated writes behind an unconfirmed proposal, flush, shutdown).

use super::*;

impl Stream {
    /// Waits until a write may make progress: the connection's send queue is below its
    /// high-water mark and the stream has send window (for QUIC: quinn takes bytes). Used
    /// where the stream stands in for a socket (a relayed circuit).
    pub(in crate::connection) fn poll_write_ready(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let (id, shared, queued_since_take) = match &mut self.io {
            Io::Yamux {
                id,
                shared,
                queued_since_take,
            } => (*id, &*shared, queued_since_take),
            // An empty write waits exactly while quinn would refuse bytes.
            Io::Quic(q) => {
                return match Pin::new(&mut q.send).poll_write(cx, &[]) {
                    Poll::Ready(Ok(_)) => Poll::Ready(Ok(())),
                    Poll::Ready(Err(e)) => Poll::Ready(Err(q.sort_error(e.into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        };
        let mut state = shared.lock();
        if let Some(e) = &state.closed {
            return Poll::Ready(Err(e.clone().into()));
        }
        // A circuit writes bulk (the inner connection's ciphertext): ready once a bulk
        // write may queue something, as `poll_write` decides.
        let bulk = shared.high_water;
        if allowance(queued_since_take, bulk, shared.high_water, &mut state) == 0 {
            state.parked_writers.push(cx.waker().clone());
            // The next take of the queue wakes us; make sure the driver is on it.
            shared.send_queued(state);
            return Poll::Pending;
        }
        match state.session.send_window(id) {
            Some(0) => {
                if let Some(w) = state.wakers.get_mut(&id) {
                    w.writer = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            // A window, or a stream the session no longer knows: the write reports which.
            _ => Poll::Ready(Ok(())),
        }
    }

    /// Writes the front of `chunk`, an owned buffer, and advances it past what was taken.
    /// A large chunk is not copied into the send queue: the queue gets its frame header
    /// and the writer seals the body straight from the chunk (a relay's splice passes the
    /// chunks it received on this way); over QUIC quinn keeps the chunk itself. Small ones
    /// are copied as by `poll_write`, where they share frames with the rest. Waits and
    /// fails as `poll_write` does.
    pub(crate) fn poll_write_owned(
        &mut self,
        cx: &mut Context<'_>,
        chunk: &mut Bytes,
    ) -> Poll<io::Result<usize>> {
        if chunk.len() < OWNED_MIN {
            let n = std::task::ready!(Pin::new(&mut *self).poll_write(cx, chunk))?;
            chunk.advance(n);
            return Poll::Ready(Ok(n));
        }
        match self.poll_write_gate(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        let prefix = self.prefix.take();
        let (id, shared, queued_since_take) = match &mut self.io {
            Io::Yamux {
                id,
                shared,
                queued_since_take,
            } => (*id, &*shared, queued_since_take),
            Io::Quic(q) => {
                if let Some(prefix) = prefix {
                    self.prefix = q.write_prefix(prefix)?;
                    if self.prefix.is_some() {
                        return q.poll_blocked(cx);
                    }
                }
                let result = q.poll_write_chunk(cx, chunk);
                if let Poll::Ready(Ok(n)) = &result {
                    self.count_out(*n);
                }
                return result;
            }
        };
        let mut state = shared.lock();
        if let Some(e) = &state.closed {
            return Poll::Ready(Err(e.clone().into()));
        }
        let room = allowance(
            queued_since_take,
            chunk.len(),
            shared.high_water,
            &mut state,
        );
        if room == 0 {
            self.prefix = prefix;
            state.parked_writers.push(cx.waker().clone());
            shared.send_queued(state);
            return Poll::Pending;
        }
        let mut queued = false;
        if let Some(prefix) = prefix {
            if let Err(e) = queue_prefix(&mut state.session, id, &prefix) {
                return Poll::Ready(Err(e));
            }
            queued = true;
        }
        let result = match state.session.write_header(id, chunk.len().min(room)) {
            Ok(0) => {
                if let Some(w) = state.wakers.get_mut(&id) {
                    w.writer = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Ok(n) => {
                // The body goes right behind the header just queued.
                let at = state.session.outgoing().len();
                state.bodies.push_back((at, chunk.split_to(n)));
                state.body_bytes += n;
                queued_since_take.1 += n;
                queued = true;
                Poll::Ready(Ok(n))
            }
            Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, e))),
        };
        if queued {
            shared.send_queued(state);
        }
        result
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_write_gate(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        let prefix = this.prefix.take();
        let (id, shared, queued_since_take) = match &mut this.io {
            Io::Yamux {
                id,
                shared,
                queued_since_take,
            } => (*id, &*shared, queued_since_take),
            Io::Quic(q) => {
                if let Some(prefix) = prefix {
                    this.prefix = q.write_prefix(prefix)?;
                    if this.prefix.is_some() {
                        return q.poll_blocked(cx);
                    }
                }
                let result = match Pin::new(&mut q.send).poll_write(cx, data) {
                    Poll::Ready(Err(e)) => Poll::Ready(Err(q.sort_error(e.into()))),
                    Poll::Ready(Ok(n)) => Poll::Ready(Ok(n)),
                    Poll::Pending => Poll::Pending,
                };
                if let Poll::Ready(Ok(n)) = &result {
                    this.count_out(*n);
                }
                return result;
            }
        };
        let mut state = shared.lock();
        if let Some(e) = &state.closed {
            return Poll::Ready(Err(e.clone().into()));
        }
        // The queue is bounded: a write takes what it may ([`allowance`]) and parks while
        // that is nothing. Taking the queue wakes the parked writers, oldest first.
        let room = allowance(queued_since_take, data.len(), shared.high_water, &mut state);
        if room == 0 && !data.is_empty() {
            this.prefix = prefix;
            state.parked_writers.push(cx.waker().clone());
            shared.send_queued(state);
            return Poll::Pending;
        }
        let mut queued = false;
        if let Some(prefix) = prefix {
            if let Err(e) = queue_prefix(&mut state.session, id, &prefix) {
                return Poll::Ready(Err(e));
            }
            queued = true;
        }
        let mut sent = 0;
        let result = match state.session.write(id, &data[..data.len().min(room)]) {
            Ok(0) if !data.is_empty() => {
                // The send window is exhausted: the peer's window update wakes us.
                if let Some(w) = state.wakers.get_mut(&id) {
                    w.writer = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Ok(n) => {
                queued |= n > 0;
                queued_since_take.1 += n;
                sent = n;
                Poll::Ready(Ok(n))
            }
            Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, e))),
        };
        if queued {
            shared.send_queued(state);
        } else {
            drop(state);
        }
        if sent > 0 {
            this.count_out(sent);
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Every write is already handed to the driver (or quinn), which sends it once the
        // tasks ready to run have queued theirs; a pending protocol proposal is handed over
        // now.
        Poll::Ready(self.get_mut().send_prefix())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.send_prefix()?;
        if let Io::Quic(q) = &mut this.io {
            if this.prefix.is_some() {
                return q.poll_blocked(cx);
            }
        }
        match this.poll_confirmed(cx, true) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        match &mut this.io {
            Io::Yamux { id, shared, .. } => {
                let mut state = shared.lock();
                let result = state.session.close_write(*id);
                shared.send_queued(state);
                match result {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, e))),
                }
            }
            // Finishing twice, or a stream the peer stopped, is a finished stream.
            Io::Quic(q) => {
                let _ = q.send.finish();
                Poll::Ready(Ok(()))
            }
        }
    }
}
