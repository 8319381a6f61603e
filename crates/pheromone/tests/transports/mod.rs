//! The transport conformance harness: one test body, run over TCP with Noise, TCP with
//! TLS, and QUIC.
//!
//! [`over_transports!`] turns each `async fn name() { … }` into a module `name` with three
//! tests, `name::tcp`, `name::tcp_tls` and `name::quic`, that run the same body with the
//! transport set in a task-local (`tcp_tls`: every dial the helpers' endpoints and nodes
//! make proposes `/tls/1.0.0`; listeners accept both). The helpers the bodies use to make listeners (`common::endpoint`,
//! `node_util::listening`, [`listen_addr`]) read it, so a body written once listens, dials
//! and checks addresses over whichever transport its run is for. Code outside the scope (a
//! task the body spawns that builds its own listener) gets TCP.

#![allow(dead_code)]

use pheromone::Multiaddr;
use std::future::Future;
use std::net::SocketAddr;

/// The transport a conformance run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// TCP with Noise and yamux.
    Tcp,
    /// TCP with TLS 1.3 (`/tls/1.0.0`) and yamux.
    TcpTls,
    /// QUIC v1.
    Quic,
}

tokio::task_local! {
    static KIND: Kind;
}

/// The transport of the run this is called from (TCP outside any).
pub fn current() -> Kind {
    KIND.try_with(|k| *k).unwrap_or(Kind::Tcp)
}

/// Runs `f` with `kind` as the transport of its helpers.
pub async fn scope<F: Future>(kind: Kind, f: F) -> F::Output {
    KIND.scope(kind, f).await
}

/// An ephemeral loopback listen address of the current transport.
pub fn listen_addr() -> &'static str {
    match current() {
        Kind::Tcp | Kind::TcpTls => "/ip4/127.0.0.1/tcp/0",
        Kind::Quic => "/ip4/127.0.0.1/udp/0/quic-v1",
    }
}

/// [`listen_addr`], parsed.
pub fn listen_multiaddr() -> Multiaddr {
    listen_addr().parse().expect("listen address")
}

/// The socket address of a listen address of the current transport.
pub fn socket_addr(addr: &Multiaddr) -> SocketAddr {
    match current() {
        Kind::Tcp | Kind::TcpTls => addr.tcp_socket_addr(),
        Kind::Quic => addr.quic_socket_addr(),
    }
    .expect("an address of the current transport")
}

/// A socket address as a multiaddr of the current transport.
pub fn multiaddr(addr: SocketAddr) -> Multiaddr {
    match current() {
        Kind::Tcp | Kind::TcpTls => Multiaddr::from_socket_addr(addr),
        Kind::Quic => Multiaddr::from_quic_socket_addr(addr),
    }
}

/// The transport the connections of the current run must report.
pub fn expected() -> pheromone::Transport {
    match current() {
        Kind::Tcp | Kind::TcpTls => pheromone::Transport::Tcp,
        Kind::Quic => pheromone::Transport::Quic,
    }
}

/// The security protocol TCP dials of the current run propose.
pub fn tcp_security() -> pheromone::TcpSecurity {
    match current() {
        Kind::TcpTls => pheromone::TcpSecurity::Tls,
        Kind::Tcp | Kind::Quic => pheromone::TcpSecurity::Noise,
    }
}

/// The security the connections of the current run must report.
pub fn expected_security() -> pheromone::Security {
    match current() {
        Kind::Tcp => pheromone::Security::Noise,
        Kind::TcpTls | Kind::Quic => pheromone::Security::Tls,
    }
}

/// Each `async fn name() { … }` (attributes such as `#[tokio::test(…)]` go on it and are
/// given to every run) becomes `mod name { fn tcp; fn tcp_tls; fn quic }`. The test file must have
/// `transports` in scope at its root.
#[macro_export]
macro_rules! over_transports {
    ($( $(#[$meta:meta])* async fn $name:ident() $body:block )*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                async fn body() $body

                $(#[$meta])*
                async fn tcp() {
                    transports::scope(transports::Kind::Tcp, body()).await
                }

                $(#[$meta])*
                async fn tcp_tls() {
                    transports::scope(transports::Kind::TcpTls, body()).await
                }

                $(#[$meta])*
                async fn quic() {
                    transports::scope(transports::Kind::Quic, body()).await
                }
            }
        )*
    };
}
