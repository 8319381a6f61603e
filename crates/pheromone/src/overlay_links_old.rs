//! Neighbour links for the overlay protocols (broadcast, routing): every connected peer is
//! a neighbour, spoken to over streams carrying varint-length-prefixed frames — one
//! long-lived stream per direction, or a short stream per batch of frames
//! ([`StreamUse`]).
//!
//! [`Links`] turns the endpoint's connection events into "neighbour up / down" (several
//! connections to one peer are one neighbour) and owns one writer task per neighbour fed
//! through a bounded queue: a frame that does not fit is dropped, and the protocol's own
//! repair (retransmission, periodic dumps) makes up for it. [`serve_frames`] installs the
//! reader side. What the frames mean is the caller's business; this file only moves them.

use crate::connection::{Connection, ConnectionId, ConnectionInfo, Stream};
use crate::endpoint::{Access, Endpoint};
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use pheromone_core::identity::PeerId;
use pheromone_core::varint;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Which connections make a peer a neighbour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkKind {
    /// Every connection, relayed ones included.
    Any,
    /// Direct connections only: a relayed circuit is not a link of the mesh.
    Direct,
}

impl LinkKind {
    fn counts(self, info: &ConnectionInfo) -> bool {
        self == LinkKind::Any || info.relay.is_none()
    }
}

/// Most bytes of frames kept for a neighbour while no stream can be opened to it.
const MAX_HELD_BYTES: usize = 1024 * 1024;

/// How long a per-batch stream waits for the peer to close its end.
const BATCH_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How a neighbour's frames use streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamUse {
    /// One stream kept open while the link lives: for frequent frames.
    Persistent,
    /// A stream per batch of queued frames, closed after it: for rare frames, so that an
    /// idle link holds no stream (nor a slot of the peer's stream limit).
    PerBatch,
}

struct Link {
    /// The peer's live connections of the right kind (ids, so that an event and a
    /// resync seeing the same connection count it once).
    connections: HashSet<ConnectionId>,
    frames: mpsc::Sender<Bytes>,
}

/// The neighbours of one overlay protocol and their writer queues.
pub(crate) struct Links {
    endpoint: Endpoint,
    protocol: &'static str,
    kind: LinkKind,
    streams: StreamUse,
    queue: usize,
    links: HashMap<PeerId, Link>,
}

/// What [`Links::resync`] changed.
#[derive(Debug, Default)]
pub(crate) struct Resync {
    pub(crate) up: Vec<PeerId>,
    pub(crate) down: Vec<PeerId>,
}

impl Links {
    /// No neighbours yet; `queue` frames may wait per neighbour.
    pub(crate) fn new(
        endpoint: Endpoint,
        protocol: &'static str,
        kind: LinkKind,
        streams: StreamUse,
        queue: usize,
    ) -> Self {
        Self {
            endpoint,
            protocol,
            kind,
            streams,
            queue,
            links: HashMap::new(),
        }
    }

    /// A connection came up; true if its peer just became a neighbour.
    pub(crate) fn connection_up(&mut self, conn: Connection) -> bool {
        if !self.kind.counts(conn.info()) {
            return false;
        }
        let peer = conn.remote_peer();
        if let Some(link) = self.links.get_mut(&peer) {
            link.connections.insert(conn.id());
            return false;
        }
        let id = conn.id();
        let frames = self.spawn_writer(conn);
        self.links.insert(
            peer,
            Link {
                connections: HashSet::from([id]),
                frames,
            },
        );
        true
    }

    /// A connection closed; true if its peer is no longer a neighbour.
    pub(crate) fn connection_down(&mut self, info: &ConnectionInfo) -> bool {
        if !self.kind.counts(info) {
            return false;
        }
        let peer = info.remote_peer;
        let Some(link) = self.links.get_mut(&peer) else {
            return false;
        };
        link.connections.remove(&info.id);
        if !link.connections.is_empty() {
            // Another connection to the peer survives: write through it from now on.
            if let Some(conn) = self.live_connections(&peer).into_iter().next() {
                let frames = self.spawn_writer(conn);
                if let Some(link) = self.links.get_mut(&peer) {
                    link.frames = frames;
                }
            }
            return false;
        }
        self.links.remove(&peer);
        true
    }

    /// Rebuilds the neighbour set from the endpoint after missed connection events.
    pub(crate) fn resync(&mut self) -> Resync {
        let mut live: HashMap<PeerId, Vec<Connection>> = HashMap::new();
        for conn in self.endpoint.connections() {
            if self.kind.counts(conn.info()) {
                live.entry(conn.remote_peer()).or_default().push(conn);
            }
        }
        let mut changes = Resync::default();
        self.links.retain(|peer, _| {
            let keep = live.contains_key(peer);
            if !keep {
                changes.down.push(*peer);
            }
            keep
        });
        for (peer, conns) in live {
            let ids: HashSet<ConnectionId> = conns.iter().map(Connection::id).collect();
            if !self.links.contains_key(&peer) {
                if let Some(conn) = conns.into_iter().next() {
                    self.connection_up(conn);
                    changes.up.push(peer);
                }
            }
            if let Some(link) = self.links.get_mut(&peer) {
                link.connections = ids;
            }
        }
        changes
    }

    /// Queues a frame for a neighbour; false if it is not one or its queue is full.
    pub(crate) fn send(&self, to: &PeerId, frame: Bytes) -> bool {
        match self.links.get(to) {
            Some(link) => link.frames.try_send(frame).is_ok(),
            None => false,
        }
    }

    /// Whether `peer` is a neighbour.
    pub(crate) fn contains(&self, peer: &PeerId) -> bool {
        self.links.contains_key(peer)
    }

    fn live_connections(&self, peer: &PeerId) -> Vec<Connection> {
        self.endpoint
            .connections()
            .into_iter()
            .filter(|c| c.remote_peer() == *peer && self.kind.counts(c.info()))
            .collect()
    }

    fn spawn_writer(&self, conn: Connection) -> mpsc::Sender<Bytes> {
        let (frames, queue) = mpsc::channel(self.queue);
        tokio::spawn(write_frames(
            self.endpoint.clone(),
            self.protocol,
            self.streams,
            conn,
            queue,
        ));
        frames
    }
}

/// Accepts `protocol` streams from every peer and hands each whole frame, with its sender,
/// to `to_task`. A stream whose framing breaks (or exceeds `max_frame`) is reset.
pub(crate) fn serve_frames(
    endpoint: &Endpoint,
    protocol: &'static str,
    max_frame: usize,
    to_task: mpsc::Sender<(PeerId, Bytes)>,
) {
    endpoint.set_handler(
        protocol,
        Arc::new(move |conn: Connection, stream: Stream| {
            read_frames(
                conn.remote_peer(),
                protocol,
                stream,
                max_frame,
                to_task.clone(),
            )
            .boxed()
        }),
        Access::Open,
    );
}

async fn read_frames(
    peer: PeerId,
    protocol: &'static str,
    mut stream: Stream,
    max_frame: usize,
    to_task: mpsc::Sender<(PeerId, Bytes)>,
) {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    loop {
        loop {
            match varint::decode_frame(&mut buf, max_frame) {
                Ok(Some(frame)) => {
                    if to_task.send((peer, frame)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(%peer, protocol, error = %e, "bad framing; dropping the stream");
                    stream.reset();
                    return;
                }
            }
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Writes frames for one neighbour on a stream of its own, reopened if it breaks.
async fn write_frames(
    endpoint: Endpoint,
    protocol: &'static str,
    streams: StreamUse,
    conn: Connection,
    mut frames: mpsc::Receiver<Bytes>,
) {
    let peer = conn.remote_peer();
    let mut stream: Option<Stream> = None;
    let mut out = BytesMut::new();
    while let Some(frame) = frames.recv().await {
        varint::encode_frame(&frame, &mut out);
        // Whatever else is queued goes in the same write.
        while let Ok(more) = frames.try_recv() {
            varint::encode_frame(&more, &mut out);
        }
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
        if let Some(s) = stream.as_mut() {
            let mut written = s.write_all(&out).await;
            if written.is_ok() && streams == StreamUse::PerBatch {
                written = s.shutdown().await;
                // Dropping the stream before the peer has answered the lazy proposal
                // would reset it under the peer's negotiation, losing the frames: wait
                // for the peer's end (bounded).
                let mut rest = [0u8; 256];
                let _ = tokio::time::timeout(BATCH_CLOSE_WAIT, async {
                    while let Ok(n) = s.read(&mut rest).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await;
                stream = None;
            }
            out.clear();
            if let Err(e) = written {
                tracing::debug!(%peer, protocol, error = %e, "stream broke; reopening on the next frame");
                stream = None;
                if conn.is_closed() {
                    return;
                }
            }
        }
    }
}
