//! Hostile peers across real hosts: an attacker host, a victim and a good peer each in a
//! network namespace of their own, the attacker and the good peer linked to the victim by
//! separate veth links (so per-IP limits see two different addresses, and loopback's
//! exemption plays no part). The attacker holds idle sockets, completes handshakes with
//! fresh identities and floods streams at once; the good peer must still connect and ping,
//! and what the victim holds must stay within its limits.
//!
//! CI runs a small slice (500 idle sockets, 50 handshakes, 1,000 streams);
//! `PHEROMONE_HOSTILE_FULL=1` runs the full numbers (5,000, 1,000, 10,000), as
//! `scripts/hostile-netns.sh` does. Figures (good-peer connect time, process RSS and fds)
//! are printed, not asserted, except the bound on RSS growth. Attacker, victim and good
//! peer share this process, so the RSS and fd figures are the sum of all three: an upper
//! bound on the victim's.
//!
//! Needs root and iproute2; skips (saying why) without them.

#![allow(clippy::disallowed_methods)] // connect time is measured as a figure

mod common;
mod netns;

use common::raw::RawConn;
use futures::FutureExt;
use netns::Topology;
use pheromone::{Access, Endpoint, EndpointConfig, Keypair, Multiaddr};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

const PORT: u16 = 4001;
const PARK: &str = "/test/park/1.0.0";
/// A bound on the whole scenario, not the expected time.
const LIMIT: Duration = Duration::from_secs(300);
/// What RSS may grow by while the attack is held (the goal for the victim alone).
const MAX_RSS_GROWTH_KIB: u64 = 256 * 1024;

struct Scale {
    idle: usize,
    handshakes: usize,
    streams: usize,
}

fn scale() -> Scale {
    if std::env::var_os("PHEROMONE_HOSTILE_FULL").is_some() {
        Scale {
            idle: 5_000,
            handshakes: 1_000,
            streams: 10_000,
        }
    } else {
        Scale {
            idle: 500,
            handshakes: 50,
            streams: 1_000,
        }
    }
}

fn identity() -> Keypair {
    Keypair::generate(&mut rand::rngs::OsRng)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// What the attacker managed to hold.
#[derive(Debug)]
struct Held {
    idle_sockets: usize,
    handshakes_done: usize,
    streams_opened: usize,
}

#[test]
fn attacker_host_floods_while_a_good_peer_on_another_host_connects() {
    let Some(topo) = Topology::named("hdn", 3, &[(0, 1), (2, 1)]) else {
        return;
    };
    let scale = scale();
    let links = topo.links().to_vec();
    let victim_for_attacker = SocketAddr::new(links[0].addr_b.into(), PORT);
    let victim_for_good: Multiaddr = format!("/ip4/{}/tcp/{PORT}", links[1].addr_b)
        .parse()
        .expect("addr");
    let (attacker, victim_host, good) = (topo.host(0), topo.host(1), topo.host(2));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        tokio::time::timeout(LIMIT, async move {
            let parked = Arc::new(AtomicUsize::new(0));
            let parked_in = parked.clone();
            let listen = [links[0].addr_b, links[1].addr_b];
            let victim = victim_host
                .run(move || async move {
                    let victim = Endpoint::new(identity(), EndpointConfig::default());
                    victim.set_handler(
                        PARK,
                        Arc::new(move |conn, stream| {
                            let parked = parked_in.clone();
                            async move {
                                parked.fetch_add(1, Ordering::SeqCst);
                                conn.closed().await;
                                drop(stream);
                            }
                            .boxed()
                        }),
                        Access::Open,
                    );
                    for ip in listen {
                        let addr: Multiaddr = format!("/ip4/{ip}/tcp/{PORT}").parse().expect("addr");
                        victim.listen(&addr).expect("listen");
                    }
                    victim
                })
                .await;
            let rss_before = rss_kib();
            let fds_before = fds();

            let (ready_tx, ready_rx) = oneshot::channel::<Held>();
            let (release_tx, release_rx) = oneshot::channel::<()>();
            let (idle_n, hs_n, streams_n) = (scale.idle, scale.handshakes, scale.streams);
            let attack = attacker.run(move || async move {
                // Streams first (one connection), then handshakes with fresh identities
                // (each completes; beyond the per-IP limit the victim drops it after),
                // then idle sockets, which keep this address's handshake share full.
                let flood = Endpoint::new(identity(), EndpointConfig::default());
                let addr: Multiaddr = format!("/ip4/{}/tcp/{PORT}", victim_for_attacker.ip())
                    .parse()
                    .expect("addr");
                let mut opened = 0;
                let mut streams = std::collections::VecDeque::new();
                if let Ok(conn) = flood.dial(&addr).await {
                    for _ in 0..streams_n {
                        let Ok(mut s) = flood.open_stream(&conn, PARK).await else {
                            // Our own side's stream limit: let the oldest go.
                            streams.pop_front();
                            continue;
                        };
                        if s.write_all(b"x").await.is_ok() {
                            opened += 1;
                        }
                        streams.push_back(s);
                        if streams.len() >= 500 {
                            streams.pop_front();
                        }
                    }
                }
                let mut raws = Vec::new();
                for _ in 0..hs_n {
                    raws.push(RawConn::connect(victim_for_attacker, &identity()).await);
                }
                let mut idle = Vec::new();
                for _ in 0..idle_n {
                    match tokio::net::TcpStream::connect(victim_for_attacker).await {
                        Ok(s) => idle.push(s),
                        Err(_) => break,
                    }
                }
                let _ = ready_tx.send(Held {
                    idle_sockets: idle.len(),
                    handshakes_done: raws.len(),
                    streams_opened: opened,
                });
                let _ = release_rx.await;
                drop((idle, raws, streams));
                flood.close().await;
            });
            let check = async {
                let held = ready_rx.await.expect("the attack ran");
                // Let the victim process what the attacker sent.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let took = good
                    .run(move || async move {
                        let good = Endpoint::new(identity(), EndpointConfig::default());
                        let started = Instant::now();
                        let conn = good.dial(&victim_for_good).await.expect("the good peer connects");
                        let took = started.elapsed();
                        good.ping(&conn).await.expect("the good peer pings");
                        good.close().await;
                        took
                    })
                    .await;
                let usage = victim.resources().usage();
                let limits = victim.resources().limits();
                let rss = rss_kib();
                eprintln!(
                    "figure: netns flood of {} idle sockets, {} handshakes, {} streams: good peer connected in {took:?}; process RSS {rss_before} -> {rss} KiB, fds {fds_before} -> {}; victim holds {usage:?}, {} B of receive buffer, {} parked streams",
                    held.idle_sockets,
                    held.handshakes_done,
                    held.streams_opened,
                    fds(),
                    victim.resources().memory(),
                    parked.load(Ordering::SeqCst),
                );
                assert!(usage.pending_handshakes <= limits.max_pending_handshakes_per_ip + 1);
                // The attacker's address: its per-IP share; plus the good peer's.
                assert!(usage.inbound_connections <= limits.max_connections_per_ip + 1);
                assert!(parked.load(Ordering::SeqCst) <= limits.max_streams_per_peer);
                assert!(
                    rss.saturating_sub(rss_before) <= MAX_RSS_GROWTH_KIB,
                    "RSS grew by {} KiB",
                    rss - rss_before
                );
                let _ = release_tx.send(());
            };
            tokio::join!(attack, check);
            victim_host.run(move || async move { victim.close().await }).await;
        })
        .await
        .expect("scenario timed out");
    });
    drop(topo);
}
