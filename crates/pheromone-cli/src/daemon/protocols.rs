//! The daemon's own protocol, `/pheromone/msg/1.0.0`: one direct message per request over
//! the node's request/response framing (`docs/protocols/reqresp.md`), answered with a
//! one-byte ack once it is stored in the inbox (`docs/protocols/pheromone-msg.md`).
//!
//! [`MessageHandler`] is the node's request handler for it; [`Ack`] is the reply's one
//! byte. The node reads each request within its size cap and deadline before the handler
//! runs; nothing here keeps state between requests or touches the network itself.

use super::inbox::Inbox;
use bytes::Bytes;
use pheromone::node::{HandlerResult, Peer, RequestHandler};
use thiserror::Error;

/// Carries one direct message per request; see `docs/protocols/pheromone-msg.md`.
pub const MSG_PROTOCOL: &str = "/pheromone/msg/1.0.0";

/// Why a reply is not an ack.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckError {
    /// The reply was not exactly one byte long.
    #[error("an ack is one byte, got {0}")]
    Length(usize),
    /// The byte is not one the protocol defines.
    #[error("unknown ack byte {0:#04x}")]
    Unknown(u8),
}

/// What a message receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Stored in the inbox.
    Stored,
    /// Refused: the inbox is full; nothing was stored.
    InboxFull,
}

impl Ack {
    /// The byte on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            Ack::Stored => 0,
            Ack::InboxFull => 1,
        }
    }

    /// Parses a reply: exactly one defined byte. (Byte 2, "too large", belonged to the
    /// first framing; the node's own `too large` status replaced it.)
    pub fn from_reply(reply: &[u8]) -> Result<Self, AckError> {
        match reply {
            [0] => Ok(Ack::Stored),
            [1] => Ok(Ack::InboxFull),
            [other] => Err(AckError::Unknown(*other)),
            _ => Err(AckError::Length(reply.len())),
        }
    }
}

/// Stores each message in the inbox and acks it, or refuses it when the inbox is full.
#[derive(Debug, Clone)]
pub struct MessageHandler {
    /// Where messages go.
    pub inbox: Inbox,
}

impl RequestHandler for MessageHandler {
    async fn handle(&self, peer: Peer, request: Bytes) -> HandlerResult {
        let ack = match self.inbox.reserve(request.len()) {
            Ok(room) => {
                room.store(peer.id(), request.to_vec());
                tracing::debug!(peer = %peer.id(), len = request.len(), "message stored");
                Ack::Stored
            }
            Err(full) => {
                tracing::warn!(peer = %peer.id(), len = request.len(), waiting = full.messages, "inbox full; message refused");
                Ack::InboxFull
            }
        };
        Ok(Some(Bytes::copy_from_slice(&[ack.to_byte()])))
    }
}

/// Bodies for fuzz targets: decoders fed arbitrary bytes must return, never panic.
#[doc(hidden)]
#[allow(dead_code)] // called by tests and, later, a fuzz target
pub mod fuzzing {
    /// Parses `data` as an ack reply.
    pub fn fuzz_ack(data: &[u8]) {
        let _ = super::Ack::from_reply(data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pheromone::node::{DispatchError, Node};
    use proptest::prelude::*;
    use std::time::Duration;

    async fn pair(inbox: Inbox, max: usize) -> (Node, Node) {
        let receiver = Node::builder()
            .name("luda")
            .listen("/ip4/127.0.0.1/tcp/0")
            .max_message_size(max)
            .handle_requests(MSG_PROTOCOL, MessageHandler { inbox })
            .build()
            .await
            .expect("receiver");
        let sender = Node::builder()
            .name("yoghurt")
            .max_message_size(64 << 20)
            .build()
            .await
            .expect("sender");
        sender
            .add_contact("luda", &receiver.listen_addrs()[0])
            .await
            .expect("route");
        (receiver, sender)
    }

    async fn send(sender: &Node, data: &[u8]) -> Result<Ack, DispatchError> {
        let reply = tokio::time::timeout(
            Duration::from_secs(20),
            sender.dispatch("luda", MSG_PROTOCOL, Bytes::copy_from_slice(data)),
        )
        .await
        .expect("in time")?;
        Ok(Ack::from_reply(&reply).expect("ack"))
    }

    #[tokio::test]
    async fn messages_are_stored_acked_and_refused_when_full() {
        let inbox = Inbox::new(2, 1 << 20);
        let (receiver, sender) = pair(inbox.clone(), 8 << 20).await;
        assert_eq!(send(&sender, b"one").await.expect("sent"), Ack::Stored);
        assert_eq!(
            send(&sender, &[7u8; 1000]).await.expect("sent"),
            Ack::Stored
        );
        assert_eq!(send(&sender, b"three").await.expect("sent"), Ack::InboxFull);
        let first = inbox.try_next().expect("stored");
        assert_eq!(first.data, b"one");
        assert_eq!(first.from, sender.peer_id());
        assert_eq!(send(&sender, b"three").await.expect("sent"), Ack::Stored);
        // Over the inbox's byte cap: refused, nothing stored.
        assert_eq!(
            send(&sender, &vec![1u8; 2 << 20]).await.expect("sent"),
            Ack::InboxFull
        );
        assert_eq!(inbox.len(), 2);
        sender.close().await;
        receiver.close().await;
    }

    #[tokio::test]
    async fn oversized_messages_are_refused_unread() {
        let inbox = Inbox::new(8, 64 << 20);
        let (receiver, sender) = pair(inbox.clone(), 1024).await;
        let refused = send(&sender, &[0u8; 4096]).await.expect_err("too large");
        assert!(
            matches!(
                refused,
                DispatchError::RemoteRequestTooLarge { max: 1024, .. }
            ),
            "{refused:?}"
        );
        assert_eq!(inbox.len(), 0);
        assert_eq!(
            send(&sender, b"still fine").await.expect("sent"),
            Ack::Stored
        );
        sender.close().await;
        receiver.close().await;
    }

    #[test]
    fn acks() {
        for ack in [Ack::Stored, Ack::InboxFull] {
            assert_eq!(Ack::from_reply(&[ack.to_byte()]), Ok(ack));
        }
        assert_eq!(Ack::from_reply(&[9]), Err(AckError::Unknown(9)));
        assert_eq!(Ack::from_reply(&[]), Err(AckError::Length(0)));
        assert_eq!(Ack::from_reply(&[0, 0]), Err(AckError::Length(2)));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            fuzzing::fuzz_ack(&data);
        }
    }
}
