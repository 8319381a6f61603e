//! Certificates: the spec's test vectors, our own round trip, and every way a certificate
//! must be refused.

use super::*;
use crate::identity::Keypair;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use proptest::prelude::*;

/// libp2p/specs tls/tls.md, test vector 1: an Ed25519 peer.
const SPEC_ED25519: &str = "308201ae30820156a0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea37c307a3078060a2b0601040183a25a0101046a3068042408011220a77f1d92fedb59dddaea5a1c4abd1ac2fbde7d7b879ed364501809923d7c11b90440d90d2769db992d5e6195dbb08e706b6651e024fda6cfb8846694a435519941cac215a8207792e42849cccc6cd8136c6e4bde92a58c5e08cfd4206eb5fe0bf909300a06082a8648ce3d0403020346003043021f50f6b6c52711a881778718238f650c9fb48943ae6ee6d28427dc6071ae55e702203625f116a7a454db9c56986c82a25682f7248ea1cb764d322ea983ed36a31b77";
/// Test vector 2: an ECDSA host key (a key type our identities do not have).
const SPEC_ECDSA: &str = "308201f63082019da0030201020204499602d2300a06082a8648ce3d040302302031123010060355040a13096c69627032702e696f310a300806035504051301313020170d3735303130313133303030305a180f34303936303130313133303030305a302031123010060355040a13096c69627032702e696f310a300806035504051301313059301306072a8648ce3d020106082a8648ce3d030107034200040c901d423c831ca85e27c73c263ba132721bb9d7a84c4f0380b2a6756fd601331c8870234dec878504c174144fa4b14b66a651691606d8173e55bd37e381569ea381c23081bf3081bc060a2b0601040183a25a01010481ad3081aa045f0803125b3059301306072a8648ce3d020106082a8648ce3d03010703420004bf30511f909414ebdd3242178fd290f093a551cf75c973155de0bb5a96fedf6cb5d52da7563e794b512f66e60c7f55ba8a3acf3dd72a801980d205e8a1ad29f2044730450220064ea8124774caf8f50e57f436aa62350ce652418c019df5d98a3ac666c9386a022100aa59d704a931b5f72fb9222cb6cc51f954d04a4e2e5450f8805fe8918f71eaae300a06082a8648ce3d04030203470030440220799395b0b6c1e940a7e4484705f610ab51ed376f19ff9d7c16757cfbf61b8d4302206205c03fbb0f95205c779be86581d3e31c01871ad5d1f3435bcf375cb0e5088a";

const NOW: i64 = 1_800_000_000;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// A certificate of ours for `host`, and the certificate key.
fn ours(host: &Keypair) -> (Vec<u8>, EcdsaKeyPair) {
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("keygen");
    let rng = SystemRandom::new();
    let der = certificate(host, key.public_key().as_ref(), 0x1234_5678, |tbs| {
        key.sign(&rng, tbs).map(|s| s.as_ref().to_vec())
    })
    .expect("sign");
    (der, key)
}

#[test]
fn spec_vector_ed25519_verifies_to_its_peer_id() {
    let der = unhex(SPEC_ED25519);
    let peer = verify_chain(&der, 0, NOW, None).expect("verifies");
    assert_eq!(
        peer.to_string(),
        "12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv"
    );
}

#[test]
fn spec_vector_ecdsa_host_key_is_an_unsupported_key_type() {
    let der = unhex(SPEC_ECDSA);
    let err = verify_chain(&der, 0, NOW, None).expect_err("ECDSA host keys are refused");
    assert!(
        matches!(
            err,
            CertError::HostKey(crate::identity::IdentityError::UnsupportedKeyType(3))
        ),
        "{err}"
    );
}

#[test]
fn our_certificate_round_trips_and_signs_the_handshake() {
    let host = Keypair::from_seed([7; 32]);
    let (der, key) = ours(&host);
    let cert = P2pCertificate::parse(&der).expect("parses");
    assert_eq!(cert.key_kind(), CertKeyKind::EcdsaP256);
    assert_eq!(cert.verify(NOW).expect("verifies"), host.peer_id());
    assert_eq!(
        verify_chain(&der, 0, NOW, Some(host.peer_id())).expect("expected peer"),
        host.peer_id()
    );
    let sig = key
        .sign(&SystemRandom::new(), b"transcript hash")
        .expect("sign");
    cert.verify_handshake_signature(
        HandshakeScheme::EcdsaP256Sha256,
        b"transcript hash",
        sig.as_ref(),
    )
    .expect("handshake signature");
    assert_eq!(
        cert.verify_handshake_signature(HandshakeScheme::EcdsaP256Sha256, b"other", sig.as_ref()),
        Err(CertError::BadHandshakeSignature)
    );
    assert!(matches!(
        cert.verify_handshake_signature(HandshakeScheme::Ed25519, b"transcript hash", sig.as_ref()),
        Err(CertError::HandshakeScheme { .. })
    ));
}

#[test]
fn a_wrong_peer_is_refused() {
    let host = Keypair::from_seed([1; 32]);
    let other = Keypair::from_seed([2; 32]).peer_id();
    let (der, _) = ours(&host);
    assert_eq!(
        verify_chain(&der, 0, NOW, Some(other)),
        Err(CertError::WrongPeer {
            expected: other,
            actual: host.peer_id()
        })
    );
}

#[test]
fn a_chain_of_two_is_refused() {
    let (der, _) = ours(&Keypair::from_seed([1; 32]));
    assert_eq!(
        verify_chain(&der, 1, NOW, None),
        Err(CertError::ChainLength { count: 2 })
    );
}

/// Finds `needle` in `hay` (the tests tamper with fields they locate by content).
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("field present")
}

#[test]
fn bad_signatures_are_refused() {
    let host = Keypair::from_seed([3; 32]);
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("keygen");
    // The host key's signature over the certificate key, one bit flipped; the certificate
    // itself validly self-signed.
    let tampered = resign_with_tbs_edit(&host, &key, |tbs, good| {
        let pos = find(tbs, good);
        tbs[pos] ^= 1;
    });
    assert_eq!(
        P2pCertificate::parse(&tampered)
            .expect("parses")
            .verify(NOW),
        Err(CertError::BadExtensionSignature {
            peer: host.peer_id()
        })
    );
    // A good extension, but the self-signature over other bytes.
    let (mut der, _) = ours(&host);
    let last = der.len() - 1;
    der[last] ^= 1;
    assert_eq!(
        P2pCertificate::parse(&der).expect("parses").verify(NOW),
        Err(CertError::BadSelfSignature)
    );
}

/// Our certificate with the TBS edited by `edit` (given the extension's good signature)
/// and then validly self-signed.
fn resign_with_tbs_edit(
    host: &Keypair,
    key: &EcdsaKeyPair,
    edit: impl Fn(&mut Vec<u8>, &[u8]),
) -> Vec<u8> {
    let rng = SystemRandom::new();
    let spki = p256_spki(key.public_key().as_ref());
    let mut m = HANDSHAKE_PREFIX.to_vec();
    m.extend_from_slice(&spki);
    let good = host.sign(&m);
    let unsigned = certificate(host, key.public_key().as_ref(), 9, |_| {
        Ok::<_, ()>(Vec::new())
    })
    .expect("build");
    // Certificate = SEQUENCE { tbs, alg, BIT STRING }: take the TBS out, edit, re-sign.
    let mut outer = der::Der::new(&unsigned);
    let mut cert = outer.nested(der::SEQUENCE, "c").expect("seq");
    let mut tbs = cert.any("tbs").expect("tbs").raw.to_vec();
    let alg = cert.any("alg").expect("alg").raw.to_vec();
    edit(&mut tbs, &good);
    let sig = key.sign(&rng, &tbs).expect("sign");
    der::wrap(der::SEQUENCE, &[&tbs, &alg, &der::bit_string(sig.as_ref())])
}

#[test]
fn an_unknown_critical_extension_is_refused_and_a_missing_one_too() {
    let host = Keypair::from_seed([4; 32]);
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).expect("keygen");
    // Change the libp2p OID's last arc: now it is an unknown, critical extension.
    let tampered = resign_with_tbs_edit(&host, &key, |tbs, _| {
        let pos = find(tbs, super::cert::LIBP2P_EXTENSION_OID);
        tbs[pos + super::cert::LIBP2P_EXTENSION_OID.len() - 1] = 9;
    });
    assert!(matches!(
        P2pCertificate::parse(&tampered),
        Err(CertError::UnknownCriticalExtension { .. })
    ));
    // The same, not critical: ignored, and then the libp2p extension is missing.
    let tampered = resign_with_tbs_edit(&host, &key, |tbs, _| {
        let pos = find(tbs, super::cert::LIBP2P_EXTENSION_OID);
        tbs[pos + super::cert::LIBP2P_EXTENSION_OID.len() - 1] = 9;
        let b = find(tbs, &[der::BOOLEAN, 1, 0xff]);
        tbs[b + 2] = 0;
    });
    assert_eq!(
        P2pCertificate::parse(&tampered).err(),
        Some(CertError::MissingExtension)
    );
}

#[test]
fn garbage_and_truncations_are_typed_errors() {
    let (der, _) = ours(&Keypair::from_seed([5; 32]));
    for cut in 0..der.len() {
        assert!(P2pCertificate::parse(&der[..cut]).is_err(), "cut at {cut}");
    }
    assert!(matches!(
        P2pCertificate::parse(b"certainly not DER"),
        Err(CertError::Der { .. })
    ));
    let huge = vec![0x30; MAX_CERTIFICATE_LEN + 1];
    assert!(matches!(
        P2pCertificate::parse(&huge),
        Err(CertError::TooLarge { .. })
    ));
}

#[test]
fn validity_is_checked_against_now() {
    let der = unhex(SPEC_ED25519);
    let cert = P2pCertificate::parse(&der).expect("parses");
    // notBefore is 1975-01-01 13:00:00Z.
    assert!(matches!(cert.verify(0), Err(CertError::NotYetValid { .. })));
    assert!(matches!(
        cert.verify(70_000_000_000),
        Err(CertError::Expired { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Flipping any byte of a good certificate gives an error or (where the byte does not
    /// matter, like the serial's value under a re-check) the same peer: never a panic, never
    /// another peer.
    #[test]
    fn mutated_certificates_never_verify_as_another_peer(pos in 0usize..1000, bit in 0u8..8) {
        let host = Keypair::from_seed([6; 32]);
        let der = unhex(SPEC_ED25519);
        let mut bad = der.clone();
        let pos = pos % bad.len();
        bad[pos] ^= 1 << bit;
        if let Ok(cert) = P2pCertificate::parse(&bad) {
            if let Ok(peer) = cert.verify(NOW) {
                prop_assert_ne!(peer, host.peer_id());
                prop_assert_eq!(peer.to_string(), "12D3KooWM6CgA9iBFZmcYAHA6A2qvbAxqfkmrYiRQuz3XEsk4Ksv");
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        fuzzing::fuzz_certificate(&data);
    }
}
