//! The js-libp2p peer for the interop suite: `interop/js/harness.mjs` (js-libp2p 3.x,
//! pinned by `interop/js/package-lock.json`, installed with `npm ci`) run as a child
//! process and driven over its stdin/stdout in JSON lines (the protocol is described at
//! the top of the harness). Every call is bounded in time; dropping the peer kills the
//! process, which also exits by itself when its stdin closes or its lifetime ends.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

/// Longest any one harness command may take (the harness bounds its own steps at 20 s).
const CALL_LIMIT: Duration = Duration::from_secs(30);
/// How long the harness may take to start and listen.
const START_LIMIT: Duration = Duration::from_secs(30);

/// The folder holding the harness and its `node_modules`.
pub fn harness_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../interop/js")
}

/// Why the js peer cannot run here, if it cannot: node missing, or `npm ci` not run.
pub fn unavailable() -> Option<String> {
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !node {
        return Some("node (Node.js) is not installed".into());
    }
    if !harness_dir()
        .join("node_modules/libp2p/package.json")
        .exists()
    {
        return Some(format!(
            "js-libp2p is not installed: run `npm ci` in {}",
            harness_dir().display()
        ));
    }
    None
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// A running js-libp2p harness.
pub struct JsPeer {
    /// Its peer ID, as js prints it (base58).
    pub peer: String,
    /// Its public key, protobuf-encoded, in hex.
    pub public_key: String,
    /// Its listen addresses, with `/p2p/`.
    pub addrs: Vec<String>,
    /// The protocols it registered.
    pub protocols: Vec<String>,
    /// What it says in identify.
    pub agent_version: String,
    pub protocol_version: String,
    stdin: ChildStdin,
    pending: Pending,
    next_id: u64,
    events: mpsc::Receiver<Value>,
    child: Child,
}

impl JsPeer {
    /// Starts the harness and waits for it to listen.
    pub async fn spawn() -> Result<Self, String> {
        let mut child = Command::new("node")
            .arg("harness.mjs")
            .current_dir(harness_dir())
            .env("HARNESS_LIFETIME_MS", "600000")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting node: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let pending: Pending = Arc::default();
        let (event_tx, mut events) = mpsc::channel(1024);
        let replies = pending.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(value) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Some(id) = value.get("id").and_then(Value::as_u64) {
                    let reply = replies
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                    if let Some(reply) = reply {
                        let result = if value["ok"] == json!(true) {
                            Ok(value["result"].clone())
                        } else {
                            Err(value["error"].as_str().unwrap_or("?").to_owned())
                        };
                        let _ = reply.send(result);
                    }
                } else {
                    // A full queue means nobody looks at events any more.
                    let _ = event_tx.try_send(value);
                }
            }
        });
        let ready = tokio::time::timeout(START_LIMIT, async {
            loop {
                match events.recv().await {
                    Some(v) if v["event"] == "ready" => return Ok(v),
                    Some(_) => {}
                    None => return Err("the harness exited before it was ready".to_owned()),
                }
            }
        })
        .await
        .map_err(|_| "the harness did not start in time".to_owned())??;
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Self {
            peer: ready["peer"].as_str().unwrap_or_default().to_owned(),
            public_key: ready["publicKey"].as_str().unwrap_or_default().to_owned(),
            addrs: strings(&ready["addrs"]),
            protocols: strings(&ready["protocols"]),
            agent_version: ready["agentVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            protocol_version: ready["protocolVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            stdin,
            pending,
            next_id: 0,
            events,
            child,
        })
    }

    /// Runs one command (`args` is a JSON object) and returns its result.
    pub async fn call(&mut self, cmd: &str, mut args: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        args["id"] = json!(id);
        args["cmd"] = json!(cmd);
        let (reply, answer) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, reply);
        let mut line = args.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("harness stdin: {e}"))?;
        match tokio::time::timeout(CALL_LIMIT, answer).await {
            Ok(Ok(result)) => result.map_err(|e| format!("js {cmd}: {e}")),
            Ok(Err(_)) => Err(format!("js {cmd}: the harness exited")),
            Err(_) => Err(format!("js {cmd}: no answer within {CALL_LIMIT:?}")),
        }
    }

    /// Stops the harness.
    pub async fn stop(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}
