//! Topic pub/sub on [`Node`]: thin forwarding to the node's [`PubSub`](crate::pubsub::PubSub),
//! which runs the storm-free broadcast state machine over the node's connections.

use super::Node;
use crate::pubsub::{Metrics, PubSubError, Subscription};
use bytes::Bytes;
use pheromone_core::broadcast::MessageId;

impl Node {
    /// Subscribes to `topic`: a stream of the messages published on it (origin, topic,
    /// sequence number, bytes), each delivered once and in per-origin order. Neighbours
    /// learn of the interest, so messages flow toward this node through relays.
    pub async fn subscribe(&self, topic: &str) -> Result<Subscription, PubSubError> {
        self.pubsub()
            .ok_or(PubSubError::Disabled)?
            .subscribe(topic)
            .await
    }

    /// Drops this node's subscriptions to `topic`.
    pub async fn unsubscribe(&self, topic: &str) -> Result<(), PubSubError> {
        self.pubsub()
            .ok_or(PubSubError::Disabled)?
            .unsubscribe(topic)
            .await
    }

    /// Publishes `data` on `topic`, signed by this node; every subscribed node in the mesh
    /// receives it once. The publisher's own subscriptions do not receive it.
    pub async fn broadcast(
        &self,
        topic: &str,
        data: impl Into<Bytes>,
    ) -> Result<MessageId, PubSubError> {
        self.pubsub()
            .ok_or(PubSubError::Disabled)?
            .broadcast(topic, data)
            .await
    }

    /// Broadcast counters: delivered, duplicates, drops by reason, control bytes.
    pub async fn broadcast_metrics(&self) -> Result<Metrics, PubSubError> {
        self.pubsub().ok_or(PubSubError::Disabled)?.metrics().await
    }
}
