//! Owned writes ([`Stream::poll_write_owned`]) over real sockets: large chunks sealed in
//! place by the writer, small ones copied, mixed with ordinary writes on streams writing
//! at the same time; every byte comes back in order.

use crate::{Access, Endpoint, EndpointConfig, Keypair};
use bytes::Bytes;
use futures::FutureExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ECHO: &str = "/test/echo/1.0.0";

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn echo_endpoint(config: EndpointConfig) -> (Endpoint, crate::Multiaddr) {
    let endpoint = Endpoint::new(Keypair::generate(&mut rand::rngs::OsRng), config);
    let addr = endpoint
        .listen(&"/ip4/127.0.0.1/tcp/0".parse().expect("addr"))
        .expect("listen");
    endpoint.set_handler(
        ECHO,
        Arc::new(|_conn, mut stream| {
            async move {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = stream.shutdown().await;
            }
            .boxed()
        }),
        Access::Open,
    );
    (endpoint, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_and_copied_writes_interleave_intact_on_concurrent_streams() {
    tokio::time::timeout(Duration::from_secs(60), async {
        // A small queue, so owned bodies and copied bytes share it and writers park.
        let mut config = EndpointConfig::default();
        config.connection.send_buffer_high_water = 128 * 1024;
        let (a, _) = echo_endpoint(config.clone()).await;
        let (_b, b_addr) = echo_endpoint(config).await;
        let conn = a.dial(&b_addr).await.expect("dial");
        let mut tasks = Vec::new();
        for i in 0..6u8 {
            let (a, conn) = (a.clone(), conn.clone());
            tasks.push(tokio::spawn(async move {
                // Owned chunks below and above the in-place size, and plain writes.
                let sizes: Vec<usize> = (0..30)
                    .map(|k| match k % 3 {
                        0 => 100 + k * 17,
                        1 => 16 * 1024 + k * 9_001,
                        _ => 300_000 - k * 5_000,
                    })
                    .collect();
                let data = pattern(sizes.iter().sum(), i);
                let mut s = a.open_stream(&conn, ECHO).await.expect("open");
                let (mut r, mut w) = (Vec::new(), 0usize);
                let mut buf = vec![0u8; 64 * 1024];
                let mut at = 0;
                for (k, &n) in sizes.iter().enumerate() {
                    let piece = &data[at..at + n];
                    at += n;
                    if k % 4 == 3 {
                        s.write_all(piece).await.expect("write");
                    } else {
                        let mut chunk = Bytes::copy_from_slice(piece);
                        while !chunk.is_empty() {
                            std::future::poll_fn(|cx| s.poll_write_owned(cx, &mut chunk))
                                .await
                                .expect("owned write");
                        }
                    }
                    w += n;
                    // Read back what has arrived, so the echo never stalls on us.
                    while r.len() + 256 * 1024 < w {
                        let got = s.read(&mut buf).await.expect("read");
                        assert!(got > 0, "early end");
                        r.extend_from_slice(&buf[..got]);
                    }
                }
                s.shutdown().await.expect("shutdown");
                s.read_to_end(&mut r).await.expect("read to end");
                assert!(
                    r == data,
                    "stream {i}: {} bytes back of {}",
                    r.len(),
                    data.len()
                );
            }));
        }
        for t in tasks {
            t.await.expect("stream task");
        }
    })
    .await
    .expect("test timed out");
}
