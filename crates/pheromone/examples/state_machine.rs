//! The demo protocol of the system pheromone grew from: two nodes, `luda` and `yoghurt`,
//! exchange JSON messages `{name, operation, data}` through
//! ConnectReq → ConnectResp → GetReq → GetResp → FetchReq → FetchResp → NoticeReq →
//! NoticeResp, taking turns: luda connects, yoghurt gets, luda fetches, yoghurt notices.
//! Anything a node cannot parse or does not know is answered with `UnknownOp`.
//!
//! ```sh
//! cargo run -p pheromone --example state_machine -- --mode long
//! cargo run -p pheromone --example state_machine -- --mode short
//! ```
//!
//! In long mode both turns run over the one connection luda dialled (yoghurt reaches luda
//! through it); in short mode every message gets a connection of its own, and yoghurt
//! dials luda at the address luda announced.

use bytes::Bytes;
use pheromone::node::{ConnectionMode, HandlerResult, Node, Peer, RequestHandler};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// The protocol name the state machine answers on.
pub const PROTOCOL: &str = "/pheromone/demo/state-machine/1.0.0";

type Error = Box<dyn std::error::Error + Send + Sync>;

/// One message of the demo protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who sends it.
    pub name: String,
    /// What it asks or answers: `ConnectReq`, `GetResp`, …, or `UnknownOp`.
    pub operation: String,
    /// Free-form payload.
    pub data: String,
}

/// The answer to each request operation.
fn response_to(operation: &str) -> Option<&'static str> {
    Some(match operation {
        "ConnectReq" => "ConnectResp",
        "GetReq" => "GetResp",
        "FetchReq" => "FetchResp",
        "NoticeReq" => "NoticeResp",
        _ => return None,
    })
}

/// What a node's handler saw: `(from, operation)`, in arrival order.
pub type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// The protocol handler of one node: parses the message, answers the request it carries,
/// or says `UnknownOp`. It never fails: a bad message is the peer's problem, not a crash.
struct StateMachine {
    me: &'static str,
    seen: Seen,
}

impl RequestHandler for StateMachine {
    async fn handle(&self, peer: Peer, request: Bytes) -> HandlerResult {
        let reply = match serde_json::from_slice::<Message>(&request) {
            Ok(msg) => {
                self.seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((msg.name.clone(), msg.operation.clone()));
                match response_to(&msg.operation) {
                    Some(op) => Message {
                        name: self.me.into(),
                        operation: op.into(),
                        data: format!(
                            "{} handled for {}",
                            msg.operation,
                            peer.name().unwrap_or("?")
                        ),
                    },
                    None => Message {
                        name: self.me.into(),
                        operation: "UnknownOp".into(),
                        data: format!("unknown operation {:?}", msg.operation),
                    },
                }
            }
            Err(e) => Message {
                name: self.me.into(),
                operation: "UnknownOp".into(),
                data: format!("unparseable message: {e}"),
            },
        };
        Ok(Some(Bytes::from(serde_json::to_vec(&reply)?)))
    }
}

/// The two nodes of the demo, and what each handler saw.
pub struct Demo {
    /// The node that starts.
    pub luda: Node,
    /// The node luda adds a route to.
    pub yoghurt: Node,
    /// Requests luda's handler saw.
    pub luda_seen: Seen,
    /// Requests yoghurt's handler saw.
    pub yoghurt_seen: Seen,
}

impl Demo {
    /// Starts both nodes on 127.0.0.1 in `mode`; luda adds a route to yoghurt.
    pub async fn start(mode: ConnectionMode) -> Result<Self, Error> {
        let luda_seen = Seen::default();
        let yoghurt_seen = Seen::default();
        let yoghurt = Node::builder()
            .name("yoghurt")
            .mode(mode)
            .listen("/ip4/127.0.0.1/tcp/0")
            .handle_requests(
                PROTOCOL,
                StateMachine {
                    me: "yoghurt",
                    seen: yoghurt_seen.clone(),
                },
            )
            .build()
            .await?;
        let luda = Node::builder()
            .name("luda")
            .mode(mode)
            .listen("/ip4/127.0.0.1/tcp/0")
            .handle_requests(
                PROTOCOL,
                StateMachine {
                    me: "luda",
                    seen: luda_seen.clone(),
                },
            )
            .build()
            .await?;
        luda.add_contact("yoghurt", &yoghurt.listen_addrs()[0])
            .await?;
        Ok(Self {
            luda,
            yoghurt,
            luda_seen,
            yoghurt_seen,
        })
    }

    /// Sends raw bytes from one node to the other by name and parses the reply.
    pub async fn send_raw(from: &Node, to: &str, bytes: Vec<u8>) -> Result<Message, Error> {
        let reply = from.dispatch(to, PROTOCOL, bytes).await?;
        Ok(serde_json::from_slice(&reply)?)
    }

    /// Sends one request operation and returns the reply.
    pub async fn send(from: &Node, to: &str, operation: &str) -> Result<Message, Error> {
        let msg = Message {
            name: from.name().unwrap_or("?").to_owned(),
            operation: operation.to_owned(),
            data: format!("{operation} from {}", from.name().unwrap_or("?")),
        };
        Self::send_raw(from, to, serde_json::to_vec(&msg)?).await
    }

    /// Runs the whole exchange; every message in order, as `(sender, operation)`.
    pub async fn run(&self) -> Result<Vec<(String, String)>, Error> {
        let mut transcript = Vec::new();
        let turns = [
            (&self.luda, "yoghurt", "ConnectReq"),
            (&self.yoghurt, "luda", "GetReq"),
            (&self.luda, "yoghurt", "FetchReq"),
            (&self.yoghurt, "luda", "NoticeReq"),
        ];
        for (from, to, operation) in turns {
            transcript.push((from.name().unwrap_or("?").to_owned(), operation.to_owned()));
            let reply = Self::send(from, to, operation).await?;
            transcript.push((reply.name, reply.operation));
        }
        Ok(transcript)
    }

    /// Closes both nodes.
    pub async fn close(self) {
        self.luda.close().await;
        self.yoghurt.close().await;
    }
}

/// The exchange the demo must produce.
pub fn expected() -> Vec<(String, String)> {
    [
        ("luda", "ConnectReq"),
        ("yoghurt", "ConnectResp"),
        ("yoghurt", "GetReq"),
        ("luda", "GetResp"),
        ("luda", "FetchReq"),
        ("yoghurt", "FetchResp"),
        ("yoghurt", "NoticeReq"),
        ("luda", "NoticeResp"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect()
}

fn parse_mode() -> Result<ConnectionMode, Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut mode = ConnectionMode::Long;
    let mut i = 0;
    while i < args.len() {
        let value = match args[i].as_str() {
            "--mode" => args
                .get(i + 1)
                .cloned()
                .ok_or("--mode needs short or long")?,
            other if other.starts_with("--mode=") => other["--mode=".len()..].to_owned(),
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: state_machine [--mode short|long]"
                )
                .into())
            }
        };
        mode = match value.as_str() {
            "long" => ConnectionMode::Long,
            "short" => ConnectionMode::Short,
            other => return Err(format!("unknown mode {other:?}: use short or long").into()),
        };
        i += if args[i] == "--mode" { 2 } else { 1 };
    }
    Ok(mode)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mode = parse_mode()?;
    let demo = Demo::start(mode).await?;
    println!(
        "mode {mode:?}: luda {} and yoghurt {}",
        demo.luda.peer_id(),
        demo.yoghurt.peer_id()
    );
    for (sender, operation) in demo.run().await? {
        println!("{sender:>8}: {operation}");
    }
    let reply = Demo::send_raw(&demo.luda, "yoghurt", b"{this is not json".to_vec()).await?;
    println!("{:>8}: {} ({})", reply.name, reply.operation, reply.data);
    demo.close().await;
    Ok(())
}
