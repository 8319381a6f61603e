//! X25519 (RFC 7748) for the Noise handshake: secret keys, public-key derivation and
//! Diffie-Hellman. It holds no handshake state and draws no randomness; callers hand secrets
//! in.
//!
//! # Why not just x25519-dalek
//!
//! Connection setup is bound by X25519: each side of an XX handshake runs three DH
//! operations and derives one ephemeral public key. x25519-dalek computes DH with a serial
//! Montgomery ladder. AWS-LC (through `aws-lc-rs`) uses s2n-bignum's formally verified,
//! constant-time X25519 with a mulx/adx path chosen at run time, and is more than twice as
//! fast. Measured on the development machine (Xeon @ 2.5 GHz, AVX2/AVX-512F/ADX/BMI2,
//! shared and loaded, so absolute numbers are high; release build, `dh_timing` below, ns/op):
//!
//! | operation | route | ns/op |
//! | --- | --- | --- |
//! | DH | x25519-dalek `diffie_hellman` (serial ladder) | 86 000 |
//! | DH | curve25519-dalek Edwards form: `to_edwards` + AVX2 `mul_clamped` + `to_montgomery` | 76 000 (1.13×) |
//! | DH | ring `agree_ephemeral` (ADX; needs ring's deprecated fixed-RNG test hook) | 57 000 (1.5×) |
//! | DH | aws-lc-rs `agree` on a parsed key | 29 000 (3.0×) |
//! | DH | aws-lc-rs parse key + `agree` | 38 000 (2.3×) |
//! | keygen | x25519-dalek `PublicKey::from` (already Edwards `mul_base_clamped`) | 36 000 |
//! | keygen | aws-lc-rs parse key (computes the public key) | 9 400 (3.9×) |
//!
//! The Edwards route loses most of AVX2's gain (62 µs for the multiplication alone) to the
//! square root that decompression needs (15 µs); ring has no API for a caller-chosen secret.
//! A [`DhSecret`] parses its key into AWS-LC once, which also yields its public key, so a
//! handshake side pays one parse for `e`, none for a prepared static key, and three
//! `agree`s: about 95 µs instead of 294 µs.
//!
//! # Identical to RFC 7748 for every input
//!
//! AWS-LC's X25519 masks the top bit of `u`, reduces `u ≥ p`, and handles points on the
//! twist, as RFC 7748 requires (the tests compare it with x25519-dalek on random and edge
//! inputs). It refuses to return an all-zero secret; whenever it fails, for that or any
//! other reason, the result comes from x25519-dalek's ladder instead, so results and the
//! [`NoiseError::LowOrderPoint`] refusal are exactly the ladder's. That branch depends only
//! on the public `u` (an all-zero result means `u` is of low order, since a clamped scalar
//! is a multiple of 8 and never of the subgroup order), so timing stays independent of the
//! secret scalar.

use super::NoiseError;
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use x25519_dalek::{PublicKey as LadderPublic, StaticSecret};
use zeroize::Zeroizing;

/// Length of X25519 secrets, public keys and shared secrets.
pub(crate) const DH_LEN: usize = 32;

/// An X25519 secret prepared for any number of Diffie-Hellman operations, with its public
/// key. Both copies of the secret are wiped when it is dropped.
pub(crate) struct DhSecret {
    /// The secret parsed into AWS-LC; `None` only if AWS-LC refused it (it accepts every
    /// 32-byte string, so this is a safety net, not an expected case).
    fast: Option<PrivateKey>,
    /// The same secret for x25519-dalek, which decides whenever AWS-LC fails.
    ladder: StaticSecret,
    /// `X25519(secret, 9)`.
    public: [u8; DH_LEN],
}

impl DhSecret {
    /// Prepares `secret` (any 32 bytes; clamping happens inside X25519, as RFC 7748 says).
    pub(crate) fn new(secret: [u8; DH_LEN]) -> Self {
        let secret = Zeroizing::new(secret);
        let ladder = StaticSecret::from(*secret);
        let fast = PrivateKey::from_private_key(&X25519, secret.as_slice()).ok();
        let public = fast
            .as_ref()
            .and_then(|key| key.compute_public_key().ok())
            .and_then(|public| <[u8; DH_LEN]>::try_from(public.as_ref()).ok())
            .unwrap_or_else(|| LadderPublic::from(&ladder).to_bytes());
        Self {
            fast,
            ladder,
            public,
        }
    }

    /// The public key, `X25519(secret, 9)`.
    pub(crate) fn public(&self) -> [u8; DH_LEN] {
        self.public
    }

    /// `X25519(secret, their_public)`, refusing an all-zero result (a low-order
    /// `their_public`), which Noise permits implementations to reject.
    pub(crate) fn diffie_hellman(
        &self,
        their_public: &[u8; DH_LEN],
    ) -> Result<Zeroizing<[u8; DH_LEN]>, NoiseError> {
        if let Some(shared) = self
            .fast
            .as_ref()
            .and_then(|key| fast_dh(key, their_public))
        {
            return Ok(shared);
        }
        let shared = self
            .ladder
            .diffie_hellman(&LadderPublic::from(*their_public));
        if shared.was_contributory() {
            Ok(Zeroizing::new(shared.to_bytes()))
        } else {
            Err(NoiseError::LowOrderPoint)
        }
    }
}

/// AWS-LC's X25519; `None` when it fails, which it does exactly for an all-zero result.
fn fast_dh(key: &PrivateKey, their_public: &[u8; DH_LEN]) -> Option<Zeroizing<[u8; DH_LEN]>> {
    let mut out = Zeroizing::new([0u8; DH_LEN]);
    agreement::agree(
        key,
        UnparsedPublicKey::new(&X25519, their_public),
        (),
        |shared| {
            let shared: &[u8; DH_LEN] = shared.try_into().map_err(|_| ())?;
            out.copy_from_slice(shared);
            Ok(())
        },
    )
    .ok()?;
    // AWS-LC promises never to return zeros; should it, the ladder decides. Branch-free OR
    // so that the check does not time the secret.
    if out.iter().fold(0u8, |acc, b| acc | b) == 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
#[path = "dh_tests.rs"]
mod tests;
