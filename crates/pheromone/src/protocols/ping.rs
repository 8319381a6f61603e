//! `/ipfs/ping/1.0.0`: the dialer sends 32 random bytes, the listener echoes them.
//!
//! One stream carries any number of pings in sequence. The listener echoes until the
//! dialer closes its side, until a read times out, or until an echo cannot be written in
//! time (a dialer that withholds window would otherwise park the listener forever).

use rand::RngCore;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol name.
pub const PROTOCOL: &str = "/ipfs/ping/1.0.0";
/// Size of one ping payload, fixed by the spec.
pub const PAYLOAD_LEN: usize = 32;

/// Why a ping failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PingError {
    /// The stream failed.
    #[error("ping stream failed: {0}")]
    Io(#[from] std::io::Error),
    /// The echo did not match what we sent: the peer does not implement ping correctly.
    #[error("ping reply does not match the payload sent")]
    Mismatch,
    /// No reply within the limit.
    #[error("no ping reply within {0:?}")]
    Timeout(Duration),
}

/// Sends one ping on `stream` and waits for its echo; the round-trip time.
pub async fn ping<S>(stream: &mut S, timeout: Duration) -> Result<Duration, PingError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut payload = [0u8; PAYLOAD_LEN];
    rand::thread_rng().fill_bytes(&mut payload);
    let started = Instant::now();
    let round_trip = async {
        stream.write_all(&payload).await?;
        stream.flush().await?;
        let mut echo = [0u8; PAYLOAD_LEN];
        stream.read_exact(&mut echo).await?;
        Ok::<_, std::io::Error>(echo)
    };
    let echo = tokio::time::timeout(timeout, round_trip)
        .await
        .map_err(|_| PingError::Timeout(timeout))??;
    if echo != payload {
        return Err(PingError::Mismatch);
    }
    Ok(started.elapsed())
}

/// Answers pings on `stream` until the dialer closes it, stays silent for `idle_timeout`,
/// or does not take an echo within `reply_timeout`.
pub async fn serve<S>(
    mut stream: S,
    idle_timeout: Duration,
    reply_timeout: Duration,
) -> Result<(), PingError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = [0u8; PAYLOAD_LEN];
    loop {
        let read = tokio::time::timeout(idle_timeout, read_full_or_eof(&mut stream, &mut buf))
            .await
            .map_err(|_| PingError::Timeout(idle_timeout))??;
        if !read {
            let _ = stream.shutdown().await;
            return Ok(());
        }
        let echo = async {
            stream.write_all(&buf).await?;
            stream.flush().await
        };
        tokio::time::timeout(reply_timeout, echo)
            .await
            .map_err(|_| PingError::Timeout(reply_timeout))??;
    }
}

/// Fills `buf`; `Ok(false)` on a clean end of stream before the first byte.
async fn read_full_or_eof<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut [u8],
) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(false);
            }
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ping_over_a_duplex_pipe() {
        let (mut client, server) = tokio::io::duplex(1024);
        let server = tokio::spawn(serve(
            server,
            Duration::from_secs(5),
            Duration::from_secs(5),
        ));
        for _ in 0..3 {
            ping(&mut client, Duration::from_secs(5))
                .await
                .expect("ping");
        }
        client.shutdown().await.expect("shutdown");
        drop(client);
        server.await.expect("join").expect("serve");
    }

    /// A dialer that sends pings and never reads the echoes: the listener gives up after
    /// the reply timeout instead of waiting in `write_all` forever.
    #[tokio::test(start_paused = true)]
    async fn an_echo_nobody_reads_times_out() {
        // Room for one echo in each direction.
        let (mut client, server) = tokio::io::duplex(PAYLOAD_LEN);
        let server = tokio::spawn(serve(
            server,
            Duration::from_secs(3600),
            Duration::from_secs(10),
        ));
        // The first echo fills the way back; the second has nowhere to go.
        for _ in 0..2 {
            client.write_all(&[1u8; PAYLOAD_LEN]).await.expect("write");
        }
        let ended = tokio::time::timeout(Duration::from_secs(600), server)
            .await
            .expect("the listener is still parked on the echo")
            .expect("join");
        assert!(matches!(ended, Err(PingError::Timeout(t)) if t == Duration::from_secs(10)));
        drop(client);
    }

    #[tokio::test]
    async fn a_wrong_echo_is_a_mismatch() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            let mut buf = [0u8; PAYLOAD_LEN];
            server.read_exact(&mut buf).await.expect("read");
            buf[0] ^= 1;
            server.write_all(&buf).await.expect("write");
        });
        assert!(matches!(
            ping(&mut client, Duration::from_secs(5)).await,
            Err(PingError::Mismatch)
        ));
    }
}
