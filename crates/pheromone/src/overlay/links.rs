//! Neighbour links: which connections make a peer a neighbour of the overlay, and one
//! writer task per neighbour that carries its frames on a stream of the overlay's
//! protocol.
//!
//! A writer is fed through a queue capped in bytes (a frame that does not fit is dropped:
//! overlays repair their own losses) and gives each write a deadline: a neighbour whose
//! stream stops taking bytes is reported stalled and dropped as a neighbour, so it never
//! holds up the others. What the frames mean is not this file's business.

use super::StreamUse;
use crate::connection::{Connection, ConnectionId, Stream};
use crate::endpoint::Endpoint;
use bytes::{Bytes, BytesMut};
use pheromone_core::identity::PeerId;
use pheromone_core::varint;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

/// Most bytes of frames held for a neighbour while no stream can be opened to it.
const MAX_HELD_BYTES: usize = 1024 * 1024;

/// How long a per-batch stream waits for the peer to close its end.
const BATCH_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How the writers behave.
#[derive(Debug, Clone)]
pub(super) struct WriterConfig {
    pub(super) protocol: String,
    pub(super) streams: StreamUse,
    pub(super) queue_bytes: usize,
    pub(super) write_timeout: Duration,
}

/// One neighbour: the connections that make it one, and its writer.
struct Link {
    connections: HashSet<ConnectionId>,
    writer: Option<Writer>,
}

struct Writer {
    conn: ConnectionId,
    frames: mpsc::UnboundedSender<Bytes>,
    queued: Arc<AtomicUsize>,
}

/// A writer stopped: its stream would not take bytes within the write timeout, or its
/// connection closed.
pub(super) struct Stalled {
    pub(super) peer: PeerId,
    pub(super) conn: ConnectionId,
}

/// The neighbours of one overlay and their writers.
pub(super) struct Links {
    endpoint: Endpoint,
    tasks: TaskTracker,
    config: WriterConfig,
    links: HashMap<PeerId, Link>,
    stalled: mpsc::UnboundedSender<Stalled>,
}

impl Links {
    /// No neighbours yet; writers report stalls on `stalled`.
    pub(super) fn new(
        endpoint: Endpoint,
        tasks: TaskTracker,
        config: WriterConfig,
        stalled: mpsc::UnboundedSender<Stalled>,
    ) -> Self {
        Self {
            endpoint,
            tasks,
            config,
            links: HashMap::new(),
            stalled,
        }
    }

    /// `conn` counts for `peer`; true if the peer just became a neighbour. `writes` says
    /// whether the overlay sends frames (a writer is started then).
    pub(super) fn connection_up(&mut self, conn: &Connection, writes: bool) -> bool {
        let peer = conn.remote_peer();
        let link = self.links.entry(peer).or_insert_with(|| Link {
            connections: HashSet::new(),
            writer: None,
        });
        let first = link.connections.is_empty();
        link.connections.insert(conn.id());
        if writes && link.writer.is_none() {
            link.writer = Some(spawn_writer(
                &self.tasks,
                &self.endpoint,
                &self.config,
                conn.clone(),
                self.stalled.clone(),
            ));
        }
        first
    }

    /// `conn` closed (or stopped counting); true if its peer is no longer a neighbour.
    /// `replacement` is another live connection of the peer's the writer may move to.
    pub(super) fn connection_down(
        &mut self,
        peer: &PeerId,
        conn: ConnectionId,
        replacement: Option<Connection>,
    ) -> bool {
        let Some(link) = self.links.get_mut(peer) else {
            return false;
        };
        if !link.connections.remove(&conn) {
            return false;
        }
        if link.connections.is_empty() {
            self.links.remove(peer);
            return true;
        }
        if link.writer.as_ref().is_some_and(|w| w.conn == conn) {
            link.writer = replacement.map(|c| {
                spawn_writer(
                    &self.tasks,
                    &self.endpoint,
                    &self.config,
                    c,
                    self.stalled.clone(),
                )
            });
        }
        false
    }

    /// Drops `peer` as a neighbour whatever its connections (its writer stalled).
    pub(super) fn remove(&mut self, peer: &PeerId) -> bool {
        self.links.remove(peer).is_some()
    }

    /// Whether `peer` is a neighbour.
    pub(super) fn contains(&self, peer: &PeerId) -> bool {
        self.links.contains_key(peer)
    }

    /// Whether `peer`'s writer runs on `conn`.
    pub(super) fn writes_on(&self, peer: &PeerId, conn: ConnectionId) -> bool {
        self.links
            .get(peer)
            .and_then(|l| l.writer.as_ref())
            .is_some_and(|w| w.conn == conn)
    }

    /// Queues a frame for a neighbour; false if it is not one or its queue is full.
    pub(super) fn send(&self, to: &PeerId, frame: Bytes) -> bool {
        let Some(writer) = self.links.get(to).and_then(|l| l.writer.as_ref()) else {
            return false;
        };
        let len = frame.len();
        let queued = writer.queued.load(Ordering::Relaxed);
        if queued + len > self.config.queue_bytes {
            return false;
        }
        writer.queued.fetch_add(len, Ordering::Relaxed);
        if writer.frames.send(frame).is_err() {
            writer.queued.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }
}

fn spawn_writer(
    tasks: &TaskTracker,
    endpoint: &Endpoint,
    config: &WriterConfig,
    conn: Connection,
    stalled: mpsc::UnboundedSender<Stalled>,
) -> Writer {
    let (frames, queue) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let writer = Writer {
        conn: conn.id(),
        frames,
        queued: queued.clone(),
    };
    tasks.spawn(write_frames(
        endpoint.clone(),
        config.clone(),
        conn,
        queue,
        queued,
        stalled,
    ));
    writer
}

/// Writes frames for one neighbour on a stream of its own, reopened if it breaks; reports
/// a stall when a write misses its deadline.
async fn write_frames(
    endpoint: Endpoint,
    config: WriterConfig,
    conn: Connection,
    mut frames: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
    stalled: mpsc::UnboundedSender<Stalled>,
) {
    let peer = conn.remote_peer();
    let protocol = config.protocol.as_str();
    let mut stream: Option<Stream> = None;
    let mut out = BytesMut::new();
    while let Some(frame) = frames.recv().await {
        let mut taken = frame.len();
        varint::encode_frame(&frame, &mut out);
        // Whatever else is queued goes in the same write.
        while let Ok(more) = frames.try_recv() {
            taken += more.len();
            varint::encode_frame(&more, &mut out);
        }
        queued.fetch_sub(taken, Ordering::Relaxed);
        if stream.is_none() {
            match endpoint.open_stream(&conn, protocol).await {
                Ok(s) => stream = Some(s),
                Err(e) => {
                    tracing::debug!(%peer, protocol, error = %e, "cannot open a stream");
                    if conn.is_closed() {
                        return;
                    }
                    // The batch waits for the next frame's attempt (a one-off frame such
                    // as an INTEREST would otherwise be lost), up to a bound.
                    if out.len() > MAX_HELD_BYTES {
                        out.clear();
                    }
                    continue;
                }
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        let written = tokio::time::timeout(config.write_timeout, async {
            s.write_all(&out).await?;
            if config.streams == StreamUse::PerBatch {
                s.shutdown().await?;
            }
            Ok::<(), std::io::Error>(())
        })
        .await;
        out.clear();
        match written {
            Err(_) => {
                tracing::debug!(%peer, protocol, timeout = ?config.write_timeout, "neighbour stalled; dropping it");
                s.reset();
                let _ = stalled.send(Stalled {
                    peer,
                    conn: conn.id(),
                });
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, protocol, error = %e, "stream broke; reopening on the next frame");
                stream = None;
                if conn.is_closed() {
                    return;
                }
            }
            Ok(Ok(())) if config.streams == StreamUse::PerBatch => {
                // Dropping the stream before the peer has answered the proposal would
                // leave the peer's negotiation half done: wait for its end (bounded).
                let mut done = stream.take();
                if let Some(s) = done.as_mut() {
                    let mut rest = [0u8; 256];
                    let _ = tokio::time::timeout(BATCH_CLOSE_WAIT, async {
                        while let Ok(n) = s.read(&mut rest).await {
                            if n == 0 {
                                break;
                            }
                        }
                    })
                    .await;
                }
            }
            Ok(Ok(())) => {}
        }
    }
}
