//! Lazy protocol proposals only carry data where a refusal cannot make the peer misread it:
//! a write behind a proposal the peer is not known to speak waits for the confirmation, so
//! a listener that answers `na` never reads our data as its next proposal; once identify
//! listed the protocol, the first write goes out with the proposal (no round trip).

mod common;

use common::ECHO;
use futures::FutureExt;
use pheromone::Access;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(10);
const MISSING: &str = "/not/there/1.0.0";
const PROBE: &str = "/test/probe/1.0.0";

async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("test timed out")
}

/// A multistream message proposing `protocol`: what a careless lazy dialer's data may
/// look like to a listener that has just answered `na`.
fn proposal(protocol: &str) -> Vec<u8> {
    let mut out = vec![(protocol.len() + 1) as u8];
    out.extend_from_slice(protocol.as_bytes());
    out.push(b'\n');
    out
}

#[tokio::test]
async fn data_behind_a_refused_proposal_is_never_read_as_a_proposal() {
    bounded(async {
        let (ours, _) = common::endpoint().await;
        let (theirs, their_addr) = common::endpoint().await;
        let probed = Arc::new(AtomicUsize::new(0));
        let count = probed.clone();
        theirs.set_handler(
            PROBE,
            Arc::new(move |_conn, _stream| {
                count.fetch_add(1, Ordering::SeqCst);
                async {}.boxed()
            }),
            Access::Open,
        );
        let conn = ours.dial(&their_addr).await.expect("dial");
        assert_eq!(conn.remote_supports(MISSING), None, "nothing known yet");
        let mut stream = ours.open_stream(&conn, MISSING).await.expect("lazy open");
        // Data that is itself a valid proposal of a protocol the peer does speak.
        let err = stream
            .write_all(&proposal(PROBE))
            .await
            .expect_err("the write waits for the answer and sees the refusal");
        assert_eq!(err.kind(), std::io::ErrorKind::Unsupported, "{err}");
        let mut buf = [0u8; 1];
        let err = stream
            .read(&mut buf)
            .await
            .expect_err("reads report it too");
        assert_eq!(err.kind(), std::io::ErrorKind::Unsupported, "{err}");
        drop(stream);
        // A ping's round trip lets anything we might have sent arrive first.
        ours.ping(&conn).await.expect("ping after the refusal");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            probed.load(Ordering::SeqCst),
            0,
            "the peer took our data for a proposal"
        );
    })
    .await;
}

#[tokio::test]
async fn known_protocols_write_at_once_unknown_ones_wait_for_the_confirmation() {
    bounded(async {
        let (ours, _) = common::endpoint().await;
        let (_theirs, their_addr) = common::endpoint().await;
        let conn = ours.dial(&their_addr).await.expect("dial");

        // Before identify: the first write waits for the peer's confirmation.
        let mut stream = ours.open_stream(&conn, ECHO).await.expect("open");
        assert!(
            stream.write(b"x").now_or_never().is_none(),
            "an unconfirmed proposal of an unknown protocol holds the write"
        );
        let mut back = [0u8; 2];
        stream
            .write_all(b"y")
            .await
            .expect("write after the confirmation");
        stream.read_exact(&mut back[..1]).await.expect("echo");
        drop(stream);

        let info = ours.identify(&conn).await.expect("identify");
        assert!(info.protocols.iter().any(|p| p == ECHO));
        assert_eq!(conn.remote_supports(ECHO), Some(true));
        assert_eq!(conn.remote_supports(MISSING), Some(false));

        // After identify: the proposal and the first write leave together (0-RTT).
        let mut stream = ours.open_stream(&conn, ECHO).await.expect("open");
        let written = stream.write(b"ab").now_or_never();
        assert!(
            matches!(written, Some(Ok(2))),
            "a listed protocol writes at once: {written:?}"
        );
        stream.read_exact(&mut back).await.expect("echo");
        assert_eq!(&back, b"ab");

        // A second connection to the same peer starts out knowing its protocols.
        let second = ours.dial(&their_addr).await.expect("dial again");
        assert_eq!(second.remote_supports(ECHO), Some(true));
    })
    .await;
}
