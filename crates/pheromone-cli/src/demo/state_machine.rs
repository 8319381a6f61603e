//! The luda/yoghurt state machine of `pheromone demo`: two nodes exchange JSON messages
//! `{name, operation, data}` — ConnectReq → ConnectResp, GetReq → GetResp, FetchReq →
//! FetchResp, NoticeReq → NoticeResp — taking turns: luda connects, yoghurt gets, luda
//! fetches, yoghurt notices. A message a node cannot parse, or an operation it does not
//! know, is answered with `UnknownOp` (the same protocol as the library's
//! `state_machine` example).
//!
//! [`Machine`] is the request handler; [`exchange`] drives the four turns from the two
//! nodes and returns the transcript. Nothing here prints.

use bytes::Bytes;
use pheromone::node::{HandlerResult, Peer, RequestHandler};
use pheromone::{DispatchOptions, Node};
use serde::{Deserialize, Serialize};

/// The protocol the state machine answers on.
pub const PROTOCOL: &str = "/pheromone/demo/state-machine/1.0.0";

/// One message of the exchange.
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

/// The request handler of one node: answers the request a message carries, or says
/// `UnknownOp`. It never fails: a bad message is the sender's problem, not a crash.
#[derive(Debug, Clone)]
pub struct Machine {
    /// This node's name, put in every answer.
    pub me: String,
}

impl Machine {
    /// The answer to one request's bytes.
    pub fn answer(&self, from: Option<&str>, request: &[u8]) -> Message {
        let reply = |operation: &str, data: String| Message {
            name: self.me.clone(),
            operation: operation.to_owned(),
            data,
        };
        match serde_json::from_slice::<Message>(request) {
            Ok(msg) => match response_to(&msg.operation) {
                Some(op) => reply(
                    op,
                    format!("{} handled for {}", msg.operation, from.unwrap_or("?")),
                ),
                None => reply(
                    "UnknownOp",
                    format!("unknown operation {:?}", msg.operation),
                ),
            },
            Err(e) => reply("UnknownOp", format!("unparseable message: {e}")),
        }
    }
}

impl RequestHandler for Machine {
    async fn handle(&self, peer: Peer, request: Bytes) -> HandlerResult {
        let reply = self.answer(peer.name(), &request);
        Ok(Some(Bytes::from(serde_json::to_vec(&reply)?)))
    }
}

/// One line of the transcript: who sent which operation to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// The sender's name.
    pub from: String,
    /// The receiver's name.
    pub to: String,
    /// The operation.
    pub operation: String,
}

/// Runs the four turns between `luda` and `yoghurt` with `options` (long or short mode
/// per call); every message in order.
pub async fn exchange(
    luda: &Node,
    yoghurt: &Node,
    options: &DispatchOptions,
) -> anyhow::Result<Vec<Turn>> {
    let turns = [
        (luda, yoghurt, "ConnectReq"),
        (yoghurt, luda, "GetReq"),
        (luda, yoghurt, "FetchReq"),
        (yoghurt, luda, "NoticeReq"),
    ];
    let name = |n: &Node| n.name().unwrap_or("?").to_owned();
    let mut transcript = Vec::new();
    for (from, to, operation) in turns {
        let request = Message {
            name: name(from),
            operation: operation.to_owned(),
            data: format!("{operation} from {}", name(from)),
        };
        transcript.push(Turn {
            from: name(from),
            to: name(to),
            operation: operation.to_owned(),
        });
        let reply = from
            .dispatch_with(
                to.peer_id(),
                PROTOCOL,
                serde_json::to_vec(&request)?,
                options,
            )
            .await?;
        let reply: Message = serde_json::from_slice(&reply)?;
        transcript.push(Turn {
            from: reply.name,
            to: name(from),
            operation: reply.operation,
        });
    }
    Ok(transcript)
}

/// The operations a correct exchange carries, in order.
pub const EXPECTED: [&str; 8] = [
    "ConnectReq",
    "ConnectResp",
    "GetReq",
    "GetResp",
    "FetchReq",
    "FetchResp",
    "NoticeReq",
    "NoticeResp",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_requests_and_refuses_the_rest() {
        let m = Machine {
            me: "yoghurt".into(),
        };
        let ask = |op: &str| {
            serde_json::to_vec(&Message {
                name: "luda".into(),
                operation: op.into(),
                data: String::new(),
            })
            .expect("json")
        };
        let reply = m.answer(Some("luda"), &ask("GetReq"));
        assert_eq!(reply.operation, "GetResp");
        assert_eq!(reply.name, "yoghurt");
        assert_eq!(reply.data, "GetReq handled for luda");
        assert_eq!(m.answer(None, &ask("Dance")).operation, "UnknownOp");
        assert_eq!(m.answer(None, b"{not json").operation, "UnknownOp");
    }
}
