//! Keeping the mesh: in long mode, every peer the operator linked with `connect` is
//! redialled when the link is lost, at the addresses the peer store remembers, with capped,
//! jittered exponential backoff (the side that dialled keeps a link, so an operator's
//! `disconnect` on the other side sticks); and a restarted daemon redials the peers it
//! remembers ("reconnecting to N remembered peers"): those it had dialled are kept linked
//! again, those that had dialled it are tried a few times (they will redial us too), so
//! it finds its mesh without `--bootstrap`.
//! Once linked, routes and the DHT table rebuild through the overlays' normal
//! neighbour-up paths.
//!
//! One task per kept peer, at most [`MAX_KEPT`]. A peer the operator disconnected is left
//! alone until the next `connect` to it (as for bootstrap peers). Dial outcomes count
//! into the peer store's reliability figures. Nothing here prints.

use super::bootstrap::{join_dht, Backoff};
use super::net::Net;
use pheromone::{NodeEvent, PeerId};
use rand::Rng;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

/// Peers kept linked at most (the overlays use a handful of neighbours; this is a cap on
/// what a long-running daemon accumulates, not a target).
pub const MAX_KEPT: usize = 64;
/// Remembered peers redialled at start, seen most recently first.
pub const MAX_AT_START: usize = 32;
/// Pause after the first failed redial.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
/// Longest pause between redials: short, because these are the mesh's own links and a
/// link that comes back should carry traffic again within seconds.
const MAX_PAUSE: Duration = Duration::from_secs(8);
/// How often a linked peer is checked on even without an event (events may lag).
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Redials the peers the store remembers (up to [`MAX_AT_START`]); how many.
pub fn reconnect_remembered(net: &Net) -> usize {
    let peers: Vec<(PeerId, bool)> = net
        .peer_store()
        .list()
        .into_iter()
        .filter(|r| !r.addrs.is_empty())
        .filter_map(|r| Some((r.peer_id.parse().ok()?, r.dialled)))
        .filter(|(p, _)| *p != net.node().peer_id())
        .take(MAX_AT_START)
        .collect();
    if !peers.is_empty() {
        tracing::info!(
            peers = peers.len(),
            "reconnecting to {} remembered peers",
            peers.len()
        );
    }
    for &(peer, dialled) in &peers {
        if dialled {
            net.keep_linked(peer, true);
        } else {
            net.spawn(try_once(net.clone(), peer));
        }
    }
    peers.len()
}

/// Attempts at a remembered peer that had dialled us, at start.
const TRIES_AT_START: u32 = 3;

/// Dials a remembered peer that had dialled us a few times, then leaves the link to it.
async fn try_once(net: Net, peer: PeerId) {
    let mut backoff = Backoff::new(FIRST_PAUSE, MAX_PAUSE);
    for _ in 0..TRIES_AT_START {
        if net.node().is_connected(&peer) {
            return;
        }
        for addr in net.peer_store().dial_addrs(&peer) {
            let dialled = tokio::select! {
                _ = net.cancelled() => return,
                dialled = net.node().add_contact("", &addr) => dialled,
            };
            if dialled.is_ok() {
                tracing::info!(%peer, %addr, "remembered peer reached");
                join_dht(&net, peer, &addr);
                return;
            }
        }
        net.peer_store().failed(peer);
        tokio::select! {
            _ = net.cancelled() => return,
            _ = tokio::time::sleep(backoff.pause(rand::thread_rng().gen())) => {}
        }
    }
}

/// Keeps `peer` linked until `cancel` fires. `join` asks the DHT to (re)join through it
/// once reached (a restarted daemon's first links).
pub async fn keep(net: Net, peer: PeerId, mut join: bool, cancel: CancellationToken) {
    let mut backoff = Backoff::new(FIRST_PAUSE, MAX_PAUSE);
    let mut events = net.node().events();
    loop {
        if !net.is_parked(&peer) && !net.node().is_connected(&peer) {
            let addrs = net.peer_store().dial_addrs(&peer);
            if addrs.is_empty() {
                tracing::debug!(%peer, "no address to redial; not keeping the link");
                return;
            }
            let mut reached = None;
            let mut last_error = None;
            for addr in addrs {
                if cancel.is_cancelled() {
                    return;
                }
                let dialled = tokio::select! {
                    _ = cancel.cancelled() => return,
                    dialled = net.node().add_contact("", &addr) => dialled,
                };
                match dialled {
                    // A dial started before the operator's `disconnect` (a QUIC handshake
                    // retransmitting until the peer came back) must not undo it.
                    Ok(_) if net.is_parked(&peer) => {
                        net.node().disconnect(&peer).await;
                        break;
                    }
                    Ok(_) => {
                        reached = Some(addr);
                        break;
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            if net.is_parked(&peer) {
                continue;
            }
            match reached {
                Some(addr) => {
                    tracing::info!(%peer, %addr, "remembered peer reached");
                    if join {
                        join_dht(&net, peer, &addr);
                        join = false;
                    }
                    backoff.reset();
                }
                None => {
                    net.peer_store().failed(peer);
                    let pause = backoff.pause(rand::thread_rng().gen());
                    if let Some(e) = last_error {
                        tracing::debug!(%peer, error = %e, retry_in = ?pause, "redial failed");
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            event = events.recv() => match event {
                Ok(NodeEvent::PeerDisconnected { peer: gone }) if gone == peer => {
                    tracing::info!(%peer, "lost the link to a mesh peer; redialling");
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            },
        }
    }
}
