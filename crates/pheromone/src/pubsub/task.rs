//! The task that drives one node's broadcast state machine, and the stream IO around it.
//!
//! Inputs come from three places — the endpoint's connection events, inbound broadcast
//! streams (one reader task per stream, frames through a bounded channel), and commands
//! from [`PubSub`](super::PubSub) handles — plus the state machine's timer. Outputs go to
//! one writer task per neighbour, through a bounded queue: a frame that does not fit is
//! dropped, and the state machine's own retransmissions repair the loss.

use super::{Command, PROTOCOL, SUBSCRIPTION_CAPACITY};
use crate::connection::{Connection, Stream};
use crate::endpoint::{Access, Endpoint, EndpointEvent};
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use pheromone_core::broadcast::{wire, Broadcast, Config, Message, OrderedDelivery, Output, Topic};
use pheromone_core::identity::PeerId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{broadcast as events, mpsc};

/// Frames queued for one neighbour before new ones are dropped.
const PEER_QUEUE: usize = 1024;
/// Frames from all neighbours waiting for the state machine.
const INBOUND_QUEUE: usize = 4096;
/// How long a message waits for an earlier one of its origin (repaired by a pull) before
/// it is handed over anyway; a few pull timeouts.
const ORDER_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) fn spawn(endpoint: &Endpoint, mut config: Config) -> mpsc::Sender<Command> {
    // A restarted node must not reuse sequence numbers its peers still remember.
    config.first_seq = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(1)
        .max(1);
    let max_frame = config.max_frame_len();
    let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
    endpoint.set_handler(
        PROTOCOL,
        Arc::new(move |conn: Connection, stream: Stream| {
            read_frames(conn.remote_peer(), stream, max_frame, inbound_tx.clone()).boxed()
        }),
        Access::Open,
    );
    let (commands_tx, commands) = mpsc::channel(256);
    let driver = Driver {
        state: Broadcast::new(endpoint.keypair().clone(), config, Instant::now()),
        endpoint: endpoint.clone(),
        links: HashMap::new(),
        subscribers: HashMap::new(),
        order: OrderedDelivery::new(ORDER_WINDOW, 4096, 4096),
    };
    let events = endpoint.events();
    tokio::spawn(driver.run(events, inbound_rx, commands));
    commands_tx
}

/// Reads length-prefixed frames from one inbound stream until it ends or breaks.
async fn read_frames(
    peer: PeerId,
    mut stream: Stream,
    max_frame: usize,
    to_task: mpsc::Sender<(PeerId, Bytes)>,
) {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    loop {
        loop {
            match wire::decode_length_prefixed(&mut buf, max_frame) {
                Ok(Some(frame)) => {
                    if to_task.send((peer, frame)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "bad broadcast framing; dropping the stream");
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
async fn write_frames(endpoint: Endpoint, conn: Connection, mut frames: mpsc::Receiver<Bytes>) {
    let peer = conn.remote_peer();
    let mut stream: Option<Stream> = None;
    let mut out = BytesMut::new();
    while let Some(frame) = frames.recv().await {
        out.clear();
        wire::encode_length_prefixed(&frame, &mut out);
        // Whatever else is queued goes in the same write.
        while let Ok(more) = frames.try_recv() {
            wire::encode_length_prefixed(&more, &mut out);
        }
        if stream.is_none() {
            match endpoint.open_stream(&conn, PROTOCOL).await {
                Ok(s) => stream = Some(s),
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "cannot open a broadcast stream");
                    if conn.is_closed() {
                        return;
                    }
                    continue;
                }
            }
        }
        if let Some(s) = stream.as_mut() {
            if let Err(e) = s.write_all(&out).await {
                tracing::debug!(%peer, error = %e, "broadcast stream broke; reopening on the next frame");
                stream = None;
                if conn.is_closed() {
                    return;
                }
            }
        }
    }
}

/// One neighbour: how many live connections we have to it and its writer's queue.
struct Link {
    connections: usize,
    frames: mpsc::Sender<Bytes>,
}

struct Driver {
    state: Broadcast,
    endpoint: Endpoint,
    links: HashMap<PeerId, Link>,
    subscribers: HashMap<Topic, Vec<mpsc::Sender<Message>>>,
    /// Puts each origin's messages back in publishing order before subscribers see them.
    order: OrderedDelivery,
}

impl Driver {
    async fn run(
        mut self,
        mut events: events::Receiver<EndpointEvent>,
        mut inbound: mpsc::Receiver<(PeerId, Bytes)>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        for conn in self.endpoint.connections() {
            self.connection_up(conn);
        }
        loop {
            let deadline = match (self.state.poll_timeout(), self.order.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timer = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => return,
                },
                Some((peer, frame)) = inbound.recv() => {
                    self.state.handle_message(Instant::now(), peer, &frame);
                }
                event = events.recv() => match event {
                    Ok(EndpointEvent::ConnectionEstablished(conn)) => self.connection_up(conn),
                    Ok(EndpointEvent::ConnectionClosed { info, .. }) => self.connection_down(info.remote_peer),
                    Err(events::error::RecvError::Lagged(_)) => self.resync(),
                    Err(events::error::RecvError::Closed) => return,
                },
                () = timer => {
                    let now = Instant::now();
                    self.state.handle_timeout(now);
                    self.order.handle_timeout(now);
                }
            }
            self.drain_outputs();
        }
    }

    fn connection_up(&mut self, conn: Connection) {
        let peer = conn.remote_peer();
        if let Some(link) = self.links.get_mut(&peer) {
            link.connections += 1;
            return;
        }
        let (frames, queue) = mpsc::channel(PEER_QUEUE);
        tokio::spawn(write_frames(self.endpoint.clone(), conn, queue));
        self.links.insert(
            peer,
            Link {
                connections: 1,
                frames,
            },
        );
        self.state.add_neighbour(Instant::now(), peer);
    }

    fn connection_down(&mut self, peer: PeerId) {
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        link.connections = link.connections.saturating_sub(1);
        if link.connections > 0 {
            // Another connection to the peer survives: write through it from now on.
            if let Some(conn) = self
                .endpoint
                .connections()
                .into_iter()
                .find(|c| c.remote_peer() == peer)
            {
                let (frames, queue) = mpsc::channel(PEER_QUEUE);
                tokio::spawn(write_frames(self.endpoint.clone(), conn, queue));
                link.frames = frames;
            }
            return;
        }
        self.links.remove(&peer);
        self.state.remove_neighbour(Instant::now(), peer);
    }

    /// Rebuilds the neighbour set from the endpoint after missing connection events.
    fn resync(&mut self) {
        let mut live: HashMap<PeerId, Vec<Connection>> = HashMap::new();
        for conn in self.endpoint.connections() {
            live.entry(conn.remote_peer()).or_default().push(conn);
        }
        let gone: Vec<PeerId> = self
            .links
            .keys()
            .filter(|p| !live.contains_key(p))
            .copied()
            .collect();
        for peer in gone {
            self.links.remove(&peer);
            self.state.remove_neighbour(Instant::now(), peer);
        }
        for (peer, conns) in live {
            match self.links.get_mut(&peer) {
                Some(link) => link.connections = conns.len(),
                None => {
                    let count = conns.len();
                    if let Some(conn) = conns.into_iter().next() {
                        self.connection_up(conn);
                    }
                    if let Some(link) = self.links.get_mut(&peer) {
                        link.connections = count;
                    }
                }
            }
        }
    }

    fn command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Subscribe { topic, reply } => {
                let (tx, rx) = mpsc::channel(SUBSCRIPTION_CAPACITY);
                let first = !self.subscribers.contains_key(&topic);
                self.subscribers.entry(topic.clone()).or_default().push(tx);
                if first {
                    if let Err(e) = self.state.subscribe(now, &topic) {
                        tracing::warn!(topic = topic.as_str(), error = %e, "subscribe refused");
                    }
                }
                let _ = reply.send(rx);
            }
            Command::Unsubscribe { topic } => {
                if self.subscribers.remove(&topic).is_some() {
                    self.state.unsubscribe(now, &topic);
                }
            }
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.state.publish(now, &topic, &data));
            }
            Command::Metrics { reply } => {
                let _ = reply.send(self.state.metrics());
            }
        }
    }

    fn drain_outputs(&mut self) {
        while let Some(output) = self.state.poll_output() {
            match output {
                Output::Send { to, bytes } => match self.links.get(&to) {
                    Some(link) => {
                        if link.frames.try_send(bytes).is_err() {
                            tracing::debug!(peer = %to, "broadcast queue full; frame dropped (it will be retransmitted)");
                        }
                    }
                    None => tracing::trace!(peer = %to, "frame for a neighbour that is gone"),
                },
                Output::Deliver(message) => self.order.push(Instant::now(), message),
            }
        }
        while let Some(message) = self.order.pop() {
            self.deliver(message);
        }
    }

    fn deliver(&mut self, message: Message) {
        let Some(subscribers) = self.subscribers.get_mut(&message.topic) else {
            return;
        };
        subscribers.retain(|tx| match tx.try_send(message.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    topic = message.topic.as_str(),
                    "subscriber too slow; message dropped for it"
                );
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
        if subscribers.is_empty() {
            let topic = message.topic.clone();
            self.subscribers.remove(&topic);
            self.state.unsubscribe(Instant::now(), &topic);
        }
    }
}
