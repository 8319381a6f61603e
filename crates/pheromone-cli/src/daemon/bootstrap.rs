//! Bootstrap peers: dialled when the daemon starts and, in long mode, redialled whenever
//! the link to them is lost, with capped, jittered exponential backoff between failed
//! attempts.
//!
//! One task per bootstrap address. It adds a route through the node (so the node also
//! knows where to redial on use), then sleeps until the node reports the peer gone. A peer
//! the operator disconnected is left alone until the next `connect` to it. In short mode
//! there is no link to keep: the peer is reached and identified once, retrying until that
//! works. Nothing here prints; progress goes to the log.

use super::config::Mode;
use super::net::Net;
use pheromone::{Multiaddr, NodeEvent, PeerId};
use rand::Rng;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// Pause after the first failed attempt.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// Longest pause between attempts.
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// How often a connected peer is checked on even without an event (events may lag).
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Exponential backoff: each pause doubles up to a cap, and is drawn from its upper half so
/// that daemons that lost the same peer at once do not redial in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `first`, never above `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first.min(max),
        }
    }

    /// The pause before the next attempt; `unit` (in `[0, 1]`) picks where in the upper
    /// half of the current step it falls.
    pub fn pause(&mut self, unit: f64) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        step.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
    }

    /// After a success: the next failure starts from the first pause again.
    pub fn reset(&mut self) {
        self.next = self.first.min(self.max);
    }
}

/// Keeps the daemon linked to the bootstrap peer at `addr` until `cancel` fires.
pub async fn supervise(net: Net, addr: Multiaddr, cancel: CancellationToken) {
    let mut backoff = Backoff::new(FIRST_PAUSE, MAX_PAUSE);
    let mut events = net.node().events();
    let mut peer: Option<PeerId> = addr.peer_id();
    let mut reached_once = false;
    loop {
        let needs_dial = match peer {
            _ if !reached_once => true,
            Some(p) => !net.is_parked(&p) && !net.node().is_connected(&p),
            None => true,
        };
        if needs_dial {
            match net.node().add_contact("", &addr).await {
                // Dialled before the operator's `disconnect` and done after it.
                Ok(route) if reached_once && net.is_parked(&route.peer) => {
                    net.node().disconnect(&route.peer).await;
                }
                Ok(route) => {
                    tracing::info!(%addr, peer = %route.peer, "bootstrap peer reached");
                    join_dht(&net, route.peer, &addr);
                    peer = Some(route.peer);
                    reached_once = true;
                    backoff.reset();
                    if net.mode() == Mode::Short {
                        return;
                    }
                }
                Err(e) => {
                    let pause = backoff.pause(rand::thread_rng().gen());
                    tracing::info!(%addr, error = %e, retry_in = ?pause, "bootstrap dial failed");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
            continue;
        }
        // Linked (or parked): wait for the peer to go, or check again in a while.
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            event = events.recv() => match event {
                Ok(NodeEvent::PeerDisconnected { peer: gone }) if Some(gone) == peer => {
                    tracing::info!(%addr, peer = %gone, "lost the bootstrap peer; redialling");
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
        }
    }
}

/// Joins the DHT through a bootstrap peer just reached: vouches for its address (the DHT
/// enters only peers someone vouched for or that answered), then looks up our own ID and
/// random ones (in the background; the result is only logged).
pub(super) fn join_dht(net: &Net, peer: PeerId, addr: &Multiaddr) {
    let Some(discovery) = net.node().discovery().cloned() else {
        return;
    };
    let addr = addr.clone().without_p2p();
    tokio::spawn(async move {
        if let Err(e) = discovery.add_address(peer, addr).await {
            tracing::debug!(%peer, error = %e, "bootstrap peer not added to the DHT");
        }
        match discovery.bootstrap().await {
            Ok(joined) => tracing::info!(
                table = joined.table_size,
                closest = joined.closest.len(),
                "joined the DHT"
            ),
            Err(e) => tracing::debug!(error = %e, "DHT bootstrap failed"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let top: Vec<Duration> = (0..5).map(|_| b.pause(1.0)).collect();
        let secs: Vec<u64> = top.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.pause(0.0), Duration::from_millis(500), "lower half bound");
        assert_eq!(b.pause(0.5), Duration::from_millis(1500));
        // Out-of-range draws are clamped rather than trusted.
        assert_eq!(b.pause(7.0), Duration::from_secs(4));
        assert_eq!(b.pause(-1.0), Duration::from_millis(2500));
    }
}
