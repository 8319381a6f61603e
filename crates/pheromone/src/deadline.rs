//! Deadlines that cost nothing when the work is already done.
//!
//! `tokio::time::timeout` registers a timer before the first poll; on the request path most
//! futures complete in that first poll (the request arrived with the stream's SYN), so the
//! timer's insertion, removal and clock reads were pure overhead. [`within`] polls once
//! first and arms the timer only if the future has to wait. Nothing else lives here.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

/// `future`'s output, or `Err(Elapsed)` if it takes longer than `limit`; no timer is
/// armed when it is ready on the first poll.
pub(crate) async fn within<F: Future>(
    limit: Duration,
    future: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut future = std::pin::pin!(future);
    if let Poll::Ready(out) = futures::poll!(future.as_mut()) {
        return Ok(out);
    }
    tokio::time::timeout(limit, future).await
}
