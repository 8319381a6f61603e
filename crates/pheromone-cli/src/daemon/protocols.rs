//! The daemon's own protocols for direct messages, over the node's request/response
//! framing (`docs/protocols/reqresp.md`), each answered with a one-byte ack once the
//! message is on disk (`docs/protocols/pheromone-msg.md`):
//! - `/pheromone/msg/2.0.0`: a 16-byte message id, then the message. A retry with the same
//!   id is acked without being stored twice.
//! - `/pheromone/msg/1.0.0`: the message alone (kept for older senders; the receiver
//!   picks a random id, so a retry may store it twice).
//!
//! [`MessageHandler`] is the node's request handler for both; [`Ack`] is the reply's one
//! byte. The node reads each request within its size cap and deadline before the handler
//! runs; nothing here keeps state between requests or touches the network itself.

use super::inbox::log::MessageId;
use super::inbox::{Inbox, StoreError, Stored};
use bytes::Bytes;
use pheromone::node::{HandlerResult, Peer, RequestHandler};
use thiserror::Error;

/// Carries one direct message per request, without an id; see
/// `docs/protocols/pheromone-msg.md`.
pub const MSG_PROTOCOL: &str = "/pheromone/msg/1.0.0";
/// Carries one direct message per request after its 16-byte id.
pub const MSG_PROTOCOL_V2: &str = "/pheromone/msg/2.0.0";
/// Length of a message id on the wire.
pub const ID_LEN: usize = 16;

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
    /// On disk in the inbox (or there already, for a retried id).
    Stored,
    /// Refused: the inbox is full; nothing was stored.
    InboxFull,
    /// Refused: the receiver could not write it to disk; nothing was stored.
    NotStored,
    /// Refused: a `2.0.0` request shorter than its id.
    Malformed,
}

impl Ack {
    /// The byte on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            Ack::Stored => 0,
            Ack::InboxFull => 1,
            Ack::NotStored => 3,
            Ack::Malformed => 4,
        }
    }

    /// Parses a reply: exactly one defined byte. (Byte 2, "too large", belonged to the
    /// first framing; the node's own `too large` status replaced it.)
    pub fn from_reply(reply: &[u8]) -> Result<Self, AckError> {
        match reply {
            [0] => Ok(Ack::Stored),
            [1] => Ok(Ack::InboxFull),
            [3] => Ok(Ack::NotStored),
            [4] => Ok(Ack::Malformed),
            [other] => Err(AckError::Unknown(*other)),
            _ => Err(AckError::Length(reply.len())),
        }
    }
}

/// A `2.0.0` request: the id and the message.
pub fn encode_v2(id: &MessageId, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ID_LEN + data.len());
    out.extend_from_slice(id);
    out.extend_from_slice(data);
    out
}

/// Stores each message in the inbox, on disk, and acks it; or refuses it when the inbox
/// is full or the disk fails.
#[derive(Debug, Clone)]
pub struct MessageHandler {
    /// Where messages go.
    pub inbox: Inbox,
    /// Whether requests start with a message id (`2.0.0`).
    pub with_id: bool,
}

impl RequestHandler for MessageHandler {
    async fn handle(&self, peer: Peer, request: Bytes) -> HandlerResult {
        let (id, data) = if self.with_id {
            let Some(id) = request
                .get(..ID_LEN)
                .and_then(|b| MessageId::try_from(b).ok())
            else {
                tracing::debug!(peer = %peer.id(), len = request.len(), "message shorter than its id");
                return Ok(Some(Bytes::copy_from_slice(&[Ack::Malformed.to_byte()])));
            };
            (id, request[ID_LEN..].to_vec())
        } else {
            (rand::random::<MessageId>(), request.to_vec())
        };
        let len = data.len();
        let ack = match self.inbox.store(id, peer.id(), data).await {
            Ok(Stored::New) => {
                tracing::debug!(peer = %peer.id(), len, "message stored");
                Ack::Stored
            }
            Ok(Stored::Duplicate) => {
                tracing::debug!(peer = %peer.id(), len, "message stored before; acked again");
                Ack::Stored
            }
            Err(StoreError::Full(full)) => {
                tracing::warn!(peer = %peer.id(), len, waiting = full.messages, "inbox full; message refused");
                Ack::InboxFull
            }
            Err(e) => {
                tracing::error!(peer = %peer.id(), len, error = %e, "cannot store a message; refused");
                Ack::NotStored
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
            .handle_requests(
                MSG_PROTOCOL,
                MessageHandler {
                    inbox: inbox.clone(),
                    with_id: false,
                },
            )
            .handle_requests(
                MSG_PROTOCOL_V2,
                MessageHandler {
                    inbox,
                    with_id: true,
                },
            )
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

    async fn send_on(sender: &Node, protocol: &str, data: &[u8]) -> Result<Ack, DispatchError> {
        let reply = tokio::time::timeout(
            Duration::from_secs(20),
            sender.dispatch("luda", protocol, Bytes::copy_from_slice(data)),
        )
        .await
        .expect("in time")?;
        Ok(Ack::from_reply(&reply).expect("ack"))
    }

    async fn send(sender: &Node, data: &[u8]) -> Result<Ack, DispatchError> {
        send_on(sender, MSG_PROTOCOL, data).await
    }

    fn inbox(dir: &tempfile::TempDir, messages: usize, bytes: usize) -> Inbox {
        Inbox::open(dir.path(), messages, bytes).expect("inbox").0
    }

    #[tokio::test]
    async fn messages_are_stored_acked_and_refused_when_full() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inbox = inbox(&dir, 2, 1 << 20);
        let (receiver, sender) = pair(inbox.clone(), 8 << 20).await;
        assert_eq!(send(&sender, b"one").await.expect("sent"), Ack::Stored);
        assert_eq!(
            send(&sender, &[7u8; 1000]).await.expect("sent"),
            Ack::Stored
        );
        assert_eq!(send(&sender, b"three").await.expect("sent"), Ack::InboxFull);
        let first = inbox.try_lease().expect("stored");
        assert_eq!(first.message().data, b"one");
        assert_eq!(first.message().from, sender.peer_id());
        inbox.remove(first.message().id).await.expect("remove");
        drop(first);
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
    async fn a_retried_id_is_stored_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inbox = inbox(&dir, 8, 1 << 20);
        let (receiver, sender) = pair(inbox.clone(), 8 << 20).await;
        let request = encode_v2(&[9; ID_LEN], b"hello");
        for _ in 0..3 {
            assert_eq!(
                send_on(&sender, MSG_PROTOCOL_V2, &request)
                    .await
                    .expect("sent"),
                Ack::Stored
            );
        }
        assert_eq!(inbox.len(), 1);
        let lease = inbox.try_lease().expect("stored");
        assert_eq!(lease.message().id, [9; ID_LEN]);
        assert_eq!(lease.message().data, b"hello");
        assert_eq!(
            send_on(&sender, MSG_PROTOCOL_V2, b"short")
                .await
                .expect("sent"),
            Ack::Malformed
        );
        sender.close().await;
        receiver.close().await;
    }

    #[tokio::test]
    async fn oversized_messages_are_refused_unread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inbox = inbox(&dir, 8, 64 << 20);
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
        for ack in [Ack::Stored, Ack::InboxFull, Ack::NotStored, Ack::Malformed] {
            assert_eq!(Ack::from_reply(&[ack.to_byte()]), Ok(ack));
        }
        assert_eq!(Ack::from_reply(&[9]), Err(AckError::Unknown(9)));
        assert_eq!(Ack::from_reply(&[2]), Err(AckError::Unknown(2)));
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
