//! Interop with rust-libp2p at the edges: refused protocols in both directions (lazy and
//! confirmed), a bulk transfer far past the initial yamux window each way, our keep-alive
//! pings answered, connections closed gracefully from either side, and libp2p dialling us
//! while expecting another peer.

mod common;
mod libp2p_peer;

use common::{connection_from, echo_round_trip, pattern, ECHO};
use libp2p::{swarm::SwarmEvent, StreamProtocol};
use libp2p_peer::{to_libp2p_peer, Libp2pPeer};
use pheromone::{ConnectionError, EndpointConfig, EndpointEvent};
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::compat::FuturesAsyncReadCompatExt as _;

/// Each test finishes in well under a second; the bound only turns a hang into a failure.
const LIMIT: Duration = Duration::from_secs(10);
/// Sixteen times yamux's initial 256 KiB stream window: the transfer lives on window updates.
const BULK: usize = 4 << 20;
const MISSING: &str = "/not/there/1.0.0";

async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("test timed out")
}

#[tokio::test]
async fn libp2p_refusing_our_protocol_is_reported_and_harmless() {
    bounded(async {
        let (ours, _) = common::endpoint().await;
        let theirs = Libp2pPeer::spawn(ECHO).await;
        let conn = ours.dial(&theirs.addr()).await.expect("dial libp2p");
        let err = ours
            .open_stream_confirmed(&conn, MISSING)
            .await
            .expect_err("libp2p does not speak it");
        assert!(err.to_string().contains(MISSING), "{err}");
        // Lazily: the request bytes follow the proposal unasked; libp2p answers `na` and we
        // report the refusal on the first read.
        let mut lazy = ours.open_stream(&conn, MISSING).await.expect("lazy open");
        let _ = lazy.write_all(b"a request libp2p never sees").await;
        let mut buf = [0u8; 1];
        let err = lazy.read(&mut buf).await.expect_err("refusal on read");
        assert_eq!(err.kind(), std::io::ErrorKind::Unsupported, "{err}");
        ours.ping(&conn).await.expect("ping after the refusals");
    })
    .await;
}

#[tokio::test]
async fn us_refusing_a_libp2p_protocol_is_reported_and_harmless() {
    bounded(async {
        let (ours, _) = common::endpoint().await;
        let mut theirs = Libp2pPeer::spawn(ECHO).await;
        let conn = ours.dial(&theirs.addr()).await.expect("dial libp2p");
        let us = to_libp2p_peer(&ours.peer_id());
        theirs.wait_connected(us).await;
        let err = theirs
            .control
            .open_stream(us, StreamProtocol::new(MISSING))
            .await
            .expect_err("we do not speak it");
        assert!(
            matches!(err, libp2p_stream::OpenStreamError::UnsupportedProtocol(ref p) if p.as_ref() == MISSING),
            "{err:?}"
        );
        ours.ping(&conn).await.expect("ping after the refusal");
    })
    .await;
}

#[tokio::test]
async fn bulk_echo_past_the_initial_window_each_way() {
    bounded(async {
        let (ours, _) = common::endpoint().await;
        let mut theirs = Libp2pPeer::spawn(ECHO).await;
        let conn = ours.dial(&theirs.addr()).await.expect("dial libp2p");
        let us = to_libp2p_peer(&ours.peer_id());
        theirs.wait_connected(us).await;
        let data = pattern(BULK, 5);
        let stream = ours.open_stream(&conn, ECHO).await.expect("open to libp2p");
        let back = echo_round_trip(stream, &data).await;
        assert!(back == data, "ours: {} of {} bytes back", back.len(), BULK);
        let stream = theirs
            .control
            .open_stream(us, StreamProtocol::new(ECHO))
            .await
            .expect("libp2p opens to us");
        let back = echo_round_trip(stream.compat(), &data).await;
        assert!(
            back == data,
            "libp2p's: {} of {} bytes back",
            back.len(),
            BULK
        );
    })
    .await;
}

#[tokio::test]
async fn libp2p_answers_our_keep_alive_pings() {
    bounded(async {
        let mut config = EndpointConfig::default();
        config.connection.yamux.keepalive_interval = Some(Duration::from_millis(20));
        config.connection.yamux.keepalive_timeout = Duration::from_secs(2);
        let (ours, _) = common::endpoint_with(config).await;
        let theirs = Libp2pPeer::spawn(ECHO).await;
        let conn = ours.dial(&theirs.addr()).await.expect("dial libp2p");
        // An answered yamux ping with our nonce is what sets the round-trip time.
        while conn.rtt().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Several more intervals with no traffic but the pings: still up.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!conn.is_closed());
        ours.ping(&conn).await.expect("ping");
    })
    .await;
}

#[tokio::test]
async fn our_close_is_seen_by_libp2p() {
    bounded(async {
        let (ours, _) = common::endpoint().await;
        let mut theirs = Libp2pPeer::spawn(ECHO).await;
        let conn = ours.dial(&theirs.addr()).await.expect("dial libp2p");
        let us = to_libp2p_peer(&ours.peer_id());
        theirs.wait_connected(us).await;
        conn.close().await;
        assert!(matches!(
            conn.closed().await,
            ConnectionError::ClosedLocally { .. }
        ));
        theirs
            .wait_for(|event| match event {
                SwarmEvent::ConnectionClosed { peer_id, .. } if peer_id == us => Some(()),
                _ => None,
            })
            .await;
    })
    .await;
}

#[tokio::test]
async fn libp2p_closing_ends_our_connection_and_streams() {
    bounded(async {
        let (ours, our_addr) = common::endpoint().await;
        let mut events = ours.events();
        let theirs = Libp2pPeer::spawn(ECHO).await;
        theirs
            .dial(libp2p_peer::to_libp2p_addr(&our_addr))
            .await
            .expect("libp2p dials us");
        let conn = connection_from(&ours, libp2p_peer::from_libp2p_peer(&theirs.peer_id)).await;
        let mut stream = ours.open_stream(&conn, ECHO).await.expect("open");
        stream.write_all(b"abc").await.expect("write");
        let mut buf = [0u8; 3];
        stream.read_exact(&mut buf).await.expect("echo");
        theirs.disconnect(to_libp2p_peer(&ours.peer_id())).await;
        let error = loop {
            if let EndpointEvent::ConnectionClosed { info, error } =
                events.recv().await.expect("event")
            {
                assert_eq!(info.id, conn.id());
                break error;
            }
        };
        assert!(
            matches!(error, ConnectionError::ClosedByRemote { .. }),
            "{error}"
        );
        let err = stream
            .read(&mut buf)
            .await
            .expect_err("the stream ends with the connection");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted, "{err}");
        assert!(ours.connections().is_empty());
    })
    .await;
}

#[tokio::test]
async fn libp2p_expecting_another_peer_leaves_nothing_behind() {
    bounded(async {
        let (ours, our_addr) = common::endpoint().await;
        let theirs = Libp2pPeer::spawn(ECHO).await;
        let someone_else = pheromone::Keypair::generate(&mut rand::rngs::OsRng).peer_id();
        let wrong = our_addr.without_p2p().with_p2p(someone_else).expect("addr");
        let err = theirs
            .dial(libp2p_peer::to_libp2p_addr(&wrong))
            .await
            .expect_err("libp2p must refuse us");
        // libp2p names who actually answered: us, as our Noise handshake proved.
        assert!(err.contains(&ours.peer_id().to_string()), "{err}");
        // Whatever our side made of the aborted upgrade, it must not keep a connection.
        tokio::time::sleep(Duration::from_millis(100)).await;
        while !ours.connections().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
