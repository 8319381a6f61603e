//! `pheromone ping PEER [-c N] [-i S]`: round trips over `/ipfs/ping/1.0.0`, printed the
//! way ping(8) prints them — a header, one line per answer, and a summary, also when
//! interrupted with Ctrl-C. Exits non-zero when no ping was answered.
//!
//! The header says how many links away the peer is and, when the daemon reaches it
//! through other nodes, the first relay; `--trace` first prints the route hop by hop.

use super::style::{paint, peer_label, Paint};
use super::{unexpected, Ctx, Step};
use crate::control_proto::{Event, Op, PingStart, PingStats, Reply, TraceInfo};
use anyhow::{bail, Result};
use std::time::Duration;

/// Runs the ping.
pub async fn run(
    ctx: &Ctx,
    peer: String,
    count: Option<u32>,
    interval: Duration,
    trace: bool,
) -> Result<()> {
    let mut client = ctx.client().await?;
    client
        .start(Op::Ping {
            peer: peer.clone(),
            count,
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            trace,
        })
        .await?;
    let mut stats = PingStats::default();
    let mut path: (Option<u32>, Option<String>) = (None, None);
    // Reaching the peer (a dial, a relayed circuit) and tracing its route take a moment:
    // a spinner until the first line is printed.
    let mut bar = ctx.spinner(if trace {
        format!("tracing the route to {peer}")
    } else {
        format!("reaching {peer}")
    });
    let mut label = peer;
    let started = std::time::Instant::now();
    let mut interrupt = super::interrupt()?;
    let interrupted = loop {
        let step = tokio::select! {
            _ = interrupt.recv() => break true,
            step = client.next() => step,
        };
        if let Some(bar) = bar.take() {
            bar.finish_and_clear();
        }
        let step = step?;
        match step {
            Step::Event(Event::Trace(trace)) => print_trace(ctx, &trace)?,
            Step::Event(Event::PingStart(start)) => {
                stats.peer_id = start.peer.peer_id.clone();
                path = (start.hops, start.relay.as_ref().map(|r| r.peer_id.clone()));
                if !ctx.json {
                    println!("{}", header(&start));
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
    if let Some(bar) = bar.take() {
        bar.finish_and_clear();
    }
    if interrupted {
        stats.time_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    }
    print_summary(ctx, &label, &stats, &path)?;
    if stats.received == 0 {
        bail!("no answer from {label}");
    }
    Ok(())
}

/// `PING beta (12D3…) via /ip4/…, 1 hop: 32 data bytes`, or for a relayed link
/// `PING gamma (12D3…) via beta, 2 hops: …` (the first relay).
fn header(start: &PingStart) -> String {
    let via = match &start.relay {
        Some(relay) => relay.name.clone().unwrap_or_else(|| relay.peer_id.clone()),
        None => start.peer.addr.clone(),
    };
    let hops = match start.hops {
        Some(1) => "1 hop".to_owned(),
        Some(n) => format!("{n} hops"),
        None => "hops unknown".to_owned(),
    };
    let transport = match &start.transport {
        Some(t) => format!(" over {t}"),
        None => String::new(),
    };
    format!(
        "PING {} via {via}{transport}, {hops}: {} data bytes",
        peer_label(&start.peer.peer_id, start.peer.name.as_deref()),
        start.payload_bytes
    )
}

/// The route, one hop per line like traceroute(8), then the whole path on one line.
fn print_trace(ctx: &Ctx, trace: &TraceInfo) -> Result<()> {
    if ctx.json {
        return ctx.print_json(&serde_json::json!({ "trace": trace }));
    }
    let hops = trace.path.len().saturating_sub(1);
    let plural = if hops == 1 { "" } else { "s" };
    let outcome = match trace.status.as_str() {
        "reached" => format!("reached in {hops} hop{plural}"),
        "no_route" => "no route beyond the last hop".to_owned(),
        "hop_limit" => "hop limit reached".to_owned(),
        "loop" => "routing loop (transient; routing repairs it)".to_owned(),
        "timeout" => "no answer from the path in time".to_owned(),
        other => other.to_owned(),
    };
    println!("route: {outcome}");
    for (i, hop) in trace.path.iter().enumerate() {
        println!("{i:>3}  {}", peer_label(&hop.peer_id, hop.name.as_deref()));
    }
    let names: Vec<&str> = trace
        .path
        .iter()
        .map(|h| h.name.as_deref().unwrap_or(&h.peer_id))
        .collect();
    println!("path: {}", names.join(" → "));
    Ok(())
}

fn print_summary(
    ctx: &Ctx,
    label: &str,
    stats: &PingStats,
    (hops, relay): &(Option<u32>, Option<String>),
) -> Result<()> {
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
            "hops": hops,
            "relay": relay,
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
