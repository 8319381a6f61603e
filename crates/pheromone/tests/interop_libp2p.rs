//! Interop with rust-libp2p over real sockets on 127.0.0.1: the upgrade in both directions,
//! ping and identify checked field by field on both sides, a hundred concurrent streams each
//! way with their bytes checked end to end, and a dial that expects the wrong peer.

mod common;
mod libp2p_peer;

use common::{pattern, ECHO};
use libp2p::{identify, ping, swarm::SwarmEvent};
use libp2p_peer::{
    from_libp2p_addr, from_libp2p_peer, to_libp2p_addr, to_libp2p_key, to_libp2p_peer, Libp2pPeer,
    PeerBehaviourEvent, AGENT_VERSION, PROTOCOL_VERSION,
};
use pheromone::{Connection, DialError, Endpoint, Keypair, Multiaddr};
use pheromone_core::identify::IdentifyInfo;
use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;
use tokio_util::compat::FuturesAsyncReadCompatExt as _;

/// Each test finishes in well under a second; the bound only turns a hang into a failure.
const LIMIT: Duration = Duration::from_secs(10);
/// Pings we send on one connection, and successful pings we wait to see from libp2p.
const PINGS: usize = 3;
/// Concurrent streams per direction in the stream test.
const STREAMS: usize = 100;

async fn bounded<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(LIMIT, test)
        .await
        .expect("test timed out")
}

/// Checks what libp2p told us about itself in identify. `observed` is our own address as
/// libp2p sees it.
fn check_libp2p_identify(info: &IdentifyInfo, theirs: &Libp2pPeer, observed: Multiaddr) {
    assert_eq!(
        to_libp2p_key(&info.public_key),
        theirs.keypair.public(),
        "public key"
    );
    assert_eq!(
        info.listen_addrs,
        vec![from_libp2p_addr(&theirs.listen_addr)],
        "listen addrs"
    );
    let protocols: BTreeSet<&str> = info.protocols.iter().map(String::as_str).collect();
    for expected in [
        "/ipfs/ping/1.0.0",
        "/ipfs/id/1.0.0",
        "/ipfs/id/push/1.0.0",
        ECHO,
    ] {
        assert!(
            protocols.contains(expected),
            "{expected} missing from {protocols:?}"
        );
    }
    assert_eq!(info.observed_addr, Some(observed), "observed addr");
    assert_eq!(info.protocol_version, PROTOCOL_VERSION);
    assert_eq!(info.agent_version, AGENT_VERSION);
}

/// Waits until libp2p has pinged us `PINGS` times and received our identify, and checks every
/// field of the latter. `observed` is libp2p's address as we see it.
async fn check_libp2p_sees_us(theirs: &mut Libp2pPeer, ours: &Endpoint, observed: Multiaddr) {
    let us = to_libp2p_peer(&ours.peer_id());
    let mut pings = 0;
    let mut identified = None;
    while pings < PINGS || identified.is_none() {
        let event = theirs
            .wait_for(|event| match event {
                SwarmEvent::Behaviour(event) => Some(event),
                _ => None,
            })
            .await;
        match event {
            PeerBehaviourEvent::Ping(ping::Event { peer, result, .. }) if peer == us => {
                let rtt = result.expect("libp2p's ping of us failed");
                assert!(rtt < LIMIT);
                pings += 1;
            }
            PeerBehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })
                if peer_id == us =>
            {
                identified = Some(info);
            }
            PeerBehaviourEvent::Identify(identify::Event::Error { peer_id, error, .. })
                if peer_id == us =>
            {
                panic!("libp2p could not identify us: {error}");
            }
            _ => {}
        }
    }
    let info = identified.expect("loop ends only once identified");
    assert_eq!(info.public_key, to_libp2p_key(&ours.keypair().public()));
    let listen: Vec<_> = ours
        .listen_addrs()
        .into_iter()
        .map(|a| to_libp2p_addr(&a.without_p2p()))
        .collect();
    assert_eq!(info.listen_addrs, listen, "listen addrs");
    let theirs_protocols: BTreeSet<String> = info.protocols.iter().map(|p| p.to_string()).collect();
    let our_protocols: BTreeSet<String> = ours.protocols().into_iter().collect();
    assert_eq!(theirs_protocols, our_protocols, "protocols");
    assert!(our_protocols.contains("/ipfs/ping/1.0.0") && our_protocols.contains(ECHO));
    assert_eq!(
        info.observed_addr,
        to_libp2p_addr(&observed),
        "observed addr"
    );
    assert_eq!(info.protocol_version, "/pheromone/1.0.0");
    assert!(
        info.agent_version.starts_with("pheromone/"),
        "{}",
        info.agent_version
    );
    assert_eq!(info.agent_version, ours.config().agent_version);
}

async fn ping_several(ours: &Endpoint, conn: &Connection) {
    for _ in 0..PINGS {
        let rtt = ours.ping(conn).await.expect("our ping of libp2p");
        assert!(rtt < LIMIT);
    }
}

#[tokio::test]
async fn we_dial_libp2p_then_ping_and_identify_both_ways() {
    bounded(async {
        let (ours, _) = common::endpoint().await;
        let mut theirs = Libp2pPeer::spawn(ECHO).await;
        let conn = ours.dial(&theirs.addr()).await.expect("dial libp2p");
        assert_eq!(conn.remote_peer(), from_libp2p_peer(&theirs.peer_id));
        ping_several(&ours, &conn).await;
        let info = ours.identify(&conn).await.expect("identify libp2p");
        let local = Multiaddr::from_socket_addr(conn.info().local_addr);
        check_libp2p_identify(&info, &theirs, local);
        // We dialled its listening socket, so that is the address we saw it at.
        let remote = Multiaddr::from_socket_addr(conn.info().remote_addr);
        assert_eq!(remote, from_libp2p_addr(&theirs.listen_addr));
        check_libp2p_sees_us(&mut theirs, &ours, remote).await;
    })
    .await;
}

#[tokio::test]
async fn libp2p_dials_us_then_ping_and_identify_both_ways() {
    bounded(async {
        let (ours, our_addr) = common::endpoint().await;
        // This side also sends a signed peer record in identify, as go-libp2p does.
        let mut theirs = Libp2pPeer::spawn_with(ECHO, true).await;
        let peer = theirs
            .dial(to_libp2p_addr(&our_addr))
            .await
            .expect("libp2p dials us");
        assert_eq!(peer, to_libp2p_peer(&ours.peer_id()));
        let conn = common::connection_from(&ours, from_libp2p_peer(&theirs.peer_id)).await;
        ping_several(&ours, &conn).await;
        let info = ours.identify(&conn).await.expect("identify libp2p");
        // libp2p reports the address it dialled as the one it sees us at.
        check_libp2p_identify(&info, &theirs, our_addr.without_p2p());
        let remote = Multiaddr::from_socket_addr(conn.info().remote_addr);
        check_libp2p_sees_us(&mut theirs, &ours, remote).await;
    })
    .await;
}

#[tokio::test]
async fn hundred_concurrent_streams_each_way_with_libp2p() {
    bounded(async {
        let (ours, _) = common::endpoint().await;
        let mut theirs = Libp2pPeer::spawn(ECHO).await;
        let conn = ours.dial(&theirs.addr()).await.expect("dial libp2p");
        let us = to_libp2p_peer(&ours.peer_id());
        theirs.wait_connected(us).await;
        let mut tasks = Vec::with_capacity(2 * STREAMS);
        for i in 0..STREAMS {
            // Ours to libp2p's echo.
            let ours = ours.clone();
            let conn = conn.clone();
            tasks.push(tokio::spawn(async move {
                let data = payload(i, 0);
                let stream = ours.open_stream(&conn, ECHO).await.expect("open to libp2p");
                let back = common::echo_round_trip(stream, &data).await;
                assert!(
                    back == data,
                    "our stream {i}: got {} bytes back, sent {}",
                    back.len(),
                    data.len()
                );
            }));
            // libp2p's to our echo.
            let mut control = theirs.control.clone();
            tasks.push(tokio::spawn(async move {
                let data = payload(i, 1);
                let stream = control
                    .open_stream(us, libp2p::StreamProtocol::new(ECHO))
                    .await
                    .expect("libp2p opens a stream to us");
                let back = common::echo_round_trip(stream.compat(), &data).await;
                assert!(
                    back == data,
                    "libp2p stream {i}: got {} bytes back, sent {}",
                    back.len(),
                    data.len()
                );
            }));
        }
        for task in tasks {
            task.await.expect("stream task");
        }
        // The connection is still healthy after the burst.
        ours.ping(&conn).await.expect("ping after the streams");
    })
    .await;
}

#[tokio::test]
async fn dialing_libp2p_as_the_wrong_peer_fails_naming_both() {
    bounded(async {
        let (ours, _) = common::endpoint().await;
        let theirs = Libp2pPeer::spawn(ECHO).await;
        let someone_else = Keypair::generate(&mut rand::rngs::OsRng).peer_id();
        let wrong = from_libp2p_addr(&theirs.listen_addr)
            .with_p2p(someone_else)
            .expect("addr");
        let err = ours
            .dial(&wrong)
            .await
            .expect_err("the wrong peer must fail");
        assert!(matches!(err, DialError::Upgrade(_)), "{err}");
        let text = err.to_string();
        assert!(text.contains(&someone_else.to_string()), "{text}");
        assert!(
            text.contains(&from_libp2p_peer(&theirs.peer_id).to_string()),
            "{text}"
        );
        assert!(ours.connections().is_empty());
    })
    .await;
}

/// A distinct payload of 10 to 100 KB for stream `i` of `side`.
fn payload(i: usize, side: u8) -> Vec<u8> {
    pattern(10_000 + i * 900, (i as u8).wrapping_mul(2) ^ side)
}
