//! Our side of the suite: a pheromone node (discovery on `/pheromone/kad/1.0.0`, perf on,
//! routing on, as `pheromone up` runs) serving the suite's echo, sink and probe, and the
//! scenario steps that only involve our API.

use super::{
    ensure, sha256_hex, Transport, CLOSE_BYTES, ECHO, MISSING, PERF, PROBE, SINK, STREAMS,
};
use futures::FutureExt;
use pheromone::discovery::DiscoveryConfig;
use pheromone::node::Node;
use pheromone::protocols::perf;
use pheromone::{Access, Connection, EndpointConfig, Multiaddr, PeerId};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Mutex};

/// What our sink received on one stream: bytes and their SHA-256.
pub type SinkReport = (usize, String);

pub struct Ours {
    pub node: Node,
    sinks: Mutex<mpsc::Receiver<SinkReport>>,
    probes: Mutex<mpsc::Receiver<&'static str>>,
}

/// A node with discovery listening on `transport`.
pub async fn kad_node(transport: Transport, config: DiscoveryConfig) -> Result<Node, String> {
    let endpoint = EndpointConfig {
        perf: Some(Access::Open),
        ..EndpointConfig::default()
    };
    Node::builder()
        .listen(transport.listen())
        .discovery(Some(config))
        .endpoint_config(endpoint)
        .build()
        .await
        .map_err(|e| format!("start a pheromone node: {e}"))
}

impl Ours {
    pub async fn spawn(transport: Transport) -> Result<Self, String> {
        let config = DiscoveryConfig {
            low_watermark: 0,
            ..DiscoveryConfig::default()
        };
        let node = kad_node(transport, config).await?;
        let ep = node.endpoint();
        ep.set_handler(
            ECHO,
            Arc::new(|_conn, mut stream| {
                async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = stream.shutdown().await;
                }
                .boxed()
            }),
            Access::Open,
        );
        let (sink_tx, sinks) = mpsc::channel(16);
        ep.set_handler(
            SINK,
            Arc::new(move |_conn, mut stream| {
                let report = sink_tx.clone();
                async move {
                    let mut data = Vec::new();
                    let _ = stream.read_to_end(&mut data).await;
                    let _ = report.try_send((data.len(), sha256_hex(&data)));
                }
                .boxed()
            }),
            Access::Open,
        );
        let (probe_tx, probes) = mpsc::channel(16);
        ep.set_handler(
            PROBE,
            Arc::new(move |_conn, mut stream| {
                let report = probe_tx.clone();
                async move {
                    let mut data = Vec::new();
                    let outcome = match stream.read_to_end(&mut data).await {
                        Ok(_) => "eof",
                        Err(_) => "reset",
                    };
                    let _ = report.try_send(outcome);
                }
                .boxed()
            }),
            Access::Open,
        );
        Ok(Self {
            node,
            sinks: Mutex::new(sinks),
            probes: Mutex::new(probes),
        })
    }

    pub fn peer(&self) -> PeerId {
        self.node.peer_id()
    }

    /// Our dialable address, with `/p2p/`.
    pub fn addr(&self) -> Multiaddr {
        self.node.listen_addrs()[0].clone()
    }

    /// Our connection with `peer`, once its upgrade finished.
    pub async fn connection(&self, peer: PeerId) -> Connection {
        crate::common::connection_from(self.node.endpoint(), peer).await
    }

    /// The next report of our sink.
    pub async fn sink_report(&self) -> Result<SinkReport, String> {
        let mut sinks = self.sinks.lock().await;
        tokio::time::timeout(Duration::from_secs(20), sinks.recv())
            .await
            .map_err(|_| "our sink reported nothing".to_owned())?
            .ok_or_else(|| "sink channel closed".to_owned())
    }

    /// The next outcome our probe saw ("eof" or "reset").
    pub async fn probe_report(&self) -> Result<&'static str, String> {
        let mut probes = self.probes.lock().await;
        tokio::time::timeout(Duration::from_secs(20), probes.recv())
            .await
            .map_err(|_| "our probe reported nothing".to_owned())?
            .ok_or_else(|| "probe channel closed".to_owned())
    }

    /// Three pings of ours over `conn`.
    pub async fn ping(&self, conn: &Connection) -> Result<(), String> {
        for _ in 0..3 {
            self.node
                .endpoint()
                .ping(conn)
                .await
                .map_err(|e| format!("our ping: {e}"))?;
        }
        Ok(())
    }

    /// [`STREAMS`] concurrent streams of ours to the peer's echo, each checked.
    pub async fn echo_many(&self, conn: &Connection) -> Result<(), String> {
        let mut tasks = Vec::with_capacity(STREAMS);
        for i in 0..super::streams() {
            let ep = self.node.endpoint().clone();
            let conn = conn.clone();
            tasks.push(tokio::spawn(async move {
                let data = crate::common::pattern(10_000 + i * 900, (i as u8).wrapping_mul(2));
                let stream = ep
                    .open_stream(&conn, ECHO)
                    .await
                    .map_err(|e| format!("stream {i}: open: {e}"))?;
                let back = crate::common::echo_round_trip(stream, &data).await;
                ensure(back == data, || {
                    format!("stream {i}: {} bytes back of {}", back.len(), data.len())
                })
            }));
        }
        for task in tasks {
            task.await.map_err(|e| format!("stream task: {e}"))??;
        }
        Ok(())
    }

    /// Proposals of a protocol the peer lacks: refused, reported, harmless.
    pub async fn unsupported(&self, conn: &Connection) -> Result<(), String> {
        let ep = self.node.endpoint();
        let err = match ep.open_stream_confirmed(conn, MISSING).await {
            Ok(_) => return Err("the peer accepted a protocol it does not have".into()),
            Err(e) => e.to_string(),
        };
        ensure(err.contains(MISSING), || format!("refusal names {err}"))?;
        // Lazily, with data to write: the write learns of the refusal, nothing is sent.
        let mut lazy = ep
            .open_stream(conn, MISSING)
            .await
            .map_err(|e| format!("lazy open: {e}"))?;
        let write = lazy.write_all(b"a request the peer must never see").await;
        let kind = write.err().map(|e| e.kind());
        ensure(kind == Some(std::io::ErrorKind::Unsupported), || {
            format!("lazy write after a refusal: {kind:?}")
        })?;
        drop(lazy);
        self.ping(conn).await
    }

    /// Our perf client against the peer's server.
    pub async fn perf(&self, conn: &Connection) -> Result<(), String> {
        let stream = self
            .node
            .endpoint()
            .open_stream(conn, perf::PROTOCOL)
            .await
            .map_err(|e| format!("open perf: {e}"))?;
        let report = perf::run_client(stream, PERF.0, PERF.1)
            .await
            .map_err(|e| format!("perf: {e}"))?;
        ensure(
            report.uploaded == PERF.0 && report.downloaded == PERF.1,
            || format!("{report:?}"),
        )
    }

    /// Sends [`CLOSE_BYTES`] to the peer's sink and closes the connection right after;
    /// what the sink must report.
    pub async fn send_then_close(&self, conn: &Connection) -> Result<SinkReport, String> {
        let data = crate::common::pattern(CLOSE_BYTES, 9);
        let mut stream = self
            .node
            .endpoint()
            .open_stream(conn, SINK)
            .await
            .map_err(|e| format!("open sink: {e}"))?;
        stream
            .write_all(&data)
            .await
            .map_err(|e| format!("write to sink: {e}"))?;
        stream
            .shutdown()
            .await
            .map_err(|e| format!("close sink stream: {e}"))?;
        drop(stream);
        conn.close().await;
        Ok((data.len(), sha256_hex(&data)))
    }

    /// Opens the peer's probe, sends some bytes, resets the stream.
    pub async fn reset_mid_stream(&self, conn: &Connection) -> Result<(), String> {
        let mut stream = self
            .node
            .endpoint()
            .open_stream(conn, PROBE)
            .await
            .map_err(|e| format!("open probe: {e}"))?;
        stream
            .write_all(&[7u8; 1000])
            .await
            .map_err(|e| format!("write to probe: {e}"))?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        stream.reset();
        Ok(())
    }

    /// After a reset by the peer: our probe saw a reset, and the connection still works.
    pub async fn survived_reset(&self, conn: &Connection) -> Result<(), String> {
        let outcome = self.probe_report().await?;
        ensure(outcome == "reset", || format!("our probe saw {outcome}"))?;
        self.ping(conn).await
    }
}
