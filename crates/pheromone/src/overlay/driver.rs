//! The driver task of one overlay: its select loop, how connections become neighbours,
//! and how outputs are carried out.
//!
//! Inputs: the swarm's connection events (resynchronised from the swarm when the channel
//! lagged), frames and requests from inbound streams, outcomes of requests and dials,
//! stalls of neighbour writers, wake-ups after a handle's call, and the overlay's timer on
//! the tokio clock. After every input the outputs are drained under the overlay's lock
//! (which is never held across an await): frames go to neighbour writers, requests and
//! dials to tasks of their own, events to the service.

use super::links::{Links, Stalled, WriterConfig};
use super::streams::{self, Done, Inbound, InboundCtx, OutboundCtx};
use super::{now, Counters, DriverConfig, OverlayHandle, Service, Shared};
use crate::connection::{Connection, ConnectionId};
use crate::swarm::{PeerRecord, Swarm, SwarmEvent};
use bytes::Bytes;
use pheromone_core::identity::PeerId;
use pheromone_core::overlay::{Direction, InboundId, Neighbour, Output, Overlay, Wire};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};

/// Refusals logged per peer before the log goes quiet for a while.
const LOG_BURST: u32 = 5;
/// How long the refusal log of a peer stays quiet after a burst.
const LOG_QUIET: Duration = Duration::from_secs(60);

/// What the overlay is told about a connection: which connections of each peer count.
struct Counted {
    conns: HashMap<ConnectionId, Connection>,
}

struct Driver<O, S> {
    handle: OverlayHandle<O, S>,
    swarm: Swarm,
    protocol: Option<String>,
    wire: Wire,
    accepts_relayed: bool,
    links: Links,
    /// Connections that count, by peer (for overlays without frames too).
    counted: HashMap<PeerId, Counted>,
    replies: HashMap<InboundId, oneshot::Sender<Bytes>>,
    next_inbound: u64,
    outbound: OutboundCtx,
    /// Refusals per peer for the throttled log: (count in this burst, burst start).
    refusals: HashMap<PeerId, (u32, Instant)>,
}

/// Spawns the driver of `handle`'s overlay on the swarm's tracker.
pub(super) fn start<O, S>(handle: OverlayHandle<O, S>, config: DriverConfig)
where
    O: Overlay + Send + 'static,
    O::Event: Send,
    S: Service<O>,
{
    let swarm = handle.inner.swarm.clone();
    let (protocol, wire, accepts_relayed, max_len) = handle.read(|o, _| {
        (
            o.protocol().map(str::to_owned),
            o.wire(),
            o.accepts_relayed(),
            o.max_message_len(),
        )
    });
    let (inbound_tx, inbound) = mpsc::channel(config.inbound_queue.max(1));
    let (done_tx, done) = mpsc::channel(config.inbound_queue.max(1));
    let (stalled_tx, stalled) = mpsc::unbounded_channel();
    if let Some(protocol) = &protocol {
        streams::serve(
            InboundCtx {
                swarm: swarm.clone(),
                protocol: protocol.clone(),
                max_len,
                timeout: config.inbound_timeout,
                max_requests_per_stream: config.max_requests_per_stream,
                slots: Arc::new(Semaphore::new(config.max_inbound_streams.max(1))),
                to_driver: inbound_tx,
                counters: handle.inner.counters.clone(),
            },
            wire == Wire::Requests,
        );
    }
    let driver = Driver {
        links: Links::new(
            swarm.endpoint().clone(),
            swarm.tasks().clone(),
            WriterConfig {
                protocol: protocol.clone().unwrap_or_default(),
                streams: config.streams,
                queue_bytes: config.queue_bytes,
                write_timeout: config.write_timeout,
            },
            stalled_tx,
        ),
        outbound: OutboundCtx {
            swarm: swarm.clone(),
            protocol: protocol.clone().unwrap_or_default(),
            max_len,
            timeout: config.request_timeout,
            request_slots: Arc::new(Semaphore::new(config.max_parallel_requests.max(1))),
            dial_slots: Arc::new(Semaphore::new(config.max_parallel_dials.max(1))),
            done: done_tx,
            counters: handle.inner.counters.clone(),
        },
        handle,
        swarm: swarm.clone(),
        protocol,
        wire,
        accepts_relayed,
        counted: HashMap::new(),
        replies: HashMap::new(),
        next_inbound: 0,
        refusals: HashMap::new(),
    };
    let events = swarm.events();
    swarm
        .tasks()
        .spawn(driver.run(events, inbound, done, stalled));
}

impl<O, S> Driver<O, S>
where
    O: Overlay + Send + 'static,
    O::Event: Send,
    S: Service<O>,
{
    async fn run(
        mut self,
        mut events: broadcast::Receiver<SwarmEvent>,
        mut inbound: mpsc::Receiver<Inbound>,
        mut done: mpsc::Receiver<Done>,
        mut stalled: mpsc::UnboundedReceiver<Stalled>,
    ) {
        self.resync();
        let cancel = self.swarm.cancel_token();
        loop {
            self.drain();
            let deadline = self.handle.read(|o, _| o.poll_timeout());
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            // Biased, connection events first: a neighbour's first frames can be ready in
            // the same poll as the event of its connection.
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                () = self.handle.inner.wake.notified() => {}
                event = events.recv() => match event {
                    Ok(event) => self.swarm_event(event),
                    Err(broadcast::error::RecvError::Lagged(_)) => self.resync(),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                Some(input) = inbound.recv() => self.inbound(input),
                Some(outcome) = done.recv() => self.done(outcome),
                Some(stall) = stalled.recv() => self.stalled(stall),
                () = timer => {
                    let now = now();
                    self.with(|o, _| o.handle_timeout(now));
                }
            }
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut O, &mut S) -> R) -> R {
        let mut state = self.handle.lock();
        let Shared { overlay, service } = &mut *state;
        f(overlay, service)
    }

    /// Whether `conn` (to a peer that said `record`, if anything) makes its peer a
    /// neighbour.
    fn counts(&self, conn: &Connection, record: Option<&PeerRecord>) -> bool {
        let relayed = conn.info().relay.is_some();
        if relayed && !self.accepts_relayed {
            return false;
        }
        match (&self.protocol, self.wire) {
            (None, _) | (_, Wire::None) => !relayed,
            (Some(protocol), _) => record.is_some_and(|r| r.speaks(protocol)),
        }
    }

    fn swarm_event(&mut self, event: SwarmEvent) {
        match event {
            SwarmEvent::ConnectionReady { conn, record }
                if self.counts(&conn, record.as_deref()) =>
            {
                self.connection_up(&conn, record.as_deref());
            }
            SwarmEvent::ConnectionClosed { info } => {
                self.connection_down(&info.remote_peer, info.id)
            }
            _ => {}
        }
    }

    /// Rebuilds the neighbour set from the swarm after missed events.
    fn resync(&mut self) {
        let live = self.swarm.ready_connections();
        let mut alive: HashMap<PeerId, Vec<ConnectionId>> = HashMap::new();
        for (conn, record) in &live {
            if self.counts(conn, record.as_deref()) {
                alive.entry(conn.remote_peer()).or_default().push(conn.id());
                self.connection_up(conn, record.as_deref());
            }
        }
        let gone: Vec<(PeerId, ConnectionId)> = self
            .counted
            .iter()
            .flat_map(|(peer, c)| c.conns.keys().map(move |id| (*peer, *id)))
            .filter(|(peer, id)| !alive.get(peer).is_some_and(|ids| ids.contains(id)))
            .collect();
        for (peer, id) in gone {
            self.connection_down(&peer, id);
        }
    }

    fn connection_up(&mut self, conn: &Connection, record: Option<&PeerRecord>) {
        let peer = conn.remote_peer();
        let counted = self.counted.entry(peer).or_insert_with(|| Counted {
            conns: HashMap::new(),
        });
        if counted.conns.insert(conn.id(), conn.clone()).is_some() {
            return;
        }
        let first = self.links.connection_up(conn, self.wire == Wire::Frames);
        if !first {
            return;
        }
        let info = conn.info();
        let relayed = info.relay.is_some();
        let (direction, addrs) = match (info.direction, relayed) {
            (_, true) => (Direction::Outbound, Vec::new()),
            (crate::connection::Direction::Outbound, false) => {
                (Direction::Outbound, vec![info.remote_multiaddr()])
            }
            (crate::connection::Direction::Inbound, false) => (
                Direction::Inbound,
                record.map(|r| r.listen_addrs.clone()).unwrap_or_default(),
            ),
        };
        let neighbour = Neighbour {
            peer,
            addrs,
            direction,
            relayed,
            // The socket's peer, which the remote cannot choose, unlike what it announces.
            observed_ip: (!relayed).then(|| info.remote_addr.ip()),
        };
        let now = now();
        self.with(|o, _| o.neighbour_up(now, neighbour));
    }

    fn connection_down(&mut self, peer: &PeerId, id: ConnectionId) {
        let Some(counted) = self.counted.get_mut(peer) else {
            return;
        };
        if counted.conns.remove(&id).is_none() {
            return;
        }
        let replacement = counted
            .conns
            .values()
            .find(|c| !c.is_closed() && !c.is_going_away())
            .cloned();
        if counted.conns.is_empty() {
            self.counted.remove(peer);
        }
        if self.links.connection_down(peer, id, replacement) {
            let now = now();
            let peer = *peer;
            self.with(|o, _| o.neighbour_down(now, peer));
        }
    }

    fn stalled(&mut self, stall: Stalled) {
        if !self.links.writes_on(&stall.peer, stall.conn) {
            return;
        }
        self.counted.remove(&stall.peer);
        Counters::bump(&self.outbound.counters.stalled);
        if self.links.remove(&stall.peer) {
            let now = now();
            self.with(|o, _| o.neighbour_down(now, stall.peer));
        }
    }

    fn inbound(&mut self, input: Inbound) {
        let now = now();
        match input {
            Inbound::Frame {
                conn,
                frame,
                refused,
            } => {
                let peer = conn.remote_peer();
                // A peer that opened a stream of our protocol speaks it, whatever identify
                // has said so far.
                if !self.links.contains(&peer) && !conn.is_closed() && self.counts_as_speaker(&conn)
                {
                    let record = self.swarm.peer_record(&peer);
                    self.connection_up(&conn, record.as_deref());
                }
                let result = self.with(|o, _| o.handle_frame(now, peer, &frame));
                if let Err(e) = result {
                    refused.store(true, Ordering::Relaxed);
                    self.log_refusal(peer, "frame", &e);
                }
            }
            Inbound::Request {
                conn,
                request,
                reply,
            } => {
                let peer = conn.remote_peer();
                if !self.links.contains(&peer) && !conn.is_closed() && self.counts_as_speaker(&conn)
                {
                    let record = self.swarm.peer_record(&peer);
                    self.connection_up(&conn, record.as_deref());
                }
                let id = InboundId(self.next_inbound);
                self.next_inbound += 1;
                self.replies.insert(id, reply);
                let result = self.with(|o, _| o.handle_request(now, peer, id, &request));
                if let Err(e) = result {
                    self.replies.remove(&id);
                    self.log_refusal(peer, "request", &e);
                }
            }
        }
    }

    /// A connection over which the peer opened one of our streams: it counts if it is of
    /// the right kind (direct, or relayed where accepted).
    fn counts_as_speaker(&self, conn: &Connection) -> bool {
        conn.info().relay.is_none() || self.accepts_relayed
    }

    fn done(&mut self, outcome: Done) {
        let now = now();
        match outcome {
            Done::Response { id, result } => {
                let result = self.with(|o, _| {
                    let response = result.as_ref().map(|b| b.as_ref()).map_err(|e| *e);
                    o.handle_response(now, id, response)
                });
                if let Err(e) = result {
                    tracing::debug!(protocol = ?self.protocol, ?id, error = %e, "response refused");
                }
            }
            Done::Dial { id, result } => self.with(|o, _| o.handle_dial_result(now, id, result)),
        }
    }

    /// Logs a refused input at a bounded rate per peer.
    fn log_refusal(&mut self, peer: PeerId, what: &str, error: &dyn std::fmt::Display) {
        Counters::bump(&self.outbound.counters.refused);
        let now = Instant::now();
        let (count, since) = self.refusals.entry(peer).or_insert((0, now));
        if now.duration_since(*since) > LOG_QUIET {
            *count = 0;
            *since = now;
        }
        *count += 1;
        if *count <= LOG_BURST {
            tracing::debug!(%peer, protocol = ?self.protocol, what, %error, "refused");
        }
        if self.refusals.len() > 4096 {
            self.refusals
                .retain(|_, (_, since)| now.duration_since(*since) <= LOG_QUIET);
        }
    }

    /// Carries out everything the overlay asked for.
    fn drain(&mut self) {
        let mut state = self.handle.lock();
        let now = now();
        let Shared { overlay, service } = &mut *state;
        while let Some(output) = overlay.poll_output() {
            match output {
                Output::Send { to, frame } => {
                    if !self.links.send(&to, frame) {
                        Counters::bump(&self.outbound.counters.frames_dropped);
                        tracing::trace!(peer = %to, protocol = ?self.protocol, "frame dropped: queue full or neighbour gone");
                    }
                }
                Output::Request {
                    id,
                    to,
                    addrs,
                    request,
                } => {
                    let ctx = self.outbound.clone();
                    self.swarm
                        .tasks()
                        .spawn(streams::send_request(ctx, id, to, addrs, request));
                }
                Output::Respond { id, response } => {
                    if let Some(reply) = self.replies.remove(&id) {
                        let _ = reply.send(response);
                    }
                }
                Output::Dial { id, peer, addrs } => {
                    let ctx = self.outbound.clone();
                    self.swarm
                        .tasks()
                        .spawn(streams::dial(ctx, id, peer, addrs));
                }
                Output::Disconnect { peer } => {
                    if !self.swarm.prune(&peer) {
                        tracing::debug!(%peer, "not pruned: a contact, or in use");
                    }
                }
                Output::Event(event) => service.on_event(overlay, now, event),
            }
        }
        // Replies whose requester went away.
        self.replies.retain(|_, reply| !reply.is_closed());
    }
}
