//! Signed route records: what only a destination can say about itself.
//!
//! A route advertisement is (destination, seqno, metric, hops). Metric and hops grow at
//! every hop, so nobody can sign them end to end; the seqno is the destination's alone
//! (it decides feasibility, and a newer one beats every older route), so the destination
//! signs (destination, seqno) with its Ed25519 identity and every relay passes that
//! signature on unchanged — the signed-state idea of Yggdrasil, and what RFC 8967's
//! authentication gives Babel per link. A forged or replayed-with-a-higher-number record
//! fails the check and is dropped; what is left to a liar is the metric, which path
//! probes (`probe.rs`) catch.
//!
//! TRACE_REPLY frames that say "reached" carry the target's signature of (trace id,
//! path), so a relay on the way back cannot fake an arrival either.
//!
//! Pure functions plus a tiny per-destination cache of checked signatures; no IO.

use super::wire::Signature;
use crate::identity::{Keypair, PeerId};

/// Domain separation: these bytes start every signed route record, so no other
/// signature made by a pheromone key (identify, broadcast, TLS) can pass for one.
const RECORD_DOMAIN: &[u8] = b"pheromone-route-record/2:";
/// Domain separation of trace replies.
const TRACE_DOMAIN: &[u8] = b"pheromone-route-trace/2:";

/// Verified signatures remembered per destination. Two: the newest seqno and the one
/// before it, which neighbours still carry for a dump interval after a bump.
const VERIFIED_KEPT: usize = 2;

fn record_bytes(destination: &PeerId, seqno: u32) -> Vec<u8> {
    let id = destination.as_bytes();
    let mut msg = Vec::with_capacity(RECORD_DOMAIN.len() + 1 + id.len() + 4);
    msg.extend_from_slice(RECORD_DOMAIN);
    // Peer IDs are at most 44 bytes on this wire.
    msg.push(id.len() as u8);
    msg.extend_from_slice(id);
    msg.extend_from_slice(&seqno.to_be_bytes());
    msg
}

fn trace_bytes(id: u64, path: &[PeerId]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(TRACE_DOMAIN.len() + 9 + path.len() * 39);
    msg.extend_from_slice(TRACE_DOMAIN);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.push(path.len().min(usize::from(u8::MAX)) as u8);
    for p in path {
        let b = p.as_bytes();
        msg.push(b.len() as u8);
        msg.extend_from_slice(b);
    }
    msg
}

/// The signature `keypair` puts on its own route record of `seqno` (what a [`Router`]
/// sends for itself; public for tests and simulations that play other nodes).
///
/// [`Router`]: super::Router
pub fn sign_record(keypair: &Keypair, seqno: u32) -> Signature {
    keypair.sign(&record_bytes(&keypair.peer_id(), seqno))
}

/// Whether `signature` is `destination`'s signature of its record `seqno`. Peer IDs that
/// do not inline their key (RSA and friends) cannot be checked and are refused.
pub(crate) fn verify_record(destination: &PeerId, seqno: u32, signature: &Signature) -> bool {
    destination
        .public_key()
        .is_some_and(|key| key.verify(&record_bytes(destination, seqno), signature))
}

/// The target's signature of a trace it was reached by.
pub(crate) fn sign_trace(keypair: &Keypair, id: u64, path: &[PeerId]) -> Signature {
    keypair.sign(&trace_bytes(id, path))
}

/// Whether `signature` is `target`'s signature of (`id`, `path`).
pub(crate) fn verify_trace(target: &PeerId, id: u64, path: &[PeerId], sig: &Signature) -> bool {
    target
        .public_key()
        .is_some_and(|key| key.verify(&trace_bytes(id, path), sig))
}

/// Signatures already checked for one destination, so the periodic dumps of every
/// neighbour (the same record, again and again) cost a comparison, not an Ed25519
/// verification each. Ed25519 signatures are deterministic, so an honest record always
/// arrives with the same bytes; anything else is checked in full.
#[derive(Debug, Clone, Default)]
pub(crate) struct Verified {
    /// Newest first.
    known: Vec<(u32, Signature)>,
}

impl Verified {
    /// Whether (`seqno`, `signature`) is `destination`'s genuine record, from the cache
    /// or by checking it (and then remembering it).
    pub(crate) fn check(
        &mut self,
        destination: &PeerId,
        seqno: u32,
        signature: &Signature,
    ) -> bool {
        if self
            .known
            .iter()
            .any(|(s, sig)| *s == seqno && sig == signature)
        {
            return true;
        }
        if !verify_record(destination, seqno, signature) {
            return false;
        }
        self.known.insert(0, (seqno, *signature));
        self.known.truncate(VERIFIED_KEPT);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_destination_can_sign_its_record() {
        let dest = Keypair::from_seed([1; 32]);
        let mallory = Keypair::from_seed([2; 32]);
        let sig = sign_record(&dest, 7);
        assert!(verify_record(&dest.peer_id(), 7, &sig));
        // Replayed with another seqno, or signed by someone else: refused.
        assert!(!verify_record(&dest.peer_id(), 8, &sig));
        let forged = mallory.sign(&record_bytes(&dest.peer_id(), 8));
        assert!(!verify_record(&dest.peer_id(), 8, &forged));
        let mut cache = Verified::default();
        assert!(cache.check(&dest.peer_id(), 7, &sig));
        assert!(cache.check(&dest.peer_id(), 7, &sig));
        assert!(!cache.check(&dest.peer_id(), 8, &forged));
    }

    #[test]
    fn a_trace_signature_covers_the_path() {
        let target = Keypair::from_seed([3; 32]);
        let a = Keypair::from_seed([4; 32]).peer_id();
        let path = vec![a, target.peer_id()];
        let sig = sign_trace(&target, 9, &path);
        assert!(verify_trace(&target.peer_id(), 9, &path, &sig));
        assert!(!verify_trace(&target.peer_id(), 10, &path, &sig));
        assert!(!verify_trace(&target.peer_id(), 9, &path[1..], &sig));
    }
}
