//! Peer IDs: multihashes of a public key, printed in base58btc.

use super::{IdentityError, PublicKey};
use sha2::Digest;

/// Multihash code of the identity "hash" (the bytes themselves).
const MULTIHASH_IDENTITY: u8 = 0x00;
/// Multihash code of SHA2-256.
const MULTIHASH_SHA256: u8 = 0x12;
/// Keys whose protobuf is at most this long are inlined with the identity multihash.
const MAX_INLINE_KEY_LEN: usize = 42;
/// Longest multihash we accept: identity of a 42-byte key plus its two-byte header.
const MAX_PEER_ID_LEN: usize = MAX_INLINE_KEY_LEN + 2;

/// A node's name on the wire: the multihash of its public key protobuf.
///
/// Ed25519 keys are short enough to be inlined (identity multihash), so the public key can
/// be recovered from the ID; longer keys (RSA peers of other implementations) are hashed
/// with SHA-256 and only compared.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerId {
    len: u8,
    bytes: [u8; MAX_PEER_ID_LEN],
}

/// Hashes the ID's last eight bytes: the tail of a public key or of a SHA-256 digest,
/// uniform already, so hashing the whole array (every map lookup by peer does) buys no
/// spread; equal IDs have equal tails, as `Hash` requires.
impl std::hash::Hash for PeerId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let used = &self.bytes[..usize::from(self.len)];
        let tail = &used[used.len().saturating_sub(8)..];
        let mut word = [0u8; 8];
        word[..tail.len()].copy_from_slice(tail);
        state.write_u64(u64::from_le_bytes(word));
    }
}

impl PeerId {
    /// The peer ID of `key`.
    pub fn from_public_key(key: &PublicKey) -> Self {
        let proto = key.to_protobuf_encoding();
        let mut bytes = [0u8; MAX_PEER_ID_LEN];
        if proto.len() <= MAX_INLINE_KEY_LEN {
            bytes[0] = MULTIHASH_IDENTITY;
            bytes[1] = proto.len() as u8;
            bytes[2..2 + proto.len()].copy_from_slice(&proto);
            Self {
                len: (proto.len() + 2) as u8,
                bytes,
            }
        } else {
            bytes[0] = MULTIHASH_SHA256;
            bytes[1] = 32;
            bytes[2..34].copy_from_slice(&sha2::Sha256::digest(&proto));
            Self { len: 34, bytes }
        }
    }

    /// Parses the multihash bytes of a peer ID (as carried in `/p2p/` multiaddrs).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let (code, len) = match bytes {
            [code, len, ..] => (*code, *len as usize),
            _ => {
                return Err(IdentityError::Multihash(
                    "shorter than a multihash header".into(),
                ))
            }
        };
        if bytes.len() != len + 2 {
            return Err(IdentityError::Multihash(format!(
                "digest length {len} does not match the {} bytes given",
                bytes.len() - 2
            )));
        }
        match code {
            MULTIHASH_IDENTITY if len <= MAX_INLINE_KEY_LEN => {}
            MULTIHASH_SHA256 if len == 32 => {}
            MULTIHASH_IDENTITY | MULTIHASH_SHA256 => {
                return Err(IdentityError::Multihash(format!(
                    "digest length {len} is not allowed for code {code:#x}"
                )))
            }
            other => {
                return Err(IdentityError::Multihash(format!(
                    "hash code {other:#x} is neither identity nor sha2-256"
                )))
            }
        }
        let mut out = [0u8; MAX_PEER_ID_LEN];
        out[..bytes.len()].copy_from_slice(bytes);
        Ok(Self {
            len: bytes.len() as u8,
            bytes: out,
        })
    }

    /// The multihash bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }

    /// The multihash bytes, borrowed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The public key inlined in this ID, if it is an identity multihash of an Ed25519 key.
    pub fn public_key(&self) -> Option<PublicKey> {
        if self.bytes[0] != MULTIHASH_IDENTITY {
            return None;
        }
        PublicKey::from_protobuf_encoding(&self.as_bytes()[2..]).ok()
    }

    /// The base58btc text form, `12D3KooW…` for Ed25519 keys.
    pub fn to_base58(&self) -> String {
        bs58::encode(self.as_bytes()).into_string()
    }

    /// Whether `key` is the key this ID names.
    pub fn matches(&self, key: &PublicKey) -> bool {
        *self == Self::from_public_key(key)
    }
}

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_base58())
    }
}

impl std::fmt::Debug for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerId({})", self.to_base58())
    }
}

impl std::str::FromStr for PeerId {
    type Err = IdentityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > 2 * MAX_PEER_ID_LEN {
            return Err(IdentityError::Multihash(format!(
                "peer ID text is {} characters, too long",
                text.len()
            )));
        }
        let bytes = bs58::decode(text)
            .into_vec()
            .map_err(|e| IdentityError::Base58 {
                text: text.to_owned(),
                reason: e.to_string(),
            })?;
        Self::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use rand::SeedableRng;

    #[test]
    fn ed25519_ids_start_with_12d3koow_and_round_trip() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..50 {
            let kp = Keypair::generate(&mut rng);
            let id = kp.peer_id();
            let text = id.to_string();
            assert!(text.starts_with("12D3KooW"), "{text}");
            assert_eq!(text.parse::<PeerId>().expect("parse"), id);
            assert_eq!(id.public_key(), Some(kp.public()));
            assert_eq!(PeerId::from_bytes(id.as_bytes()).expect("bytes"), id);
        }
    }

    #[test]
    fn accepts_sha256_ids_and_rejects_garbage() {
        // An RSA-style peer ID (sha2-256 multihash) from the libp2p spec examples.
        let rsa: PeerId = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
            .parse()
            .expect("parse");
        assert_eq!(rsa.as_bytes()[0], MULTIHASH_SHA256);
        assert_eq!(rsa.public_key(), None);
        assert!("not-base58-0OIl".parse::<PeerId>().is_err());
        assert!("".parse::<PeerId>().is_err());
        assert!(PeerId::from_bytes(&[0x13, 2, 0, 0]).is_err());
        assert!(PeerId::from_bytes(&[0x00, 5, 0]).is_err());
    }
}
