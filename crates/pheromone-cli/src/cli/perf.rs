//! `pheromone perf PEER [--bytes N | --duration S]`: throughput over `/perf/1.0.0`, printed
//! the way iperf3 prints it — a line per second, then a summary per direction. On a
//! terminal a spinner shows the phase in progress; with `--json`, one object per interval
//! and the summary last.

use super::style::{bitrate, paint, peer_label, println_with, transfer, Paint};
use super::{unexpected, Ctx, Step};
use crate::control_proto::{Event, Op, PerfDirection, PerfPhase, PerfSummary, Reply};
use anyhow::{bail, Result};
use std::time::Duration;

const HEADER: &str = "[ ID] Interval           Transfer     Bitrate";

fn tag(direction: PerfDirection) -> &'static str {
    match direction {
        PerfDirection::Upload => "[ up]",
        PerfDirection::Download => "[dwn]",
    }
}

fn line(direction: PerfDirection, start: f64, end: f64, bytes: u64, secs: f64) -> String {
    let rate = if secs > 0.0 {
        bytes as f64 * 8.0 / secs
    } else {
        0.0
    };
    format!(
        "{} {:>6.2}-{:<6.2} sec  {:>12}  {:>15}",
        tag(direction),
        start,
        end,
        transfer(bytes),
        bitrate(rate)
    )
}

/// Runs the measurement.
pub async fn run(ctx: &Ctx, peer: String, bytes: Option<u64>, duration: Duration) -> Result<()> {
    let mut client = ctx.client().await?;
    client
        .start(Op::Perf {
            peer: peer.clone(),
            bytes,
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        })
        .await?;
    let bar = ctx.spinner(format!("upload to {peer}"));
    let mut phase = PerfDirection::Upload;
    let mut interrupt = super::interrupt()?;
    let summary = loop {
        let step = tokio::select! {
            _ = interrupt.recv() => {
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                bail!("interrupted");
            }
            step = client.next() => step,
        };
        let step = match step {
            Ok(step) => step,
            Err(e) => {
                if let Some(bar) = &bar {
                    bar.finish_and_clear();
                }
                return Err(e);
            }
        };
        match step {
            Step::Event(Event::PerfStart(start)) => {
                if !ctx.json {
                    let who = peer_label(&start.peer_id, start.name.as_deref());
                    println_with(
                        bar.as_ref(),
                        &format!("Connecting to {who} at {}, /perf/1.0.0", start.addr),
                    );
                    println_with(bar.as_ref(), &paint(HEADER, Paint::Bold));
                }
            }
            Step::Event(Event::PerfInterval(interval)) => {
                if ctx.json {
                    ctx.print_json(&interval)?;
                    continue;
                }
                if interval.direction != phase {
                    phase = interval.direction;
                    if let Some(bar) = &bar {
                        bar.set_message(format!("download from {peer}"));
                    }
                }
                let text = line(
                    interval.direction,
                    interval.start_secs,
                    interval.end_secs,
                    interval.bytes,
                    interval.end_secs - interval.start_secs,
                );
                println_with(bar.as_ref(), &text);
            }
            Step::Event(_) => {}
            Step::Done(Reply::Perf(summary)) => break summary,
            Step::Done(other) => return Err(unexpected(&other)),
        }
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    if ctx.json {
        return ctx.print_json(&summary);
    }
    print_summary(&summary);
    Ok(())
}

fn print_summary(summary: &PerfSummary) {
    println!("- - - - - - - - - - - - - - - - - - - - - - - - -");
    println!("{}", paint(HEADER, Paint::Bold));
    let row = |direction, phase: &PerfPhase, role: &str| {
        let text = line(direction, 0.0, phase.secs, phase.bytes, phase.secs);
        println!("{text}  {role}");
    };
    row(PerfDirection::Upload, &summary.upload, "upload");
    row(PerfDirection::Download, &summary.download, "download");
}
