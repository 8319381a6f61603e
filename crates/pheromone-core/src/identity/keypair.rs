//! Ed25519 keypairs and public keys with their libp2p protobuf encodings.

use super::proto::{PrivateKeyProto, PublicKeyProto, KEY_TYPE_ED25519};
use super::{IdentityError, PeerId};
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use prost::Message;
use rand_core::CryptoRngCore;

/// An Ed25519 keypair: a node's identity.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret half.
        f.debug_struct("Keypair")
            .field("public", &self.public())
            .finish()
    }
}

impl Keypair {
    /// Generates a new keypair from `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self {
            signing: SigningKey::generate(rng),
        }
    }

    /// Builds the keypair whose secret scalar seed is `seed` (32 bytes).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            verifying: self.signing.verifying_key(),
        }
    }

    /// The peer ID of this keypair's public key.
    pub fn peer_id(&self) -> PeerId {
        PeerId::from_public_key(&self.public())
    }

    /// Signs `msg`; the 64-byte Ed25519 signature.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.signing.sign(msg).to_bytes()
    }

    /// The libp2p `PrivateKey` protobuf: type Ed25519, data = secret (32) ‖ public (32).
    pub fn to_protobuf_encoding(&self) -> Vec<u8> {
        let mut data = Vec::with_capacity(64);
        data.extend_from_slice(self.signing.as_bytes());
        data.extend_from_slice(self.signing.verifying_key().as_bytes());
        PrivateKeyProto {
            key_type: KEY_TYPE_ED25519,
            data,
        }
        .encode_to_vec()
    }

    /// Parses a libp2p `PrivateKey` protobuf, checking that the public half matches.
    pub fn from_protobuf_encoding(bytes: &[u8]) -> Result<Self, IdentityError> {
        let proto =
            PrivateKeyProto::decode(bytes).map_err(|e| IdentityError::Protobuf(e.to_string()))?;
        if proto.key_type != KEY_TYPE_ED25519 {
            return Err(IdentityError::UnsupportedKeyType(proto.key_type));
        }
        // libp2p writes secret ‖ public (64 bytes); accept a bare 32-byte secret too.
        let seed: [u8; 32] = proto
            .data
            .get(..32)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| {
                IdentityError::InvalidKey(format!(
                    "private key data is {} bytes, expected 32 or 64",
                    proto.data.len()
                ))
            })?;
        let keypair = Self::from_seed(seed);
        match proto.data.len() {
            32 => Ok(keypair),
            64 if proto.data[32..] == keypair.public().to_bytes() => Ok(keypair),
            64 => Err(IdentityError::InvalidKey(
                "public half does not match the secret".into(),
            )),
            n => Err(IdentityError::InvalidKey(format!(
                "private key data is {n} bytes, expected 32 or 64"
            ))),
        }
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey {
    verifying: VerifyingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", PeerId::from_public_key(self))
    }
}

impl PublicKey {
    /// Builds a public key from its 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let raw: [u8; 32] = bytes.try_into().map_err(|_| {
            IdentityError::InvalidKey(format!("public key is {} bytes, expected 32", bytes.len()))
        })?;
        let verifying =
            VerifyingKey::from_bytes(&raw).map_err(|e| IdentityError::InvalidKey(e.to_string()))?;
        Ok(Self { verifying })
    }

    /// The 32 raw bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.verifying.to_bytes()
    }

    /// Whether `signature` is a valid signature of `msg` by this key.
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
            return false;
        };
        self.verifying.verify(msg, &sig).is_ok()
    }

    /// The libp2p `PublicKey` protobuf (36 bytes for Ed25519).
    pub fn to_protobuf_encoding(&self) -> Vec<u8> {
        PublicKeyProto {
            key_type: KEY_TYPE_ED25519,
            data: self.to_bytes().to_vec(),
        }
        .encode_to_vec()
    }

    /// Parses a libp2p `PublicKey` protobuf.
    pub fn from_protobuf_encoding(bytes: &[u8]) -> Result<Self, IdentityError> {
        let proto =
            PublicKeyProto::decode(bytes).map_err(|e| IdentityError::Protobuf(e.to_string()))?;
        if proto.key_type != KEY_TYPE_ED25519 {
            return Err(IdentityError::UnsupportedKeyType(proto.key_type));
        }
        Self::from_bytes(&proto.data)
    }

    /// The peer ID of this key.
    pub fn to_peer_id(&self) -> PeerId {
        PeerId::from_public_key(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sign_and_verify() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let kp = Keypair::generate(&mut rng);
        let sig = kp.sign(b"hello");
        assert!(kp.public().verify(b"hello", &sig));
        assert!(!kp.public().verify(b"hellp", &sig));
        assert!(!kp.public().verify(b"hello", &sig[..63]));
    }

    #[test]
    fn protobuf_round_trips() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let kp = Keypair::generate(&mut rng);
        let back = Keypair::from_protobuf_encoding(&kp.to_protobuf_encoding()).expect("decode");
        assert_eq!(back.public(), kp.public());
        let pk =
            PublicKey::from_protobuf_encoding(&kp.public().to_protobuf_encoding()).expect("decode");
        assert_eq!(pk, kp.public());
        assert_eq!(kp.public().to_protobuf_encoding().len(), 36);
    }

    #[test]
    fn rejects_other_key_types_and_garbage() {
        let rsa = PublicKeyProto {
            key_type: 0,
            data: vec![1; 32],
        }
        .encode_to_vec();
        assert_eq!(
            PublicKey::from_protobuf_encoding(&rsa),
            Err(IdentityError::UnsupportedKeyType(0))
        );
        assert!(PublicKey::from_protobuf_encoding(&[0xff, 0xff, 0xff]).is_err());
        assert!(Keypair::from_protobuf_encoding(&[]).is_err());
    }
}
