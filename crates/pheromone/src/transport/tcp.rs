//! TCP on tokio: listen, accept, dial with a timeout, `TCP_NODELAY` on every socket.
//!
//! Nagle's algorithm is off because the layers above coalesce writes themselves (one Noise
//! frame per flush); leaving it on would add up to 40 ms to every small request.

use super::TransportError;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};

/// Settings of the TCP transport.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// How long a connect may take before it fails with [`TransportError::ConnectTimeout`].
    pub dial_timeout: Duration,
    /// Listen backlog handed to the kernel.
    pub backlog: u32,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            dial_timeout: Duration::from_secs(10),
            backlog: 1024,
        }
    }
}

/// Dials and listens on TCP.
#[derive(Debug, Clone, Default)]
pub struct TcpTransport {
    config: TcpConfig,
}

impl TcpTransport {
    /// A transport with `config`.
    pub fn new(config: TcpConfig) -> Self {
        Self { config }
    }

    /// Binds a listener on `addr`; port 0 picks a free port, which
    /// [`TcpListener::local_addr`] reports.
    pub fn listen(&self, addr: SocketAddr) -> Result<TcpListener, TransportError> {
        let listen_err = |source| TransportError::Listen { addr, source };
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(listen_err)?;
        socket.set_reuseaddr(true).map_err(listen_err)?;
        if addr.is_ipv6() {
            // `/ip6/::/tcp/P` next to `/ip4/0.0.0.0/tcp/P`: each family binds its own socket.
            socket2::SockRef::from(&socket)
                .set_only_v6(true)
                .map_err(listen_err)?;
        }
        socket.bind(addr).map_err(listen_err)?;
        let inner = socket.listen(self.config.backlog).map_err(listen_err)?;
        let local_addr = inner.local_addr().map_err(listen_err)?;
        Ok(TcpListener { inner, local_addr })
    }

    /// Connects to `addr` within the dial timeout, with `TCP_NODELAY` set.
    pub async fn dial(&self, addr: SocketAddr) -> Result<TcpStream, TransportError> {
        let timeout = self.config.dial_timeout;
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| TransportError::ConnectTimeout { addr, timeout })?
            .map_err(|source| TransportError::Connect { addr, source })?;
        stream
            .set_nodelay(true)
            .map_err(|source| TransportError::Connect { addr, source })?;
        Ok(stream)
    }

    /// Resolves `host` (a name or an IP literal) and `port` to socket addresses.
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
        want_v4: bool,
        want_v6: bool,
    ) -> Result<Vec<SocketAddr>, TransportError> {
        let resolve_err = |reason: String| TransportError::Resolve {
            host: host.to_owned(),
            reason,
        };
        let found = tokio::time::timeout(
            self.config.dial_timeout,
            tokio::net::lookup_host((host, port)),
        )
        .await
        .map_err(|_| resolve_err("timed out".into()))?
        .map_err(|e| resolve_err(e.to_string()))?;
        let addrs: Vec<SocketAddr> = found
            .filter(|a| (a.is_ipv4() && want_v4) || (a.is_ipv6() && want_v6))
            .collect();
        if addrs.is_empty() {
            return Err(resolve_err("no address of the requested family".into()));
        }
        Ok(addrs)
    }
}

/// A bound TCP listener.
#[derive(Debug)]
pub struct TcpListener {
    inner: tokio::net::TcpListener,
    local_addr: SocketAddr,
}

impl TcpListener {
    /// The address actually bound (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits for the next inbound connection, with `TCP_NODELAY` set.
    pub async fn accept(&self) -> Result<(TcpStream, SocketAddr), TransportError> {
        let (stream, remote) =
            self.inner
                .accept()
                .await
                .map_err(|source| TransportError::Accept {
                    addr: self.local_addr,
                    source,
                })?;
        // A socket that refuses NODELAY still works; only latency suffers.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%remote, error = %e, "cannot set TCP_NODELAY");
        }
        Ok((stream, remote))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn port_zero_reports_real_port_and_connects() {
        let transport = TcpTransport::default();
        let listener = transport
            .listen("127.0.0.1:0".parse().expect("addr"))
            .expect("listen");
        assert_ne!(listener.local_addr().port(), 0);
        let addr = listener.local_addr();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.expect("read");
            buf
        });
        let mut client = transport.dial(addr).await.expect("dial");
        assert!(client.nodelay().expect("nodelay"));
        client.write_all(b"hello").await.expect("write");
        assert_eq!(&server.await.expect("join"), b"hello");
    }

    #[tokio::test]
    async fn ipv4_and_ipv6_wildcards_share_a_port() {
        let transport = TcpTransport::default();
        // Only binds: no traffic goes anywhere.
        let v4 = transport
            .listen("0.0.0.0:0".parse().expect("addr"))
            .expect("listen v4");
        let port = v4.local_addr().port();
        // Hosts without IPv6 cannot bind [::]; only a clash with the IPv4 socket is an error.
        match transport.listen(format!("[::]:{port}").parse().expect("addr")) {
            Ok(v6) => assert_eq!(v6.local_addr().port(), port),
            Err(TransportError::Listen { source, .. }) => {
                assert_ne!(source.kind(), std::io::ErrorKind::AddrInUse, "{source}")
            }
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    #[tokio::test]
    async fn dialling_a_closed_port_is_a_connect_error() {
        let transport = TcpTransport::default();
        let addr = {
            let l = transport
                .listen("127.0.0.1:0".parse().expect("addr"))
                .expect("listen");
            l.local_addr()
        };
        match transport.dial(addr).await {
            Err(TransportError::Connect { addr: a, .. }) => assert_eq!(a, addr),
            other => panic!("expected a connect error, got {other:?}"),
        }
    }
}
