//! Cross-checks against `snow`, an independent Noise implementation: with the same keys our
//! XX messages must be byte-identical to snow's, and our libp2p handshake and transport must
//! interoperate with a snow peer carrying libp2p payloads.

use super::payload;
use super::xx::Xx;
use super::*;
use crate::identity::Keypair;
use bytes::BytesMut;
use rand::{RngCore, SeedableRng};

fn builder() -> snow::Builder<'static> {
    snow::Builder::new(NOISE_PROTOCOL_NAME.parse().expect("valid noise params"))
}

fn snow_side(initiator: bool, s: &[u8; 32], e: &[u8; 32], prologue: &[u8]) -> snow::HandshakeState {
    let b = builder()
        .local_private_key(s)
        .expect("static key")
        .fixed_ephemeral_key_for_testing_only(e)
        .prologue(prologue)
        .expect("prologue");
    if initiator {
        b.build_initiator().expect("initiator")
    } else {
        b.build_responder().expect("responder")
    }
}

fn snow_write(hs: &mut snow::HandshakeState, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 65535];
    let n = hs.write_message(payload, &mut buf).expect("snow write");
    buf.truncate(n);
    buf
}

fn snow_read(hs: &mut snow::HandshakeState, msg: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 65535];
    let n = hs.read_message(msg, &mut buf).expect("snow read");
    buf.truncate(n);
    buf
}

fn random32(rng: &mut rand::rngs::StdRng) -> [u8; 32] {
    let mut k = [0u8; 32];
    rng.fill_bytes(&mut k);
    k
}

/// Runs XX with our state and snow's on both sides in lockstep, asserting identical bytes.
fn lockstep(seed: u64, prologue: &[u8], p2: &[u8], p3: &[u8]) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (is, ie, rs, re) = (
        random32(&mut rng),
        random32(&mut rng),
        random32(&mut rng),
        random32(&mut rng),
    );
    let mut our_i = Xx::with_prologue(is, ie, prologue);
    let mut our_r = Xx::with_prologue(rs, re, prologue);
    let mut snow_i = snow_side(true, &is, &ie, prologue);
    let mut snow_r = snow_side(false, &rs, &re, prologue);

    let mut m1 = Vec::new();
    our_i.write_message_1(&mut m1);
    assert_eq!(m1, snow_write(&mut snow_i, &[]), "message 1");
    our_r.read_message_1(&m1).expect("our read 1");
    snow_read(&mut snow_r, &m1);

    let mut m2 = Vec::new();
    our_r.write_message_2(p2, &mut m2).expect("our write 2");
    assert_eq!(m2, snow_write(&mut snow_r, p2), "message 2");
    assert_eq!(our_i.read_message_2(&m2).expect("our read 2"), p2);
    assert_eq!(snow_read(&mut snow_i, &m2), p2);

    let mut m3 = Vec::new();
    our_i.write_message_3(p3, &mut m3).expect("our write 3");
    assert_eq!(m3, snow_write(&mut snow_i, p3), "message 3");
    assert_eq!(our_r.read_message_3(&m3).expect("our read 3"), p3);
    assert_eq!(snow_read(&mut snow_r, &m3), p3);

    assert_eq!(&our_i.handshake_hash()[..], snow_i.get_handshake_hash());
    assert_eq!(&our_r.handshake_hash()[..], snow_r.get_handshake_hash());
    assert_eq!(our_i.split(), snow_i.dangerously_get_raw_split());
    assert_eq!(our_r.split(), snow_r.dangerously_get_raw_split());
    assert_eq!(
        our_i.remote_static().as_ref().map(|k| &k[..]),
        snow_i.get_remote_static()
    );
}

#[test]
fn xx_messages_are_byte_identical_to_snow() {
    lockstep(1, &[], &[], &[]);
    lockstep(2, &[], b"responder payload", b"initiator payload");
    lockstep(3, b"a non-empty prologue is mixed in", &[7; 1000], &[8; 3]);
    for seed in 10..20 {
        lockstep(seed, &[], &[seed as u8; 200], &[]);
    }
}

/// Frames a snow transport message, as the libp2p wire carries it.
fn snow_seal(t: &mut snow::TransportState, plain: &[u8], wire: &mut BytesMut) {
    let mut buf = vec![0u8; plain.len() + 16];
    let n = t.write_message(plain, &mut buf).expect("snow seal");
    frame::encode(&buf[..n], wire).expect("frame");
}

/// Opens every frame in `wire` with snow.
fn snow_open_all(t: &mut snow::TransportState, wire: &mut BytesMut) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(msg) = frame::decode(wire, frame::MAX_FRAME_LEN).expect("frame") {
        let mut buf = vec![0u8; msg.len()];
        let n = t.read_message(&msg, &mut buf).expect("snow open");
        out.extend_from_slice(&buf[..n]);
    }
    out
}

fn check_transport(ours: &mut NoiseTransport, snow: &mut snow::TransportState, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for size in [1, 100, MAX_PLAINTEXT_LEN, MAX_PLAINTEXT_LEN + 1, 300_000] {
        let mut data = vec![0u8; size];
        rng.fill_bytes(&mut data);
        let mut wire = BytesMut::new();
        ours.sender.encrypt(&data, &mut wire).expect("encrypt");
        assert_eq!(snow_open_all(snow, &mut wire), data, "ours -> snow, {size}");

        let mut wire = BytesMut::new();
        for chunk in data.chunks(MAX_PLAINTEXT_LEN) {
            snow_seal(snow, chunk, &mut wire);
        }
        let mut got = Vec::new();
        while let Some(plain) = ours.receiver.decrypt_frame(&mut wire).expect("decrypt") {
            got.extend_from_slice(&plain);
        }
        assert_eq!(got, data, "snow -> ours, {size}");
    }
}

#[test]
fn our_initiator_against_a_snow_responder() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(40);
    let (alice, bob) = (Keypair::from_seed([1; 32]), Keypair::from_seed([2; 32]));
    let (bob_s, bob_e) = (random32(&mut rng), random32(&mut rng));
    let mut snow_r = snow_side(false, &bob_s, &bob_e, &[]);
    let bob_static = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(bob_s));
    let bob_payload = payload::encode(&bob, bob_static.as_bytes(), &["/yamux/1.0.0".into()]);

    let mut ours = Handshake::initiator(
        HandshakeConfig::new(&alice, random32(&mut rng), random32(&mut rng))
            .with_expected_remote(bob.peer_id()),
    );
    let mut wire = BytesMut::from(&ours.poll_transmit().expect("m1")[..]);
    let m1 = frame::decode(&mut wire, 65535)
        .expect("frame")
        .expect("whole");
    snow_read(&mut snow_r, &m1);
    let mut wire = BytesMut::new();
    frame::encode(&snow_write(&mut snow_r, &bob_payload), &mut wire).expect("frame");
    ours.handle_input(&mut wire).expect("our read 2");
    let mut wire = BytesMut::from(&ours.poll_transmit().expect("m3")[..]);
    let m3 = frame::decode(&mut wire, 65535)
        .expect("frame")
        .expect("whole");
    let alice_payload = snow_read(&mut snow_r, &m3);

    // The snow side verifies our payload against the static key snow saw.
    let seen: [u8; 32] = snow_r
        .get_remote_static()
        .expect("remote static")
        .try_into()
        .expect("32 bytes");
    let alice_id = payload::decode_and_verify(&alice_payload, &seen).expect("our payload");
    assert_eq!(alice_id.peer, alice.peer_id());
    assert!(ours.is_complete());
    assert_eq!(
        ours.remote_extensions().map(|e| e.stream_muxers.clone()),
        Some(vec!["/yamux/1.0.0".to_owned()])
    );
    assert_eq!(
        ours.handshake_hash().as_ref().map(|h| &h[..]),
        Some(snow_r.get_handshake_hash())
    );
    let (mut transport, peer, key) = ours.into_transport().expect("transport");
    assert_eq!((peer, key), (bob.peer_id(), bob.public()));
    let mut snow_t = snow_r.into_transport_mode().expect("snow transport");
    check_transport(&mut transport, &mut snow_t, 41);
}

#[test]
fn a_snow_initiator_against_our_responder() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(50);
    let (alice, bob) = (Keypair::from_seed([1; 32]), Keypair::from_seed([2; 32]));
    let (alice_s, alice_e) = (random32(&mut rng), random32(&mut rng));
    let mut snow_i = snow_side(true, &alice_s, &alice_e, &[]);
    let alice_static = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(alice_s));
    let alice_payload = payload::encode(&alice, alice_static.as_bytes(), &[]);

    let mut ours = Handshake::responder(
        HandshakeConfig::new(&bob, random32(&mut rng), random32(&mut rng))
            .with_expected_remote(alice.peer_id()),
    );
    let mut wire = BytesMut::new();
    frame::encode(&snow_write(&mut snow_i, &[]), &mut wire).expect("frame");
    ours.handle_input(&mut wire).expect("our read 1");
    let mut wire = BytesMut::from(&ours.poll_transmit().expect("m2")[..]);
    let m2 = frame::decode(&mut wire, 65535)
        .expect("frame")
        .expect("whole");
    let bob_payload = snow_read(&mut snow_i, &m2);
    let seen: [u8; 32] = snow_i
        .get_remote_static()
        .expect("remote static")
        .try_into()
        .expect("32 bytes");
    let bob_id = payload::decode_and_verify(&bob_payload, &seen).expect("our payload");
    assert_eq!(bob_id.peer, bob.peer_id());
    assert!(!ours.is_complete());

    let mut wire = BytesMut::new();
    frame::encode(&snow_write(&mut snow_i, &alice_payload), &mut wire).expect("frame");
    ours.handle_input(&mut wire).expect("our read 3");
    assert!(ours.is_complete());
    let (mut transport, peer, _) = ours.into_transport().expect("transport");
    assert_eq!(peer, alice.peer_id());
    let mut snow_t = snow_i.into_transport_mode().expect("snow transport");
    check_transport(&mut transport, &mut snow_t, 51);
}

#[test]
fn a_snow_peer_signing_for_someone_else_is_rejected() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(60);
    let (alice, bob, mallory) = (
        Keypair::from_seed([1; 32]),
        Keypair::from_seed([2; 32]),
        Keypair::from_seed([3; 32]),
    );
    let (s, e) = (random32(&mut rng), random32(&mut rng));
    let mut snow_r = snow_side(false, &s, &e, &[]);
    // Mallory signs a different static key than the one snow uses.
    let wrong = payload::encode(&mallory, &[1; 32], &[]);
    let mut ours = Handshake::initiator(
        HandshakeConfig::new(&alice, random32(&mut rng), random32(&mut rng))
            .with_expected_remote(bob.peer_id()),
    );
    let mut wire = BytesMut::from(&ours.poll_transmit().expect("m1")[..]);
    let m1 = frame::decode(&mut wire, 65535)
        .expect("frame")
        .expect("whole");
    snow_read(&mut snow_r, &m1);
    let mut wire = BytesMut::new();
    frame::encode(&snow_write(&mut snow_r, &wrong), &mut wire).expect("frame");
    assert_eq!(
        ours.handle_input(&mut wire),
        Err(NoiseError::BadSignature {
            peer: mallory.peer_id()
        })
    );
}
