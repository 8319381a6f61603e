//! Topic pub/sub over the swarm's connections: the broadcast overlay
//! ([`pheromone_core::broadcast::Broadcast`]) run by the generic [overlay
//! driver](crate::overlay), and the subscriptions it delivers to.
//!
//! Every peer with a connection that speaks `/pheromone/broadcast/1.0.0` (relayed circuits
//! included) is a neighbour; frames travel on one long-lived stream per neighbour and
//! direction. The storm rules, signatures, the tree and per-origin ordering live in the
//! core; this module only hands delivered messages to subscribers.

use crate::overlay::{DriverConfig, OverlayDriver, OverlayHandle, Service, StreamUse};
use crate::swarm::Swarm;
use bytes::Bytes;
use pheromone_core::broadcast::{
    Broadcast, Config, Event, Message, MessageId, PublishError, Topic, TopicError,
};
use std::collections::HashMap;
use std::time::Instant;
use thiserror::Error;
use tokio::sync::mpsc;

pub use pheromone_core::broadcast::{Metrics, Strategy, PROTOCOL};

/// Messages a subscription buffers before newer ones are dropped (and counted).
pub const SUBSCRIPTION_CAPACITY: usize = 1024;

/// Why a pub/sub call failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PubSubError {
    /// The topic name is empty or too long.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The message could not be published (too large, …).
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// Broadcast is turned off on this node ([`NodeConfig::broadcast`] is `None`).
    ///
    /// [`NodeConfig::broadcast`]: crate::node::NodeConfig::broadcast
    #[error("broadcast is turned off on this node")]
    Disabled,
    /// The pub/sub service has stopped (the node is closing).
    #[error("pub/sub has stopped: the node is shutting down")]
    Stopped,
}

/// A stream of the messages published on one topic, in arrival order, each delivered once.
#[derive(Debug)]
pub struct Subscription {
    topic: Topic,
    messages: mpsc::Receiver<Message>,
}

impl Subscription {
    /// The topic subscribed to.
    pub fn topic(&self) -> &str {
        self.topic.as_str()
    }

    /// The next message; `None` once unsubscribed or the node stopped.
    pub async fn recv(&mut self) -> Option<Message> {
        self.messages.recv().await
    }
}

/// The subscribers of each topic: the broadcast overlay's [`Service`].
#[derive(Default)]
pub(crate) struct Subscribers {
    by_topic: HashMap<Topic, Vec<mpsc::Sender<Message>>>,
}

impl Service<Broadcast> for Subscribers {
    fn on_event(&mut self, overlay: &mut Broadcast, now: Instant, event: Event) {
        let Event::Delivered(message) = event else {
            return;
        };
        let Some(subscribers) = self.by_topic.get_mut(&message.topic) else {
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
            self.by_topic.remove(&message.topic);
            overlay.unsubscribe(now, &message.topic);
        }
    }
}

/// A cloneable handle to a node's pub/sub.
#[derive(Clone, Debug)]
pub struct PubSub {
    handle: OverlayHandle<Broadcast, Subscribers>,
}

impl PubSub {
    /// Starts pub/sub on `swarm`: registers the broadcast protocol and runs the overlay
    /// until the swarm closes.
    pub fn start(swarm: &Swarm, mut config: Config) -> Self {
        // A restarted node must not reuse sequence numbers its peers still remember.
        config.first_seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1)
            .max(1);
        let overlay = Broadcast::new(swarm.endpoint().keypair().clone(), config);
        let driver = DriverConfig {
            streams: StreamUse::Persistent,
            ..DriverConfig::default()
        };
        let handle = OverlayDriver::spawn(swarm, overlay, Subscribers::default(), driver);
        Self { handle }
    }

    /// Subscribes to `topic`; neighbours learn of the interest so messages flow our way.
    /// Each subscription gets every message once, in per-origin order; a subscriber that
    /// falls more than [`SUBSCRIPTION_CAPACITY`] messages behind loses the newest ones.
    /// Refused (with the reason) when the node tracks too many topics already.
    pub async fn subscribe(&self, topic: &str) -> Result<Subscription, PubSubError> {
        let topic = Topic::new(topic)?;
        let (tx, messages) = mpsc::channel(SUBSCRIPTION_CAPACITY);
        self.handle
            .with(|overlay, subscribers, now| {
                if !subscribers.by_topic.contains_key(&topic) {
                    overlay.subscribe(now, &topic)?;
                }
                subscribers
                    .by_topic
                    .entry(topic.clone())
                    .or_default()
                    .push(tx);
                Ok::<(), TopicError>(())
            })
            .map_err(|_| PubSubError::Stopped)??;
        Ok(Subscription { topic, messages })
    }

    /// Drops every subscription to `topic` on this node.
    pub async fn unsubscribe(&self, topic: &str) -> Result<(), PubSubError> {
        let topic = Topic::new(topic)?;
        self.handle
            .with(|overlay, subscribers, now| {
                if subscribers.by_topic.remove(&topic).is_some() {
                    overlay.unsubscribe(now, &topic);
                }
            })
            .map_err(|_| PubSubError::Stopped)
    }

    /// Publishes `data` on `topic`, signed by this node; every subscribed node receives it
    /// once. Returns the message id.
    pub async fn broadcast(
        &self,
        topic: &str,
        data: impl Into<Bytes>,
    ) -> Result<MessageId, PubSubError> {
        let topic = Topic::new(topic)?;
        let data = data.into();
        Ok(self
            .handle
            .with(|overlay, _, now| overlay.publish(now, &topic, &data))
            .map_err(|_| PubSubError::Stopped)??)
    }

    /// Counters of the state machine (delivered, duplicates, drops by reason, …).
    pub async fn metrics(&self) -> Result<Metrics, PubSubError> {
        Ok(self.handle.read(|overlay, _| overlay.metrics()))
    }
}
