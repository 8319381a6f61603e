//! Plain TCP where every 64 KiB chunk is sealed with AES-256-GCM (ring, in place, Noise's
//! AESGCM nonce: the counter big-endian) and opened on the receiver — the same loop as
//! `tcp_chacha`, so the two lines compare the ciphers alone. It is the ceiling of the
//! pheromone stack when two pheromone nodes negotiate AES-256-GCM. Throughput only.

use anyhow::Result;
use ring::aead::{Nonce, AES_256_GCM};

use crate::{
    report::ThroughputResult,
    stacks::tcp_chacha::{self, Suite},
};

/// The name printed in the `stack` field.
pub const NAME: &str = "tcp+aes256gcm";

/// AES-256-GCM with Noise's AESGCM nonce.
const SUITE: Suite = Suite {
    name: NAME,
    algorithm: &AES_256_GCM,
    nonce,
};

/// The nonce layout Noise uses for AESGCM: four zero bytes, then the 64-bit message
/// counter big-endian.
fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Bulk transfer of `total` bytes, sealed chunk by chunk.
pub async fn throughput(total: u64) -> Result<ThroughputResult> {
    tcp_chacha::throughput_with(SUITE, total).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::CHUNK;

    #[tokio::test]
    async fn sealed_frames_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let sink = tokio::spawn(async move { tcp_chacha::open_all(SUITE, &mut b).await });
        tcp_chacha::seal_all(SUITE, &mut a, 3 * CHUNK as u64 + 1)
            .await
            .unwrap();
        assert_eq!(sink.await.unwrap().unwrap(), 3 * CHUNK as u64 + 1);
    }

    #[tokio::test]
    async fn a_chacha_receiver_rejects_aes_frames() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let sink =
            tokio::spawn(async move { tcp_chacha::open_all(tcp_chacha::SUITE, &mut b).await });
        let _ = tcp_chacha::seal_all(SUITE, &mut a, 100).await;
        assert!(sink.await.unwrap().is_err());
    }

    #[test]
    fn nonce_is_big_endian() {
        assert_eq!(
            nonce(0x0102).as_ref(),
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]
        );
    }
}
