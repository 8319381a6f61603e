//! The control protocol between the `pheromone` CLI and its daemon: the request and
//! response types both sides share.
//!
//! The daemon listens on a Unix socket in its data dir (mode 0600, so only its owner can
//! talk to it). Each side sends one JSON object per line. A request carries an `id` of the
//! client's choosing and an `op`; the daemon answers with any number of `event` lines
//! (pings, messages, perf intervals) and then exactly one final `ok` or `error` line, each
//! carrying the request's `id`. Requests on one connection run concurrently; closing the
//! connection cancels the requests still running on it.
//!
//! ```text
//! → {"id":7,"op":"ping","peer":"luda","count":2,"interval_ms":1000}
//! ← {"id":7,"kind":"event","event":{"type":"ping_start","data":{…}}}
//! ← {"id":7,"kind":"event","event":{"type":"pong","data":{"seq":1,"rtt_us":210}}}
//! ← {"id":7,"kind":"ok","result":{"type":"ping","data":{…summary…}}}
//! ```
//!
//! Adding an operation is one [`Op`] variant here and one match arm in the daemon's
//! `control::handle`. Nothing here opens sockets; [`read_line`] and [`write_line`] work on
//! any async reader or writer and bound every line by [`MAX_LINE`].

mod info;
mod remote;

pub use info::*;
pub use remote::*;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// File name of the control socket inside the data dir.
pub const SOCKET_NAME: &str = "control.sock";
/// File name of the identity key inside the data dir.
pub const IDENTITY_NAME: &str = "identity.key";
/// File name of the lock that keeps a second daemon off the same data dir.
pub const LOCK_NAME: &str = "daemon.lock";
/// Largest direct message, in bytes (the `/pheromone/msg/1.0.0` cap).
pub const MAX_MESSAGE: usize = 16 << 20;
/// Longest control line either side accepts: a maximal message in base64 plus room for
/// the JSON around it.
pub const MAX_LINE: usize = MAX_MESSAGE / 3 * 4 + (1 << 20);

/// One request from the CLI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client; every response to this request carries it.
    pub id: u64,
    /// What to do.
    #[serde(flatten)]
    pub op: Op,
}

/// The operations the daemon offers. `peer` fields take a peer ID, a unique name, or a
/// multiaddr ending in `/p2p/<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Who this node is and what it is doing.
    Status,
    /// The peers it is connected to.
    Peers,
    /// What it knows how to reach, and how.
    Routes,
    /// Look a peer up in the DHT.
    DhtFind {
        /// The peer.
        peer: String,
    },
    /// The DHT's routing table.
    DhtTable,
    /// Dial an address (`host:port` or a multiaddr, optionally with `/p2p/`).
    Connect {
        /// The address.
        addr: String,
    },
    /// Close every connection to a peer.
    Disconnect {
        /// The peer.
        peer: String,
    },
    /// Ping a peer `count` times (forever when absent, until the client goes away).
    Ping {
        /// The peer.
        peer: String,
        /// How many pings.
        count: Option<u32>,
        /// Pause between pings, in milliseconds.
        interval_ms: u64,
        /// Trace the route first and report the path ([`Event::Trace`]).
        #[serde(default)]
        trace: bool,
    },
    /// Send a direct message over `/pheromone/msg/1.0.0`.
    Send {
        /// The peer.
        peer: String,
        /// The message.
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
    /// Stream direct messages from the inbox as they arrive; stop after `count`.
    Recv {
        /// How many messages, or forever.
        count: Option<u64>,
        /// The client acknowledges each message with [`Op::RecvAck`] once it has it; the
        /// daemon removes a message only then, and sends the next one after. Without it
        /// (older clients) a message is removed once written to the socket.
        #[serde(default)]
        ack: bool,
    },
    /// Acknowledges a message a `recv` on this daemon streamed: it is removed for good.
    RecvAck {
        /// The message's id (hex), as the [`Event::Message`] carried it.
        message_id: String,
    },
    /// What this node remembers of the peers it met (the peer store).
    Hosts,
    /// Measure throughput to a peer over `/perf/1.0.0`, upload then download.
    Perf {
        /// The peer.
        peer: String,
        /// Bytes each way; when absent, run each way for `duration_ms`.
        bytes: Option<u64>,
        /// How long each direction runs when `bytes` is absent.
        duration_ms: u64,
    },
    /// Publish on a broadcast topic.
    Broadcast {
        /// The topic.
        topic: String,
        /// The payload.
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
    /// Stream messages published on a topic; stop after `count`.
    Subscribe {
        /// The topic.
        topic: String,
        /// How many messages, or forever.
        count: Option<u64>,
    },
    /// Expose a local TCP service as `/x/NAME` to the allowed peers.
    Expose {
        /// The service name.
        name: String,
        /// `host:port` of the service.
        target: String,
        /// Peers allowed to use it.
        allow: Vec<String>,
        /// Let every authenticated peer use it (instead of `allow`).
        #[serde(default)]
        allow_any: bool,
    },
    /// Accept local TCP connections on `listen` and splice each to a peer's `/x/NAME`.
    Forward {
        /// The service name on the peer.
        name: String,
        /// The peer.
        peer: String,
        /// Local `host:port` to listen on (port 0 picks one).
        listen: String,
    },
    /// List exposed services and forwarded ports.
    Forwards,
    /// Stop exposing a service.
    Unexpose {
        /// The service name.
        name: String,
    },
    /// Stop forwarding a local port.
    Unforward {
        /// The listen address (`host:port`, or a port on 127.0.0.1).
        listen: String,
    },
    /// Where the dashboard and the metrics are served.
    Dashboard,
    /// Run a command on peers (or every connected peer) at once, streaming their output.
    Exec {
        /// The peers.
        peers: Vec<String>,
        /// Every connected peer instead of `peers`.
        #[serde(default)]
        all: bool,
        /// What to run.
        command: ExecCommand,
        /// Most hosts running it at once.
        concurrency: u32,
    },
    /// Bind a local name to a peer ID in the alias book.
    Alias {
        /// The name.
        name: String,
        /// A peer ID or a multiaddr with `/p2p/`.
        peer: String,
    },
    /// Remove a name from the alias book.
    Unalias {
        /// The name.
        name: String,
    },
    /// List the alias book.
    Aliases,
}

/// A name in the operator's alias book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasEntry {
    /// The name.
    pub name: String,
    /// The peer it stands for.
    pub peer_id: String,
    /// `config` (the config file's `[aliases]`) or `cli` (`pheromone alias`).
    pub source: String,
}

/// One response line from the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The request this answers.
    pub id: u64,
    /// An event, the final result, or the final error.
    #[serde(flatten)]
    pub body: Body,
}

/// What a response line carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// Progress of a request still running.
    Event {
        /// What happened.
        event: Event,
    },
    /// The request finished.
    Ok {
        /// Its result.
        result: Reply,
    },
    /// The request failed.
    Error {
        /// Why.
        error: ControlError,
    },
}

/// Progress of a running request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Event {
    /// A ping run began.
    PingStart(PingStart),
    /// A ping was answered.
    Pong {
        /// Sequence number, from 1.
        seq: u32,
        /// Round-trip time in microseconds.
        rtt_us: u64,
    },
    /// A ping got no answer.
    PingLost {
        /// Sequence number, from 1.
        seq: u32,
        /// Why.
        error: String,
    },
    /// A direct message arrived.
    Message(DirectMessage),
    /// A perf run began.
    PerfStart(PeerRef),
    /// One interval of a perf run.
    PerfInterval(PerfInterval),
    /// A `subscribe` is in place: messages published from now on reach it.
    Subscribed {
        /// The topic.
        topic: String,
    },
    /// A message arrived on a subscribed topic.
    TopicMessage(TopicMessage),
    /// The path to the pinged peer.
    Trace(TraceInfo),
    /// A fleet run will go to these hosts.
    ExecPlan {
        /// The hosts, in the order given.
        hosts: Vec<HostRef>,
    },
    /// The request went out to a host.
    ExecStarted(HostRef),
    /// Output from a host.
    ExecOutput(ExecChunk),
    /// A host is done.
    ExecFinished(HostSummary),
}

/// The final result of a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum Reply {
    /// For [`Op::Status`].
    Status(Status),
    /// For [`Op::Peers`].
    Peers(Vec<PeerInfo>),
    /// For [`Op::Routes`].
    Routes(Vec<RouteInfo>),
    /// For [`Op::DhtFind`].
    DhtFound(DhtFound),
    /// For [`Op::DhtTable`].
    DhtTable(DhtTable),
    /// For [`Op::Connect`]: the peer now connected.
    Connected(PeerInfo),
    /// For [`Op::Disconnect`].
    Disconnected {
        /// The peer.
        peer_id: String,
        /// How many connections were closed.
        connections: usize,
    },
    /// For [`Op::Ping`].
    Ping(PingStats),
    /// For [`Op::Send`]: the receiver stored the message.
    Sent {
        /// The receiver.
        peer_id: String,
        /// Bytes delivered.
        bytes: u64,
    },
    /// For [`Op::Broadcast`]: the message is signed and on its way.
    Published {
        /// The topic.
        topic: String,
        /// The message's id (hex), as subscribers see it.
        message_id: String,
        /// Payload bytes.
        bytes: u64,
    },
    /// For [`Op::RecvAck`]: the message is removed.
    Acked {
        /// The message's id (hex).
        message_id: String,
    },
    /// For [`Op::Hosts`].
    Hosts(Vec<HostInfo>),
    /// For [`Op::Recv`] and [`Op::Subscribe`]: how many messages were streamed.
    Received {
        /// Messages.
        count: u64,
    },
    /// For [`Op::Perf`].
    Perf(PerfSummary),
    /// For [`Op::Expose`] and [`Op::Unexpose`] (with its final counters).
    Exposed(ExposeEntry),
    /// For [`Op::Forward`] (with the real listen address) and [`Op::Unforward`].
    Forwarding(ForwardEntry),
    /// For [`Op::Forwards`].
    Forwards(ForwardList),
    /// For [`Op::Exec`]: every host's summary, in the order given.
    Exec(Vec<HostSummary>),
    /// For [`Op::Alias`] (the new binding) and [`Op::Unalias`] (the removed one).
    Alias(AliasEntry),
    /// For [`Op::Aliases`], by name.
    Aliases(Vec<AliasEntry>),
    /// For [`Op::Dashboard`].
    Dashboard {
        /// The dashboard's URL with its token; absent when the daemon serves none.
        url: Option<String>,
        /// The metrics URL; absent when the daemon serves none.
        metrics_url: Option<String>,
    },
}

/// Why a request failed: a code to match on and a one-line message for a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// One line, ready to print.
    pub message: String,
    /// For [`ErrorCode::AmbiguousPeer`]: the peers the name could mean.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
}

impl ControlError {
    /// An error with no candidates; newlines in `message` become spaces.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: one_line(&message.into()),
            candidates: Vec::new(),
        }
    }
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ControlError {}

/// Kinds of failure a client may want to tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request line was not a request we understand.
    BadRequest,
    /// No peer matches the ID or name given.
    UnknownPeer,
    /// The name matches several peers.
    AmbiguousPeer,
    /// The peer is known but there is no connection to it.
    NotConnected,
    /// Nothing accepted the TCP connection.
    ConnectionRefused,
    /// The remote authenticated as a different peer than the `/p2p/` id named.
    WrongPeer,
    /// Something took longer than its limit.
    Timeout,
    /// A dial failed for another reason.
    DialFailed,
    /// The peer does not speak (or does not let us use) the protocol.
    ProtocolRefused,
    /// The peer's inbox is full; it must read its messages first.
    InboxFull,
    /// The message is larger than the protocol allows.
    MessageTooLarge,
    /// The receiver could not write the message to its disk; it was not stored.
    NotStored,
    /// A stream to the peer broke.
    StreamFailed,
    /// The feature is not available in this daemon yet.
    NotAvailable,
    /// The named service, forward or entry does not exist.
    NotFound,
    /// It exists already (a service name exposed twice, a port forwarded twice).
    AlreadyExists,
    /// The daemon is shutting down.
    ShuttingDown,
    /// A name that grants access or aims a command (`expose --allow`, `exec`,
    /// `forward`) is not one the operator bound with `alias` (or the config's
    /// `[aliases]`): names peers announce are not trusted there.
    UntrustedName,
    /// The daemon failed in a way it did not expect.
    Internal,
}

/// One line read by [`read_line`].
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line (without its newline) is in the buffer.
    Complete,
    /// The peer closed the connection (a partial last line is dropped).
    Eof,
    /// The line is longer than [`MAX_LINE`]; the connection cannot be resynchronised.
    TooLong,
}

/// Reads one newline-terminated line into `buf` (cleared first), never holding more than
/// [`MAX_LINE`] bytes.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Line> {
    buf.clear();
    let limit = MAX_LINE as u64 + 1;
    (&mut *reader).take(limit).read_until(b'\n', buf).await?;
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Line::Complete);
    }
    if buf.len() > MAX_LINE {
        return Ok(Line::TooLong);
    }
    Ok(Line::Eof)
}

/// Writes `value` as one JSON line and flushes.
pub async fn write_line<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    value: &T,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    writer.write_all(&line).await?;
    writer.flush().await
}

/// Replaces line breaks so every error prints as one line.
pub fn one_line(text: &str) -> String {
    if !text.contains(['\n', '\r']) {
        return text.to_owned();
    }
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Byte payloads travel as standard base64 strings, a third larger than raw and far
/// smaller than JSON's array of numbers.
pub(crate) mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(data))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip_request(req: &Request) {
        let line = serde_json::to_string(req).expect("encode");
        assert!(!line.contains('\n'));
        let back: Request = serde_json::from_str(&line).expect("decode");
        assert_eq!(&back, req);
    }

    #[test]
    fn requests_have_the_documented_shape() {
        let req = Request {
            id: 7,
            op: Op::Ping {
                peer: "luda".into(),
                count: Some(2),
                interval_ms: 1000,
                trace: false,
            },
        };
        let value: serde_json::Value = serde_json::to_value(&req).expect("encode");
        assert_eq!(
            value,
            serde_json::json!({"id": 7, "op": "ping", "peer": "luda", "count": 2, "interval_ms": 1000, "trace": false})
        );
        round_trip_request(&req);
        round_trip_request(&Request {
            id: 1,
            op: Op::Status,
        });
        let status: Request = serde_json::from_str(r#"{"id":3,"op":"status"}"#).expect("decode");
        assert_eq!(status.op, Op::Status);
    }

    #[test]
    fn unknown_ops_are_rejected() {
        assert!(serde_json::from_str::<Request>(r#"{"id":1,"op":"explode"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"status"}"#).is_err());
    }

    #[test]
    fn responses_round_trip() {
        let lines = [
            Response {
                id: 1,
                body: Body::Event {
                    event: Event::Pong { seq: 1, rtt_us: 42 },
                },
            },
            Response {
                id: 1,
                body: Body::Ok {
                    result: Reply::Peers(vec![]),
                },
            },
            Response {
                id: 2,
                body: Body::Error {
                    error: ControlError::new(ErrorCode::UnknownPeer, "no peer\nnamed x"),
                },
            },
        ];
        for response in lines {
            let line = serde_json::to_string(&response).expect("encode");
            let back: Response = serde_json::from_str(&line).expect("decode");
            assert_eq!(back, response);
        }
        let err = ControlError::new(ErrorCode::Timeout, "a\nb");
        assert_eq!(err.message, "a b");
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let mut out = Vec::new();
        write_line(
            &mut out,
            &Request {
                id: 1,
                op: Op::Status,
            },
        )
        .await
        .expect("write");
        out.extend_from_slice(b"partial");
        let mut reader = &out[..];
        let mut buf = Vec::new();
        assert_eq!(
            read_line(&mut reader, &mut buf).await.expect("read"),
            Line::Complete
        );
        let req: Request = serde_json::from_slice(&buf).expect("decode");
        assert_eq!(req.op, Op::Status);
        assert_eq!(
            read_line(&mut reader, &mut buf).await.expect("read"),
            Line::Eof
        );
        let long = vec![b'x'; MAX_LINE + 10];
        let mut reader = &long[..];
        assert_eq!(
            read_line(&mut reader, &mut buf).await.expect("read"),
            Line::TooLong
        );
        assert!(buf.len() <= MAX_LINE + 1);
    }

    proptest! {
        #[test]
        fn send_round_trips_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..2048), id in any::<u64>()) {
            round_trip_request(&Request { id, op: Op::Send { peer: "p".into(), data } });
        }

        #[test]
        fn decoding_arbitrary_lines_never_panics(line in ".{0,256}") {
            let _ = serde_json::from_str::<Request>(&line);
            let _ = serde_json::from_str::<Response>(&line);
        }
    }
}
