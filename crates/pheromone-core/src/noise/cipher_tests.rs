//! Transport-cipher negotiation between two of our own endpoints: AES-256-GCM only when
//! both offered it, ChaChaPoly otherwise, and hostile offers refused or ignored.

use super::payload;
use super::tests::{cfg, drive, kp, Failure};
use super::*;
use crate::identity::Keypair;
use bytes::BytesMut;
use rand::SeedableRng;

/// Runs a handshake with the given offers and returns both transports.
fn negotiate(offer_i: bool, offer_r: bool) -> (NoiseTransport, NoiseTransport) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let (alice, bob) = (kp(1), kp(2));
    let mut i = Handshake::initiator(cfg(&alice, &mut rng).with_aes_gcm(offer_i));
    let mut r = Handshake::responder(cfg(&bob, &mut rng).with_aes_gcm(offer_r));
    assert_eq!(i.transport_cipher(), None, "unknown before message 2");
    drive(&mut i, &mut r).expect("handshake");
    assert_eq!(i.transport_cipher(), r.transport_cipher());
    let (ti, ..) = i.into_transport().expect("initiator transport");
    let (tr, ..) = r.into_transport().expect("responder transport");
    (ti, tr)
}

fn exchange(a: &mut NoiseTransport, b: &mut NoiseTransport, len: usize) {
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    for (tx, rx) in [
        (&mut a.sender, &mut b.receiver),
        (&mut b.sender, &mut a.receiver),
    ] {
        let mut wire = BytesMut::new();
        tx.encrypt(&data, &mut wire).expect("encrypt");
        let mut got = Vec::new();
        while let Some(plain) = rx.decrypt_frame(&mut wire).expect("decrypt") {
            got.extend_from_slice(&plain);
        }
        assert_eq!(got, data);
    }
}

#[test]
fn both_offers_give_aes_gcm() {
    let (mut a, mut b) = negotiate(true, true);
    assert_eq!(a.cipher(), TransportCipher::AesGcm);
    assert_eq!(b.cipher(), TransportCipher::AesGcm);
    exchange(&mut a, &mut b, 300_000);
}

#[test]
fn one_offer_or_none_gives_chacha_poly() {
    for (offer_i, offer_r) in [(true, false), (false, true), (false, false)] {
        let (mut a, mut b) = negotiate(offer_i, offer_r);
        assert_eq!(
            a.cipher(),
            TransportCipher::ChaChaPoly,
            "{offer_i} {offer_r}"
        );
        assert_eq!(
            b.cipher(),
            TransportCipher::ChaChaPoly,
            "{offer_i} {offer_r}"
        );
        exchange(&mut a, &mut b, 70_000);
    }
}

#[test]
fn the_aes_keys_differ_from_the_chacha_keys_of_the_same_handshake() {
    // Same secrets, so the same split keys: an AES frame must not open under ChaChaPoly.
    let (mut aes, _) = negotiate(true, true);
    let (_, mut chacha) = negotiate(false, false);
    let mut wire = BytesMut::new();
    aes.sender.encrypt(b"hello", &mut wire).expect("encrypt");
    assert_eq!(
        chacha.receiver.decrypt_frame(&mut wire),
        Err(NoiseError::Decrypt)
    );
}

#[test]
fn a_prepared_static_key_offers_too() {
    let alice = kp(3);
    let bob = kp(4);
    let key = StaticKey::new(&bob, [9; 32], &[]);
    for offer in [true, false] {
        let mut i =
            Handshake::initiator(HandshakeConfig::new(&alice, [5; 32], [6; 32]).with_aes_gcm(true));
        let mut r = Handshake::responder(
            HandshakeConfig::new(&bob, [0; 32], [7; 32])
                .with_static_key(&key)
                .with_aes_gcm(offer),
        );
        drive(&mut i, &mut r).expect("handshake");
        let want = if offer {
            TransportCipher::AesGcm
        } else {
            TransportCipher::ChaChaPoly
        };
        assert_eq!(i.transport_cipher(), Some(want));
        assert_eq!(r.transport_cipher(), Some(want));
    }
}

/// A responder whose payload is signed correctly but carries `names` in field 1001.
fn responder_offering(bob: &Keypair, names: &[&[u8]]) -> Handshake {
    let mut r = Handshake::responder(HandshakeConfig::new(bob, [8; 32], [9; 32]));
    let sig = bob.sign(&[STATIC_KEY_DOMAIN, &testing::local_static(&r)[..]].concat());
    let mut forged = testing::encode_payload(&bob.public(), &sig);
    for name in names {
        payload::append_transport_cipher(&mut forged, name);
    }
    testing::replace_local_payload(&mut r, forged);
    r
}

#[test]
fn unknown_names_in_a_remote_offer_are_ignored() {
    let (alice, bob) = (kp(5), kp(6));
    for (names, want) in [
        (
            &[&b"AESGCM-SIV"[..], b"ChaChaPoly"][..],
            TransportCipher::ChaChaPoly,
        ),
        (&[&b"Kyber"[..], b"AESGCM"][..], TransportCipher::AesGcm),
    ] {
        let mut i =
            Handshake::initiator(HandshakeConfig::new(&alice, [1; 32], [2; 32]).with_aes_gcm(true));
        let mut r = responder_offering(&bob, names);
        drive(&mut i, &mut r).expect("handshake");
        assert_eq!(i.transport_cipher(), Some(want));
    }
}

#[test]
fn oversized_remote_offers_fail_the_handshake() {
    let (alice, bob) = (kp(7), kp(8));
    let many = vec![&b"AESGCM"[..]; MAX_TRANSPORT_CIPHERS + 1];
    let long = [b'A'; MAX_TRANSPORT_CIPHER_NAME + 1];
    for (names, err) in [
        (
            many,
            NoiseError::TooManyTransportCiphers {
                max: MAX_TRANSPORT_CIPHERS,
            },
        ),
        (
            vec![&long[..]],
            NoiseError::TransportCipherNameTooLong {
                len: MAX_TRANSPORT_CIPHER_NAME + 1,
                max: MAX_TRANSPORT_CIPHER_NAME,
            },
        ),
    ] {
        // Even an initiator that offers nothing refuses a hostile list.
        let mut i = Handshake::initiator(HandshakeConfig::new(&alice, [1; 32], [2; 32]));
        let mut r = responder_offering(&bob, &names);
        assert_eq!(drive(&mut i, &mut r), Err(Failure::Initiator(err)));
        assert_eq!(i.transport_cipher(), None);
    }
}

#[test]
fn fuzz_body_accepts_real_offers() {
    let mut p = Vec::new();
    payload::append_aes_gcm_offer(&mut p);
    fuzzing::fuzz_decode_transport_ciphers(&p);
    fuzzing::fuzz_decode_transport_ciphers(&[0xca, 0x3e, 0xff]);
}
