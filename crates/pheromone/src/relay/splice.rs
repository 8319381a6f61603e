//! Joining two streams at a relay: what one side sends, the other receives, until both
//! have ended.
//!
//! One future polls both directions (no task or lock per direction). Chunks move as
//! `Bytes` from one session's receive buffer to the other's writer, which seals large ones
//! in place (`Stream::poll_write_owned`): no copy of ours; the sink's connection sends all
//! the chunks that arrived together in one system call. An end
//! of stream on one side becomes a half-close on the other; an error on either side, more
//! bytes than the circuit's limit, no byte either way for the idle timeout, or the end of
//! its lifetime resets both.

use crate::connection::Stream;
use bytes::Bytes;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWrite;

/// What one circuit may use.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Bytes carried, both directions together.
    pub(super) bytes: u64,
    /// Longest time with no byte either way.
    pub(super) idle: Duration,
    /// Longest time in all.
    pub(super) lifetime: Duration,
}

/// One direction's progress.
#[derive(Default)]
struct Half {
    /// Read from the source, not yet taken by the sink.
    pending: Bytes,
    /// The source ended and the sink was half-closed.
    done: bool,
}

/// Splices `a` and `b` until both directions end; resets both on an error or when a
/// limit is passed. Every byte carried is added to `counter`.
pub(super) async fn splice(
    mut a: Stream,
    mut b: Stream,
    limits: Limits,
    counter: &AtomicU64,
) -> io::Result<()> {
    let (mut ab, mut ba) = (Half::default(), Half::default());
    let mut carried = 0u64;
    let limit = limits.bytes;
    let mut idle = Box::pin(tokio::time::sleep(limits.idle));
    let lifetime = tokio::time::sleep(limits.lifetime);
    tokio::pin!(lifetime);
    let result = std::future::poll_fn(|cx| {
        let before = carried;
        let forward = poll_half(&mut a, &mut b, &mut ab, cx, &mut carried, limit, counter);
        let backward = poll_half(&mut b, &mut a, &mut ba, cx, &mut carried, limit, counter);
        match (forward, backward) {
            (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => return Poll::Ready(Err(e)),
            (Poll::Ready(Ok(())), Poll::Ready(Ok(()))) => return Poll::Ready(Ok(())),
            _ => {}
        }
        if carried != before {
            idle.as_mut()
                .reset(tokio::time::Instant::now() + limits.idle);
        }
        if idle.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("circuit idle for {:?}", limits.idle),
            )));
        }
        if lifetime.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("circuit reached its lifetime of {:?}", limits.lifetime),
            )));
        }
        Poll::Pending
    })
    .await;
    if result.is_err() {
        a.reset();
        b.reset();
    }
    result
}

fn poll_half(
    from: &mut Stream,
    to: &mut Stream,
    half: &mut Half,
    cx: &mut Context<'_>,
    carried: &mut u64,
    limit: u64,
    counter: &AtomicU64,
) -> Poll<io::Result<()>> {
    loop {
        if !half.pending.is_empty() {
            // Handed over as it is: the sink's writer seals a large chunk in place.
            match to.poll_write_owned(cx, &mut half.pending) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            continue;
        }
        if half.done {
            return Poll::Ready(Ok(()));
        }
        match from.poll_read_chunk(cx) {
            Poll::Ready(Ok(Some(chunk))) => {
                *carried += chunk.len() as u64;
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                if *carried > limit {
                    return Poll::Ready(Err(io::Error::other(format!(
                        "circuit exceeded its limit of {limit} bytes"
                    ))));
                }
                half.pending = chunk;
            }
            Poll::Ready(Ok(None)) => {
                half.done = true;
                if let Poll::Ready(Err(e)) = Pin::new(&mut *to).poll_shutdown(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
}
