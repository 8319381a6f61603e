//! Hostile peers after a real upgrade: a raw client completes multistream, Noise and the
//! yamux proposal with `pheromone_core` pieces, then breaks the yamux rules on purpose —
//! frames for streams that were never opened, more data than the granted window, bodies
//! over any possible window, garbage ciphertext, and ten thousand streams at once. Each
//! protocol violation must end that one connection with a typed error the endpoint
//! reports; the stream flood must be refused stream by stream while the connection lives
//! on; and the listener must keep serving everyone else.

mod common;

use common::raw::{body, ms_proposal, Incoming, RawConn};
use common::{
    assert_still_serves, connection_closed, hostile_config, listener_with, HANDSHAKE_TIMEOUT,
};
use futures::FutureExt;
use pheromone::{Access, ConnectionError, Keypair};
use pheromone_core::yamux::frame::{Flags, FrameType, GoAwayCode, Header, DEFAULT_WINDOW};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A bound, not the expected time: each test takes 0.1–5 s in a debug build.
const LIMIT: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(3);

fn identity() -> Keypair {
    Keypair::generate(&mut rand::rngs::OsRng)
}

/// The listener's go-away must name a protocol error before it closes.
fn assert_protocol_error_go_away(frames: &[pheromone_core::yamux::frame::Frame]) {
    assert!(
        frames
            .iter()
            .any(|f| f.header.frame_type == FrameType::GoAway
                && f.header.length == GoAwayCode::ProtocolError.to_u32()),
        "no go-away(protocol error) before the close: {frames:?}"
    );
}

#[tokio::test]
async fn frame_for_a_never_opened_stream_ends_the_connection() {
    tokio::time::timeout(LIMIT, async {
        let (listener, addr, sock) = listener_with(hostile_config()).await;
        let mut events = listener.events();
        let mut raw = RawConn::connect(sock, &identity()).await;
        raw.wait_confirmed(WAIT).await;
        raw.yamux_ping(1, WAIT).await;
        // Stream 7 has our parity but was never opened with SYN.
        raw.send_frames(&[(Header::data(7, Flags::NONE, 5), b"hello")])
            .await
            .expect("send");
        let error = connection_closed(&mut events, raw.local_addr, HANDSHAKE_TIMEOUT).await;
        match &error {
            ConnectionError::Yamux { reason, .. } => {
                assert!(reason.contains("never opened"), "{reason}")
            }
            other => panic!("expected a yamux protocol error, got {other:?}"),
        }
        assert_protocol_error_go_away(&raw.wait_closed(WAIT).await);

        // A window update for a never-opened stream of the listener's parity too.
        let mut raw = RawConn::connect(sock, &identity()).await;
        raw.wait_confirmed(WAIT).await;
        raw.send_frames(&[(Header::window_update(40, Flags::NONE, 1000), &[])])
            .await
            .expect("send");
        let error = connection_closed(&mut events, raw.local_addr, HANDSHAKE_TIMEOUT).await;
        assert!(matches!(error, ConnectionError::Yamux { .. }), "{error:?}");
        raw.wait_closed(WAIT).await;

        assert!(listener.connections().is_empty());
        assert_still_serves(&listener, &addr).await;
    })
    .await
    .expect("test timed out");
}

/// A protocol whose handler takes the stream and never reads it, so the window it was
/// granted is exactly what the client may send.
const SINK: &str = "/test/sink/1.0.0";

#[tokio::test]
async fn data_beyond_the_granted_window_ends_the_connection() {
    tokio::time::timeout(LIMIT, async {
        let mut config = hostile_config();
        // Streams keep the spec's initial 256 KiB window: nothing is granted beyond it.
        config.connection.yamux.receive_window = DEFAULT_WINDOW;
        let (listener, addr, sock) = listener_with(config).await;
        listener.set_handler(
            SINK,
            Arc::new(|_conn, stream| {
                async move {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    drop(stream);
                }
                .boxed()
            }),
            Access::Open,
        );
        let mut events = listener.events();
        let mut raw = RawConn::connect(sock, &identity()).await;
        raw.wait_confirmed(WAIT).await;

        // Open stream 1 and negotiate the sink (eagerly: wait for the echo).
        let proposal = ms_proposal(SINK);
        raw.send_frames(&[
            (Header::window_update(1, Flags::SYN, 0), &[]),
            (
                Header::data(1, Flags::NONE, proposal.len() as u32),
                &proposal,
            ),
        ])
        .await
        .expect("send");
        let mut others = Vec::new();
        let mut echoed = Vec::new();
        let mut granted: u64 = u64::from(DEFAULT_WINDOW);
        raw.frames_for(1, WAIT, &mut others, |f| {
            assert!(!f.header.flags.contains(Flags::RST), "sink refused");
            if f.header.frame_type == FrameType::WindowUpdate {
                granted += u64::from(f.header.length);
            }
            echoed.extend_from_slice(&f.body);
            echoed.len() >= proposal.len()
        })
        .await;
        assert_eq!(echoed, proposal, "the listener echoes header and protocol");

        // Fill the rest of the window exactly: still legal.
        let mut left = granted - proposal.len() as u64;
        while left > 0 {
            let n = left.min(64 * 1024) as usize;
            raw.send_frames(&[(Header::data(1, Flags::NONE, n as u32), &body(n))])
                .await
                .expect("send");
            left -= n as u64;
        }
        raw.yamux_ping(2, WAIT).await;
        assert_eq!(listener.connections().len(), 1, "a full window is legal");

        // One byte more than granted.
        raw.send_frames(&[(Header::data(1, Flags::NONE, 1), b"!")])
            .await
            .expect("send");
        let error = connection_closed(&mut events, raw.local_addr, HANDSHAKE_TIMEOUT).await;
        match &error {
            ConnectionError::Yamux { reason, .. } => {
                assert!(reason.contains("exceeds the remaining window"), "{reason}")
            }
            other => panic!("expected a window violation, got {other:?}"),
        }
        assert_protocol_error_go_away(&raw.wait_closed(WAIT).await);
        assert_still_serves(&listener, &addr).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn oversized_frames_after_the_upgrade_end_the_connection() {
    tokio::time::timeout(LIMIT, async {
        let (listener, addr, sock) = listener_with(hostile_config()).await;
        let mut events = listener.events();

        // A yamux data header announcing 4 GiB on a fresh stream: refused from the header.
        let mut raw = RawConn::connect(sock, &identity()).await;
        raw.wait_confirmed(WAIT).await;
        raw.send_frames(&[(Header::data(1, Flags::SYN, u32::MAX), b"x")])
            .await
            .expect("send");
        let error = connection_closed(&mut events, raw.local_addr, HANDSHAKE_TIMEOUT).await;
        assert!(matches!(error, ConnectionError::Yamux { .. }), "{error:?}");
        raw.wait_closed(WAIT).await;

        // An unknown yamux version / frame type.
        let mut raw = RawConn::connect(sock, &identity()).await;
        raw.wait_confirmed(WAIT).await;
        raw.send_plain(&[9, 9, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
            .await
            .expect("send");
        let error = connection_closed(&mut events, raw.local_addr, HANDSHAKE_TIMEOUT).await;
        assert!(matches!(error, ConnectionError::Yamux { .. }), "{error:?}");
        raw.wait_closed(WAIT).await;

        // A full-size Noise frame (65535 bytes) of garbage: fails authentication.
        let mut raw = RawConn::connect(sock, &identity()).await;
        raw.wait_confirmed(WAIT).await;
        let mut frame = vec![0xff, 0xff];
        frame.extend_from_slice(&body(65535));
        raw.send_raw(&frame).await.expect("send");
        let error = connection_closed(&mut events, raw.local_addr, HANDSHAKE_TIMEOUT).await;
        assert!(matches!(error, ConnectionError::Noise { .. }), "{error:?}");
        raw.wait_closed(WAIT).await;

        // A Noise frame too short to hold its tag.
        let mut raw = RawConn::connect(sock, &identity()).await;
        raw.wait_confirmed(WAIT).await;
        raw.send_raw(&[0, 3, 1, 2, 3]).await.expect("send");
        let error = connection_closed(&mut events, raw.local_addr, HANDSHAKE_TIMEOUT).await;
        assert!(matches!(error, ConnectionError::Noise { .. }), "{error:?}");
        raw.wait_closed(WAIT).await;

        assert!(listener.connections().is_empty());
        assert_still_serves(&listener, &addr).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn ten_thousand_streams_at_once_are_refused_beyond_the_limit() {
    tokio::time::timeout(LIMIT, async {
        const MAX_STREAMS: usize = 64;
        const FLOOD: u32 = 10_000;
        let mut config = hostile_config();
        config.connection.yamux.max_streams = MAX_STREAMS;
        config.connection.yamux.max_pending_accept = MAX_STREAMS / 2;
        let (listener, addr, sock) = listener_with(config).await;
        let mut events = listener.events();
        let mut raw = RawConn::connect(sock, &identity()).await;
        raw.wait_confirmed(WAIT).await;
        raw.yamux_ping(1, WAIT).await;
        let conn = listener
            .connections()
            .into_iter()
            .next()
            .expect("the listener holds our connection");

        // Watch the listener's live stream count while the flood lands.
        let flood_over = Arc::new(AtomicBool::new(false));
        let watcher = {
            let conn = conn.clone();
            let flood_over = flood_over.clone();
            tokio::spawn(async move {
                let mut max_seen = 0;
                while !flood_over.load(Ordering::Relaxed) {
                    max_seen = max_seen.max(conn.num_streams());
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                max_seen
            })
        };

        // 10,000 SYNs in one burst, ids 1, 3, 5, …
        let mut plain = bytes::BytesMut::new();
        for i in 0..FLOOD {
            Header::window_update(2 * i + 1, Flags::SYN, 0).encode(&mut plain);
        }
        raw.send_plain(&plain).await.expect("send flood");

        // Every stream ends with a RST: at once beyond the limits, and after the
        // negotiation timeout for the admitted ones, which never propose a protocol.
        let mut reset = std::collections::HashSet::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        while reset.len() < FLOOD as usize {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match raw.next(left).await {
                Incoming::Frame(f) if f.header.flags.contains(Flags::RST) => {
                    assert_eq!(f.header.stream_id % 2, 1);
                    reset.insert(f.header.stream_id);
                }
                Incoming::Frame(_) | Incoming::Confirmed => {}
                Incoming::Closed(why) => panic!("the flood closed the connection: {why}"),
            }
        }
        flood_over.store(true, Ordering::Relaxed);
        let max_seen = watcher.await.expect("watcher");
        assert!(
            max_seen <= MAX_STREAMS,
            "{max_seen} live streams, limit {MAX_STREAMS}"
        );
        assert!(conn.num_streams() <= MAX_STREAMS);

        // The connection survived: keep-alive and a real protocol on a new stream.
        raw.yamux_ping(2, WAIT).await;
        raw.ping_protocol(2 * FLOOD + 1, WAIT).await;
        assert!(!conn.is_closed());
        while let Ok(event) = events.try_recv() {
            assert!(
                !matches!(event, pheromone::EndpointEvent::ConnectionClosed { .. }),
                "the flood ended the connection"
            );
        }
        assert_still_serves(&listener, &addr).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn a_peer_that_provokes_replies_and_never_reads_is_throttled() {
    tokio::time::timeout(LIMIT, async {
        let mut config = hostile_config();
        // Short keep-alive, so that a peer we stopped reading is found dead quickly.
        config.connection.yamux.keepalive_interval = Some(Duration::from_millis(500));
        config.connection.yamux.keepalive_timeout = Duration::from_secs(1);
        let (listener, addr, sock) = listener_with(config).await;
        let mut events = listener.events();
        let mut raw = RawConn::connect(sock, &identity()).await;
        raw.wait_confirmed(WAIT).await;
        raw.yamux_ping(1, WAIT).await;
        raw.stop_reading();

        // Every ping asks for a 12-byte answer. If the listener kept reading them while its
        // answers cannot leave, its send queue would grow by what we send (it did: ~1 MiB
        // per MiB of pings, without end); instead it must stop reading, so our writes stall
        // once the kernel buffers are full, long before `CAP` bytes.
        const CAP: usize = 128 << 20;
        let mut chunk = bytes::BytesMut::new();
        for i in 0..5000u32 {
            Header::ping(Flags::SYN, i).encode(&mut chunk);
        }
        let mut sent = 0;
        let stalled = loop {
            if sent >= CAP {
                break false;
            }
            match tokio::time::timeout(Duration::from_secs(1), raw.send_plain(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len(),
                // The listener closed on us: it did not keep buffering either.
                Ok(Err(_)) => break true,
                Err(_) => break true,
            }
        };
        assert!(stalled, "the listener absorbed {} MiB of pings", sent >> 20);

        // The keep-alive then finds the peer dead: a typed error, not a hang.
        let error = connection_closed(&mut events, raw.local_addr, WAIT).await;
        assert!(
            matches!(error, ConnectionError::KeepAliveTimeout { .. }),
            "{error:?}"
        );
        assert_still_serves(&listener, &addr).await;
    })
    .await
    .expect("test timed out");
}
