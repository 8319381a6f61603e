//! The one tokio driver for every overlay: whatever implements the core's
//! [`Overlay`] contract (Kademlia, routing, broadcast, the
//! connection manager) runs over a [`Swarm`] through [`OverlayDriver::spawn`], with no
//! driver code of its own.
//!
//! The driver turns the swarm's connections into neighbours (a peer with a connection
//! that counts for the overlay — direct, or relayed where the overlay accepts it — whose
//! identify lists the overlay's protocol, or that opened a stream of it to us), carries
//! frames on neighbour links through per-neighbour writers with byte-capped queues and a
//! write timeout (a stalled neighbour is dropped, never waited for), serves and sends
//! requests on streams of their own, carries out dials and disconnects, and runs the
//! overlay's timer on the tokio clock (so tests can pause it). Everything it spawns is on
//! the swarm's task tracker, so closing the node waits for it.
//!
//! A service built on an overlay reaches it through an [`OverlayHandle`]: a synchronous
//! call on the overlay and the service's own state ([`Service`]), after which the driver
//! drains the outputs. Events go to the service on the driver task.
//!
//! It interprets no message: the protocols live in the core.
//!
//! # Layout
//! - `driver.rs`: the task: the select loop, neighbours, outputs.
//! - `links.rs`: neighbour links and their writers.
//! - `streams.rs`: inbound frame and request streams, outbound requests and dials.

mod driver;
mod links;
mod streams;

use crate::swarm::Swarm;
use pheromone_core::overlay::Overlay;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How the driver moves an overlay's frames on streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamUse {
    /// One stream per neighbour kept open while the link lives: for frequent frames.
    Persistent,
    /// A stream per batch of queued frames, closed after it: for rare frames, so that an
    /// idle link holds no stream (nor a slot of the peer's stream limit).
    PerBatch,
}

/// Settings of one overlay's driver.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// How frames use streams.
    pub streams: StreamUse,
    /// Bytes of frames queued for one neighbour; a frame beyond it is dropped (overlays
    /// repair their own losses).
    pub queue_bytes: usize,
    /// A neighbour whose stream takes longer than this to accept a write is dropped as a
    /// neighbour (its connection is left to the swarm).
    pub write_timeout: Duration,
    /// Frames and requests from all peers waiting for the overlay.
    pub inbound_queue: usize,
    /// Requests the overlay sends at once; more wait for a slot.
    pub max_parallel_requests: usize,
    /// Dials the overlay asks for at once; more wait for a slot.
    pub max_parallel_dials: usize,
    /// How long an outbound request (dial included) may take before it fails.
    pub request_timeout: Duration,
    /// How long an inbound request stream may take to deliver a whole request, and stay
    /// idle between requests, before it is reset.
    pub inbound_timeout: Duration,
    /// Requests one inbound stream may carry (go-libp2p reuses its kad streams).
    pub max_requests_per_stream: usize,
    /// Inbound request streams served at once; more are reset at once.
    pub max_inbound_streams: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            streams: StreamUse::Persistent,
            queue_bytes: 1024 * 1024,
            write_timeout: Duration::from_secs(10),
            inbound_queue: 4096,
            max_parallel_requests: 64,
            max_parallel_dials: 8,
            request_timeout: Duration::from_secs(10),
            inbound_timeout: Duration::from_secs(10),
            max_requests_per_stream: 16,
            max_inbound_streams: 256,
        }
    }
}

/// What a service built on an overlay does with its events. Runs on the driver task,
/// between inputs, with the overlay at hand: it must not block.
pub trait Service<O: Overlay>: Send + 'static {
    /// The overlay reported `event`.
    fn on_event(&mut self, overlay: &mut O, now: Instant, event: O::Event);
}

/// What a driver counted, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriverStats {
    /// Inbound request streams reset because too many were open.
    pub inbound_rejected: u64,
    /// Dials made to send a request (the peer had no connection).
    pub request_dials: u64,
    /// Of those, the ones that failed.
    pub request_dials_failed: u64,
    /// Frames dropped because their neighbour's queue was full or it was gone.
    pub frames_dropped: u64,
    /// Neighbours dropped because their stream stopped taking bytes.
    pub stalled: u64,
    /// Frames and requests the overlay refused.
    pub refused: u64,
}

/// The driver's counters, bumped from its task and its IO tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) inbound_rejected: AtomicU64,
    pub(crate) request_dials: AtomicU64,
    pub(crate) request_dials_failed: AtomicU64,
    pub(crate) frames_dropped: AtomicU64,
    pub(crate) stalled: AtomicU64,
    pub(crate) refused: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> DriverStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DriverStats {
            inbound_rejected: get(&self.inbound_rejected),
            request_dials: get(&self.request_dials),
            request_dials_failed: get(&self.request_dials_failed),
            frames_dropped: get(&self.frames_dropped),
            stalled: get(&self.stalled),
            refused: get(&self.refused),
        }
    }
}

/// The driver has stopped (the node is closing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the overlay's driver has stopped: the node is closing")]
pub struct Stopped;

/// An overlay and its service, shared by the driver and the handles; a std mutex, never
/// held across an await.
pub(crate) struct Shared<O, S> {
    overlay: O,
    service: S,
}

struct HandleInner<O, S> {
    state: Mutex<Shared<O, S>>,
    /// Tells the driver that a call may have left outputs to drain.
    wake: Notify,
    swarm: Swarm,
    counters: Arc<Counters>,
}

/// A handle on a running overlay and its service; cheap to clone.
pub struct OverlayHandle<O, S> {
    inner: Arc<HandleInner<O, S>>,
}

impl<O, S> Clone for OverlayHandle<O, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<O, S> std::fmt::Debug for OverlayHandle<O, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayHandle").finish_non_exhaustive()
    }
}

impl<O, S> OverlayHandle<O, S>
where
    O: Overlay + Send + 'static,
    O::Event: Send,
    S: Service<O>,
{
    /// Runs `f` on the overlay and its service now, then has the driver carry out the
    /// outputs it left. Fails once the node is closing.
    pub fn with<R>(&self, f: impl FnOnce(&mut O, &mut S, Instant) -> R) -> Result<R, Stopped> {
        if self.inner.swarm.is_closed() {
            return Err(Stopped);
        }
        let result = {
            let mut state = self.lock();
            let Shared { overlay, service } = &mut *state;
            f(overlay, service, now())
        };
        self.inner.wake.notify_one();
        Ok(result)
    }

    /// What the driver counted.
    pub fn driver_stats(&self) -> DriverStats {
        self.inner.counters.snapshot()
    }

    /// Reads the overlay and its service without touching them.
    pub fn read<R>(&self, f: impl FnOnce(&O, &S) -> R) -> R {
        let state = self.lock();
        f(&state.overlay, &state.service)
    }

    fn lock(&self) -> MutexGuard<'_, Shared<O, S>> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts the driver of an overlay.
pub struct OverlayDriver;

impl OverlayDriver {
    /// Runs `overlay` with `service` over `swarm`: registers the overlay's protocol with
    /// the swarm's endpoint and spawns the driver on the swarm's task tracker. The driver
    /// ends when the swarm closes.
    pub fn spawn<O, S>(
        swarm: &Swarm,
        overlay: O,
        service: S,
        config: DriverConfig,
    ) -> OverlayHandle<O, S>
    where
        O: Overlay + Send + 'static,
        O::Event: Send,
        S: Service<O>,
    {
        let inner = Arc::new(HandleInner {
            state: Mutex::new(Shared { overlay, service }),
            wake: Notify::new(),
            swarm: swarm.clone(),
            counters: Arc::new(Counters::default()),
        });
        let handle = OverlayHandle { inner };
        driver::start(handle.clone(), config);
        handle
    }
}

/// The driver's clock: tokio's, so that a test with a paused clock drives the overlays'
/// timers too.
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
