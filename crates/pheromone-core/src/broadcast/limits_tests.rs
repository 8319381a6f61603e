//! Tests of the caps on what one neighbour can make a node do or hold: GRAFT answers
//! (per message and per byte budget) and topic interest (per neighbour, with room kept
//! for local subscriptions). Each drives one real node with frames from a hostile
//! neighbour and counts what comes out.

use super::wire::{self, Entry};
use super::*;
use crate::identity::Keypair;
use crate::overlay::Overlay;
use std::time::{Duration, Instant};

fn peer(seed: u8) -> PeerId {
    Keypair::from_seed([seed; 32]).peer_id()
}

fn node(config: Config) -> Broadcast {
    Broadcast::new(Keypair::from_seed([1; 32]), config)
}

/// Drains the node's outputs: (gossip frames, their bytes, control frames) sent to `to`,
/// plus the control entries in those frames.
fn drain(node: &mut Broadcast, to: PeerId) -> (usize, usize, Vec<(String, Entry)>) {
    let limits = wire::Limits::from_config(node.config());
    let (mut gossip, mut bytes, mut entries) = (0, 0, Vec::new());
    while let Some(out) = node.poll_output() {
        if let Output::Send { to: peer, frame } = out {
            if peer != to {
                continue;
            }
            match wire::decode(&frame, &limits) {
                Ok(wire::Frame::Gossip(_)) => {
                    gossip += 1;
                    bytes += frame.len();
                }
                Ok(wire::Frame::Control(control)) => entries.extend(control.to_vec()),
                Err(error) => panic!("the node sent a bad frame: {error}"),
            }
        }
    }
    (gossip, bytes, entries)
}

fn graft(now: Instant, node: &mut Broadcast, from: PeerId, ids: &[MessageId]) {
    let entries: Vec<Entry> = ids.iter().map(|&id| Entry::Graft { id, gen: 0 }).collect();
    let frame = wire::encode_control([("t", entries.as_slice())]);
    node.handle_frame(now, from, &frame)
        .expect("a well-formed GRAFT frame is taken");
}

#[test]
fn repeated_grafts_for_one_message_get_at_most_max_graft_answers_copies() {
    let now = test_now();
    let mut a = node(Config::default());
    let b = peer(2);
    a.neighbour_up(now, b.into());
    let id = a
        .publish(now, &Topic::new("t").expect("topic"), b"hello")
        .expect("publish");
    drain(&mut a, b);
    graft(now, &mut a, b, &[id; 50]);
    let (copies, _, _) = drain(&mut a, b);
    let max = usize::from(Config::default().max_graft_answers);
    assert_eq!(
        copies, max,
        "50 GRAFTs for one message answered {copies} times"
    );
    assert_eq!(a.metrics().grafts_refused, 50 - max as u64);
}

#[test]
fn graft_answers_to_one_neighbour_stay_within_its_byte_budget() {
    let now = test_now();
    let config = Config::default();
    let (burst, rate) = (config.graft_serve_burst, config.graft_serve_rate);
    let mut a = node(config);
    let (b, c) = (peer(2), peer(3));
    a.neighbour_up(now, b.into());
    a.neighbour_up(now, c.into());
    let topic = Topic::new("t").expect("topic");
    let data = vec![7u8; 60 * 1024];
    // 40 messages of 60 KiB: 2.4 MB of answers for a few hundred bytes of GRAFTs.
    let ids: Vec<MessageId> = (0..40)
        .map(|_| a.publish(now, &topic, &data).expect("publish"))
        .collect();
    drain(&mut a, b);
    graft(now, &mut a, b, &ids);
    let (copies, bytes, _) = drain(&mut a, b);
    assert!(bytes <= burst, "answered {bytes} bytes (budget {burst})");
    assert!(copies > 0 && copies < ids.len(), "{copies} answers");
    // Another neighbour has a budget of its own.
    graft(now, &mut a, c, &ids[..4]);
    assert_eq!(drain(&mut a, c).0, 4);
    // The budget refills at the configured rate: one second buys `rate` bytes more.
    let later = now + Duration::from_secs(1);
    graft(later, &mut a, b, &ids[copies..]);
    let (_, more, _) = drain(&mut a, b);
    assert!(
        more > 0 && more <= rate,
        "after a second: {more} bytes (rate {rate}/s)"
    );
}

#[test]
fn junk_interest_from_one_neighbour_neither_spreads_nor_blocks_subscribe() {
    let now = test_now();
    let config = Config::default();
    let cap = config.max_topics_per_neighbour;
    let mut a = node(config);
    let (attacker, honest) = (peer(2), peer(3));
    a.neighbour_up(now, attacker.into());
    a.neighbour_up(now, honest.into());
    drain(&mut a, honest);
    let names: Vec<String> = (0..1024).map(|i| format!("junk/{i}")).collect();
    for chunk in names.chunks(256) {
        let groups: Vec<(&str, &[Entry])> = chunk
            .iter()
            .map(|n| (n.as_str(), &[Entry::Interest(0)][..]))
            .collect();
        let frame = wire::encode_control(groups);
        a.handle_frame(now, attacker, &frame)
            .expect("a well-formed INTEREST frame is taken");
    }
    let (_, _, entries) = drain(&mut a, honest);
    let spread: std::collections::BTreeSet<&str> = entries
        .iter()
        .filter(|(_, e)| matches!(e, Entry::Interest(d) if *d != u8::MAX))
        .map(|(t, _)| t.as_str())
        .collect();
    assert!(
        spread.len() <= cap,
        "{} junk topics passed on to an honest neighbour (cap {cap})",
        spread.len()
    );
    assert_eq!(a.metrics().dropped.too_many_topics, 1024 - cap as u64);
    // Our own subscriptions and an honest neighbour's new topic still get in.
    assert_eq!(
        a.subscribe(now, &Topic::new("mine").expect("topic")),
        Ok(true)
    );
    let frame = wire::encode_control([("honest/new", &[Entry::Interest(0)][..])]);
    a.handle_frame(now, honest, &frame).expect("taken");
    assert_eq!(a.interested_peers("honest/new"), vec![honest]);
}

#[test]
fn subscribe_is_refused_with_an_error_when_the_table_is_full() {
    let now = test_now();
    let config = Config {
        max_topics: 2,
        reserved_local_topics: 0,
        ..Config::default()
    };
    let mut a = node(config);
    for name in ["a", "b"] {
        assert_eq!(
            a.subscribe(now, &Topic::new(name).expect("topic")),
            Ok(true)
        );
    }
    assert_eq!(
        a.subscribe(now, &Topic::new("c").expect("topic")),
        Err(TopicError::TooManyTopics(2))
    );
    assert!(!a.is_subscribed("c"));
}
