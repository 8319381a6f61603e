//! Handshake and transport tests between two of our own endpoints, including hostile
//! peers: forged payloads, wrong identities, garbage, truncation and tampering.

use super::fuzzing;
use super::payload::{self, MAX_HANDSHAKE_PAYLOAD};
use super::*;
use crate::identity::{Keypair, PeerId};
use bytes::BytesMut;
use proptest::prelude::*;
use rand::{RngCore, SeedableRng};

pub(super) fn kp(seed: u8) -> Keypair {
    Keypair::from_seed([seed; 32])
}

fn secrets(rng: &mut rand::rngs::StdRng) -> ([u8; 32], [u8; 32]) {
    let mut s = [0u8; 32];
    let mut e = [0u8; 32];
    rng.fill_bytes(&mut s);
    rng.fill_bytes(&mut e);
    (s, e)
}

pub(super) fn cfg<'a>(identity: &'a Keypair, rng: &mut rand::rngs::StdRng) -> HandshakeConfig<'a> {
    let (s, e) = secrets(rng);
    HandshakeConfig::new(identity, s, e)
}

/// Which side failed, and how.
#[derive(Debug, PartialEq)]
pub(super) enum Failure {
    Initiator(NoiseError),
    Responder(NoiseError),
}

/// Moves bytes between the two until both are complete or one fails.
pub(super) fn drive(i: &mut Handshake, r: &mut Handshake) -> Result<(), Failure> {
    let mut to_r = BytesMut::new();
    let mut to_i = BytesMut::new();
    for _ in 0..4 {
        while let Some(b) = i.poll_transmit() {
            to_r.extend_from_slice(&b);
        }
        r.handle_input(&mut to_r).map_err(Failure::Responder)?;
        while let Some(b) = r.poll_transmit() {
            to_i.extend_from_slice(&b);
        }
        i.handle_input(&mut to_i).map_err(Failure::Initiator)?;
        if i.is_complete() && r.is_complete() {
            return Ok(());
        }
    }
    panic!("handshake did not finish in four rounds");
}

fn established(seed: u64) -> (NoiseTransport, NoiseTransport) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (alice, bob) = (kp(1), kp(2));
    let mut i = Handshake::initiator(cfg(&alice, &mut rng));
    let mut r = Handshake::responder(cfg(&bob, &mut rng));
    drive(&mut i, &mut r).expect("handshake");
    let (ti, ..) = i.into_transport().expect("initiator transport");
    let (tr, ..) = r.into_transport().expect("responder transport");
    (ti, tr)
}

/// Decrypts `wire` fed in `step`-byte reads, as a socket would deliver it.
fn receive_in_pieces(rx: &mut NoiseReceiver, wire: &[u8], step: usize) -> Vec<u8> {
    let mut input = BytesMut::new();
    let mut out = Vec::new();
    for piece in wire.chunks(step) {
        input.extend_from_slice(piece);
        while let Some(plain) = rx.decrypt_frame(&mut input).expect("decrypt") {
            out.extend_from_slice(&plain);
        }
    }
    assert!(input.is_empty());
    out
}

#[test]
fn handshake_authenticates_both_sides_and_transports_all_sizes() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let (alice, bob) = (kp(1), kp(2));
    let mut i = Handshake::initiator(cfg(&alice, &mut rng).with_expected_remote(bob.peer_id()));
    let mut r = Handshake::responder(cfg(&bob, &mut rng));
    assert!(i.is_initiator() && !r.is_initiator());
    assert_eq!(i.handshake_hash(), None);
    drive(&mut i, &mut r).expect("handshake");
    assert_eq!(i.remote_peer(), Some(bob.peer_id()));
    assert_eq!(r.remote_peer(), Some(alice.peer_id()));
    assert!(i.handshake_hash().is_some());
    assert_eq!(i.handshake_hash(), r.handshake_hash());
    let (mut ti, bob_id, bob_key) = i.into_transport().expect("initiator");
    let (mut tr, alice_id, alice_key) = r.into_transport().expect("responder");
    assert_eq!((bob_id, bob_key), (bob.peer_id(), bob.public()));
    assert_eq!((alice_id, alice_key), (alice.peer_id(), alice.public()));

    let sizes = [
        1,
        15,
        16,
        17,
        1000,
        MAX_PLAINTEXT_LEN - 1,
        MAX_PLAINTEXT_LEN,
        MAX_PLAINTEXT_LEN + 1,
        2 * MAX_PLAINTEXT_LEN,
        2 * MAX_PLAINTEXT_LEN + 1,
        1 << 20,
    ];
    for &size in &sizes {
        let mut data = vec![0u8; size];
        rng.fill_bytes(&mut data);
        for (tx, rx) in [
            (&mut ti.sender, &mut tr.receiver),
            (&mut tr.sender, &mut ti.receiver),
        ] {
            let mut wire = BytesMut::new();
            tx.encrypt(&data, &mut wire).expect("encrypt");
            assert_eq!(wire.len(), encrypted_len(size));
            assert_eq!(receive_in_pieces(rx, &wire, 4099), data, "size {size}");
        }
    }
}

#[test]
fn byte_at_a_time_delivery_works() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let (alice, bob) = (kp(1), kp(2));
    let mut i = Handshake::initiator(cfg(&alice, &mut rng));
    let mut r = Handshake::responder(cfg(&bob, &mut rng));
    // In flight towards each side, and each side's receive buffer.
    let (mut to_r, mut to_i) = (BytesMut::new(), BytesMut::new());
    let (mut r_in, mut i_in) = (BytesMut::new(), BytesMut::new());
    for _ in 0..10_000 {
        while let Some(b) = i.poll_transmit() {
            to_r.extend_from_slice(&b);
        }
        while let Some(b) = r.poll_transmit() {
            to_i.extend_from_slice(&b);
        }
        if i.is_complete() && r.is_complete() {
            break;
        }
        if !to_r.is_empty() {
            r_in.extend_from_slice(&to_r.split_to(1));
            r.handle_input(&mut r_in).expect("responder");
        }
        if !to_i.is_empty() {
            i_in.extend_from_slice(&to_i.split_to(1));
            i.handle_input(&mut i_in).expect("initiator");
        }
    }
    assert!(i.is_complete() && r.is_complete());
    assert!(r_in.is_empty() && i_in.is_empty());
}

#[test]
fn transport_data_right_behind_message_3_is_left_for_the_receiver() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let (alice, bob) = (kp(1), kp(2));
    let mut i = Handshake::initiator(cfg(&alice, &mut rng));
    let mut r = Handshake::responder(cfg(&bob, &mut rng));
    let mut to_r = BytesMut::from(&i.poll_transmit().expect("msg1")[..]);
    r.handle_input(&mut to_r).expect("msg1");
    let mut to_i = BytesMut::from(&r.poll_transmit().expect("msg2")[..]);
    i.handle_input(&mut to_i).expect("msg2");
    assert!(!i.is_complete(), "message 3 not yet taken");
    assert_eq!(
        Handshake::initiator(cfg(&alice, &mut rng))
            .into_transport()
            .err(),
        Some(NoiseError::HandshakeIncomplete)
    );
    let mut wire = BytesMut::from(&i.poll_transmit().expect("msg3")[..]);
    assert!(i.is_complete());
    let (mut ti, ..) = i.into_transport().expect("initiator");
    ti.sender
        .encrypt(b"early bird", &mut wire)
        .expect("encrypt");
    r.handle_input(&mut wire).expect("msg3");
    assert!(r.is_complete());
    let (mut tr, ..) = r.into_transport().expect("responder");
    let plain = tr
        .receiver
        .decrypt_frame(&mut wire)
        .expect("ok")
        .expect("frame");
    assert_eq!(&plain[..], b"early bird");
}

#[test]
fn stream_muxers_travel_in_the_extensions() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let (alice, bob) = (kp(1), kp(2));
    let muxers = vec!["/yamux/1.0.0".to_owned()];
    let mut i = Handshake::initiator(cfg(&alice, &mut rng).with_stream_muxers(muxers.clone()));
    let mut r = Handshake::responder(cfg(&bob, &mut rng));
    drive(&mut i, &mut r).expect("handshake");
    assert_eq!(i.remote_extensions(), None, "bob advertised nothing");
    assert_eq!(
        r.remote_extensions().map(|e| e.stream_muxers.clone()),
        Some(muxers)
    );
}

#[test]
fn wrong_peer_is_named_in_the_error() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let (alice, bob, carol) = (kp(1), kp(2), kp(3));
    let mut i = Handshake::initiator(cfg(&alice, &mut rng).with_expected_remote(carol.peer_id()));
    let mut r = Handshake::responder(cfg(&bob, &mut rng));
    let err = drive(&mut i, &mut r).expect_err("bob is not carol");
    assert_eq!(
        err,
        Failure::Initiator(NoiseError::PeerIdMismatch {
            expected: carol.peer_id(),
            actual: bob.peer_id()
        })
    );
    assert!(err_text(&err).contains(&carol.peer_id().to_string()));
    assert!(err_text(&err).contains(&bob.peer_id().to_string()));
    // A failed handshake stays failed and yields no transport or identity.
    assert_eq!(i.remote_peer(), None);
    assert_eq!(
        i.handle_input(&mut BytesMut::new()),
        Err(NoiseError::HandshakeFailed)
    );
    assert_eq!(i.into_transport().err(), Some(NoiseError::HandshakeFailed));

    // The responder can pin the initiator too.
    let mut i = Handshake::initiator(cfg(&alice, &mut rng));
    let mut r = Handshake::responder(cfg(&bob, &mut rng).with_expected_remote(carol.peer_id()));
    assert_eq!(
        drive(&mut i, &mut r),
        Err(Failure::Responder(NoiseError::PeerIdMismatch {
            expected: carol.peer_id(),
            actual: alice.peer_id()
        }))
    );
}

fn err_text(f: &Failure) -> String {
    match f {
        Failure::Initiator(e) | Failure::Responder(e) => e.to_string(),
    }
}

#[test]
fn forged_identity_payloads_are_rejected() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(6);
    let (alice, bob, victim) = (kp(1), kp(2), kp(3));

    // Bob claims to be the victim, signing his static key with his own identity key.
    let mut i = Handshake::initiator(cfg(&alice, &mut rng));
    let mut r = Handshake::responder(cfg(&bob, &mut rng));
    let sig = bob.sign(&[STATIC_KEY_DOMAIN, &r.local_static()[..]].concat());
    r.set_local_payload(payload::encode_raw(&victim.public(), &sig, &[]));
    assert_eq!(
        drive(&mut i, &mut r),
        Err(Failure::Initiator(NoiseError::BadSignature {
            peer: victim.peer_id()
        }))
    );

    // Alice replays a genuine victim payload made for some other static key.
    let mut i = Handshake::initiator(cfg(&alice, &mut rng));
    let mut r = Handshake::responder(cfg(&bob, &mut rng));
    i.set_local_payload(payload::encode(&victim, &[9; 32], &[]));
    assert_eq!(
        drive(&mut i, &mut r),
        Err(Failure::Responder(NoiseError::BadSignature {
            peer: victim.peer_id()
        }))
    );
    assert_eq!(r.remote_peer(), None);
}

#[test]
fn unsupported_or_missing_identity_keys_are_typed_errors() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (alice, bob) = (kp(1), kp(2));
    // field 1 = PublicKey{Type: RSA(0), Data: 4 bytes}, field 2 = 64-byte "signature".
    let mut rsa = vec![0x0a, 8, 0x08, 0x00, 0x12, 4, 1, 2, 3, 4, 0x12, 64];
    rsa.extend_from_slice(&[0u8; 64]);
    let mut i = Handshake::initiator(cfg(&alice, &mut rng));
    let mut r = Handshake::responder(cfg(&bob, &mut rng));
    r.set_local_payload(rsa);
    assert!(matches!(
        drive(&mut i, &mut r),
        Err(Failure::Initiator(NoiseError::IdentityKey(_)))
    ));
    let mut i = Handshake::initiator(cfg(&alice, &mut rng));
    let mut r = Handshake::responder(cfg(&bob, &mut rng));
    i.set_local_payload(Vec::new());
    assert!(matches!(
        drive(&mut i, &mut r),
        Err(Failure::Responder(NoiseError::IdentityKey(_)))
    ));
}

#[test]
fn garbage_in_place_of_each_message() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let (alice, bob) = (kp(1), kp(2));
    let mut garbage = vec![0u8; 200];
    rng.fill_bytes(&mut garbage);
    let framed = |body: &[u8]| {
        let mut out = BytesMut::new();
        frame::encode(body, &mut out).expect("frame");
        out
    };

    // Message 1 is only a public key: 32 random bytes are a valid one, fewer are not.
    let mut r = Handshake::responder(cfg(&bob, &mut rng));
    r.handle_input(&mut framed(&garbage[..32]))
        .expect("any point is a key");
    assert!(r.poll_transmit().is_some(), "message 2 answers it");
    let mut r = Handshake::responder(cfg(&bob, &mut rng));
    assert_eq!(
        r.handle_input(&mut framed(&garbage[..20])),
        Err(NoiseError::HandshakeMessageTooShort {
            message: 1,
            len: 20,
            min: 32
        })
    );
    // A low-order ephemeral key is refused.
    let mut r = Handshake::responder(cfg(&bob, &mut rng));
    assert_eq!(
        r.handle_input(&mut framed(&[0u8; 32])),
        Err(NoiseError::LowOrderPoint)
    );

    // Random message 2: authentication of the encrypted static key fails.
    let mut i = Handshake::initiator(cfg(&alice, &mut rng));
    i.poll_transmit();
    assert_eq!(
        i.handle_input(&mut framed(&garbage)),
        Err(NoiseError::Decrypt)
    );
    let mut i = Handshake::initiator(cfg(&alice, &mut rng));
    assert!(matches!(
        i.handle_input(&mut framed(&garbage[..50])),
        Err(NoiseError::HandshakeMessageTooShort { message: 2, .. })
    ));

    // Random message 3 after a genuine message 1.
    let mut i = Handshake::initiator(cfg(&alice, &mut rng));
    let mut r = Handshake::responder(cfg(&bob, &mut rng));
    let mut m1 = BytesMut::from(&i.poll_transmit().expect("m1")[..]);
    r.handle_input(&mut m1).expect("m1");
    assert_eq!(
        r.handle_input(&mut framed(&garbage)),
        Err(NoiseError::Decrypt)
    );
}

#[test]
fn truncated_and_oversized_messages() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let (alice, bob) = (kp(1), kp(2));
    let mut i = Handshake::initiator(cfg(&alice, &mut rng));
    let mut r = Handshake::responder(cfg(&bob, &mut rng));
    let mut m1 = BytesMut::from(&i.poll_transmit().expect("m1")[..]);
    r.handle_input(&mut m1).expect("m1");
    let m2 = r.poll_transmit().expect("m2");

    // Cut short in transit: nothing happens until the rest arrives.
    let mut partial = BytesMut::from(&m2[..m2.len() - 10]);
    i.handle_input(&mut partial).expect("waits");
    assert!(i.poll_transmit().is_none());
    partial.extend_from_slice(&m2[m2.len() - 10..]);
    i.handle_input(&mut partial).expect("now whole");
    assert!(i.poll_transmit().is_some());

    // Truncated and re-framed: the tag no longer matches.
    let mut i = Handshake::initiator(cfg(&alice, &mut rng));
    let mut r = Handshake::responder(cfg(&bob, &mut rng));
    let mut m1 = BytesMut::from(&i.poll_transmit().expect("m1")[..]);
    r.handle_input(&mut m1).expect("m1");
    let m2 = r.poll_transmit().expect("m2");
    let mut cut = BytesMut::new();
    frame::encode(&m2[2..m2.len() - 1], &mut cut).expect("frame");
    assert_eq!(i.handle_input(&mut cut), Err(NoiseError::Decrypt));

    // An announced length beyond any valid message fails on the prefix alone.
    let mut r = Handshake::responder(cfg(&bob, &mut rng));
    let err = r.handle_input(&mut BytesMut::from(&[0xff, 0xff][..]));
    assert!(matches!(
        err,
        Err(NoiseError::FrameTooLarge { len: 65535, .. })
    ));
    let mut i = Handshake::initiator(cfg(&alice, &mut rng));
    let too_long = (MAX_HANDSHAKE_PAYLOAD + 200) as u16;
    let err = i.handle_input(&mut BytesMut::from(&too_long.to_be_bytes()[..]));
    assert!(matches!(err, Err(NoiseError::FrameTooLarge { .. })));
}

#[test]
fn oversized_local_payload_is_refused_not_sent() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(10);
    let (alice, bob) = (kp(1), kp(2));
    let huge = vec!["m".repeat(MAX_HANDSHAKE_PAYLOAD)];
    let mut i = Handshake::initiator(cfg(&alice, &mut rng));
    let mut r = Handshake::responder(cfg(&bob, &mut rng).with_stream_muxers(huge));
    assert!(matches!(
        drive(&mut i, &mut r),
        Err(Failure::Responder(NoiseError::PayloadTooLarge { .. }))
    ));
    assert!(r.poll_transmit().is_none());
}

#[test]
fn tampered_transport_frames_are_fatal_errors() {
    let (mut a, mut b) = established(11);
    let mut wire = BytesMut::new();
    a.sender.encrypt(&[5u8; 300], &mut wire).expect("encrypt");
    let good = wire.clone();
    for at in [2, 100, wire.len() - 1] {
        let (mut a2, mut b2) = established(11);
        let mut w = BytesMut::new();
        a2.sender.encrypt(&[5u8; 300], &mut w).expect("encrypt");
        w[at] ^= 0x80;
        assert_eq!(b2.receiver.decrypt_frame(&mut w), Err(NoiseError::Decrypt));
    }
    // Replay: the same frame twice fails the second time (nonce moved on).
    let mut once = good.clone();
    assert!(b.receiver.decrypt_frame(&mut once).expect("ok").is_some());
    let mut again = good;
    assert_eq!(
        b.receiver.decrypt_frame(&mut again),
        Err(NoiseError::Decrypt)
    );
    // Our own direction cannot be decrypted with the other key (reflection).
    let mut reflected = BytesMut::new();
    a.sender
        .encrypt(b"mirror", &mut reflected)
        .expect("encrypt");
    assert_eq!(
        a.receiver.decrypt_frame(&mut reflected),
        Err(NoiseError::Decrypt)
    );
}

#[test]
fn peer_ids_are_those_of_the_identity_keys() {
    let (alice, bob) = (kp(1), kp(2));
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let mut i = Handshake::initiator(cfg(&alice, &mut rng));
    let mut r = Handshake::responder(cfg(&bob, &mut rng));
    drive(&mut i, &mut r).expect("handshake");
    let id: PeerId = r
        .remote_peer()
        .expect("known")
        .to_string()
        .parse()
        .expect("parse");
    assert_eq!(id, alice.peer_id());
    assert!(id.to_string().starts_with("12D3KooW"));
}

#[test]
fn fuzz_bodies_accept_real_traffic() {
    // The tamper target with nothing to flip must complete a handshake and a round trip.
    fuzzing::fuzz_handshake_tamper(&[0]);
    fuzzing::fuzz_handshake_tamper(&[1, 5, 0]);
    fuzzing::fuzz_transport_decrypt(&vec![3u8; 70_000]);
    let mut m1 = BytesMut::new();
    let alice = kp(1);
    let mut i = Handshake::initiator(HandshakeConfig::new(&alice, [2; 32], [3; 32]));
    m1.extend_from_slice(&i.poll_transmit().expect("m1"));
    fuzzing::fuzz_responder(&m1);
}

proptest! {
    // Every case runs Ed25519 and X25519 in a debug build; 64 keeps the suite quick.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn handshake_decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        fuzzing::fuzz_responder(&data);
        fuzzing::fuzz_initiator(&data);
        fuzzing::fuzz_decode_frame(&data);
        fuzzing::fuzz_decode_payload(&data);
        fuzzing::fuzz_transport_decrypt(&data);
    }

    #[test]
    fn tampering_any_handshake_message_never_panics(
        data in proptest::collection::vec(any::<u8>(), 0..40)
    ) {
        fuzzing::fuzz_handshake_tamper(&data);
    }

    #[test]
    fn framed_garbage_never_panics(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        initiator in any::<bool>(),
    ) {
        let mut wire = BytesMut::new();
        frame::encode(&body, &mut wire).expect("frame");
        if initiator { fuzzing::fuzz_initiator(&wire) } else { fuzzing::fuzz_responder(&wire) }
    }
}

#[test]
fn debug_output_never_shows_secrets() {
    let alice = kp(1);
    let cfg = HandshakeConfig::new(&alice, [0xab; 32], [0xcd; 32]);
    let text = format!("{cfg:?} {:?}", Handshake::initiator(cfg.clone()));
    assert!(!text.contains("171") && !text.contains("205"), "{text}");
    assert!(!text.to_lowercase().contains("abab") && !text.to_lowercase().contains("cdcd"));
}

#[test]
fn a_prepared_static_key_serves_many_handshakes() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(77);
    let (alice, bob) = (kp(1), kp(2));
    let (s, _) = secrets(&mut rng);
    let key = StaticKey::new(&alice, s, &[]);
    for _ in 0..3 {
        let (_, e) = secrets(&mut rng);
        let mut i =
            Handshake::initiator(HandshakeConfig::new(&alice, [0; 32], e).with_static_key(&key));
        let mut r = Handshake::responder(cfg(&bob, &mut rng));
        drive(&mut i, &mut r).expect("handshake");
        let (_, bob_sees, _) = r.into_transport().expect("transport");
        assert_eq!(bob_sees, alice.peer_id());
        let (_, alice_sees, _) = i.into_transport().expect("transport");
        assert_eq!(alice_sees, bob.peer_id());
    }
}
