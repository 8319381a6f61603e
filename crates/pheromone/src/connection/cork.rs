//! Corking: one socket write for the first poll of a future instead of one per stream
//! operation.
//!
//! Sending is write-through (see `shared.rs`): each stream write, FIN, ACK or window
//! update is encrypted and written to the socket at once. A request/response exchange makes
//! several of them in one go — the responder's ACK, its protocol answer, the reply and the
//! FIN; the requester's SYN, proposal, request and FIN — and each would be a Noise frame and
//! a system call of its own. While a [`Corked`] future is polled for the first time,
//! flushes of its connection made on this thread are only noted; the one flush owed
//! happens when that poll returns. Later polls are not corked: a long transfer keeps
//! sending its window updates and data as they are made. Nothing is held across polls, and
//! flushes from other threads go out as usual (taking the corked bytes with them).

use super::shared::Shared;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

thread_local! {
    /// The connection (its `Shared` address) whose flushes this thread's current poll
    /// defers, and whether one was asked for meanwhile.
    static CORKED: Cell<(usize, bool)> = const { Cell::new((0, false)) };
}

fn key(shared: &Shared) -> usize {
    std::ptr::from_ref(shared) as usize
}

/// Whether `shared` is corked on this thread; if so, records that a flush is owed.
pub(super) fn defer_flush(shared: &Shared) -> bool {
    let me = key(shared);
    CORKED.with(|c| {
        let (corked, _) = c.get();
        if corked == me {
            c.set((me, true));
            true
        } else {
            false
        }
    })
}

/// Restores the previous cork when a poll ends (also when it panics), and reports
/// whether a flush is owed.
struct Guard {
    previous: (usize, bool),
    done: bool,
}

impl Guard {
    fn enter(shared: &Shared) -> Self {
        let previous = CORKED.with(|c| c.replace((key(shared), false)));
        Self {
            previous,
            done: false,
        }
    }

    fn exit(mut self) -> bool {
        self.done = true;
        CORKED.with(|c| c.replace(self.previous)).1
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.done {
            CORKED.with(|c| c.set(self.previous));
        }
    }
}

/// Runs `f` with the flushes of `shared` asked for on this thread deferred, then flushes
/// once if any was: for a caller that makes many writes in one go (the relay's splice moves
/// every chunk that has arrived), so they leave as one encryption and one system call
/// instead of one per write.
pub(crate) fn with_cork<R>(shared: &Shared, f: impl FnOnce() -> R) -> R {
    let guard = Guard::enter(shared);
    let result = f();
    if guard.exit() {
        shared.flush_or_wake();
    }
    result
}

pin_project_lite::pin_project! {
    /// A future whose first poll writes to its connection's socket at most once; see the
    /// module docs.
    pub(crate) struct Corked<F> {
        shared: Option<Arc<Shared>>,
        #[pin]
        inner: F,
    }
}

impl<F> Corked<F> {
    pub(super) fn new(shared: Arc<Shared>, inner: F) -> Self {
        Self {
            shared: Some(shared),
            inner,
        }
    }
}

impl<F: Future> Future for Corked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Some(shared) = this.shared.take() else {
            return this.inner.poll(cx);
        };
        let guard = Guard::enter(&shared);
        let result = this.inner.poll(cx);
        if guard.exit() {
            shared.flush_or_wake();
        }
        result
    }
}
