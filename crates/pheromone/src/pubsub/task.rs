//! The task that drives one node's broadcast state machine, and the stream IO around it.
//!
//! Inputs come from three places — the endpoint's connection events, inbound broadcast
//! streams (frames through a bounded channel), and commands from [`PubSub`](super::PubSub)
//! handles — plus the state machine's timer. Outputs go to the neighbours' writer queues of
//! [`Links`]: a frame that does not fit is dropped, and the state machine's own
//! retransmissions repair the loss.

use super::{Command, PROTOCOL, SUBSCRIPTION_CAPACITY};
use crate::connection::{Connection, ConnectionInfo};
use crate::endpoint::{Endpoint, EndpointEvent};
use crate::links::{self, LinkKind, Links, StreamUse};
use bytes::Bytes;
use pheromone_core::broadcast::{Broadcast, Config, Message, OrderedDelivery, Output, Topic};
use pheromone_core::identity::PeerId;
use std::collections::HashMap;
use std::time::Instant;
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
    links::serve_frames(endpoint, PROTOCOL, max_frame, inbound_tx);
    let (commands_tx, commands) = mpsc::channel(256);
    let driver = Driver {
        state: Broadcast::new(endpoint.keypair().clone(), config, Instant::now()),
        endpoint: endpoint.clone(),
        links: Links::new(
            endpoint.clone(),
            PROTOCOL,
            LinkKind::Any,
            StreamUse::Persistent,
            PEER_QUEUE,
        ),
        subscribers: HashMap::new(),
        order: OrderedDelivery::new(ORDER_WINDOW, 4096, 4096),
    };
    let events = endpoint.events();
    tokio::spawn(driver.run(events, inbound_rx, commands));
    commands_tx
}

struct Driver {
    state: Broadcast,
    endpoint: Endpoint,
    links: Links,
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
                    // A stream's first frame can overtake the endpoint's event for its
                    // connection; dropped, it would be the peer's one-off INTEREST.
                    if !self.links.contains(&peer) {
                        self.resync();
                    }
                    self.state.handle_message(Instant::now(), peer, &frame);
                }
                event = events.recv() => match event {
                    Ok(EndpointEvent::ConnectionEstablished(conn)) => self.connection_up(conn),
                    Ok(EndpointEvent::ConnectionClosed { info, .. }) => self.connection_down(&info),
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
        if self.links.connection_up(conn) {
            self.state.add_neighbour(Instant::now(), peer);
        }
    }

    fn connection_down(&mut self, info: &ConnectionInfo) {
        if self.links.connection_down(info) {
            self.state
                .remove_neighbour(Instant::now(), info.remote_peer);
        }
    }

    /// Rebuilds the neighbour set from the endpoint after missing connection events.
    fn resync(&mut self) {
        let changes = self.links.resync();
        let now = Instant::now();
        for peer in changes.down {
            self.state.remove_neighbour(now, peer);
        }
        for peer in changes.up {
            self.state.add_neighbour(now, peer);
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
                Output::Send { to, bytes } => {
                    if !self.links.send(&to, bytes) {
                        tracing::debug!(peer = %to, "broadcast frame dropped: queue full or neighbour gone (it will be retransmitted)");
                    }
                }
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
