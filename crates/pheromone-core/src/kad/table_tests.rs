use super::*;
use crate::identity::Keypair;
use proptest::prelude::*;
use std::time::Duration;

/// Tests need some origin for the clock; only differences from it matter.
#[allow(clippy::disallowed_methods)]
fn test_now() -> Instant {
    Instant::now()
}

fn peer(i: u32) -> PeerId {
    let mut seed = [0u8; 32];
    seed[..4].copy_from_slice(&i.to_le_bytes());
    Keypair::from_seed(seed).peer_id()
}

fn ip_addr(ip: &str) -> Vec<Multiaddr> {
    vec![format!("/ip4/{ip}/tcp/4001").parse().unwrap()]
}

/// `n` peers that all fall in the bucket that half the key space falls in (255).
fn far_peers(local: &Key, n: usize) -> Vec<PeerId> {
    (1000..)
        .map(peer)
        .filter(|p| local.distance(&Key::from_peer(p)).bucket_index() == Some(255))
        .take(n)
        .collect()
}

fn table(config: &Config) -> (RoutingTable, Instant) {
    let local = Key::from_peer(&peer(0));
    (RoutingTable::new(local, config), test_now())
}

#[test]
fn a_full_bucket_sends_newcomers_to_the_replacement_list() {
    let config = Config::default();
    let (mut t, now) = table(&config);
    let peers = far_peers(&t.local_key(), 35);
    for (i, p) in peers.iter().enumerate() {
        let outcome = t.insert(now, *p, &ip_addr(&format!("1.{i}.0.1")));
        if i < 20 {
            assert_eq!(outcome, InsertOutcome::Inserted { bucket: 255 });
        } else {
            assert_eq!(outcome, InsertOutcome::Pending);
        }
    }
    assert_eq!(t.len(), 20);
    assert_eq!(t.bucket(255).len(), 20);
    // Ten replacements kept, the newest ones.
    let reps: Vec<PeerId> = t.replacements(255).iter().map(|e| e.peer).collect();
    assert_eq!(reps, peers[25..35].to_vec());
    // The least recently seen is first; seeing it again moves it to the end.
    assert_eq!(t.oldest(255).unwrap().peer, peers[0]);
    let later = now + Duration::from_secs(1);
    assert_eq!(
        t.insert(later, peers[0], &ip_addr("1.0.0.1")),
        InsertOutcome::Refreshed
    );
    assert_eq!(t.oldest(255).unwrap().peer, peers[1]);
    // Removing an entry promotes the newest replacement.
    let (removed, promoted) = t.remove(&peers[1]);
    assert_eq!(removed.unwrap().peer, peers[1]);
    assert_eq!(promoted, Some(peers[34]));
    assert_eq!(t.len(), 20);
    assert!(t.get(&peers[34]).is_some());
}

#[test]
fn at_most_two_per_slash24_per_bucket_and_ten_per_table() {
    let config = Config::default();
    let (mut t, now) = table(&config);
    let peers = far_peers(&t.local_key(), 3);
    assert!(matches!(
        t.insert(now, peers[0], &ip_addr("5.6.7.1")),
        InsertOutcome::Inserted { .. }
    ));
    assert!(matches!(
        t.insert(now, peers[1], &ip_addr("5.6.7.2")),
        InsertOutcome::Inserted { .. }
    ));
    assert_eq!(
        t.insert(now, peers[2], &ip_addr("5.6.7.3")),
        InsertOutcome::RejectedDiversity
    );
    // Across buckets: ten per /24 in the whole table.
    let (mut t, now) = table(&config);
    let local = t.local_key();
    let mut per_bucket: HashMap<usize, usize> = HashMap::new();
    let mut inserted = 0;
    let mut rejected = 0;
    for i in 1..4000 {
        let p = peer(i);
        let b = local.distance(&Key::from_peer(&p)).bucket_index().unwrap();
        let n = per_bucket.entry(b).or_insert(0);
        if *n >= 2 {
            continue;
        }
        *n += 1;
        match t.insert(now, p, &ip_addr(&format!("9.9.9.{}", i % 250))) {
            InsertOutcome::Inserted { .. } => inserted += 1,
            InsertOutcome::RejectedDiversity => rejected += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(inserted, 10);
    assert!(rejected > 0);
}

#[test]
fn loopback_and_configured_ranges_are_exempt() {
    let mut config = Config::default();
    config.diversity_exempt.push(IpRange {
        addr: "10.0.0.0".parse().unwrap(),
        prefix: 8,
    });
    let (mut t, now) = table(&config);
    let peers = far_peers(&t.local_key(), 10);
    for (i, p) in peers.iter().enumerate() {
        let ip = if i % 2 == 0 { "127.0.0.1" } else { "10.0.0.1" };
        assert!(matches!(
            t.insert(now, *p, &ip_addr(ip)),
            InsertOutcome::Inserted { .. }
        ));
    }
    assert_eq!(t.len(), 10);
}

#[test]
fn ipv6_counts_by_slash48() {
    let config = Config::default();
    let (mut t, now) = table(&config);
    let peers = far_peers(&t.local_key(), 3);
    let v6 = |s: &str| vec![format!("/ip6/{s}/tcp/1").parse::<Multiaddr>().unwrap()];
    assert!(matches!(
        t.insert(now, peers[0], &v6("2001:db8:1:1::1")),
        InsertOutcome::Inserted { .. }
    ));
    assert!(matches!(
        t.insert(now, peers[1], &v6("2001:db8:1:2::1")),
        InsertOutcome::Inserted { .. }
    ));
    assert_eq!(
        t.insert(now, peers[2], &v6("2001:db8:1:ffff::1")),
        InsertOutcome::RejectedDiversity
    );
}

#[test]
fn self_is_refused_and_addresses_are_capped() {
    let config = Config {
        max_addrs_per_peer: 2,
        ..Config::default()
    };
    let (mut t, now) = table(&config);
    assert_eq!(t.insert(now, peer(0), &[]), InsertOutcome::RejectedSelf);
    let p = peer(5);
    let addrs: Vec<Multiaddr> = (0..5)
        .map(|i| format!("/ip4/127.0.0.1/tcp/{i}").parse().unwrap())
        .collect();
    t.insert(now, p, &addrs);
    assert_eq!(t.get(&p).unwrap().addrs, addrs[..2].to_vec());
    t.insert(now, p, &addrs[4..]);
    assert_eq!(
        t.get(&p).unwrap().addrs,
        vec![addrs[4].clone(), addrs[0].clone()]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn closest_agrees_with_a_full_sort(
        members in proptest::collection::btree_set(1u32..5000, 0..150),
        target in any::<[u8; 32]>(),
        n in 1usize..40,
    ) {
        let config = Config {
            k: 8,
            ..Config::default()
        };
        let (mut t, now) = table(&config);
        for &m in &members {
            t.insert(now, peer(m), &[]);
        }
        let target = Key::from_hash(target);
        let mut all: Vec<(Distance, PeerId)> =
            t.iter().map(|e| (e.key.distance(&target), e.peer)).collect();
        all.sort();
        all.truncate(n);
        let got: Vec<PeerId> = t.closest(&target, n).into_iter().map(|e| e.peer).collect();
        let want: Vec<PeerId> = all.into_iter().map(|(_, p)| p).collect();
        prop_assert_eq!(got, want);
    }
}

proptest! {
    /// The peer index agrees with the buckets after any sequence of inserts and removals
    /// (small buckets and a crowded subnet so that every path is taken).
    #[test]
    fn the_peer_index_matches_the_buckets(ops in proptest::collection::vec((any::<bool>(), 1u32..40, 0u8..4), 1..200)) {
        let config = Config { k: 3, replacements: 2, ..Config::default() };
        let (mut t, now) = table(&config);
        let peers: Vec<PeerId> = (0..40).map(peer).collect();
        for (insert, i, subnet) in ops {
            let p = peers[i as usize];
            if insert {
                t.insert(now, p, &ip_addr(&format!("30.0.{subnet}.{i}")));
            } else {
                t.remove(&p);
            }
            let mut scanned = 0;
            for index in 0..NUM_BUCKETS {
                for e in t.bucket(index).iter().chain(t.replacements(index)) {
                    prop_assert!(t.knows(&e.peer));
                    scanned += 1;
                }
                for e in t.bucket(index) {
                    prop_assert_eq!(t.get(&e.peer), Some(e));
                }
            }
            prop_assert_eq!(scanned, t.index.len());
        }
    }
}
