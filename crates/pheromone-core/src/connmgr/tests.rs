//! The connection manager through the overlay contract: what it dials, when, and what it
//! asks to close. The rules' corner cases are tested in `policy.rs`.

use super::*;
use crate::identity::Keypair;

#[allow(clippy::disallowed_methods)]
fn test_now() -> Instant {
    Instant::now()
}

fn peer(i: u32) -> PeerId {
    let mut seed = [9u8; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    Keypair::from_seed(seed).peer_id()
}

fn addr(i: u32) -> Multiaddr {
    Multiaddr::from_socket_addr(([10, 0, (i >> 8) as u8, i as u8], 4001).into())
}

fn drain(m: &mut ConnectionManager) -> Vec<Output<Event>> {
    std::iter::from_fn(|| m.poll_output()).collect()
}

fn dials(outputs: &[Output<Event>]) -> Vec<(DialId, Option<PeerId>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Dial { id, peer, .. } => Some((*id, *peer)),
            _ => None,
        })
        .collect()
}

fn config() -> Config {
    Config {
        low_watermark: 2,
        high_watermark: 3,
        prune_grace: Duration::from_secs(5),
        ..Config::default()
    }
}

#[test]
fn pinned_peers_are_dialled_at_the_first_tick_without_their_p2p_suffix() {
    let now = test_now();
    let boot = addr(1).with_p2p(peer(1)).unwrap();
    let mut m = ConnectionManager::new(
        peer(0),
        Config {
            bootstrap: vec![boot],
            ..config()
        },
        now,
        7,
    );
    assert_eq!(m.poll_timeout(), Some(now));
    m.handle_timeout(now);
    let out = drain(&mut m);
    assert_eq!(
        out,
        vec![Output::Dial {
            id: DialId(0),
            peer: Some(peer(1)),
            addrs: vec![addr(1)],
        }]
    );
    m.handle_dial_result(now, DialId(0), Ok(peer(1)));
    assert_eq!(
        drain(&mut m),
        vec![
            Output::Event(Event::PinnedConnected {
                peer: peer(1),
                addr: addr(1),
                bootstrap: true,
            }),
            Output::Event(Event::Dialled {
                peer: Some(peer(1)),
                ok: true
            })
        ]
    );
    assert_eq!(
        m.pinned_addr(&peer(1)),
        Some(addr(1).with_p2p(peer(1)).unwrap())
    );
    assert!(m.is_pinned(&peer(1)));
    assert_eq!(m.metrics().redials, 1);
}

#[test]
fn below_the_low_watermark_candidates_are_dialled_once_each() {
    let now = test_now();
    let mut m = ConnectionManager::new(peer(0), config(), now, 1);
    for i in 1..=4 {
        m.learn(now, peer(i), i as usize, vec![addr(i)]);
    }
    m.handle_timeout(now);
    let first = dials(&drain(&mut m));
    assert_eq!(first.len(), 2, "two short of the low watermark");
    // Still dialling: nothing more at the next tick.
    let next = m.poll_timeout().unwrap();
    m.handle_timeout(next);
    assert!(dials(&drain(&mut m)).is_empty());
    // One fails, one connects: the failed one is quarantined and another tried.
    m.handle_dial_result(next, first[0].0, Err(DialFailure::Unreachable));
    m.handle_dial_result(next, first[1].0, Ok(first[1].1.unwrap()));
    m.neighbour_up(next, Neighbour::from(first[1].1.unwrap()));
    drain(&mut m);
    let later = m.poll_timeout().unwrap();
    m.handle_timeout(later);
    let second = dials(&drain(&mut m));
    assert_eq!(second.len(), 1);
    assert!(second[0].1 != first[0].1 && second[0].1 != first[1].1);
    assert_eq!(m.metrics().dials_failed, 1);
}

#[test]
fn above_the_high_watermark_the_unprotected_old_connections_are_closed() {
    let now = test_now();
    let mut m = ConnectionManager::new(peer(0), config(), now, 1);
    for i in 1..=6 {
        m.neighbour_up(now, Neighbour::from(peer(i)));
    }
    m.protect(peer(1), true);
    m.protect(peer(2), true);
    // Young connections are spared.
    m.handle_timeout(now);
    assert!(drain(&mut m).is_empty());
    let later = now + Duration::from_secs(10);
    m.handle_timeout(later);
    let closed: Vec<PeerId> = drain(&mut m)
        .into_iter()
        .filter_map(|o| match o {
            Output::Disconnect { peer } => Some(peer),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 3, "six connected, high watermark three");
    assert!(!closed.contains(&peer(1)) && !closed.contains(&peer(2)));
    assert_eq!(m.metrics().pruned, 3);
    // The driver closes them; once gone, nothing more is pruned.
    for p in &closed {
        m.neighbour_down(later, *p);
    }
    m.handle_timeout(later + Duration::from_secs(1));
    assert!(drain(&mut m).is_empty());
}

#[test]
fn kad_table_changes_become_candidates_and_the_book_is_bounded() {
    let now = test_now();
    let mut m = ConnectionManager::new(
        peer(0),
        Config {
            max_candidates: 3,
            ..config()
        },
        now,
        1,
    );
    for i in 1..=5u32 {
        let event = crate::kad::Event::PeerAdded {
            peer: peer(i),
            bucket: 200,
            addrs: vec![addr(i)],
        };
        m.follow_kad(now + Duration::from_secs(u64::from(i)), &event);
    }
    assert_eq!(m.candidates(), 3, "the stalest were forgotten");
    m.follow_kad(
        now,
        &crate::kad::Event::PeerEvicted {
            peer: peer(5),
            promoted: None,
        },
    );
    assert_eq!(m.candidates(), 2);
    // Ourselves and peers without addresses are never candidates.
    m.learn(now, peer(0), 1, vec![addr(0)]);
    m.learn(now, peer(9), 1, Vec::new());
    assert_eq!(m.candidates(), 2);
}
