//! Tests of the post-handshake Noise transport: round trips in both ciphers, nonce
//! order, tampering and truncation, and the never-panics proptests.

use super::*;
use proptest::prelude::*;

/// Two transports wired to each other, as after a handshake.
fn linked() -> (NoiseTransport, NoiseTransport) {
    let a = NoiseTransport::new(&[1; 32], &[2; 32]).expect("keys");
    let b = NoiseTransport::new(&[2; 32], &[1; 32]).expect("keys");
    (a, b)
}

fn drain(receiver: &mut NoiseReceiver, wire: &mut BytesMut) -> Vec<u8> {
    let mut got = Vec::new();
    while let Some(plain) = receiver.decrypt_frame(wire).expect("decrypt") {
        got.extend_from_slice(&plain);
    }
    got
}

#[test]
fn frames_are_filled_to_the_maximum() {
    assert_eq!(MAX_PLAINTEXT_LEN, 65519);
    let (mut a, mut b) = linked();
    let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    let mut wire = BytesMut::new();
    a.sender.encrypt(&data, &mut wire).expect("encrypt");
    assert_eq!(wire.len(), encrypted_len(data.len()));
    assert_eq!(a.sender.nonce(), 4);
    assert_eq!(frame::peek_len(&wire), Some(MAX_FRAME_LEN));
    assert_eq!(drain(&mut b.receiver, &mut wire), data);
    assert_eq!(b.receiver.nonce(), 4);
    assert!(wire.is_empty());
}

#[test]
fn a_pair_seals_to_the_bytes_of_its_concatenation() {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let m = MAX_PLAINTEXT_LEN;
    // Splits inside a frame, on frame edges, one byte around them, and at either end.
    for split in [
        0,
        1,
        12,
        m - 1,
        m,
        m + 1,
        2 * m + 5,
        data.len() - 1,
        data.len(),
    ] {
        for aes in [false, true] {
            let link = || if aes { linked_aes() } else { linked() };
            let (mut whole, _) = link();
            let (mut pair, mut b) = link();
            let mut expected = BytesMut::new();
            whole.sender.encrypt(&data, &mut expected).expect("encrypt");
            let mut room = vec![0u8; encrypted_len(data.len())];
            let n = pair
                .sender
                .encrypt_pair_into(&data[..split], &data[split..], &mut room)
                .expect("encrypt_pair_into");
            assert_eq!(n, expected.len(), "split {split}, aes {aes}");
            assert!(room == expected[..], "split {split}, aes {aes}");
            assert_eq!(pair.sender.nonce(), whole.sender.nonce());
            let mut wire = BytesMut::from(&room[..]);
            assert_eq!(drain(&mut b.receiver, &mut wire), data);
        }
    }
}

#[test]
fn encrypt_into_writes_what_encrypt_appends_and_checks_its_room() {
    for (mut a, mut b) in [linked(), linked_aes()] {
        let (mut a2, _) = if a.cipher() == TransportCipher::AesGcm {
            linked_aes()
        } else {
            linked()
        };
        let data: Vec<u8> = (0..150_000u32).map(|i| (i * 13) as u8).collect();
        let mut appended = BytesMut::new();
        a.sender.encrypt(&data, &mut appended).expect("encrypt");
        // Room beyond the frames is left alone.
        let mut room = vec![0xa5u8; encrypted_len(data.len()) + 7];
        let n = a2
            .sender
            .encrypt_into(&data, &mut room)
            .expect("encrypt_into");
        assert_eq!(n, encrypted_len(data.len()));
        assert_eq!(&room[..n], &appended[..]);
        assert_eq!(&room[n..], &[0xa5; 7]);
        let mut short = vec![0u8; n - 1];
        assert_eq!(
            a2.sender.encrypt_into(&data, &mut short),
            Err(NoiseError::BufferTooSmall {
                needed: n,
                got: n - 1
            })
        );
        assert_eq!(a2.sender.nonce(), a.sender.nonce(), "no nonce spent");
        assert_eq!(drain(&mut b.receiver, &mut appended), data);
    }
}

#[test]
fn empty_plaintext_writes_nothing() {
    let (mut a, _) = linked();
    let mut wire = BytesMut::new();
    a.sender.encrypt(&[], &mut wire).expect("encrypt");
    assert!(wire.is_empty());
    assert_eq!(a.sender.nonce(), 0);
}

#[test]
fn partial_frames_wait_for_more_bytes() {
    let (mut a, mut b) = linked();
    let mut wire = BytesMut::new();
    a.sender.encrypt(b"hello", &mut wire).expect("encrypt");
    let full = wire.split();
    for cut in 0..full.len() {
        let mut part = BytesMut::from(&full[..cut]);
        assert_eq!(b.receiver.decrypt_frame(&mut part), Ok(None));
        assert_eq!(part.len(), cut);
    }
    let mut whole = full.clone();
    assert_eq!(
        b.receiver.decrypt_frame(&mut whole).expect("ok").as_deref(),
        Some(&b"hello"[..])
    );
}

#[test]
fn tampering_reordering_and_short_frames_are_errors() {
    let (mut a, mut b) = linked();
    let mut wire = BytesMut::new();
    a.sender.encrypt(b"first", &mut wire).expect("encrypt");
    let first = wire.split();
    a.sender.encrypt(b"second", &mut wire).expect("encrypt");
    let second = wire.split();

    // Flip each byte of the body in turn: every one must be caught.
    for i in LEN_PREFIX..first.len() {
        let mut bad = first.clone();
        bad[i] ^= 0x40;
        let (_, mut fresh) = linked();
        assert_eq!(
            fresh.receiver.decrypt_frame(&mut bad),
            Err(NoiseError::Decrypt)
        );
    }
    // Out of order: the second frame under nonce 0.
    let mut swapped = second.clone();
    assert_eq!(
        b.receiver.decrypt_frame(&mut swapped),
        Err(NoiseError::Decrypt)
    );
    // A frame too short to hold a tag.
    let mut short = BytesMut::from(&[0, 3, 1, 2, 3][..]);
    assert_eq!(
        b.receiver.decrypt_frame(&mut short),
        Err(NoiseError::FrameTooShort { len: 3 })
    );
}

#[test]
fn nonces_never_wrap() {
    let (mut a, mut b) = linked();
    a.sender.set_nonce(u64::MAX - 2);
    b.receiver.set_nonce(u64::MAX - 2);
    let mut wire = BytesMut::new();
    // Two frames need nonces MAX-2 and MAX-1: allowed.
    let two_frames = vec![0u8; MAX_PLAINTEXT_LEN + 1];
    a.sender
        .encrypt(&two_frames, &mut wire)
        .expect("last nonces");
    assert_eq!(drain(&mut b.receiver, &mut wire), two_frames);
    assert_eq!(
        a.sender.encrypt(b"x", &mut wire),
        Err(NoiseError::NonceExhausted)
    );
    assert!(wire.is_empty(), "nothing written on exhaustion");
    let (mut c, _) = linked();
    c.sender.set_nonce(u64::MAX - 1);
    assert_eq!(
        c.sender.encrypt(&two_frames, &mut wire),
        Err(NoiseError::NonceExhausted)
    );
    assert!(wire.is_empty());
    let mut frame = BytesMut::from(&[0u8, 16][..]);
    frame.extend_from_slice(&[0; 16]);
    assert_eq!(
        b.receiver.decrypt_frame(&mut frame),
        Err(NoiseError::NonceExhausted)
    );
}

fn linked_aes() -> (NoiseTransport, NoiseTransport) {
    let cipher = TransportCipher::AesGcm;
    let a = NoiseTransport::with_cipher(cipher, &[1; 32], &[2; 32]).expect("keys");
    let b = NoiseTransport::with_cipher(cipher, &[2; 32], &[1; 32]).expect("keys");
    (a, b)
}

#[test]
fn aes_gcm_round_trips_and_reports_its_cipher() {
    let (mut a, mut b) = linked_aes();
    assert_eq!(a.cipher(), TransportCipher::AesGcm);
    assert_eq!(b.receiver.cipher(), TransportCipher::AesGcm);
    assert_eq!(linked().0.cipher(), TransportCipher::ChaChaPoly);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
    let mut wire = BytesMut::new();
    a.sender.encrypt(&data, &mut wire).expect("encrypt");
    assert_eq!(wire.len(), encrypted_len(data.len()));
    assert_eq!(drain(&mut b.receiver, &mut wire), data);
    // And back the other way.
    b.sender.encrypt(b"pong", &mut wire).expect("encrypt");
    assert_eq!(drain(&mut a.receiver, &mut wire), b"pong");
}

#[test]
fn aes_gcm_detects_tampering_and_cipher_mismatch() {
    let (mut a, _) = linked_aes();
    let mut wire = BytesMut::new();
    a.sender
        .encrypt(b"attack at dawn", &mut wire)
        .expect("encrypt");
    for i in LEN_PREFIX..wire.len() {
        let mut bad = wire.clone();
        bad[i] ^= 0x01;
        let (_, mut fresh) = linked_aes();
        assert_eq!(
            fresh.receiver.decrypt_frame(&mut bad),
            Err(NoiseError::Decrypt)
        );
    }
    // The same split keys under ChaChaPoly must not open an AES frame.
    let (_, mut chacha) = linked();
    assert_eq!(
        chacha.receiver.decrypt_frame(&mut wire.clone()),
        Err(NoiseError::Decrypt)
    );
    let (_, mut aes) = linked_aes();
    assert!(aes.receiver.decrypt_frame(&mut wire).expect("ok").is_some());
}

#[test]
fn aes_gcm_frame_matches_a_direct_encryption() {
    use hmac::{Hmac, Mac};
    let split_key = [0x5cu8; 32];
    // The expected key, computed with the variable-key HMAC API rather than ours.
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&split_key).expect("key");
    mac.update(b"pheromone noise aes-256-gcm");
    let derived: [u8; 32] = mac.finalize().into_bytes().into();
    assert_ne!(derived, split_key);
    assert_eq!(aes_gcm_key(&split_key), derived);

    let counter = 0x0102_0304_0506_0708u64;
    let mut tx =
        NoiseTransport::with_cipher(TransportCipher::AesGcm, &split_key, &[0; 32]).expect("keys");
    tx.sender.set_nonce(counter);
    let mut wire = BytesMut::new();
    tx.sender
        .encrypt(b"exact bytes", &mut wire)
        .expect("encrypt");

    let direct = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &derived).expect("key"));
    let nonce = [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    let mut expected = b"exact bytes".to_vec();
    direct
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::empty(),
            &mut expected,
        )
        .expect("seal");
    assert_eq!(&wire[..LEN_PREFIX], &(expected.len() as u16).to_be_bytes());
    assert_eq!(&wire[LEN_PREFIX..], &expected[..]);
}

proptest! {
    #[test]
    fn round_trips(chunks in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..3000), 0..6)
    ) {
        for (mut a, mut b) in [linked(), linked_aes()] {
            let mut wire = BytesMut::new();
            for chunk in &chunks {
                a.sender.encrypt(chunk, &mut wire).expect("encrypt");
            }
            prop_assert_eq!(drain(&mut b.receiver, &mut wire), chunks.concat());
        }
    }

    #[test]
    fn decrypt_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let (_, mut b) = linked();
        let mut input = BytesMut::from(&data[..]);
        while let Ok(Some(_)) = b.receiver.decrypt_frame(&mut input) {}
    }
}
