//! Hostile peers before a connection exists: raw sockets that send garbage, cut the
//! handshake short, announce oversized messages, stall, or forge the Noise identity. The
//! listener must drop each of them — at once when the bytes prove it, within its handshake
//! timeout when they only stop coming — and keep serving well-behaved peers.

mod common;

use bytes::BytesMut;
use common::raw::{drain, handshake_until_msg3, initiator, ms_message, ms_proposal};
use common::{
    assert_still_serves, hostile_config, listener_with, patient_config, HANDSHAKE_TIMEOUT,
};
use pheromone::Keypair;
use pheromone_core::noise::{self, testing};
use rand::{RngCore, SeedableRng};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A bound, not the expected time: each test takes 0.1–5 s in a debug build.
const LIMIT: Duration = Duration::from_secs(20);
/// Slack on top of the handshake timeout for the listener to notice and close.
const MARGIN: Duration = Duration::from_secs(2);

fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

/// Connects, writes `bytes`, optionally half-closes, and waits for the listener to close
/// the socket (panics if it does not within the handshake timeout and a margin).
async fn send_and_wait_close(addr: SocketAddr, bytes: &[u8], half_close: bool) {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    // The listener may already have closed on a prefix; a failed write is fine then.
    let _ = socket.write_all(bytes).await;
    if half_close {
        let _ = socket.shutdown().await;
    }
    common::raw::wait_for_close(&mut socket, HANDSHAKE_TIMEOUT + MARGIN).await;
}

/// Noise message 1 as a well-behaved initiator sends it.
fn noise_msg1() -> Vec<u8> {
    drain(&mut initiator(&Keypair::generate(&mut rand::rngs::OsRng)))
}

/// `/noise` negotiated lazily, followed by `tail`.
fn after_noise(tail: &[u8]) -> Vec<u8> {
    let mut bytes = ms_proposal(noise::PROTOCOL_ID);
    bytes.extend_from_slice(tail);
    bytes
}

#[tokio::test]
async fn random_bytes_instead_of_a_handshake() {
    tokio::time::timeout(LIMIT, async {
        let (listener, addr, sock) = listener_with(hostile_config()).await;
        let mut events = listener.events();
        let cases = [
            // Garbage in place of multistream-select.
            seeded_bytes(1, 4096),
            // A few bytes only: a short prefix that may look like a message start.
            seeded_bytes(2, 3),
            // `/noise` agreed, then garbage in place of Noise message 1.
            after_noise(&seeded_bytes(3, 4096)),
            // Text that is not multistream at all.
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ];
        let waits = cases
            .iter()
            .map(|bytes| send_and_wait_close(sock, bytes, false));
        futures::future::join_all(waits).await;
        assert!(listener.connections().is_empty());
        // None of the garbage became a connection.
        assert!(
            events.try_recv().is_err(),
            "garbage produced an endpoint event"
        );
        assert_still_serves(&listener, &addr).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn truncated_handshakes_are_dropped_on_eof() {
    tokio::time::timeout(LIMIT, async {
        let (listener, addr, sock) = listener_with(patient_config()).await;
        let header = ms_message("/multistream/1.0.0");
        let msg1 = noise_msg1();
        let cases = [
            // Half of the multistream header.
            header[..header.len() / 2].to_vec(),
            // Valid multistream, then half of Noise message 1.
            after_noise(&msg1[..msg1.len() / 2]),
            // Only the two-byte Noise length prefix.
            after_noise(&msg1[..2]),
        ];
        // EOF is proof enough: each is closed at once (the handshake timeout is an hour).
        let waits = cases
            .iter()
            .map(|bytes| send_and_wait_close(sock, bytes, true));
        futures::future::join_all(waits).await;

        // Half of Noise message 3 after a real message 2.
        let me = Keypair::generate(&mut rand::rngs::OsRng);
        let (mut socket, mut hs, _) = handshake_until_msg3(sock, &me, |_| {}).await;
        let msg3 = drain(&mut hs);
        socket
            .write_all(&msg3[..msg3.len() / 2])
            .await
            .expect("write");
        socket.shutdown().await.expect("half-close");
        common::raw::wait_for_close(&mut socket, HANDSHAKE_TIMEOUT + MARGIN).await;

        assert!(listener.connections().is_empty());
        assert_still_serves(&listener, &addr).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn oversized_length_prefixes_are_refused_from_the_prefix() {
    tokio::time::timeout(LIMIT, async {
        let (listener, addr, sock) = listener_with(patient_config()).await;
        let mut noise_max = after_noise(&[0xff, 0xff]);
        noise_max.extend_from_slice(&seeded_bytes(4, 1000));
        let cases = [
            // A multistream varint announcing ~4 GiB.
            vec![0xff, 0xff, 0xff, 0xff, 0x0f],
            // A varint that never ends (overflows 64 bits).
            vec![0xff; 12],
            // A header-sized message announcing 2 KiB (over the 1 KiB cap).
            vec![0x80, 0x10, b'/'],
            // `/noise` agreed, then a Noise frame announcing 65535 bytes with garbage.
            noise_max,
        ];
        // No body follows in full and the handshake timeout is an hour, so only an early
        // refusal closes these: nothing may wait to buffer the announced length.
        let waits = cases
            .iter()
            .map(|bytes| send_and_wait_close(sock, bytes, false));
        futures::future::join_all(waits).await;

        // Noise message 3 announcing 65535 bytes.
        let me = Keypair::generate(&mut rand::rngs::OsRng);
        let (mut socket, _hs, _) = handshake_until_msg3(sock, &me, |_| {}).await;
        socket
            .write_all(&[0xff, 0xff, 1, 2, 3])
            .await
            .expect("write");
        common::raw::wait_for_close(&mut socket, HANDSHAKE_TIMEOUT + MARGIN).await;

        assert!(listener.connections().is_empty());
        assert_still_serves(&listener, &addr).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn stalled_handshakes_are_cut_off_at_the_timeout() {
    tokio::time::timeout(LIMIT, async {
        let (listener, addr, sock) = listener_with(hostile_config()).await;
        let me = Keypair::generate(&mut rand::rngs::OsRng);

        // Connects and sends nothing at all.
        let silent = async {
            let mut socket = TcpStream::connect(sock).await.expect("connect");
            common::raw::wait_for_close(&mut socket, HANDSHAKE_TIMEOUT + MARGIN).await
        };
        // Sends the multistream header, then nothing.
        let after_header = async {
            let mut socket = TcpStream::connect(sock).await.expect("connect");
            let header = ms_message("/multistream/1.0.0");
            socket.write_all(&header).await.expect("write");
            let closed = common::raw::wait_for_close(&mut socket, HANDSHAKE_TIMEOUT + MARGIN).await;
            // The listener answered with its own header and waited for a proposal.
            assert!(
                closed.received.starts_with(&header),
                "{:?}",
                closed.received
            );
            closed
        };
        // Reads Noise message 2 and never sends message 3.
        let before_msg3 = async {
            let (mut socket, _hs, _) = handshake_until_msg3(sock, &me, |_| {}).await;
            common::raw::wait_for_close(&mut socket, HANDSHAKE_TIMEOUT + MARGIN).await
        };
        // Completes Noise and never proposes `/yamux/1.0.0`.
        let before_yamux = async {
            let (mut socket, mut hs, _) = handshake_until_msg3(sock, &me, |_| {}).await;
            socket.write_all(&drain(&mut hs)).await.expect("write");
            common::raw::wait_for_close(&mut socket, HANDSHAKE_TIMEOUT + MARGIN).await
        };
        // Every one is cut off (`wait_for_close` panics if the listener keeps it).
        tokio::join!(silent, after_header, before_msg3, before_yamux);
        assert!(listener.connections().is_empty());
        assert_still_serves(&listener, &addr).await;
    })
    .await
    .expect("test timed out");
}

/// Rewrites the payload a malicious initiator sends in Noise message 3.
type Forgery<'a> = dyn Fn(&mut noise::Handshake) + 'a;

#[tokio::test]
async fn forged_noise_signatures_are_refused() {
    tokio::time::timeout(LIMIT, async {
        let (listener, addr, sock) = listener_with(patient_config()).await;
        let mut events = listener.events();
        let attacker = Keypair::generate(&mut rand::rngs::OsRng);
        let victim = Keypair::generate(&mut rand::rngs::OsRng);

        let forgeries: [Box<Forgery>; 4] = [
            // The victim's key, signed by the attacker.
            Box::new(|hs| {
                let msg = [noise::STATIC_KEY_DOMAIN, &testing::local_static(hs)[..]].concat();
                let sig = attacker.sign(&msg);
                testing::replace_local_payload(hs, testing::encode_payload(&victim.public(), &sig));
            }),
            // Our own key, signing some other static key.
            Box::new(|hs| {
                let msg = [noise::STATIC_KEY_DOMAIN, &[7u8; 32][..]].concat();
                let sig = attacker.sign(&msg);
                testing::replace_local_payload(
                    hs,
                    testing::encode_payload(&attacker.public(), &sig),
                );
            }),
            // A key and no signature at all.
            Box::new(|hs| {
                testing::replace_local_payload(
                    hs,
                    testing::encode_payload(&attacker.public(), &[]),
                );
            }),
            // Not a payload: garbage protobuf.
            Box::new(|hs| testing::replace_local_payload(hs, vec![0xff; 40])),
        ];
        for forge in &forgeries {
            let (mut socket, mut hs, _) = handshake_until_msg3(sock, &attacker, forge).await;
            let msg3 = drain(&mut hs);
            let (mut transport, _, _) = hs.into_transport().expect("our side completes");
            let mut wire = BytesMut::from(&msg3[..]);
            transport
                .sender
                .encrypt(&ms_proposal("/yamux/1.0.0"), &mut wire)
                .expect("encrypt");
            socket.write_all(&wire).await.expect("write");
            let closed = common::raw::wait_for_close(&mut socket, HANDSHAKE_TIMEOUT + MARGIN).await;
            // Refused on message 3 (at once: the handshake timeout is an hour), and
            // nothing was ever sent back encrypted.
            assert!(closed.received.is_empty(), "{:?}", closed.received);
        }
        assert!(listener.connections().is_empty());
        assert!(
            events.try_recv().is_err(),
            "a forged identity became a connection"
        );
        assert_still_serves(&listener, &addr).await;
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn stalled_handshakes_give_their_slots_to_newcomers_and_end_at_the_timeout() {
    tokio::time::timeout(LIMIT, async {
        const SLOTS: usize = 4;
        let mut config = hostile_config();
        config.resources.max_pending_handshakes = SLOTS;
        let (listener, addr, sock) = listener_with(config).await;

        // Fill every handshake slot with a silent socket.
        let mut stalled = Vec::new();
        for _ in 0..SLOTS {
            let mut socket = TcpStream::connect(sock).await.expect("connect");
            socket
                .write_all(&ms_message("/multistream/1.0.0"))
                .await
                .expect("write");
            stalled.push(socket);
        }
        // Give the accept loop time to take all of them.
        tokio::time::sleep(Duration::from_millis(200)).await;

        // One more is not dropped: it takes the slot of the oldest stalled socket, which
        // is closed at once (its handshake timeout is seconds away).
        let newcomer = TcpStream::connect(sock).await.expect("connect");
        let mut oldest = stalled.remove(0);
        // (Panics if the listener kept it open: the oldest stalled handshake kept its slot.)
        common::raw::wait_for_close(&mut oldest, HANDSHAKE_TIMEOUT / 2).await;
        assert_eq!(listener.resources().usage().pending_handshakes, SLOTS);

        // The rest are cut off at the timeout, which frees their slots.
        stalled.push(newcomer);
        for mut socket in stalled {
            common::raw::wait_for_close(&mut socket, HANDSHAKE_TIMEOUT + MARGIN).await;
        }
        assert_still_serves(&listener, &addr).await;
    })
    .await
    .expect("test timed out");
}

/// `/tls/1.0.0` agreed, then `tail`.
fn after_tls(tail: &[u8]) -> Vec<u8> {
    let mut bytes = ms_proposal(pheromone_core::tls::PROTOCOL_ID);
    bytes.extend_from_slice(tail);
    bytes
}

/// The TLS side of the listener: garbage, a record header announcing more than TLS
/// allows, a ClientHello cut short, and a plaintext alert instead of a ClientHello are
/// each dropped (at once, or on EOF), and the listener keeps serving.
#[tokio::test]
async fn tls_garbage_is_dropped_and_the_listener_serves_on() {
    tokio::time::timeout(LIMIT, async {
        let (listener, addr, sock) = listener_with(patient_config()).await;
        let mut oversized = vec![0x16, 0x03, 0x01, 0xff, 0xff];
        oversized.extend_from_slice(&seeded_bytes(5, 1000));
        // A ClientHello-shaped record whose body is cut off by EOF.
        let mut cut = vec![
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ];
        cut.extend_from_slice(&seeded_bytes(6, 40));
        let cases = [
            after_tls(&seeded_bytes(7, 4096)),
            after_tls(&oversized),
            after_tls(&cut),
            // A fatal alert record in plaintext instead of a ClientHello.
            after_tls(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]),
        ];
        let waits = cases
            .iter()
            .map(|bytes| send_and_wait_close(sock, bytes, true));
        futures::future::join_all(waits).await;
        assert!(listener.connections().is_empty());
        assert_still_serves(&listener, &addr).await;
    })
    .await
    .expect("test timed out");
}
