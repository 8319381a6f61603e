//! Kademlia keys and XOR distances.
//!
//! A peer's position in the key space is `SHA-256(peer ID multihash bytes)`, as libp2p kad
//! defines it, so our buckets line up with those of rust-libp2p and go-libp2p nodes on the
//! same network. This file only does arithmetic on 256-bit values; it knows nothing of
//! buckets or peers' addresses.

use crate::identity::PeerId;
use sha2::{Digest, Sha256};
use std::fmt;

/// A point of the 256-bit Kademlia key space.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key([u8; 32]);

impl Key {
    /// The key of a peer: SHA-256 of its multihash bytes.
    pub fn from_peer(peer: &PeerId) -> Self {
        Self::from_preimage(peer.as_bytes())
    }

    /// The key of arbitrary bytes (a FIND_NODE `key` field): their SHA-256.
    pub fn from_preimage(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// A key given by its 32 bytes (already hashed).
    pub fn from_hash(hash: [u8; 32]) -> Self {
        Self(hash)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The XOR distance to `other`.
    pub fn distance(&self, other: &Key) -> Distance {
        let mut out = [0u8; 32];
        for (o, (a, b)) in out.iter_mut().zip(self.0.iter().zip(other.0.iter())) {
            *o = a ^ b;
        }
        Distance(out)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(")?;
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// The XOR of two keys, compared as a big-endian 256-bit number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Distance([u8; 32]);

impl Distance {
    /// The two big-endian halves: comparing them is the 256-bit comparison, without the
    /// byte-by-byte `memcmp` a derived `Ord` on `[u8; 32]` calls (distances are compared
    /// on every lookup step and every table scan).
    fn halves(&self) -> (u128, u128) {
        let mut hi = [0u8; 16];
        let mut lo = [0u8; 16];
        hi.copy_from_slice(&self.0[..16]);
        lo.copy_from_slice(&self.0[16..]);
        (u128::from_be_bytes(hi), u128::from_be_bytes(lo))
    }
}

impl Ord for Distance {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.halves().cmp(&other.halves())
    }
}

impl PartialOrd for Distance {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Distance {
    /// The zero distance (a key to itself).
    pub const ZERO: Distance = Distance([0; 32]);

    /// The bucket this distance falls in: `floor(log2(distance))`, 0..=255, or `None` for
    /// the zero distance (our own key has no bucket). Bucket 255 holds half the key space.
    pub fn bucket_index(&self) -> Option<usize> {
        let leading = self.leading_zeros();
        (leading < 256).then(|| 255 - leading)
    }

    /// Number of leading zero bits (256 for the zero distance).
    pub fn leading_zeros(&self) -> usize {
        let mut zeros = 0;
        for &byte in &self.0 {
            if byte == 0 {
                zeros += 8;
            } else {
                return zeros + byte.leading_zeros() as usize;
            }
        }
        zeros
    }

    /// The 32 bytes, big-endian.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bucket_index_is_the_highest_set_bit() {
        let mut d = [0u8; 32];
        assert_eq!(Distance(d).bucket_index(), None);
        d[31] = 1;
        assert_eq!(Distance(d).bucket_index(), Some(0));
        d[31] = 0x80;
        assert_eq!(Distance(d).bucket_index(), Some(7));
        d[0] = 0x80;
        assert_eq!(Distance(d).bucket_index(), Some(255));
        d[0] = 0x01;
        assert_eq!(Distance(d).bucket_index(), Some(248));
    }

    #[test]
    fn peer_keys_are_sha256_of_the_multihash() {
        let peer = crate::identity::Keypair::from_seed([7; 32]).peer_id();
        let expected: [u8; 32] = Sha256::digest(peer.as_bytes()).into();
        assert_eq!(Key::from_peer(&peer).as_bytes(), &expected);
    }

    proptest! {
        #[test]
        fn xor_is_a_metric(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), c in any::<[u8; 32]>()) {
            let (a, b, c) = (Key(a), Key(b), Key(c));
            prop_assert_eq!(a.distance(&b), b.distance(&a));
            prop_assert_eq!(a.distance(&a), Distance::ZERO);
            // Unidirectionality: for a fixed a and distance there is exactly one b.
            prop_assert_eq!(a.distance(&b) == a.distance(&c), b == c);
            // The order is that of the bytes, big-endian.
            prop_assert_eq!(a.distance(&b).cmp(&a.distance(&c)), a.distance(&b).0.cmp(&a.distance(&c).0));
        }
    }
}
