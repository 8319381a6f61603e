//! Running one request on many peers at once: a concurrency cap, live events for a
//! progress display, and one [`HostResult`] per peer (status, duration, bytes, output).
//!
//! Each peer's run is [`exec`](super::exec) on one task; events reach the caller over a
//! bounded channel, so a slow reader slows the runs instead of buffering without limit.

use super::client::{exec, ExecOutput};
use super::ExecError;
use crate::node::Node;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use pheromone_core::exec::{Exit, Request};
use pheromone_core::identity::PeerId;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Events buffered between the runs and the reader.
const EVENT_CAPACITY: usize = 256;

/// How a fleet run behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetOptions {
    /// Most peers running the command at once.
    pub concurrency: usize,
    /// Most stdout (and, separately, stderr) bytes kept per host in its [`HostResult`];
    /// the byte counts still count everything received.
    pub capture: usize,
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            concurrency: 32,
            capture: 1024 * 1024,
        }
    }
}

impl FleetOptions {
    /// Sets the concurrency cap (at least 1).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Sets how many output bytes are kept per host and stream.
    pub fn capture(mut self, bytes: usize) -> Self {
        self.capture = bytes;
        self
    }
}

/// The outcome on one host.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HostResult {
    /// The peer.
    pub peer: PeerId,
    /// What to call it: its route alias, else the name it announced, else its peer ID.
    pub host: String,
    /// How the command ended there, or why it did not run or finish.
    pub outcome: Result<Exit, ExecError>,
    /// From sending the request to the end.
    pub duration: Duration,
    /// Stdout bytes received.
    pub stdout_bytes: u64,
    /// Stderr bytes received.
    pub stderr_bytes: u64,
    /// The stdout received, up to [`FleetOptions::capture`] bytes.
    pub stdout: Bytes,
    /// The stderr received, up to [`FleetOptions::capture`] bytes.
    pub stderr: Bytes,
}

impl HostResult {
    /// Whether the command ran and exited with code 0.
    pub fn success(&self) -> bool {
        matches!(&self.outcome, Ok(exit) if exit.status.success())
    }

    /// Output bytes received, both streams.
    pub fn bytes(&self) -> u64 {
        self.stdout_bytes + self.stderr_bytes
    }
}

/// Something that happened during a fleet run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FleetEvent {
    /// The request went out to this host.
    Started {
        /// The peer.
        peer: PeerId,
        /// Its display name.
        host: String,
    },
    /// Output arrived from this host.
    Output {
        /// The peer.
        peer: PeerId,
        /// Its display name.
        host: String,
        /// The chunk (stdout or stderr; never an exit).
        output: ExecOutput,
    },
    /// This host is done.
    Finished(HostResult),
}

/// A fleet run in progress. Read its events with [`Fleet::next_event`] (the last of each
/// host is [`FleetEvent::Finished`]) or wait for all results with [`Fleet::collect`].
/// Dropping it abandons the runs (their streams are reset, the peers kill the commands).
#[derive(Debug)]
pub struct Fleet {
    events: mpsc::Receiver<FleetEvent>,
    order: Vec<PeerId>,
    task: JoinHandle<()>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The display name of `peer` on `node`.
fn host_name(node: &Node, peer: &PeerId) -> String {
    node.contacts()
        .into_iter()
        .find(|c| c.peer == *peer)
        .map(|c| c.alias)
        .or_else(|| node.peer_name(peer))
        .unwrap_or_else(|| peer.to_string())
}

/// Starts `request` on every peer in `peers` (duplicates run once), at most
/// `options.concurrency` at a time.
pub fn exec_fleet(
    node: &Node,
    peers: Vec<PeerId>,
    request: Request,
    options: FleetOptions,
) -> Fleet {
    let mut order = Vec::with_capacity(peers.len());
    for p in peers {
        if !order.contains(&p) {
            order.push(p);
        }
    }
    let (tx, rx) = mpsc::channel(EVENT_CAPACITY);
    let node = node.clone();
    let hosts: Vec<(PeerId, String)> = order.iter().map(|p| (*p, host_name(&node, p))).collect();
    let task = tokio::spawn(async move {
        let concurrency = options.concurrency.max(1);
        let runs = hosts.into_iter().map(|(peer, host)| {
            let node = node.clone();
            let request = &request;
            let tx = tx.clone();
            let capture = options.capture;
            async move {
                let result = run_one(&node, peer, host, request, capture, &tx).await;
                let _ = tx.send(FleetEvent::Finished(result)).await;
            }
        });
        futures::stream::iter(runs)
            .buffer_unordered(concurrency)
            .collect::<()>()
            .await;
    });
    Fleet {
        events: rx,
        order,
        task,
    }
}

async fn run_one(
    node: &Node,
    peer: PeerId,
    host: String,
    request: &Request,
    capture: usize,
    tx: &mpsc::Sender<FleetEvent>,
) -> HostResult {
    let started = Instant::now();
    let mut result = HostResult {
        peer,
        host: host.clone(),
        outcome: Err(ExecError::Lost {
            peer,
            reason: "not started".into(),
        }),
        duration: Duration::ZERO,
        stdout_bytes: 0,
        stderr_bytes: 0,
        stdout: Bytes::new(),
        stderr: Bytes::new(),
    };
    let _ = tx
        .send(FleetEvent::Started {
            peer,
            host: host.clone(),
        })
        .await;
    let (mut out, mut err) = (BytesMut::new(), BytesMut::new());
    result.outcome = match exec(node, peer, request).await {
        Err(e) => Err(e),
        Ok(mut session) => loop {
            match session.next().await {
                Some(Ok(ExecOutput::Exit(exit))) => break Ok(exit),
                Some(Ok(output)) => {
                    let (data, kept, count) = match &output {
                        ExecOutput::Stdout(d) => (d, &mut out, &mut result.stdout_bytes),
                        ExecOutput::Stderr(d) => (d, &mut err, &mut result.stderr_bytes),
                        ExecOutput::Exit(_) => continue,
                    };
                    *count += data.len() as u64;
                    let room = capture.saturating_sub(kept.len());
                    kept.extend_from_slice(&data[..room.min(data.len())]);
                    let _ = tx
                        .send(FleetEvent::Output {
                            peer,
                            host: host.clone(),
                            output,
                        })
                        .await;
                }
                Some(Err(e)) => break Err(e),
                None => {
                    break Err(ExecError::Lost {
                        peer,
                        reason: "the run ended without a status".into(),
                    })
                }
            }
        },
    };
    result.duration = started.elapsed();
    result.stdout = out.freeze();
    result.stderr = err.freeze();
    result
}

impl Fleet {
    /// The next event; `None` once every host finished.
    pub async fn next_event(&mut self) -> Option<FleetEvent> {
        self.events.recv().await
    }

    /// The peers, in the order given (duplicates removed).
    pub fn peers(&self) -> &[PeerId] {
        &self.order
    }

    /// Waits for every host and returns the results in the order the peers were given.
    pub async fn collect(mut self) -> Vec<HostResult> {
        let mut results = Vec::with_capacity(self.order.len());
        while let Some(event) = self.events.recv().await {
            if let FleetEvent::Finished(result) = event {
                results.push(result);
            }
        }
        let position = |p: &PeerId| self.order.iter().position(|o| o == p);
        results.sort_by_key(|r| position(&r.peer));
        results
    }
}

/// Runs `request` on every peer in `peers`, at most `options.concurrency` at once, and
/// returns one result per peer in the order given.
pub async fn exec_many(
    node: &Node,
    peers: Vec<PeerId>,
    request: Request,
    options: FleetOptions,
) -> Vec<HostResult> {
    exec_fleet(node, peers, request, options).collect().await
}
