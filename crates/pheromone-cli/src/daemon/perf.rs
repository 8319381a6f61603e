//! `pheromone perf`: throughput to a peer over `/perf/1.0.0`, upload then download, with
//! an interval report every second the way iperf3 prints them.
//!
//! The wire is the libp2p perf protocol (see `docs/protocols/perf.md`): we send the number
//! of bytes we want back as a big-endian u64, upload, close our side, and read what comes
//! back. The library's `perf::run_client` measures a whole exchange at once; here each
//! direction gets its own stream so the two are measured apart, and bytes are counted as
//! they move so intervals can be reported. A duration-bound download asks for chunks and
//! resets the last stream at the deadline. Nothing here touches the control socket beyond
//! emitting events.

use super::control::Events;
use super::errors::stream_error;
use super::net::Net;
use crate::control_proto::{
    ControlError, ErrorCode, Event, PerfDirection, PerfInterval, PerfPhase, PerfSummary,
};
use pheromone::node::NodeStream;
use pheromone::protocols::perf::PROTOCOL;
use pheromone::PeerId;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Size of each write and read.
const BLOCK: usize = 64 * 1024;
/// A duration-bound download asks for this much per stream.
const DOWNLOAD_CHUNK: u64 = 256 << 20;
/// A single read or write that makes no progress for this long fails the run.
const STALL: Duration = Duration::from_secs(30);
/// Interval between reports.
const INTERVAL: Duration = Duration::from_secs(1);

/// How much each direction moves.
#[derive(Debug, Clone, Copy)]
pub enum Plan {
    /// Exactly this many bytes each way.
    Bytes(u64),
    /// As much as fits in this time each way.
    Duration(Duration),
}

/// Runs upload then download to `peer` (each stream on the peer's link in long mode, on a
/// link of its own in short mode).
pub async fn run(
    net: &Net,
    peer: PeerId,
    plan: Plan,
    events: &Events,
) -> Result<PerfSummary, ControlError> {
    // The first stream also checks the peer answers perf before anything is reported.
    let first = open(net, &peer).await?;
    events.emit(Event::PerfStart(net.peer_ref(&peer))).await?;
    let upload = upload(first, &peer, plan, events).await?;
    let download = download(net, &peer, plan, events).await?;
    Ok(PerfSummary {
        peer_id: peer.to_string(),
        upload,
        download,
    })
}

async fn open(net: &Net, peer: &PeerId) -> Result<NodeStream, ControlError> {
    net.open_stream(peer, PROTOCOL).await.map_err(|mut error| {
        if error.code == ErrorCode::ProtocolRefused {
            error
                .message
                .push_str(" (perf is off unless that node runs `pheromone up --perf`)");
        }
        error
    })
}

fn io_error(peer: &PeerId, e: &std::io::Error) -> ControlError {
    stream_error(peer, PROTOCOL, e)
}

fn stalled(peer: &PeerId) -> ControlError {
    ControlError::new(
        ErrorCode::Timeout,
        format!("perf to {peer} stalled: no progress for {STALL:?}"),
    )
}

async fn upload(
    mut stream: NodeStream,
    peer: &PeerId,
    plan: Plan,
    events: &Events,
) -> Result<PerfPhase, ControlError> {
    let block = vec![0u8; BLOCK];
    let start = Instant::now();
    let mut ticker = Ticker::new(PerfDirection::Upload, start);
    let io = |e: std::io::Error| io_error(peer, &e);
    // We want nothing back.
    stream.write_all(&0u64.to_be_bytes()).await.map_err(io)?;
    let mut sent = 0u64;
    loop {
        let n = match plan {
            Plan::Bytes(total) => (total - sent).min(BLOCK as u64) as usize,
            Plan::Duration(d) if start.elapsed() < d => BLOCK,
            Plan::Duration(_) => 0,
        };
        if n == 0 {
            break;
        }
        tokio::time::timeout(STALL, stream.write_all(&block[..n]))
            .await
            .map_err(|_| stalled(peer))?
            .map_err(io)?;
        sent += n as u64;
        ticker.tick(sent, events).await?;
    }
    // The phase ends when the server has read everything: it answers our close with its
    // own (having nothing to send back).
    stream.shutdown().await.map_err(io)?;
    let mut rest = [0u8; 16];
    loop {
        let n = tokio::time::timeout(STALL, stream.read(&mut rest))
            .await
            .map_err(|_| stalled(peer))?
            .map_err(io)?;
        if n == 0 {
            break;
        }
    }
    ticker.finish(sent, events).await?;
    Ok(PerfPhase::new(sent, start.elapsed()))
}

async fn download(
    net: &Net,
    peer: &PeerId,
    plan: Plan,
    events: &Events,
) -> Result<PerfPhase, ControlError> {
    let start = Instant::now();
    let mut ticker = Ticker::new(PerfDirection::Download, start);
    let mut buf = vec![0u8; BLOCK];
    let mut received = 0u64;
    let (deadline, mut left) = match plan {
        Plan::Bytes(n) => (None, n),
        Plan::Duration(d) => (Some(start + d), u64::MAX),
    };
    while left > 0 {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let ask = left.min(DOWNLOAD_CHUNK);
        let mut stream = open(net, peer).await?;
        let io = |e: std::io::Error| io_error(peer, &e);
        stream.write_all(&ask.to_be_bytes()).await.map_err(io)?;
        stream.shutdown().await.map_err(io)?;
        let mut got = 0u64;
        loop {
            let limit = match deadline {
                Some(d) => d.min(Instant::now() + STALL),
                None => Instant::now() + STALL,
            };
            let read = tokio::time::timeout_at(limit.into(), stream.read(&mut buf)).await;
            let n = match read {
                Ok(result) => result.map_err(io)?,
                Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => {
                    // Time is up mid-chunk: abandon the rest of it.
                    stream.get_mut().reset();
                    left = 0;
                    break;
                }
                Err(_) => return Err(stalled(peer)),
            };
            if n == 0 {
                if got != ask {
                    return Err(ControlError::new(
                        ErrorCode::StreamFailed,
                        format!(
                            "{peer} sent {got} of the {ask} bytes asked for (its perf limit may be lower)"
                        ),
                    ));
                }
                break;
            }
            got += n as u64;
            received += n as u64;
            ticker.tick(received, events).await?;
        }
        left = left.saturating_sub(got);
    }
    ticker.finish(received, events).await?;
    Ok(PerfPhase::new(received, start.elapsed()))
}

/// Emits an interval event each second of a phase.
struct Ticker {
    direction: PerfDirection,
    start: Instant,
    last_at: Instant,
    last_bytes: u64,
}

impl Ticker {
    fn new(direction: PerfDirection, start: Instant) -> Self {
        Self {
            direction,
            start,
            last_at: start,
            last_bytes: 0,
        }
    }

    async fn tick(&mut self, total: u64, events: &Events) -> Result<(), ControlError> {
        let now = Instant::now();
        if now.duration_since(self.last_at) >= INTERVAL {
            self.emit(now, total, events).await?;
        }
        Ok(())
    }

    /// Reports the last, partial interval (unless it is too short to mean anything).
    async fn finish(&mut self, total: u64, events: &Events) -> Result<(), ControlError> {
        let now = Instant::now();
        if now.duration_since(self.last_at) >= Duration::from_millis(10)
            || self.last_at == self.start
        {
            self.emit(now, total, events).await?;
        }
        Ok(())
    }

    async fn emit(
        &mut self,
        now: Instant,
        total: u64,
        events: &Events,
    ) -> Result<(), ControlError> {
        let interval = PerfInterval {
            direction: self.direction,
            start_secs: self.last_at.duration_since(self.start).as_secs_f64(),
            end_secs: now.duration_since(self.start).as_secs_f64(),
            bytes: total - self.last_bytes,
        };
        self.last_at = now;
        self.last_bytes = total;
        events.emit(Event::PerfInterval(interval)).await
    }
}
