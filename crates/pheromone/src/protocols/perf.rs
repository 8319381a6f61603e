//! `/perf/1.0.0`, the libp2p benchmarking protocol.
//!
//! The client sends the number of bytes it wants back (u64, big-endian), uploads any
//! amount and closes its write side; the server reads to the end, then sends the requested
//! bytes and closes. The spec says it must not be on by default: it lets a client make the
//! server do a lot of work, so the server caps what it sends back.

use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol name.
pub const PROTOCOL: &str = "/perf/1.0.0";
/// Size of the writes both sides use.
const BLOCK: usize = 64 * 1024;

/// Why a perf run failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PerfError {
    /// The stream failed.
    #[error("perf stream failed: {0}")]
    Io(#[from] std::io::Error),
    /// The server sent a different number of bytes than asked for.
    #[error("server sent {got} bytes, expected {expected}")]
    WrongLength {
        /// Bytes received.
        got: u64,
        /// Bytes requested.
        expected: u64,
    },
    /// The client asked for more than this server will send.
    #[error("client asked for {asked} bytes, more than the server's limit of {limit}")]
    TooMuch {
        /// Bytes requested.
        asked: u64,
        /// The server's cap.
        limit: u64,
    },
}

/// What a client run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerfReport {
    /// Bytes uploaded.
    pub uploaded: u64,
    /// Bytes downloaded.
    pub downloaded: u64,
    /// Time from the first byte sent to the write side closed.
    pub upload_time: Duration,
    /// Time from the write side closed to the last byte received.
    pub download_time: Duration,
}

/// Runs one perf exchange: uploads `upload` bytes, then downloads `download` bytes.
pub async fn run_client<S>(
    mut stream: S,
    upload: u64,
    download: u64,
) -> Result<PerfReport, PerfError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    stream.write_all(&download.to_be_bytes()).await?;
    let block = vec![0u8; BLOCK];
    let mut left = upload;
    while left > 0 {
        let n = left.min(BLOCK as u64) as usize;
        stream.write_all(&block[..n]).await?;
        left -= n as u64;
    }
    stream.shutdown().await?;
    let upload_time = started.elapsed();
    let got = drain(&mut stream).await?;
    if got != download {
        return Err(PerfError::WrongLength {
            got,
            expected: download,
        });
    }
    Ok(PerfReport {
        uploaded: upload,
        downloaded: got,
        upload_time,
        download_time: started.elapsed() - upload_time,
    })
}

/// Serves one perf stream, refusing requests to send back more than `max_download` bytes.
pub async fn serve<S>(mut stream: S, max_download: u64) -> Result<u64, PerfError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut len = [0u8; 8];
    stream.read_exact(&mut len).await?;
    let asked = u64::from_be_bytes(len);
    if asked > max_download {
        return Err(PerfError::TooMuch {
            asked,
            limit: max_download,
        });
    }
    let received = drain(&mut stream).await?;
    let block = vec![0u8; BLOCK];
    let mut left = asked;
    while left > 0 {
        let n = left.min(BLOCK as u64) as usize;
        stream.write_all(&block[..n]).await?;
        left -= n as u64;
    }
    stream.shutdown().await?;
    Ok(received)
}

/// Reads to the end of the stream, counting bytes.
async fn drain<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<u64> {
    let mut buf = vec![0u8; BLOCK];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn upload_and_download_over_a_duplex_pipe() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(serve(server, 1 << 30));
        let report = run_client(client, 1_000_000, 300_000)
            .await
            .expect("client");
        assert_eq!(report.uploaded, 1_000_000);
        assert_eq!(report.downloaded, 300_000);
        assert_eq!(server.await.expect("join").expect("serve"), 1_000_000);
    }

    #[tokio::test]
    async fn the_server_caps_what_it_sends() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(serve(server, 10));
        let _ = run_client(client, 0, 11).await;
        assert!(matches!(
            server.await.expect("join"),
            Err(PerfError::TooMuch {
                asked: 11,
                limit: 10
            })
        ));
    }
}
