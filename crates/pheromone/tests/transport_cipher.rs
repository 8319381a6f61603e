//! Two endpoints on 127.0.0.1 negotiate the Noise transport cipher: AES-256-GCM when both
//! offer it, ChaCha20-Poly1305 when either side turns the offer off; data is intact both
//! ways.

mod common;
mod libp2p_peer;

use common::{connection_from, echo_round_trip, endpoint_with, pattern, ECHO};
use libp2p_peer::{from_libp2p_peer, to_libp2p_addr, Libp2pPeer};
use pheromone::{EndpointConfig, TransportCipher};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn config(aes_gcm: bool) -> EndpointConfig {
    let mut config = EndpointConfig::default();
    config.connection.aes_gcm = aes_gcm;
    config
}

/// Dials from an endpoint offering `dialer` to one offering `listener`, checks that both
/// sides report `want`, and echoes 4 MiB over the connection.
async fn check(dialer: bool, listener: bool, want: TransportCipher) {
    let (a, _) = endpoint_with(config(dialer)).await;
    let (b, b_addr) = endpoint_with(config(listener)).await;
    let conn = a.dial(&b_addr).await.expect("dial");
    assert_eq!(
        conn.info().cipher,
        want,
        "dialer {dialer} listener {listener}"
    );
    let inbound = connection_from(&b, a.peer_id()).await;
    assert_eq!(inbound.info().cipher, want, "listener's view");

    let data = pattern(4 << 20, 7);
    let stream = a.open_stream(&conn, ECHO).await.expect("open");
    let back = echo_round_trip(stream, &data).await;
    assert!(back == data, "4 MiB echoed back changed");
    a.ping(&conn).await.expect("ping after the transfer");
}

#[tokio::test]
async fn both_offering_use_aes_gcm() {
    tokio::time::timeout(LIMIT, check(true, true, TransportCipher::AesGcm))
        .await
        .expect("test timed out");
}

#[tokio::test]
async fn either_side_off_uses_chacha_poly() {
    tokio::time::timeout(LIMIT, async {
        check(true, false, TransportCipher::ChaChaPoly).await;
        check(false, true, TransportCipher::ChaChaPoly).await;
        check(false, false, TransportCipher::ChaChaPoly).await;
    })
    .await
    .expect("test timed out");
}

/// A libp2p peer never offers AES-GCM, so it gets ChaChaPoly (the libp2p spec) even from
/// an endpoint that offers it, whichever side dials.
#[tokio::test]
async fn libp2p_peers_get_chacha_poly_from_an_offering_endpoint() {
    tokio::time::timeout(LIMIT, async {
        let (ours, our_addr) = endpoint_with(config(true)).await;
        let theirs = Libp2pPeer::spawn(ECHO).await;
        let out = ours.dial(&theirs.addr()).await.expect("dial libp2p");
        assert_eq!(out.info().cipher, TransportCipher::ChaChaPoly);
        ours.ping(&out).await.expect("ping libp2p");
        let data = pattern(256 * 1024, 3);
        let stream = ours.open_stream(&out, ECHO).await.expect("open");
        assert!(echo_round_trip(stream, &data).await == data);
        out.close().await;

        theirs
            .dial(to_libp2p_addr(&our_addr))
            .await
            .expect("libp2p dials us");
        let inbound = loop {
            let conn = connection_from(&ours, from_libp2p_peer(&theirs.peer_id)).await;
            if conn.info().direction == pheromone::Direction::Inbound {
                break conn;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(inbound.info().cipher, TransportCipher::ChaChaPoly);
        ours.ping(&inbound)
            .await
            .expect("ping libp2p on its connection");
    })
    .await
    .expect("test timed out");
}

#[test]
fn the_default_follows_the_cpu() {
    assert_eq!(
        EndpointConfig::default().connection.aes_gcm,
        pheromone::cpu_has_fast_aes_gcm()
    );
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        pheromone::cpu_has_fast_aes_gcm(),
        std::is_x86_feature_detected!("aes") && std::is_x86_feature_detected!("pclmulqdq")
    );
}
