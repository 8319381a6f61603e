//! `pheromone ping PEER [-c N] [-i S]`: round trips over `/ipfs/ping/1.0.0`, printed the
//! way ping(8) prints them — a header, one line per answer, and a summary, also when
//! interrupted with Ctrl-C. Exits non-zero when no ping was answered.

use super::style::{paint, peer_label, Paint};
use super::{unexpected, Ctx, Step};
use crate::control_proto::{Event, Op, PingStats, Reply};
use anyhow::{bail, Result};
use std::time::Duration;

/// Runs the ping.
pub async fn run(ctx: &Ctx, peer: String, count: Option<u32>, interval: Duration) -> Result<()> {
    let mut client = ctx.client().await?;
    client
        .start(Op::Ping {
            peer: peer.clone(),
            count,
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
        })
        .await?;
    let mut stats = PingStats::default();
    let mut label = peer;
    let started = std::time::Instant::now();
    let mut interrupt = super::interrupt()?;
    let interrupted = loop {
        let step = tokio::select! {
            _ = interrupt.recv() => break true,
            step = client.next() => step?,
        };
        match step {
            Step::Event(Event::PingStart(start)) => {
                stats.peer_id = start.peer.peer_id.clone();
                if !ctx.json {
                    println!(
                        "PING {} via {}: {} data bytes",
                        peer_label(&start.peer.peer_id, start.peer.name.as_deref()),
                        start.peer.addr,
                        start.payload_bytes
                    );
                }
                // ping(8) names the host briefly on each line: the name, else the ID.
                label = start.peer.name.unwrap_or(start.peer.peer_id);
            }
            Step::Event(Event::Pong { seq, rtt_us }) => {
                stats.pong(Duration::from_micros(rtt_us));
                let ms = rtt_us as f64 / 1000.0;
                if ctx.json {
                    ctx.print_json(&serde_json::json!({ "seq": seq, "rtt_ms": ms }))?;
                } else {
                    println!("32 bytes from {label}: seq={seq} time={ms:.3} ms");
                }
            }
            Step::Event(Event::PingLost { seq, error }) => {
                stats.lost();
                if ctx.json {
                    ctx.print_json(&serde_json::json!({ "seq": seq, "error": error }))?;
                } else {
                    println!(
                        "{}",
                        paint(&format!("no answer for seq={seq}: {error}"), Paint::Red)
                    );
                }
            }
            Step::Event(_) => {}
            Step::Done(Reply::Ping(done)) => {
                stats = done;
                break false;
            }
            Step::Done(other) => return Err(unexpected(&other)),
        }
    };
    if interrupted {
        stats.time_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    }
    print_summary(ctx, &label, &stats)?;
    if stats.received == 0 {
        bail!("no answer from {label}");
    }
    Ok(())
}

fn print_summary(ctx: &Ctx, label: &str, stats: &PingStats) -> Result<()> {
    let summary = stats.summary_ms();
    if ctx.json {
        let (min, avg, max, mdev) = match summary {
            Some((a, b, c, d)) => (Some(a), Some(b), Some(c), Some(d)),
            None => (None, None, None, None),
        };
        return ctx.print_json(&serde_json::json!({
            "peer_id": stats.peer_id,
            "transmitted": stats.transmitted,
            "received": stats.received,
            "loss_percent": stats.loss_percent(),
            "time_ms": stats.time_ms,
            "min_ms": min,
            "avg_ms": avg,
            "max_ms": max,
            "mdev_ms": mdev,
        }));
    }
    println!();
    println!("--- {label} ping statistics ---");
    println!(
        "{} packets transmitted, {} received, {}% packet loss, time {}ms",
        stats.transmitted,
        stats.received,
        format_loss(stats.loss_percent()),
        stats.time_ms
    );
    if let Some((min, avg, max, mdev)) = summary {
        println!("rtt min/avg/max/mdev = {min:.3}/{avg:.3}/{max:.3}/{mdev:.3} ms");
    }
    Ok(())
}

/// ping(8) prints whole percentages unless the loss is fractional.
fn format_loss(percent: f64) -> String {
    if percent.fract() == 0.0 {
        format!("{percent:.0}")
    } else {
        format!("{percent:.3}")
    }
}
