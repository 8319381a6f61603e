//! Topic pub/sub over an endpoint's connections: the IO half of
//! [`pheromone_core::broadcast`].
//!
//! One task owns the [`Broadcast`](pheromone_core::broadcast::Broadcast) state machine and
//! feeds it `(now, input)`: connections coming and going (every connected peer is a
//! neighbour), frames from neighbours, local commands and its timer. Frames travel on one
//! long-lived `/pheromone/broadcast/1.0.0` stream per neighbour and direction, each frame
//! behind a varint length. The storm rules, signatures and the tree live in the core; this
//! module only moves bytes and hands messages to subscribers.

mod task;

use bytes::Bytes;
use pheromone_core::broadcast::{Config, Message, MessageId, PublishError, Topic, TopicError};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

pub use pheromone_core::broadcast::{Metrics, Strategy};

/// The protocol the broadcast frames travel on.
pub const PROTOCOL: &str = "/pheromone/broadcast/1.0.0";
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
    /// The pub/sub task has stopped (the endpoint closed).
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

/// Commands from handles to the task.
pub(crate) enum Command {
    Subscribe {
        topic: Topic,
        reply: oneshot::Sender<mpsc::Receiver<Message>>,
    },
    Unsubscribe {
        topic: Topic,
    },
    Publish {
        topic: Topic,
        data: Bytes,
        reply: oneshot::Sender<Result<MessageId, PublishError>>,
    },
    Metrics {
        reply: oneshot::Sender<Metrics>,
    },
}

/// A cloneable handle to a node's pub/sub.
#[derive(Clone, Debug)]
pub struct PubSub {
    commands: mpsc::Sender<Command>,
}

impl PubSub {
    /// Starts pub/sub on `endpoint` (registers the broadcast protocol and follows the
    /// endpoint's connections). The task ends when the endpoint closes.
    pub fn start(endpoint: &crate::Endpoint, config: Config) -> Self {
        let commands = task::spawn(endpoint, config);
        Self { commands }
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, PubSubError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| PubSubError::Stopped)?;
        answer.await.map_err(|_| PubSubError::Stopped)
    }

    /// Subscribes to `topic`; neighbours learn of the interest so messages flow our way.
    /// Each subscription gets every message once; a subscriber that falls more than
    /// [`SUBSCRIPTION_CAPACITY`] messages behind loses the newest ones.
    pub async fn subscribe(&self, topic: &str) -> Result<Subscription, PubSubError> {
        let topic = Topic::new(topic)?;
        let messages = self
            .call(|reply| Command::Subscribe {
                topic: topic.clone(),
                reply,
            })
            .await?;
        Ok(Subscription { topic, messages })
    }

    /// Drops every subscription to `topic` on this node.
    pub async fn unsubscribe(&self, topic: &str) -> Result<(), PubSubError> {
        let topic = Topic::new(topic)?;
        self.commands
            .send(Command::Unsubscribe { topic })
            .await
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
            .call(|reply| Command::Publish { topic, data, reply })
            .await??)
    }

    /// Counters of the state machine (delivered, duplicates, drops by reason, …).
    pub async fn metrics(&self) -> Result<Metrics, PubSubError> {
        self.call(|reply| Command::Metrics { reply }).await
    }
}
