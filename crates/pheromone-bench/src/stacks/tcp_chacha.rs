//! Plain TCP where every 64 KiB chunk is sealed with ChaCha20-Poly1305 (ring, in place,
//! Noise-style counter nonce) behind a 4-byte length prefix and opened on the receiver:
//! the crypto ceiling any encrypted transport on this machine can reach. Throughput only;
//! there is no handshake, so rr and connect would only repeat the plain-TCP figures.
//! The sealing loop is shared with `tcp_aes`, which differs only in its [`Suite`].

use anyhow::{anyhow, bail, ensure, Result};
use ring::aead::{Aad, Algorithm, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{
    report::ThroughputResult,
    stacks::tcp::connected_pair,
    workload::{self, AbortOnDrop, Measure, CHUNK},
};

/// The name printed in the `stack` field.
pub const NAME: &str = "tcp+chacha20poly1305";

/// Tag length of both AEADs (Poly1305 and GHASH).
const TAG: usize = 16;
/// Bytes before each sealed chunk: its length (ciphertext + tag), big-endian.
const PREFIX: usize = 4;
/// A fixed key: both ends live in this process and the key exchange is not measured.
const KEY: [u8; 32] = [0x42; 32];

/// An AEAD and the Noise nonce layout that goes with it.
#[derive(Clone, Copy)]
pub struct Suite {
    /// The stack name printed for it.
    pub name: &'static str,
    /// ring's algorithm.
    pub algorithm: &'static Algorithm,
    /// The 12-byte nonce for a message counter.
    pub nonce: fn(u64) -> Nonce,
}

/// ChaCha20-Poly1305 with Noise's ChaChaPoly nonce.
pub const SUITE: Suite = Suite {
    name: NAME,
    algorithm: &CHACHA20_POLY1305,
    nonce,
};

impl Suite {
    fn key(&self) -> Result<LessSafeKey> {
        let unbound = UnboundKey::new(self.algorithm, &KEY).map_err(|_| anyhow!("bad key"))?;
        Ok(LessSafeKey::new(unbound))
    }
}

/// The nonce layout Noise uses for ChaChaPoly: four zero bytes, then the 64-bit message
/// counter little-endian.
fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Bulk transfer of `total` bytes, sealed chunk by chunk.
pub async fn throughput(total: u64) -> Result<ThroughputResult> {
    throughput_with(SUITE, total).await
}

/// Bulk transfer of `total` bytes, sealed chunk by chunk with `suite`.
pub async fn throughput_with(suite: Suite, total: u64) -> Result<ThroughputResult> {
    let (mut client, mut server) = connected_pair().await?;
    let sink = AbortOnDrop(tokio::spawn(
        async move { open_all(suite, &mut server).await },
    ));
    let measure = Measure::start();
    seal_all(suite, &mut client, total).await?;
    let (wall, cpu) = measure.stop();
    let got = sink.join().await??;
    ensure!(got == total, "receiver got {got} of {total} bytes");
    Ok(ThroughputResult::new(suite.name, total, wall, cpu))
}

/// Sends an 8-byte plaintext length, then `total` bytes as sealed frames of up to
/// [`CHUNK`] plaintext bytes, then waits for the one-byte acknowledgement.
pub(crate) async fn seal_all<S>(suite: Suite, stream: &mut S, total: u64) -> Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let key = suite.key()?;
    let plaintext = workload::pattern(CHUNK);
    let mut frame = vec![0u8; PREFIX + CHUNK + TAG];
    stream.write_all(&total.to_be_bytes()).await?;
    let mut left = total;
    let mut counter = 0u64;
    while left > 0 {
        let n = usize::try_from(left).map_or(CHUNK, |l| l.min(CHUNK));
        // Copy the application's bytes into the frame and seal them there: the copy a
        // real transport makes too, and no allocation per chunk.
        let body = &mut frame[PREFIX..PREFIX + n];
        body.copy_from_slice(&plaintext[..n]);
        let tag = key
            .seal_in_place_separate_tag((suite.nonce)(counter), Aad::empty(), body)
            .map_err(|_| anyhow!("seal failed"))?;
        frame[PREFIX + n..PREFIX + n + TAG].copy_from_slice(tag.as_ref());
        let sealed_len = u32::try_from(n + TAG)?;
        frame[..PREFIX].copy_from_slice(&sealed_len.to_be_bytes());
        stream.write_all(&frame[..PREFIX + n + TAG]).await?;
        counter += 1;
        left -= n as u64;
    }
    stream.flush().await?;
    let mut ack = [0u8; 1];
    stream.read_exact(&mut ack).await?;
    Ok(())
}

/// Reads the length, then opens frames until that many plaintext bytes have arrived, then
/// acknowledges. Returns the plaintext byte count.
pub(crate) async fn open_all<S>(suite: Suite, stream: &mut S) -> Result<u64>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let key = suite.key()?;
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await?;
    let total = u64::from_be_bytes(header);
    let mut buf = vec![0u8; CHUNK + TAG];
    let mut got = 0u64;
    let mut counter = 0u64;
    while got < total {
        let mut prefix = [0u8; PREFIX];
        stream.read_exact(&mut prefix).await?;
        let len = usize::try_from(u32::from_be_bytes(prefix))?;
        if !(TAG + 1..=CHUNK + TAG).contains(&len) {
            bail!("sealed frame of {len} bytes is out of range");
        }
        let sealed = &mut buf[..len];
        stream.read_exact(sealed).await?;
        let plain = key
            .open_in_place((suite.nonce)(counter), Aad::empty(), sealed)
            .map_err(|_| anyhow!("frame {counter} failed authentication"))?;
        got += plain.len() as u64;
        counter += 1;
    }
    stream.write_all(&[1]).await?;
    stream.flush().await?;
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sealed_frames_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let sink = tokio::spawn(async move { open_all(SUITE, &mut b).await });
        seal_all(SUITE, &mut a, 2 * CHUNK as u64 + 5).await.unwrap();
        assert_eq!(sink.await.unwrap().unwrap(), 2 * CHUNK as u64 + 5);
    }

    #[tokio::test]
    async fn tampered_frame_is_rejected() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let key = SUITE.key().unwrap();
        let mut body = [7u8; 10];
        let tag = key
            .seal_in_place_separate_tag(nonce(0), Aad::empty(), &mut body)
            .unwrap();
        body[3] ^= 1;
        a.write_all(&10u64.to_be_bytes()).await.unwrap();
        a.write_all(&26u32.to_be_bytes()).await.unwrap();
        a.write_all(&body).await.unwrap();
        a.write_all(tag.as_ref()).await.unwrap();
        assert!(open_all(SUITE, &mut b).await.is_err());
    }

    #[tokio::test]
    async fn oversized_frame_is_rejected_before_reading_it() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&10u64.to_be_bytes()).await.unwrap();
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(open_all(SUITE, &mut b).await.is_err());
    }
}
