//! The daemon's own protocols until the Node API provides them: `/pheromone/name/1.0.0`
//! (a peer's human name) and `/pheromone/msg/1.0.0` (one direct message per stream, acked
//! once stored in the inbox). Wire formats in `docs/protocols/`; framing in [`super::wire`].
//!
//! Both sides are here: the handlers the endpoint runs for inbound streams, and the
//! exchanges [`super::net::Net`] runs on outbound ones. Every read is bounded in size and
//! time; nothing here keeps state between streams.

use super::inbox::Inbox;
use super::wire::{self, Ack};
use crate::control_proto::MAX_MESSAGE;
use pheromone::{Connection, Stream};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Asks a peer for its human name; see `docs/protocols/pheromone-name.md`.
pub const NAME_PROTOCOL: &str = "/pheromone/name/1.0.0";
/// Carries one direct message per stream; see `docs/protocols/pheromone-msg.md`.
pub const MSG_PROTOCOL: &str = "/pheromone/msg/1.0.0";
/// A name exchange must finish within this.
pub const NAME_TIMEOUT: Duration = Duration::from_secs(5);
/// A message (announce, body, ack) must finish within this.
pub const MSG_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes the message and reads the ack concurrently: a receiver that refuses (inbox full)
/// answers before reading the body, and we must see that answer even if our write fails.
pub async fn exchange_message(stream: Stream, data: &[u8]) -> std::io::Result<Ack> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let write = async {
        wire::write_frame(&mut writer, data).await?;
        writer.shutdown().await
    };
    let read = async {
        let mut ack = [0u8; 1];
        reader.read_exact(&mut ack).await?;
        Ack::from_byte(ack[0]).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    };
    tokio::pin!(write, read);
    tokio::select! {
        ack = &mut read => ack,
        written = &mut write => match written {
            Ok(()) => read.await,
            Err(e) => match tokio::time::timeout(Duration::from_secs(1), read).await {
                Ok(Ok(ack)) => Ok(ack),
                _ => Err(e),
            },
        },
    }
}

/// Answers a name request: our name as one frame (empty when we have none), then close.
pub async fn serve_name(conn: Connection, mut stream: Stream, name: String) {
    let sent = async {
        wire::write_frame(&mut stream, name.as_bytes()).await?;
        stream.shutdown().await
    };
    if let Err(e) = tokio::time::timeout(NAME_TIMEOUT, sent)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    {
        tracing::debug!(peer = %conn.remote_peer(), error = %e, "name reply failed");
    }
}

/// Receives one message: checks the announced length against the cap and the inbox's
/// room before reading the body, stores it, and acks; a refusal is acked at once without
/// reading the body.
pub async fn serve_message(conn: Connection, mut stream: Stream, inbox: Inbox) {
    let peer = conn.remote_peer();
    let served = async {
        let Some(len) = wire::read_len(&mut stream).await? else {
            return Ok(None);
        };
        let Ok(len) = wire::check_len(len, MAX_MESSAGE) else {
            tracing::info!(%peer, len, "refused a message over the size limit");
            return Ok(Some(Ack::TooLarge));
        };
        let reservation = match inbox.reserve(len) {
            Ok(r) => r,
            Err(full) => {
                tracing::warn!(%peer, len, waiting = full.messages, "inbox full; message refused");
                return Ok(Some(Ack::InboxFull));
            }
        };
        let body = wire::read_body(&mut stream, len).await?;
        reservation.store(peer, body);
        tracing::debug!(%peer, len, "message stored");
        Ok::<_, wire::WireError>(Some(Ack::Stored))
    };
    let result = match tokio::time::timeout(MSG_TIMEOUT, served).await {
        Ok(Ok(Some(ack))) => {
            let mut reply = stream.write_all(&[ack.to_byte()]).await;
            if reply.is_ok() {
                reply = stream.shutdown().await;
            }
            reply.map_err(|e| e.to_string())
        }
        Ok(Ok(None)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("message not complete within {MSG_TIMEOUT:?}")),
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "message stream failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use pheromone::{Access, Endpoint, EndpointConfig, Keypair};
    use std::sync::Arc;

    /// A receiver serving both protocols with `inbox`, and a sender connected to it.
    async fn pair(inbox: Inbox) -> (Endpoint, Endpoint, Connection) {
        let mut config = EndpointConfig::default();
        config.connection.close_grace = Duration::from_millis(100);
        let receiver = Endpoint::new(Keypair::from_seed([1; 32]), config.clone());
        receiver.set_handler(
            MSG_PROTOCOL,
            Arc::new(move |conn, stream| serve_message(conn, stream, inbox.clone()).boxed()),
            Access::Open,
        );
        receiver.set_handler(
            NAME_PROTOCOL,
            Arc::new(|conn, stream| serve_name(conn, stream, "luda".to_owned()).boxed()),
            Access::Open,
        );
        let addr = receiver
            .listen(&"/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
            .expect("listen");
        let sender = Endpoint::new(Keypair::from_seed([2; 32]), config);
        let conn = sender.dial(&addr).await.expect("dial");
        (receiver, sender, conn)
    }

    async fn send(sender: &Endpoint, conn: &Connection, data: &[u8]) -> Ack {
        let stream = sender
            .open_stream(conn, MSG_PROTOCOL)
            .await
            .expect("stream");
        tokio::time::timeout(Duration::from_secs(10), exchange_message(stream, data))
            .await
            .expect("in time")
            .expect("ack")
    }

    #[tokio::test]
    async fn messages_are_stored_acked_and_refused_when_full() {
        let inbox = Inbox::new(2, 1 << 20);
        let (receiver, sender, conn) = pair(inbox.clone()).await;
        assert_eq!(send(&sender, &conn, b"one").await, Ack::Stored);
        assert_eq!(send(&sender, &conn, &[7u8; 1000]).await, Ack::Stored);
        assert_eq!(send(&sender, &conn, b"three").await, Ack::InboxFull);
        let first = inbox.try_next().expect("stored");
        assert_eq!(first.data, b"one");
        assert_eq!(first.from, sender.peer_id());
        assert_eq!(send(&sender, &conn, b"three").await, Ack::Stored);
        // A large body the inbox has no room for is refused before it is read.
        assert_eq!(
            send(&sender, &conn, &vec![1u8; 4 << 20]).await,
            Ack::InboxFull
        );
        sender.close().await;
        receiver.close().await;
    }

    #[tokio::test]
    async fn hostile_lengths_are_refused_before_allocating() {
        let inbox = Inbox::new(8, 64 << 20);
        let (receiver, sender, conn) = pair(inbox.clone()).await;
        // Announce 1 TiB and send nothing more: the ack comes back without a body.
        let mut stream = sender
            .open_stream(&conn, MSG_PROTOCOL)
            .await
            .expect("stream");
        stream
            .write_all(&wire::encode_prefix(1 << 40))
            .await
            .expect("write");
        let mut ack = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut ack))
            .await
            .expect("in time")
            .expect("ack");
        assert_eq!(Ack::from_byte(ack[0]).expect("ack"), Ack::TooLarge);
        // A malformed prefix just ends the stream; nothing is stored and the link lives.
        let mut stream = sender
            .open_stream(&conn, MSG_PROTOCOL)
            .await
            .expect("stream");
        stream.write_all(&[0xff; 12]).await.expect("write");
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
        assert!(rest.is_empty());
        assert_eq!(inbox.len(), 0);
        assert_eq!(send(&sender, &conn, b"still fine").await, Ack::Stored);
        sender.close().await;
        receiver.close().await;
    }

    #[tokio::test]
    async fn names_are_served() {
        let (receiver, sender, conn) = pair(Inbox::new(1, 1)).await;
        let mut stream = sender
            .open_stream_confirmed(&conn, NAME_PROTOCOL)
            .await
            .expect("stream");
        let name = wire::read_frame(&mut stream, 64).await.expect("name");
        assert_eq!(name, b"luda");
        sender.close().await;
        receiver.close().await;
    }
}
