//! The byte patterns every stack runs, written once over tokio's `AsyncRead`/`AsyncWrite`
//! so that each stack does exactly the same work and ratios between stacks are fair:
//! bulk send/sink with an acknowledgement, echo, sequential round trips, one ping.
//! Nothing here opens sockets or knows which stack it runs on; stacks hand in streams.

use std::{
    io,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::Barrier,
    task::JoinHandle,
};

/// Size of each application write in the throughput bench.
pub const CHUNK: usize = 64 * 1024;
/// Size of a request and of a response in the rr bench.
pub const MESSAGE: usize = 64;
/// Size of a `/ipfs/ping/1.0.0` payload.
pub const PING: usize = 32;
/// Upper bound on round trips per stream spent warming up before an rr measurement.
const WARMUP_PER_STREAM_MAX: usize = 200;

/// A spawned task that is aborted when this guard is dropped, so a bench that fails or
/// times out never leaves a server loop behind.
pub struct AbortOnDrop<T>(pub JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    /// Waits for the task to finish.
    pub async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Wall and CPU clocks started together around a measured section.
pub struct Measure {
    wall: Instant,
    cpu: Duration,
}

impl Measure {
    /// Starts both clocks.
    pub fn start() -> Self {
        Self {
            cpu: crate::report::process_cpu_time(),
            wall: Instant::now(),
        }
    }

    /// Returns elapsed wall time and process CPU time since [`Measure::start`].
    pub fn stop(&self) -> (Duration, Duration) {
        let wall = self.wall.elapsed();
        let cpu = crate::report::process_cpu_time().saturating_sub(self.cpu);
        (wall, cpu)
    }
}

/// Payload bytes: not all zeroes, so nothing along the way can shortcut them.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Sender side of the throughput bench: an 8-byte big-endian length, `total` bytes in
/// [`CHUNK`]-sized writes, then waits for the receiver's one-byte acknowledgement, so the
/// caller's clock stops only once every byte has arrived.
pub async fn send_bulk<S>(stream: &mut S, total: u64) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let chunk = pattern(CHUNK);
    stream.write_all(&total.to_be_bytes()).await?;
    let mut left = total;
    while left > 0 {
        let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        stream.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    stream.flush().await?;
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack).await?;
    Ok(())
}

/// Receiver side of the throughput bench: reads the length, discards that many bytes,
/// acknowledges. Returns the byte count.
pub async fn sink_bulk<S>(stream: &mut S) -> io::Result<u64>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await?;
    let total = u64::from_be_bytes(header);
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    while got < total {
        let want = usize::try_from(total - got).map_or(CHUNK, |l| l.min(CHUNK));
        let n = stream.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n as u64;
    }
    stream.write_all(&[1]).await?;
    stream.flush().await?;
    Ok(got)
}

/// Echoes whatever arrives until the peer closes. Serves rr requests (responses are the
/// requests echoed, so pipelined requests may be answered in one write) and pings.
pub async fn echo<S>(mut stream: S) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n]).await?;
        stream.flush().await?;
    }
}

/// `count` sequential round trips of [`MESSAGE`] bytes; appends each latency to
/// `latencies` when given.
pub async fn round_trips<S>(
    stream: &mut S,
    count: usize,
    mut latencies: Option<&mut Vec<Duration>>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = pattern(MESSAGE);
    let mut response = [0u8; MESSAGE];
    for _ in 0..count {
        let sent = Instant::now();
        stream.write_all(&request).await?;
        stream.flush().await?;
        stream.read_exact(&mut response).await?;
        if let Some(l) = latencies.as_deref_mut() {
            l.push(sent.elapsed());
        }
    }
    if response[..] != request[..] && count > 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "echo mismatch"));
    }
    Ok(())
}

/// One `/ipfs/ping/1.0.0` exchange: 32 random bytes out (as the ping spec asks), the
/// same 32 bytes back.
pub async fn ping<S>(stream: &mut S) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let payload: [u8; PING] = rand::random();
    stream.write_all(&payload).await?;
    stream.flush().await?;
    let mut back = [0u8; PING];
    stream.read_exact(&mut back).await?;
    if back != payload {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "ping echo mismatch",
        ));
    }
    Ok(())
}

/// Runs the rr bench over already-open streams of one connection: each stream warms up,
/// then all start together and each does its share of `requests` sequential round trips.
/// Returns every latency and the wall time from the common start to the last response.
pub async fn rr_on_streams<S>(
    streams: Vec<S>,
    requests: usize,
) -> io::Result<(Vec<Duration>, Duration)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let per_stream = requests.div_ceil(streams.len().max(1));
    let warmup = (per_stream / 10).clamp(1, WARMUP_PER_STREAM_MAX);
    let barrier = Arc::new(Barrier::new(streams.len() + 1));
    let mut tasks = Vec::with_capacity(streams.len());
    for mut stream in streams {
        let barrier = barrier.clone();
        tasks.push(AbortOnDrop(tokio::spawn(async move {
            // Warm-up errors surface after the barrier so no task is left waiting on it.
            let warm = round_trips(&mut stream, warmup, None).await;
            barrier.wait().await;
            warm?;
            let mut latencies = Vec::with_capacity(per_stream);
            round_trips(&mut stream, per_stream, Some(&mut latencies)).await?;
            Ok::<_, io::Error>(latencies)
        })));
    }
    barrier.wait().await;
    let start = Instant::now();
    let mut all = Vec::with_capacity(per_stream * tasks.len());
    for task in tasks {
        let latencies = task.join().await.map_err(io::Error::other)??;
        all.extend(latencies);
    }
    Ok((all, start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bulk_send_and_sink_agree() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let sink = tokio::spawn(async move { sink_bulk(&mut b).await });
        send_bulk(&mut a, 3 * CHUNK as u64 + 17).await.unwrap();
        assert_eq!(sink.await.unwrap().unwrap(), 3 * CHUNK as u64 + 17);
    }

    #[tokio::test]
    async fn round_trips_and_ping_against_echo() {
        let (mut a, b) = tokio::io::duplex(4096);
        let server = tokio::spawn(echo(b));
        let mut lat = Vec::new();
        round_trips(&mut a, 10, Some(&mut lat)).await.unwrap();
        assert_eq!(lat.len(), 10);
        ping(&mut a).await.unwrap();
        drop(a);
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn rr_on_many_streams_counts_every_request() {
        let mut clients = Vec::new();
        for _ in 0..4 {
            let (a, b) = tokio::io::duplex(4096);
            tokio::spawn(echo(b));
            clients.push(a);
        }
        let (lat, wall) = rr_on_streams(clients, 100).await.unwrap();
        assert_eq!(lat.len(), 100);
        assert!(wall > Duration::ZERO);
    }

    #[tokio::test]
    async fn sink_reports_truncated_transfer() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        a.write_all(&100u64.to_be_bytes()).await.unwrap();
        a.write_all(&[0u8; 10]).await.unwrap();
        drop(a);
        assert!(sink_bulk(&mut b).await.is_err());
    }
}
