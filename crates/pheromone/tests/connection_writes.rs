//! The write path of a connection under concurrency, over real sockets on 127.0.0.1: many
//! streams writing at once (every byte checked), streams sharing the bounded send queue
//! fairly, and writers held back by a peer that stops reading.

mod common;

use common::raw::{ms_proposal, RawConn};
use common::{endpoint_with, pattern, ECHO};
use futures::FutureExt;
use pheromone::{Access, EndpointConfig, Keypair};
use pheromone_core::yamux::frame::{Flags, Header};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(60);
/// Reads and discards a stream, counting its bytes.
const SINK: &str = "/test/sink/1.0.0";
/// Writes to the stream until the writes fail, counting what they took.
const FLOOD: &str = "/test/flood/1.0.0";
/// Writes one short message, then waits for the stream to end.
const HELLO: &str = "/test/hello/1.0.0";

/// 256 streams of one connection write at the same time, each in many small pieces read
/// back between writes, so that the writes of many streams share frames and system calls:
/// every stream gets exactly its own bytes back, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_writing_at_once_each_get_their_own_bytes_back() {
    tokio::time::timeout(LIMIT, async {
        let (a, _) = endpoint_with(EndpointConfig::default()).await;
        let (_b, b_addr) = endpoint_with(EndpointConfig::default()).await;
        let conn = a.dial(&b_addr).await.expect("dial");
        let start = Arc::new(tokio::sync::Barrier::new(256));
        let mut tasks = Vec::new();
        for i in 0..256usize {
            let (a, conn, start) = (a.clone(), conn.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                let mut s = a.open_stream(&conn, ECHO).await.expect("open");
                let data = pattern(4000 + i * 37, i as u8);
                start.wait().await;
                let mut back = vec![0u8; data.len()];
                let mut at = 0;
                // Pieces of 1 to 300 bytes, each echoed before the next is written.
                let mut k = i;
                while at < data.len() {
                    let n = (1 + k * 7919 % 300).min(data.len() - at);
                    k += 1;
                    s.write_all(&data[at..at + n]).await.expect("write");
                    s.read_exact(&mut back[at..at + n]).await.expect("read");
                    at += n;
                }
                assert!(back == data, "stream {i}: the echo differs");
                s.shutdown().await.expect("shutdown");
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).await.expect("read to end");
                assert!(rest.is_empty(), "stream {i}: bytes after the echo");
            }));
        }
        for t in tasks {
            t.await.expect("stream task");
        }
    })
    .await
    .expect("test timed out");
}

/// Two streams that both want to send far more than the send queue holds share it: by
/// the time the first has delivered everything, the second has delivered most of its bytes
/// too (a stream may hold at most half the queue between two sends, and parked writers
/// take turns), rather than waiting for the first to finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_streams_share_the_send_queue() {
    tokio::time::timeout(LIMIT, async {
        const TOTAL: usize = 24 << 20;
        let mut config = EndpointConfig::default();
        config.connection.send_buffer_high_water = 256 * 1024;
        let (a, _) = endpoint_with(config.clone()).await;
        let (b, b_addr) = endpoint_with(config).await;
        // Bytes received per stream, by the number each sender writes first.
        let received: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let counters = received.clone();
        b.set_handler(
            SINK,
            Arc::new(move |_conn, mut stream| {
                let counters = counters.clone();
                async move {
                    let mut which = [0u8; 1];
                    if stream.read_exact(&mut which).await.is_err() {
                        return;
                    }
                    let counter = &counters[usize::from(which[0] & 1)];
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        counter.fetch_add(n, Ordering::SeqCst);
                    }
                    let _ = stream.write_all(b"k").await;
                    let _ = stream.shutdown().await;
                }
                .boxed()
            }),
            Access::Open,
        );
        let conn = a.dial(&b_addr).await.expect("dial");
        let mut streams = Vec::new();
        for which in 0..2u8 {
            let mut s = a.open_stream(&conn, SINK).await.expect("open");
            s.write_all(&[which]).await.expect("write");
            streams.push(s);
        }
        let data = Arc::new(pattern(64 * 1024, 3));
        let (first_done_tx, first_done) = tokio::sync::oneshot::channel::<(usize, [usize; 2])>();
        let first_done_tx = Arc::new(std::sync::Mutex::new(Some(first_done_tx)));
        let mut tasks = Vec::new();
        for (which, mut s) in streams.into_iter().enumerate() {
            let (data, received, first_done_tx) =
                (data.clone(), received.clone(), first_done_tx.clone());
            tasks.push(tokio::spawn(async move {
                let mut sent = 0;
                while sent < TOTAL {
                    s.write_all(&data).await.expect("write");
                    sent += data.len();
                }
                s.shutdown().await.expect("shutdown");
                let mut ack = [0u8; 1];
                s.read_exact(&mut ack).await.expect("ack");
                // Everything of this stream has arrived: note how far the other one is.
                let counts = [
                    received[0].load(Ordering::SeqCst),
                    received[1].load(Ordering::SeqCst),
                ];
                if let Some(tx) = first_done_tx.lock().expect("lock").take() {
                    let _ = tx.send((which, counts));
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer task");
        }
        let (first, counts) = first_done.await.expect("a stream finished");
        let other = counts[1 - first];
        assert_eq!(counts[first], TOTAL);
        assert!(
            other >= TOTAL / 2,
            "when stream {first} had delivered all {TOTAL} bytes, the other had only {other}"
        );
    })
    .await
    .expect("test timed out");
}

/// A peer that stops reading: the flooding writers on two streams fill the kernel's socket
/// buffers and their share of the bounded send queue, then wait. What they got accepted
/// stays within the kernel buffers plus about twice the high-water mark (the queue and the
/// ciphertext taken from it), nothing fails or panics, and a stream opened after that still
/// gets its short message into the queue: the flood cannot fill it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_behind_a_peer_that_stops_reading_are_held_back() {
    tokio::time::timeout(LIMIT, async {
        const HIGH_WATER: usize = 256 * 1024;
        let mut config = EndpointConfig::default();
        config.connection.send_buffer_high_water = HIGH_WATER;
        let (listener, _, sock) = common::listener_with(config).await;
        let accepted = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (counter, failures) = (accepted.clone(), failed.clone());
        listener.set_handler(
            FLOOD,
            Arc::new(move |_conn, mut stream| {
                let (counter, failures) = (counter.clone(), failures.clone());
                async move {
                    let chunk = pattern(64 * 1024, 5);
                    loop {
                        match stream.write(&chunk).await {
                            Ok(n) => counter.fetch_add(n as u64, Ordering::SeqCst),
                            Err(_) => {
                                failures.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                        };
                    }
                }
                .boxed()
            }),
            Access::Open,
        );
        let (hello_tx, hello_written) = tokio::sync::oneshot::channel();
        let hello_tx = Arc::new(std::sync::Mutex::new(Some(hello_tx)));
        listener.set_handler(
            HELLO,
            Arc::new(move |_conn, mut stream| {
                let hello_tx = hello_tx.clone();
                async move {
                    let written = stream.write_all(b"hello").await.is_ok();
                    if let Some(tx) = hello_tx.lock().expect("lock").take() {
                        let _ = tx.send(written);
                    }
                    let mut rest = Vec::new();
                    let _ = stream.read_to_end(&mut rest).await;
                }
                .boxed()
            }),
            Access::Open,
        );
        let mut raw = RawConn::connect(sock, &Keypair::generate(&mut rand::rngs::OsRng)).await;
        raw.wait_confirmed(Duration::from_secs(10)).await;
        // Two streams to the flood handler, each with a window of 1 GiB, so that only the
        // socket can hold the writers back.
        let grow = (1 << 30) - 256 * 1024;
        for id in [1u32, 3] {
            open_stream(&mut raw, id, FLOOD, grow).await;
        }
        raw.stop_reading();
        // Wait until the writers stop making progress (bounded in time and checks).
        let mut last = u64::MAX;
        let mut steady = 0;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = accepted.load(Ordering::SeqCst);
            if now == last && now > 0 {
                steady += 1;
                if steady == 5 {
                    break;
                }
            } else {
                steady = 0;
            }
            last = now;
        }
        assert_eq!(steady, 5, "the writers never stopped ({last} bytes taken)");
        let taken = accepted.load(Ordering::SeqCst);
        // Loopback socket buffers (both ends) hold at most a few tens of MiB here.
        let bound = (64 << 20) + 2 * HIGH_WATER as u64;
        assert!(
            taken > 0 && taken < bound,
            "the writers got {taken} bytes accepted"
        );

        // The socket stays full; a new stream's handler still gets its message queued.
        open_stream(&mut raw, 5, HELLO, 0).await;
        let written = tokio::time::timeout(Duration::from_secs(20), hello_written)
            .await
            .expect("the short write was locked out of the send queue")
            .expect("hello handler ran");
        assert!(written, "the short write failed");
        assert_eq!(failed.load(Ordering::SeqCst), 0, "a write failed");
        common::assert_no_panics();
    })
    .await
    .expect("test timed out");
}

/// Opens stream `id` from the raw peer with a lazy proposal of `protocol`, granting
/// `grow` bytes of window beyond the initial 256 KiB.
async fn open_stream(raw: &mut RawConn, id: u32, protocol: &str, grow: u32) {
    let proposal = ms_proposal(protocol);
    raw.send_frames(&[
        (Header::window_update(id, Flags::SYN, grow), &[]),
        (
            Header::data(id, Flags::NONE, proposal.len() as u32),
            &proposal,
        ),
    ])
    .await
    .expect("open stream");
}
