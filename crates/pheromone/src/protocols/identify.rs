//! `/ipfs/id/1.0.0`: the dialer of the stream asks, the listener answers with one
//! length-prefixed identify message and closes.
//!
//! The codec and its size cap live in [`pheromone_core::identify`]; this file only moves
//! the bytes, reading no more than the cap allows.

use pheromone_core::identify::{IdentifyError, IdentifyInfo};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol name.
pub const PROTOCOL: &str = "/ipfs/id/1.0.0";

/// Why an identify exchange failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IdentifyExchangeError {
    /// The stream failed.
    #[error("identify stream failed: {0}")]
    Io(#[from] std::io::Error),
    /// The message was malformed or too large.
    #[error("bad identify message: {0}")]
    Decode(#[from] IdentifyError),
    /// The peer sent more than the identify size cap.
    #[error("identify answer longer than {0} bytes")]
    TooLong(usize),
}

/// Sends `info` on `stream` and closes it.
pub async fn send<S>(mut stream: S, info: &IdentifyInfo) -> Result<(), IdentifyExchangeError>
where
    S: AsyncWrite + Unpin,
{
    let mut out = Vec::new();
    info.encode(&mut out)?;
    stream.write_all(&out).await?;
    stream.shutdown().await?;
    Ok(())
}

/// Reads an identify answer: everything the peer sends before closing (some
/// implementations split one message over several frames), at most
/// [`MAX_STREAM_LEN`](pheromone_core::identify::MAX_STREAM_LEN) bytes.
pub async fn receive<S>(stream: S) -> Result<IdentifyInfo, IdentifyExchangeError>
where
    S: AsyncRead + Unpin,
{
    let cap = pheromone_core::identify::MAX_STREAM_LEN;
    let mut buf = Vec::with_capacity(1024);
    // One byte past the cap tells an over-long answer from one exactly at it.
    stream.take(cap as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > cap {
        return Err(IdentifyExchangeError::TooLong(cap));
    }
    Ok(IdentifyInfo::decode_stream(&buf)?)
}
