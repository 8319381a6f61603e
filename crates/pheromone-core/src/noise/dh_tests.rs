//! Tests of `dh.rs`: RFC 7748 vectors, agreement with x25519-dalek's ladder on random,
//! twist, non-canonical and low-order inputs, and the (ignored) timing comparison that the
//! module doc quotes.

use super::*;
use proptest::prelude::*;
use rand::{RngCore, SeedableRng};

fn hex32(s: &str) -> [u8; 32] {
    assert_eq!(s.len(), 64);
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex");
    }
    out
}

/// What we must match: RFC 7748 X25519 by x25519-dalek's ladder, with Noise's refusal of
/// an all-zero result.
fn reference(k: [u8; 32], u: [u8; 32]) -> Result<[u8; 32], NoiseError> {
    let out = x25519_dalek::x25519(k, u);
    if out == [0; 32] {
        Err(NoiseError::LowOrderPoint)
    } else {
        Ok(out)
    }
}

fn ours(k: [u8; 32], u: [u8; 32]) -> Result<[u8; 32], NoiseError> {
    DhSecret::new(k).diffie_hellman(&u).map(|shared| *shared)
}

/// `u` on the quadratic twist: no Edwards point has it (u = -1 aside, which maps nowhere).
fn on_twist(u: [u8; 32]) -> bool {
    curve25519_dalek::MontgomeryPoint(u).to_edwards(0).is_none()
}

/// p = 2^255 - 19, little-endian, plus `add` (which must not carry out of the first byte).
fn p_plus(add: u8) -> [u8; 32] {
    let mut u = [0xff; 32];
    u[0] = 0xed + add;
    u[31] = 0x7f;
    u
}

/// u-coordinates of points of order 1, 2, 4 or 8 (and ≥ p encodings of some), for which
/// X25519 with any clamped scalar is all zeros.
fn low_order_points() -> Vec<[u8; 32]> {
    let mut points = vec![
        [0; 32],
        {
            let mut one = [0; 32];
            one[0] = 1;
            one
        },
        hex32("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        hex32("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
        p_plus(0),
        p_plus(1),
    ];
    with_high_bit_copies(&mut points);
    points
}

/// Appends a copy of each point with the top bit set, which RFC 7748 says to ignore.
fn with_high_bit_copies(points: &mut Vec<[u8; 32]>) {
    let high: Vec<[u8; 32]> = points
        .iter()
        .map(|p| {
            let mut p = *p;
            p[31] |= 0x80;
            p
        })
        .collect();
    points.extend(high);
}

#[test]
fn rfc7748_section_5_2_vectors() {
    let vectors = [
        (
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ),
        // Its u has the top bit set: it must be masked, not rejected.
        (
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ),
    ];
    for (k, u, out) in vectors {
        assert_eq!(ours(hex32(k), hex32(u)), Ok(hex32(out)));
    }
}

#[test]
fn rfc7748_section_5_2_iterations() {
    let mut k = [0u8; 32];
    k[0] = 9;
    let mut u = k;
    let mut iterate = |n: usize| {
        for _ in 0..n {
            let out = ours(k, u).expect("iterates never hit zero");
            u = k;
            k = out;
        }
        k
    };
    assert_eq!(
        iterate(1),
        hex32("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")
    );
    assert_eq!(
        iterate(999),
        hex32("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51")
    );
}

#[test]
fn rfc7748_section_6_1_key_agreement() {
    let a = hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    let b = hex32("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    let a_pub = hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    let b_pub = hex32("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    let shared = hex32("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    let (a, b) = (DhSecret::new(a), DhSecret::new(b));
    assert_eq!(a.public(), a_pub);
    assert_eq!(b.public(), b_pub);
    assert_eq!(a.diffie_hellman(&b_pub).map(|s| *s), Ok(shared));
    assert_eq!(b.diffie_hellman(&a_pub).map(|s| *s), Ok(shared));
}

#[test]
fn low_order_points_are_refused() {
    for k in [[0u8; 32], [0xff; 32], [0x5a; 32]] {
        for u in low_order_points() {
            assert_eq!(ours(k, u), Err(NoiseError::LowOrderPoint), "u = {u:02x?}");
            assert_eq!(reference(k, u), Err(NoiseError::LowOrderPoint));
        }
    }
}

#[test]
fn edge_u_values_match_the_ladder() {
    let mut edges = low_order_points();
    for add in 2..19 {
        edges.push(p_plus(add)); // p + 2 ..= 2^255 - 1: non-canonical, reduced to 2 ..= 18
    }
    let mut minus_one = p_plus(0);
    minus_one[0] -= 1; // p - 1, u = -1: on the twist, maps to no Edwards point
    edges.push(minus_one);
    let mut two = [0u8; 32];
    two[0] = 2;
    edges.push(two);
    let mut nine = [0u8; 32];
    nine[0] = 9;
    edges.push(nine);
    edges.push([0xff; 32]); // 2^256 - 1: top bit masked, then 2^255 - 1 ≡ 18
    with_high_bit_copies(&mut edges);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7748);
    for u in edges {
        for _ in 0..4 {
            let mut k = [0u8; 32];
            rng.fill_bytes(&mut k);
            assert_eq!(ours(k, u), reference(k, u), "u = {u:02x?}");
        }
    }
}

#[test]
fn twist_and_curve_points_both_match_the_ladder() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(25519);
    let (mut twist, mut curve) = (0, 0);
    for _ in 0..256 {
        let (mut k, mut u) = ([0u8; 32], [0u8; 32]);
        rng.fill_bytes(&mut k);
        rng.fill_bytes(&mut u);
        if on_twist(u) {
            twist += 1;
        } else {
            curve += 1;
        }
        assert_eq!(ours(k, u), reference(k, u), "k = {k:02x?}, u = {u:02x?}");
    }
    // Random u lands on the twist about half the time; make sure both were exercised.
    assert!(twist > 64 && curve > 64, "twist {twist}, curve {curve}");
}

#[test]
fn the_fast_path_is_the_one_taken() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for _ in 0..16 {
        let (mut k, mut u) = ([0u8; 32], [0u8; 32]);
        rng.fill_bytes(&mut k);
        rng.fill_bytes(&mut u);
        let secret = DhSecret::new(k);
        let key = secret.fast.as_ref().expect("AWS-LC accepts every secret");
        let fast = fast_dh(key, &u).map(|s| *s);
        assert_eq!(fast, Some(x25519_dalek::x25519(k, u)));
    }
}

proptest! {
    #[test]
    fn matches_x25519_dalek(k in any::<[u8; 32]>(), u in any::<[u8; 32]>()) {
        prop_assert_eq!(ours(k, u), reference(k, u));
    }

    #[test]
    fn fast_path_matches_or_defers(k in any::<[u8; 32]>(), u in any::<[u8; 32]>()) {
        let secret = DhSecret::new(k);
        let key = secret.fast.as_ref().expect("AWS-LC accepts every secret");
        prop_assert_eq!(fast_dh(key, &u).map(|s| *s), reference(k, u).ok());
    }

    #[test]
    fn public_key_matches_x25519_dalek(k in any::<[u8; 32]>()) {
        let dalek = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(k));
        prop_assert_eq!(DhSecret::new(k).public(), dalek.to_bytes());
    }

    #[test]
    fn both_sides_agree(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
        let (a, b) = (DhSecret::new(a), DhSecret::new(b));
        let ab = a.diffie_hellman(&b.public()).map(|s| *s);
        let ba = b.diffie_hellman(&a.public()).map(|s| *s);
        prop_assert!(ab.is_ok());
        prop_assert_eq!(ab, ba);
    }
}

/// The numbers in the module doc. Run in release:
/// `cargo test --release -p pheromone-core --lib noise::dh::tests::dh_timing -- --ignored --nocapture`
#[test]
#[ignore = "timing, not a check; run in release"]
#[allow(clippy::disallowed_methods, deprecated)] // it reads the clock; ring's fixed-RNG hook
fn dh_timing() {
    use curve25519_dalek::{EdwardsPoint, MontgomeryPoint};
    use std::hint::black_box;
    use std::time::Instant;

    const KEYS: usize = 64;
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let keys: Vec<[u8; 32]> = (0..KEYS)
        .map(|_| {
            let mut k = [0u8; 32];
            rng.fill_bytes(&mut k);
            k
        })
        .collect();
    let pubs: Vec<[u8; 32]> = keys.iter().map(|k| DhSecret::new(*k).public()).collect();
    let parsed: Vec<DhSecret> = keys.iter().map(|k| DhSecret::new(*k)).collect();

    fn time(name: &str, mut op: impl FnMut(usize) -> [u8; 32]) {
        const ITERS: usize = 2000;
        let mut best = f64::MAX;
        for _ in 0..5 {
            let start = Instant::now();
            let mut acc = 0u8;
            for i in 0..ITERS {
                acc ^= black_box(op(i))[0];
            }
            black_box(acc);
            best = best.min(start.elapsed().as_nanos() as f64 / ITERS as f64);
        }
        println!("{name:58} {best:>8.0} ns/op");
    }
    let pair = |i: usize| (keys[i % KEYS], pubs[(i + 1) % KEYS]);

    time("DH  x25519-dalek diffie_hellman (ladder)", |i| {
        let (k, u) = pair(i);
        x25519_dalek::StaticSecret::from(k)
            .diffie_hellman(&x25519_dalek::PublicKey::from(u))
            .to_bytes()
    });
    time(
        "DH  Edwards: to_edwards + mul_clamped + to_montgomery",
        |i| {
            let (k, u) = pair(i);
            match MontgomeryPoint(u).to_edwards(0) {
                Some(p) => p.mul_clamped(k).to_montgomery().to_bytes(),
                None => MontgomeryPoint(u).mul_clamped(k).to_bytes(),
            }
        },
    );
    time("DH  ring agree_ephemeral (fixed-RNG test hook)", |i| {
        let (k, u) = pair(i);
        let rng = ring::test::rand::FixedSliceRandom { bytes: &k };
        let key = ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::X25519, &rng)
            .expect("x25519 key");
        let peer = ring::agreement::UnparsedPublicKey::new(&ring::agreement::X25519, u);
        ring::agreement::agree_ephemeral(key, &peer, |s| <[u8; 32]>::try_from(s).expect("32 bytes"))
            .expect("contributory")
    });
    time("DH  DhSecret::new + diffie_hellman (aws-lc-rs)", |i| {
        let (k, u) = pair(i);
        *DhSecret::new(k).diffie_hellman(&u).expect("contributory")
    });
    time(
        "DH  diffie_hellman on a prepared DhSecret (aws-lc-rs)",
        |i| {
            *parsed[i % KEYS]
                .diffie_hellman(&pubs[(i + 1) % KEYS])
                .expect("contributory")
        },
    );
    time("key x25519-dalek PublicKey::from", |i| {
        x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(keys[i % KEYS])).to_bytes()
    });
    time("key EdwardsPoint::mul_base_clamped + to_montgomery", |i| {
        EdwardsPoint::mul_base_clamped(keys[i % KEYS])
            .to_montgomery()
            .to_bytes()
    });
    time("key DhSecret::new(..).public() (aws-lc-rs)", |i| {
        DhSecret::new(keys[i % KEYS]).public()
    });
}
