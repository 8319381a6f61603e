//! Relayed throughput: three nodes in a line on 127.0.0.1 (A linked to B, B to C, and A
//! with no address for C), bulk transfer A → B over the direct link and A → C over a
//! circuit through B, measured in the same run so the ratio compares like with like.

use anyhow::{ensure, Context as _, Result};
use pheromone::node::{Node, Peer};
use pheromone::PeerId;
use std::time::Duration;
use tokio::sync::mpsc;

use crate::report::RelayResult;
use crate::workload::{self, Measure};

/// The name printed in the `stack` field.
pub const NAME: &str = "pheromone";
const BULK: &str = "/bench/bulk/1.0.0";

async fn node(done: mpsc::Sender<u64>) -> Result<Node> {
    Ok(Node::builder()
        .listen("/ip4/127.0.0.1/tcp/0")
        .handle_streams(BULK, move |_peer: Peer, mut stream: pheromone::Stream| {
            let done = done.clone();
            async move {
                if let Ok(got) = workload::sink_bulk(&mut stream).await {
                    let _ = done.send(got).await;
                }
            }
        })
        .build()
        .await?)
}

/// Moves `total` bytes to `target` on one stream; the wall time until acknowledged.
async fn transfer(
    from: &Node,
    target: PeerId,
    total: u64,
    done: &mut mpsc::Receiver<u64>,
) -> Result<(Duration, Duration)> {
    let mut stream = from
        .open_stream(target, BULK)
        .await
        .context("open stream")?;
    let measure = Measure::start();
    workload::send_bulk(&mut stream, total).await?;
    let times = measure.stop();
    let got = done.recv().await.context("receiver stopped")?;
    ensure!(got == total, "receiver got {got} of {total} bytes");
    Ok(times)
}

/// Direct and relayed (one intermediate hop) throughput of `total` bytes each.
pub async fn relay(total: u64) -> Result<RelayResult> {
    let (done_tx, mut done) = mpsc::channel(4);
    let a = node(done_tx.clone()).await?;
    let b = node(done_tx.clone()).await?;
    let c = node(done_tx).await?;
    a.add_contact("b", &b.listen_addrs()[0])
        .await
        .context("link a-b")?;
    b.add_contact("c", &c.listen_addrs()[0])
        .await
        .context("link b-c")?;
    let routing = a.routing().context("routing is on")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while routing.next_hop(&c.peer_id()).is_none() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no route to c after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (direct_wall, direct_cpu) = transfer(&a, b.peer_id(), total, &mut done).await?;
    let (relayed_wall, relayed_cpu) = transfer(&a, c.peer_id(), total, &mut done).await?;
    let relayed =
        a.endpoint().connections().into_iter().any(|conn| {
            conn.remote_peer() == c.peer_id() && conn.info().relay == Some(b.peer_id())
        });
    ensure!(relayed, "the transfer to c did not go through b");
    for n in [&a, &b, &c] {
        n.close().await;
    }
    Ok(RelayResult::new(
        NAME,
        total,
        (direct_wall, direct_cpu),
        (relayed_wall, relayed_cpu),
    ))
}
