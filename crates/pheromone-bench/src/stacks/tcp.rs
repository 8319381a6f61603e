//! Plain TCP on 127.0.0.1 with `TCP_NODELAY`: the floor every other stack is measured
//! against. No framing, no encryption, no multiplexing; rr at concurrency > 1 pipelines
//! requests on the one connection instead of opening streams.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, BufReader},
    net::{
        tcp::{OwnedReadHalf, OwnedWriteHalf},
        TcpListener, TcpStream,
    },
    sync::mpsc,
};

use crate::{
    report::{ConnectResult, RrResult, ThroughputResult},
    workload::{self, AbortOnDrop, Measure, MESSAGE},
};

/// The name printed in the `stack` field.
pub const NAME: &str = "tcp";

/// A listener on an ephemeral loopback port and a connected client, both with
/// `TCP_NODELAY`.
pub(crate) async fn connected_pair() -> Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let client = client.context("connect")?;
    let (server, _) = accepted.context("accept")?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    Ok((client, server))
}

/// Bulk transfer of `total` bytes over one connection.
pub async fn throughput(total: u64) -> Result<ThroughputResult> {
    let (mut client, mut server) = connected_pair().await?;
    let sink = AbortOnDrop(tokio::spawn(async move {
        workload::sink_bulk(&mut server).await
    }));
    let measure = Measure::start();
    workload::send_bulk(&mut client, total).await?;
    let (wall, cpu) = measure.stop();
    let got = sink.join().await??;
    ensure!(got == total, "receiver got {got} of {total} bytes");
    Ok(ThroughputResult::new(NAME, total, wall, cpu))
}

/// `requests` round trips of 64 bytes with `concurrency` outstanding on one connection.
pub async fn request_response(concurrency: usize, requests: usize) -> Result<RrResult> {
    let (client, server) = connected_pair().await?;
    let _server = AbortOnDrop(tokio::spawn(workload::echo(server)));
    if concurrency <= 1 {
        let (mut latencies, wall) = workload::rr_on_streams(vec![client], requests).await?;
        return Ok(RrResult::new(NAME, 1, &mut latencies, wall));
    }
    let (read, write) = client.into_split();
    let mut read = BufReader::with_capacity(workload::CHUNK, read);
    let mut write = write;
    let warmup = (requests / 10).clamp(concurrency, 10 * concurrency);
    pipelined(&mut read, &mut write, concurrency, warmup).await?;
    let start = Instant::now();
    let mut latencies = pipelined(&mut read, &mut write, concurrency, requests).await?;
    let wall = start.elapsed();
    Ok(RrResult::new(NAME, concurrency, &mut latencies, wall))
}

/// Keeps `window` requests in flight: the writer task sends a request whenever a slot is
/// free and queues its send time; the reader takes responses in order and matches them
/// with the queued times. The bounded channel is the window.
async fn pipelined(
    read: &mut BufReader<OwnedReadHalf>,
    write: &mut OwnedWriteHalf,
    window: usize,
    count: usize,
) -> Result<Vec<Duration>> {
    let (sent_tx, mut sent_rx) = mpsc::channel::<Instant>(window);
    let request = workload::pattern(MESSAGE);
    let writer = async move {
        for _ in 0..count {
            // Reserve the slot first so a request is only written when the window has room.
            let permit = sent_tx.reserve().await.context("reader gone")?;
            permit.send(Instant::now());
            write.write_all(&request).await?;
        }
        Ok::<_, anyhow::Error>(())
    };
    let reader = async {
        let mut latencies = Vec::with_capacity(count);
        let mut response = [0u8; MESSAGE];
        for _ in 0..count {
            read.read_exact(&mut response).await?;
            // The writer queued this time before writing the request, so it is already
            // there; taking it frees the slot for the next request.
            let sent = sent_rx.recv().await.context("writer gone")?;
            latencies.push(sent.elapsed());
        }
        Ok::<_, anyhow::Error>(latencies)
    };
    let (written, latencies) = tokio::join!(writer, reader);
    written?;
    latencies
}

/// `n` sequential connections: dial, one 32-byte echo, close.
pub async fn connect(n: usize) -> Result<ConnectResult> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let _server = AbortOnDrop(tokio::spawn(async move {
        for _ in 0..n {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(workload::echo(stream));
        }
        Ok::<_, std::io::Error>(())
    }));
    let mut latencies = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t0 = Instant::now();
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        workload::ping(&mut stream).await?;
        latencies.push(t0.elapsed());
        stream.shutdown().await?;
        drop(stream);
    }
    let wall = start.elapsed();
    Ok(ConnectResult::new(NAME, &mut latencies, wall))
}
