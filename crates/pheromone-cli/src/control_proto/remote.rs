//! The values of remote access: exposed services and forwarded ports with their counters,
//! the hops of a route trace, and fleet exec (the command, each host's progress and its
//! summary). Plain data shared by daemon and CLI; nothing here does IO.

use super::base64_bytes;
use serde::{Deserialize, Serialize};

/// Counters of one expose or forward, seen from the mesh: `bytes_in` came from peers,
/// `bytes_out` went to them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardCounters {
    /// Bytes received from peers and written to the local TCP side.
    pub bytes_in: u64,
    /// Bytes read from the local TCP side and sent to peers.
    pub bytes_out: u64,
    /// Connections being spliced now.
    pub open: u64,
    /// Connections accepted since it was created.
    pub total: u64,
    /// Connections that failed (target refused, stream refused, reset).
    pub failed: u64,
}

/// A service this node exposes as `/x/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposeEntry {
    /// The service name.
    pub name: String,
    /// Its protocol, `/x/NAME`.
    pub protocol: String,
    /// The local TCP address streams are connected to.
    pub target: String,
    /// Peer IDs allowed to use it; `None` when every authenticated peer may.
    pub allow: Option<Vec<String>>,
    /// Its counters.
    pub stats: ForwardCounters,
}

/// A local port this node forwards to a peer's service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardEntry {
    /// The service name on the peer.
    pub name: String,
    /// Its protocol, `/x/NAME`.
    pub protocol: String,
    /// The peer running the service.
    pub peer_id: String,
    /// The peer's name, if known.
    pub peer_name: Option<String>,
    /// The local address accepting connections (the real port).
    pub listen: String,
    /// Its counters.
    pub stats: ForwardCounters,
}

/// Both kinds, as `forwards` lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardList {
    /// Exposed services, by name.
    pub exposed: Vec<ExposeEntry>,
    /// Forwarded ports, by listen address.
    pub forwarded: Vec<ForwardEntry>,
}

/// One node on a traced path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceHop {
    /// Its peer ID.
    pub peer_id: String,
    /// Its name, if known.
    pub name: Option<String>,
}

/// The path a route trace found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceInfo {
    /// `reached`, `no_route`, `hop_limit`, `loop` or `timeout`.
    pub status: String,
    /// The nodes crossed, this node first; ends with the destination when reached.
    pub path: Vec<TraceHop>,
}

/// What to run on every host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecCommand {
    /// The program (or, with `shell`, the start of the command line).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Run it with `sh -c` (the host's operator must allow shell commands).
    pub shell: bool,
    /// Milliseconds it may run before it is killed; `None` takes each host's maximum.
    pub timeout_ms: Option<u64>,
    /// Most output bytes each host sends back; `None` takes each host's maximum.
    pub max_output: Option<u64>,
}

/// A host of a fleet run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRef {
    /// Its peer ID.
    pub peer_id: String,
    /// What to call it: its name, else its peer ID.
    pub host: String,
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A chunk of a host's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecChunk {
    /// The host's peer ID.
    pub peer_id: String,
    /// Which stream.
    pub stream: OutputStream,
    /// The bytes, as they came.
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

/// How a fleet run ended on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSummary {
    /// The host's peer ID.
    pub peer_id: String,
    /// What to call it.
    pub host: String,
    /// One word: `exited`, `signal`, `timeout` (killed by its timeout), `refused` (exec
    /// off there or we are not allowed), `error` (did not run or the result was lost).
    pub status: String,
    /// The exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Whether output past the cap was dropped.
    pub truncated: bool,
    /// Why it did not run or finish, for `refused` and `error`.
    pub error: Option<String>,
    /// Whether it ran and exited with code 0.
    pub success: bool,
    /// Milliseconds from the request to the end.
    pub duration_ms: u64,
    /// Stdout bytes received.
    pub stdout_bytes: u64,
    /// Stderr bytes received.
    pub stderr_bytes: u64,
}

impl HostSummary {
    /// The status as the summary table prints it: `exit 0`, `signal 9`, `killed by
    /// timeout`, `refused`, `error`.
    pub fn status_text(&self) -> String {
        match (self.status.as_str(), self.exit_code, self.signal) {
            ("exited", Some(code), _) => format!("exit {code}"),
            ("signal", _, Some(signal)) => format!("signal {signal}"),
            ("timeout", _, _) => "killed by timeout".to_owned(),
            (other, _, _) => other.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_text() {
        let mut h = HostSummary {
            peer_id: "p".into(),
            host: "h".into(),
            status: "exited".into(),
            exit_code: Some(3),
            signal: None,
            truncated: false,
            error: None,
            success: false,
            duration_ms: 1,
            stdout_bytes: 0,
            stderr_bytes: 0,
        };
        assert_eq!(h.status_text(), "exit 3");
        h.status = "timeout".into();
        assert_eq!(h.status_text(), "killed by timeout");
        h.status = "refused".into();
        assert_eq!(h.status_text(), "refused");
        let line = serde_json::to_string(&ExecChunk {
            peer_id: "p".into(),
            stream: OutputStream::Stderr,
            data: b"x\n".to_vec(),
        })
        .expect("encode");
        assert!(line.contains("\"stream\":\"stderr\""), "{line}");
        let back: ExecChunk = serde_json::from_str(&line).expect("decode");
        assert_eq!(back.data, b"x\n");
    }
}
