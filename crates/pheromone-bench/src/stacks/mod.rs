//! The stacks under test and the one place that maps a stack to its implementation.
//! Each stack is a module with the same three async functions (`throughput`,
//! `request_response`, `connect`), each returning a finished result record; a stack
//! that has nothing meaningful to say for a bench does not offer it. To add a stack, add
//! a module, a [`Stack`] variant and its arms below.

pub mod bare_quinn;
pub mod libp2p;
pub mod libp2p_rr;
pub mod pheromone;
pub mod pheromone_forward;
pub mod pheromone_node;
pub mod pheromone_relay;
pub mod tcp;
pub mod tcp_aes;
pub mod tcp_chacha;

use anyhow::{bail, Result};

use crate::report::{
    ConnectResult, DispatchAllResult, DispatchMemoryResult, DispatchResult, ForwardResult,
    RelayResult, RrResult, ThroughputResult,
};

/// Which benchmark to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Bench {
    /// Bulk transfer on one stream.
    Throughput,
    /// 64-byte request/response round trips.
    Rr,
    /// Sequential dial + upgrade + ping + close.
    Connect,
    /// Node-level request/response: a stream per 64-byte request over a long connection,
    /// a connection per request in short mode; for pheromone also `dispatch_all` to many
    /// peers and memory after many dispatches.
    Dispatch,
    /// Bulk transfer over a direct link and over a circuit through one relay.
    Relay,
    /// A TCP connection forwarded through two nodes (`forward` → `expose`) against a raw
    /// stream between the same nodes (pheromone only).
    Forward,
}

impl Bench {
    /// Every bench, in the order a full run prints them.
    pub const ALL: [Bench; 6] = [
        Bench::Throughput,
        Bench::Rr,
        Bench::Connect,
        Bench::Dispatch,
        Bench::Relay,
        Bench::Forward,
    ];
}

/// A networking stack under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stack {
    /// Plain TCP: the floor.
    #[value(name = "tcp")]
    Tcp,
    /// TCP with every chunk sealed by ChaCha20-Poly1305: the crypto ceiling.
    #[value(name = "tcp+chacha20poly1305")]
    TcpChacha,
    /// TCP with every chunk sealed by AES-256-GCM: the ceiling when two pheromone nodes
    /// negotiate AES-256-GCM.
    #[value(name = "tcp+aes256gcm")]
    TcpAes,
    /// rust-libp2p: TCP + Noise + yamux, raw streams via libp2p-stream.
    #[value(name = "libp2p")]
    Libp2p,
    /// pheromone: TCP + Noise + yamux of our own.
    #[value(name = "pheromone")]
    Pheromone,
    /// pheromone over QUIC v1.
    #[value(name = "pheromone-quic")]
    PheromoneQuic,
    /// pheromone over TCP + TLS 1.3 (`/tls/1.0.0`) + yamux.
    #[value(name = "pheromone-tls")]
    PheromoneTls,
    /// rust-libp2p's QUIC (libp2p-quic, default config), raw streams via libp2p-stream.
    #[value(name = "libp2p-quic")]
    Libp2pQuic,
    /// Bare quinn: one QUIC stream, no libp2p layer, best settings: the QUIC ceiling.
    #[value(name = "quinn")]
    Quinn,
}

impl Stack {
    /// Every stack, in the order a full run prints them.
    pub const ALL: [Stack; 9] = [
        Stack::Pheromone,
        Stack::Tcp,
        Stack::TcpChacha,
        Stack::TcpAes,
        Stack::Libp2p,
        Stack::Quinn,
        Stack::PheromoneQuic,
        Stack::Libp2pQuic,
        Stack::PheromoneTls,
    ];

    /// The name printed in the `stack` field of each line.
    pub fn name(self) -> &'static str {
        match self {
            Stack::Tcp => tcp::NAME,
            Stack::TcpChacha => tcp_chacha::NAME,
            Stack::TcpAes => tcp_aes::NAME,
            Stack::Libp2p => libp2p::NAME,
            Stack::Pheromone => pheromone::NAME,
            Stack::PheromoneQuic => pheromone::NAME_QUIC,
            Stack::PheromoneTls => pheromone::NAME_TLS,
            Stack::Libp2pQuic => libp2p::NAME_QUIC,
            Stack::Quinn => bare_quinn::NAME,
        }
    }

    /// Whether this stack has a meaningful figure for `bench`.
    pub fn supports(self, bench: Bench) -> bool {
        match self {
            Stack::Pheromone => true,
            Stack::Libp2p => !matches!(bench, Bench::Relay | Bench::Forward),
            Stack::Tcp => !matches!(bench, Bench::Dispatch | Bench::Relay | Bench::Forward),
            Stack::TcpChacha | Stack::TcpAes => bench == Bench::Throughput,
            Stack::PheromoneQuic | Stack::Libp2pQuic | Stack::Quinn => {
                matches!(bench, Bench::Throughput | Bench::Rr | Bench::Connect)
            }
            Stack::PheromoneTls => matches!(bench, Bench::Throughput | Bench::Rr | Bench::Connect),
        }
    }

    /// `requests` node-level requests with `concurrency` in flight on one connection.
    pub async fn dispatch_long(
        self,
        concurrency: usize,
        requests: usize,
    ) -> Result<DispatchResult> {
        match self {
            Stack::Pheromone => pheromone_node::dispatch_long(concurrency, requests).await,
            Stack::Libp2p => libp2p_rr::dispatch_long(concurrency, requests).await,
            _ => bail!("{} has no dispatch bench", self.name()),
        }
    }

    /// `n` sequential node-level requests, each on a connection of its own.
    pub async fn dispatch_short(self, n: usize) -> Result<DispatchResult> {
        match self {
            Stack::Pheromone => pheromone_node::dispatch_short(n).await,
            Stack::Libp2p => libp2p_rr::dispatch_short(n).await,
            _ => bail!("{} has no dispatch bench", self.name()),
        }
    }

    /// `rounds` requests to each of `peers` in-process peers at once.
    pub async fn dispatch_all(self, peers: usize, rounds: usize) -> Result<DispatchAllResult> {
        match self {
            Stack::Pheromone => pheromone_node::dispatch_all(peers, rounds).await,
            _ => bail!("{} has no dispatch_all bench", self.name()),
        }
    }

    /// Resident memory after `small` and after `large` sequential requests.
    pub async fn dispatch_memory(self, small: usize, large: usize) -> Result<DispatchMemoryResult> {
        match self {
            Stack::Pheromone => pheromone_node::dispatch_memory(small, large).await,
            _ => bail!("{} has no dispatch_memory bench", self.name()),
        }
    }

    /// Moves `total` bytes directly and through one relay.
    pub async fn relay(self, total: u64) -> Result<RelayResult> {
        match self {
            Stack::Pheromone => pheromone_relay::relay(total).await,
            _ => bail!("{} has no relay bench", self.name()),
        }
    }

    /// `total` bytes over a forwarded TCP connection and over a raw stream.
    pub async fn forward(self, total: u64) -> Result<ForwardResult> {
        match self {
            Stack::Pheromone => pheromone_forward::forward(total).await,
            _ => bail!("{} has no forward bench", self.name()),
        }
    }

    /// Moves `total` bytes over one stream of one connection.
    pub async fn throughput(self, total: u64) -> Result<ThroughputResult> {
        match self {
            Stack::Tcp => tcp::throughput(total).await,
            Stack::TcpChacha => tcp_chacha::throughput(total).await,
            Stack::TcpAes => tcp_aes::throughput(total).await,
            Stack::Libp2p => libp2p::throughput(libp2p::Link::Tcp, total).await,
            Stack::Libp2pQuic => libp2p::throughput(libp2p::Link::Quic, total).await,
            Stack::Pheromone => pheromone::throughput(pheromone::Link::Noise, total).await,
            Stack::PheromoneTls => pheromone::throughput(pheromone::Link::Tls, total).await,
            Stack::PheromoneQuic => pheromone::throughput(pheromone::Link::Quic, total).await,
            Stack::Quinn => bare_quinn::throughput(total).await,
        }
    }

    /// Runs `requests` 64-byte round trips with `concurrency` in flight on one connection.
    pub async fn request_response(self, concurrency: usize, requests: usize) -> Result<RrResult> {
        match self {
            Stack::Tcp => tcp::request_response(concurrency, requests).await,
            Stack::Libp2p => {
                libp2p::request_response(libp2p::Link::Tcp, concurrency, requests).await
            }
            Stack::Libp2pQuic => {
                libp2p::request_response(libp2p::Link::Quic, concurrency, requests).await
            }
            Stack::Pheromone => {
                pheromone::request_response(pheromone::Link::Noise, concurrency, requests).await
            }
            Stack::PheromoneTls => {
                pheromone::request_response(pheromone::Link::Tls, concurrency, requests).await
            }
            Stack::PheromoneQuic => {
                pheromone::request_response(pheromone::Link::Quic, concurrency, requests).await
            }
            Stack::Quinn => bare_quinn::request_response(concurrency, requests).await,
            Stack::TcpChacha | Stack::TcpAes => bail!("{} has no rr bench", self.name()),
        }
    }

    /// Makes `n` connections one after another, each with one ping.
    pub async fn connect(self, n: usize) -> Result<ConnectResult> {
        match self {
            Stack::Tcp => tcp::connect(n).await,
            Stack::Libp2p => libp2p::connect(libp2p::Link::Tcp, n).await,
            Stack::Libp2pQuic => libp2p::connect(libp2p::Link::Quic, n).await,
            Stack::Pheromone => pheromone::connect(pheromone::Link::Noise, n).await,
            Stack::PheromoneTls => pheromone::connect(pheromone::Link::Tls, n).await,
            Stack::PheromoneQuic => pheromone::connect(pheromone::Link::Quic, n).await,
            Stack::Quinn => bare_quinn::connect(n).await,
            Stack::TcpChacha | Stack::TcpAes => {
                bail!("{} has no connect bench", self.name())
            }
        }
    }
}
