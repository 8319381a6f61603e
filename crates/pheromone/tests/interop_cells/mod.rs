//! The cells of the interop matrix: what each scenario does in each direction, and our
//! side of it (one pheromone node with the suite's protocols). `rust.rs` and `js.rs` drive
//! the two implementations; both run the same scenarios in the same order, because later
//! scenarios use the connections earlier ones opened.

#![allow(dead_code)]

mod js;
mod ours;
mod rust;

pub use js::run as run_js;
pub use rust::run as run_rust;

use std::future::Future;
use std::time::Duration;

/// Protocols the suite's peers serve on every implementation.
pub const ECHO: &str = "/pheromone-interop/echo/1.0.0";
pub const SINK: &str = "/pheromone-interop/sink/1.0.0";
pub const PROBE: &str = "/pheromone-interop/probe/1.0.0";
pub const MISSING: &str = "/pheromone-interop/missing/1.0.0";
/// Concurrent echo streams per direction.
pub const STREAMS: usize = 100;
/// Streams actually run (`PHEROMONE_INTEROP_STREAMS` overrides, for debugging only).
pub fn streams() -> usize {
    std::env::var("PHEROMONE_INTEROP_STREAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(STREAMS)
}
/// Bytes sent right before a graceful close.
pub const CLOSE_BYTES: usize = 1 << 20;
/// Perf sizes (upload, download).
pub const PERF: (u64, u64) = (3 << 20, 5 << 20);
/// One cell's bound.
const CELL_LIMIT: Duration = Duration::from_secs(45);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    Rust,
    Js,
}

impl Impl {
    pub fn name(self) -> &'static str {
        match self {
            Impl::Rust => "rust-libp2p",
            Impl::Js => "js-libp2p",
        }
    }

    /// The name with the version run, for the matrix header.
    pub fn label(self) -> String {
        match self {
            Impl::Rust => "rust-libp2p 0.57".to_owned(),
            Impl::Js => format!("js-libp2p {}", js::version()),
        }
    }
}

/// A transport every scenario runs over: TCP (Noise, yamux), TCP with TLS 1.3
/// (`/tls/1.0.0`, yamux) or QUIC v1 (TLS 1.3, QUIC's own streams). Both implementations
/// listen on it, so every dial in a cell uses it. For `TcpTls` the other implementation
/// speaks TLS only over TCP, and our node keeps its default (propose Noise): our dials
/// show the fallback to TLS when Noise is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    TcpTls,
    Quic,
}

impl Transport {
    pub const ALL: [Transport; 3] = [Transport::Tcp, Transport::TcpTls, Transport::Quic];

    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::TcpTls => "tcp+tls",
            Transport::Quic => "quic",
        }
    }

    /// The security protocol connections over it must have.
    pub fn security(self) -> pheromone::Security {
        match self {
            Transport::Tcp => pheromone::Security::Noise,
            Transport::TcpTls | Transport::Quic => pheromone::Security::Tls,
        }
    }

    /// The address to listen on.
    pub fn listen(self) -> &'static str {
        match self {
            Transport::Tcp | Transport::TcpTls => "/ip4/127.0.0.1/tcp/0",
            Transport::Quic => "/ip4/127.0.0.1/udp/0/quic-v1",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Pheromone acts: dials, asks, opens the streams, closes, resets.
    Ours,
    /// The other implementation acts.
    Theirs,
}

impl Dir {
    pub const ALL: [Dir; 2] = [Dir::Ours, Dir::Theirs];

    pub fn name(self) -> &'static str {
        match self {
            Dir::Ours => "us → them",
            Dir::Theirs => "them → us",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Connect,
    Identify,
    Ping,
    Streams,
    Unsupported,
    FindNode,
    Perf,
    Reset,
    GracefulClose,
}

impl Scenario {
    pub const ALL: [Scenario; 9] = [
        Scenario::Connect,
        Scenario::Identify,
        Scenario::Ping,
        Scenario::Streams,
        Scenario::Unsupported,
        Scenario::FindNode,
        Scenario::Perf,
        Scenario::Reset,
        Scenario::GracefulClose,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Connect => "connect (TCP: Noise, yamux; QUIC: TLS 1.3)",
            Scenario::Identify => "`/ipfs/id/1.0.0`: every field, one request per connection",
            Scenario::Ping => "`/ipfs/ping/1.0.0`",
            Scenario::Streams => "100 concurrent echo streams, data checked",
            Scenario::Unsupported => "unsupported protocol refused cleanly",
            Scenario::FindNode => "Kademlia FIND_NODE (`/pheromone/kad/1.0.0`)",
            Scenario::Perf => "`/perf/1.0.0`",
            Scenario::Reset => "stream reset mid-transfer, connection survives",
            Scenario::GracefulClose => "graceful close, nothing lost",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Pass,
    Fail(String),
    /// Not applicable, with the reason shown in the matrix.
    NotApplicable(&'static str),
}

impl Outcome {
    pub fn text(&self) -> &str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "**FAIL**",
            Outcome::NotApplicable(why) => why,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Cell {
    pub imp: Impl,
    pub transport: Transport,
    pub scenario: Scenario,
    pub dir: Dir,
    pub outcome: Outcome,
}

/// Collects the cells of one implementation and transport.
pub struct Recorder {
    imp: Impl,
    transport: Transport,
    pub cells: Vec<Cell>,
}

impl Recorder {
    pub fn new(imp: Impl, transport: Transport) -> Self {
        Self {
            imp,
            transport,
            cells: Vec::new(),
        }
    }

    /// Runs one cell under its deadline and records the outcome.
    pub async fn run<F>(&mut self, scenario: Scenario, dir: Dir, cell: F) -> bool
    where
        F: Future<Output = Result<(), String>>,
    {
        let outcome = match tokio::time::timeout(CELL_LIMIT, cell).await {
            Ok(Ok(())) => Outcome::Pass,
            Ok(Err(why)) => Outcome::Fail(why),
            Err(_) => Outcome::Fail(format!("no result within {CELL_LIMIT:?}")),
        };
        let pass = matches!(outcome, Outcome::Pass);
        if !pass {
            eprintln!(
                "interop cell failed: {} {} {} {}: {outcome:?}",
                self.imp.name(),
                self.transport.name(),
                scenario.name(),
                dir.name()
            );
        }
        self.record(scenario, dir, outcome);
        pass
    }

    pub fn record(&mut self, scenario: Scenario, dir: Dir, outcome: Outcome) {
        self.cells.push(Cell {
            imp: self.imp,
            transport: self.transport,
            scenario,
            dir,
            outcome,
        });
    }

    /// Records every cell not run yet as failed because `why` (a setup step failed).
    pub fn fail_rest(&mut self, why: &str) {
        for scenario in Scenario::ALL {
            for dir in Dir::ALL {
                if !self
                    .cells
                    .iter()
                    .any(|c| c.scenario == scenario && c.dir == dir)
                {
                    self.record(scenario, dir, Outcome::Fail(why.to_owned()));
                }
            }
        }
    }
}

/// Turns a false condition into a cell failure.
pub fn ensure(cond: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(why())
    }
}

/// SHA-256 in hex, as the js harness reports it.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
