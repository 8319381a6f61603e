//! Deadlines that cost nothing when the work is already done.
//!
//! `tokio::time::timeout` registers a timer before the first poll; on the request path most
//! futures complete in that first poll (the request arrived with the stream's SYN), so the
//! timer's insertion, removal and clock reads were pure overhead. [`within`] polls once
//! first and arms the timer only if the future has to wait. [`IdleLimit`] bounds a loop's
//! waits with one timer that moves only when it fires; [`ReusableTimer`] does the same
//! for a sequence of deadlines. Nothing else lives here.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

/// `future`'s output, or `Err(Elapsed)` if it takes longer than `limit`; no timer is
/// armed when it is ready on the first poll.
pub(crate) async fn within<F: Future>(
    limit: Duration,
    future: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    after_first_poll(Bound::For(limit), future).await
}

/// `future`'s output, or `Err(Elapsed)` if `deadline` passes first; no timer is armed
/// when it is ready on the first poll.
pub(crate) async fn before<F: Future>(
    deadline: tokio::time::Instant,
    future: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    after_first_poll(Bound::Until(deadline), future).await
}

/// How long [`after_first_poll`] lets a future wait.
enum Bound {
    For(Duration),
    Until(tokio::time::Instant),
}

/// Polls `future` once; only if it must wait is a timer armed for `bound`.
async fn after_first_poll<F: Future>(
    bound: Bound,
    future: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut future = std::pin::pin!(future);
    if let Poll::Ready(out) = futures::poll!(future.as_mut()) {
        return Ok(out);
    }
    match bound {
        Bound::For(limit) => tokio::time::timeout(limit, future).await,
        Bound::Until(deadline) => tokio::time::timeout_at(deadline, future).await,
    }
}

/// A bound on how long a loop may wait for its next item, armed once and moved only when
/// it fires: a wait costs a counter bump instead of a timer insertion and removal. A loop
/// idle for its whole limit (no [`IdleLimit::touch`] since the timer was last set) ends
/// within one to two limits.
pub(crate) struct IdleLimit {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    activity: u64,
    seen: u64,
}

impl IdleLimit {
    /// A bound of `limit` from now.
    pub(crate) fn new(limit: Duration) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(limit)),
            limit,
            activity: 0,
            seen: 0,
        }
    }

    /// Records that the loop did something, so the next expiry only re-arms the timer.
    pub(crate) fn touch(&mut self) {
        self.activity = self.activity.wrapping_add(1);
    }

    /// `future`'s output, or `None` once the loop has been idle for its limit.
    pub(crate) async fn within<F: Future>(&mut self, future: F) -> Option<F::Output> {
        let mut future = std::pin::pin!(future);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            while self.sleep.as_mut().poll(cx).is_ready() {
                if self.activity == self.seen {
                    return Poll::Ready(None);
                }
                self.seen = self.activity;
                let next = tokio::time::Instant::now() + self.limit;
                self.sleep.as_mut().reset(next);
            }
            Poll::Pending
        })
        .await
    }
}

/// One timer for a sequence of deadlines, such as the requests on a kept stream: it is
/// moved only when it fires before the deadline in force (or when a deadline is earlier
/// than the one it is set for), so a wait usually costs a clock read and a comparison
/// instead of a timer insertion and removal.
pub(crate) struct ReusableTimer {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl ReusableTimer {
    /// A timer first set for `deadline`.
    pub(crate) fn new(deadline: tokio::time::Instant) -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// `future`'s output, or `None` if `deadline` passes first.
    pub(crate) async fn until<F: Future>(
        &mut self,
        deadline: tokio::time::Instant,
        future: F,
    ) -> Option<F::Output> {
        if self.sleep.deadline() > deadline {
            self.sleep.as_mut().reset(deadline);
        }
        let mut future = std::pin::pin!(future);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            // Set for an earlier deadline (an earlier request's): move on to this one.
            while self.sleep.as_mut().poll(cx).is_ready() {
                if self.sleep.deadline() >= deadline {
                    return Poll::Ready(None);
                }
                self.sleep.as_mut().reset(deadline);
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_millis(40);

    #[tokio::test]
    async fn a_ready_future_needs_no_timer() {
        let mut idle = IdleLimit::new(LIMIT);
        assert_eq!(idle.within(async { 7 }).await, Some(7));
        assert_eq!(within(LIMIT, async { 8 }).await.ok(), Some(8));
    }

    // The clock is paused: time moves only when every task waits on a timer, so the
    // virtual waits below are exact and the machine's load cannot change them.
    #[tokio::test(start_paused = true)]
    async fn an_idle_loop_ends_within_two_limits() {
        let mut idle = IdleLimit::new(LIMIT);
        let start = tokio::time::Instant::now();
        assert_eq!(idle.within(std::future::pending::<()>()).await, None);
        let waited = start.elapsed();
        assert!(waited >= LIMIT && waited <= LIMIT * 2, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn activity_moves_the_limit() {
        let mut idle = IdleLimit::new(LIMIT);
        // Busy for three limits, touching every quarter limit: never idle.
        let start = tokio::time::Instant::now();
        while start.elapsed() < LIMIT * 3 {
            let slept = idle.within(tokio::time::sleep(LIMIT / 4)).await;
            assert_eq!(slept, Some(()), "cut while active");
            idle.touch();
        }
        // Then idle: cut, after at least one limit.
        let quiet = tokio::time::Instant::now();
        assert_eq!(idle.within(std::future::pending::<()>()).await, None);
        let waited = quiet.elapsed();
        assert!(waited >= LIMIT / 4 && waited <= LIMIT * 2, "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reused_timer_keeps_each_deadline() {
        let now = tokio::time::Instant::now;
        let mut timer = ReusableTimer::new(now() + LIMIT);
        // Done in time: the timer is left set for the first deadline.
        assert_eq!(timer.until(now() + LIMIT, async { 1 }).await, Some(1));
        // A later deadline outlives the first one's expiry.
        let later = now() + LIMIT * 3;
        let slept = timer.until(later, tokio::time::sleep(LIMIT * 2)).await;
        assert_eq!(slept, Some(()), "cut at an earlier request's deadline");
        // An earlier deadline than the timer's is kept too.
        let start = now();
        let cut = timer
            .until(start + LIMIT / 2, std::future::pending::<()>())
            .await;
        assert_eq!(cut, None);
        assert_eq!(start.elapsed(), LIMIT / 2);
    }
}
