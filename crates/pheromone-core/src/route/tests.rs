//! Router unit tests on a tiny instant-delivery network (the simulator covers latency,
//! scale and failures in depth).

use super::wire::{self, Message, UpdateEntry, INFINITY};
use super::*;
use crate::identity::Keypair;
use crate::overlay::Overlay;
use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

/// The tests' time origin; only differences from it matter.
#[allow(clippy::disallowed_methods)]
fn start() -> Instant {
    Instant::now()
}

fn key(n: u8) -> Keypair {
    Keypair::from_seed([n; 32])
}

fn peer(n: u8) -> PeerId {
    key(n).peer_id()
}

/// An advertisement of node `dest`'s route, with `dest`'s own signature.
fn signed(dest: u8, seqno: u32, metric: u16, hops: u8) -> UpdateEntry {
    UpdateEntry {
        destination: peer(dest),
        seqno,
        metric,
        hops,
        signature: Some(super::record::sign_record(&key(dest), seqno)),
    }
}

/// Rewrites (or drops, with `None`) a frame from one node to another in flight.
type Tamper = Box<dyn FnMut(usize, usize, Message) -> Option<Message>>;

/// Routers on a virtual clock; frames are delivered in order, instantly, over up links.
struct Net {
    routers: Vec<Router>,
    ids: Vec<PeerId>,
    links: BTreeSet<(usize, usize)>,
    now: Instant,
    events: Vec<(usize, Event)>,
    sent: Vec<(usize, usize, Message)>,
    tamper: Option<Tamper>,
}

impl Net {
    /// Triggered updates go out at once: this harness only moves time in `advance`.
    fn new(n: usize, config: Config) -> Self {
        let config = Config {
            triggered_delay: Duration::ZERO,
            ..config
        };
        let ids: Vec<PeerId> = (0..n).map(|i| peer(i as u8 + 1)).collect();
        Self {
            routers: (0..n)
                .map(|i| Router::new(key(i as u8 + 1), config.clone(), start()))
                .collect(),
            ids,
            links: BTreeSet::new(),
            now: start(),
            events: Vec::new(),
            sent: Vec::new(),
            tamper: None,
        }
    }

    fn index(&self, p: &PeerId) -> usize {
        self.ids.iter().position(|x| x == p).expect("known peer")
    }

    fn link(&mut self, a: usize, b: usize) {
        self.links.insert((a.min(b), a.max(b)));
        let (pa, pb) = (self.ids[a], self.ids[b]);
        let now = self.now;
        self.routers[a].neighbour_up(now, pb.into());
        self.routers[b].neighbour_up(now, pa.into());
        self.pump();
    }

    fn unlink(&mut self, a: usize, b: usize) {
        self.links.remove(&(a.min(b), a.max(b)));
        let (pa, pb) = (self.ids[a], self.ids[b]);
        let now = self.now;
        self.routers[a].neighbour_down(now, pb);
        self.routers[b].neighbour_down(now, pa);
        self.pump();
    }

    fn pump(&mut self) {
        let mut queue = VecDeque::new();
        loop {
            for (i, r) in self.routers.iter_mut().enumerate() {
                while let Some(out) = r.poll_output() {
                    match out {
                        Output::Send { to, frame: bytes } => queue.push_back((i, to, bytes)),
                        Output::Event(e) => self.events.push((i, e)),
                        other => panic!("the router asked for {other:?}"),
                    }
                }
            }
            let Some((from, to, bytes)) = queue.pop_front() else {
                return;
            };
            let to = self.index(&to);
            if !self.links.contains(&(from.min(to), from.max(to))) {
                continue;
            }
            let mut message = wire::decode(&bytes, &wire::Limits::from_config(&Config::default()))
                .expect("routers send valid frames");
            let mut bytes = bytes.to_vec();
            if let Some(tamper) = &mut self.tamper {
                match tamper(from, to, message) {
                    Some(m) => {
                        bytes = m.to_vec();
                        message = m;
                    }
                    None => continue,
                }
            }
            self.sent.push((from, to, message));
            let sender = self.ids[from];
            let now = self.now;
            self.routers[to]
                .handle_frame(now, sender, &bytes)
                .expect("accepted");
        }
    }

    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        loop {
            let next = self
                .routers
                .iter()
                .filter_map(|r| r.poll_timeout())
                .min()
                .filter(|&at| at <= until);
            let Some(at) = next else { break };
            self.now = self.now.max(at);
            let now = self.now;
            for r in &mut self.routers {
                if r.poll_timeout().is_some_and(|t| t <= now) {
                    r.handle_timeout(now);
                }
            }
            self.pump();
        }
        self.now = until;
    }

    fn hop(&self, from: usize, to: usize) -> Option<(usize, u8)> {
        self.routers[from]
            .next_hop(&self.ids[to])
            .map(|h| (self.index(&h.peer), h.hops))
    }

    /// Follows next hops; the path (excluding `from`), or None on a dead end or loop.
    fn path(&self, from: usize, to: usize) -> Option<Vec<usize>> {
        let mut at = from;
        let mut path = Vec::new();
        while at != to {
            let (next, _) = self.hop(at, to)?;
            if path.contains(&next) || path.len() > self.ids.len() {
                return None;
            }
            path.push(next);
            at = next;
        }
        Some(path)
    }
}

#[test]
fn a_line_converges_to_shortest_paths() {
    let mut net = Net::new(5, Config::default());
    for i in 1..5 {
        net.link(i - 1, i);
    }
    for a in 0..5 {
        for b in 0..5 {
            if a == b {
                assert_eq!(net.hop(a, b), None);
                continue;
            }
            let path = net.path(a, b).expect("routable");
            assert_eq!(path.len(), a.abs_diff(b), "{a}->{b}");
            assert_eq!(net.hop(a, b).map(|h| h.1), Some(a.abs_diff(b) as u8));
        }
    }
    let table = net.routers[0].table(net.now);
    assert_eq!(table.len(), 4);
    assert!(table.iter().all(|e| e.next_hop == net.ids[1]));
    assert_eq!(net.routers[0].reachable(), 4);
}

#[test]
fn a_cut_line_withdraws_the_far_side() {
    let mut net = Net::new(4, Config::default());
    for i in 1..4 {
        net.link(i - 1, i);
    }
    net.events.clear();
    net.unlink(1, 2);
    for (a, b) in [(0, 2), (0, 3), (1, 3), (3, 0), (2, 1)] {
        assert_eq!(net.hop(a, b), None, "{a}->{b} still routed");
    }
    assert!(net.path(0, 1).is_some() && net.path(2, 3).is_some());
    assert!(net.events.iter().any(|(i, e)| *i == 0
        && *e
            == Event::RouteChanged {
                destination: net.ids[3],
                route: None
            }));
    // Forgotten entirely once the source GC time has passed.
    net.advance(Config::default().source_gc_time + Duration::from_secs(2));
    assert_eq!(net.routers[0].destinations(), 1);
}

#[test]
fn a_ring_reroutes_around_a_failed_link_without_loops() {
    let mut net = Net::new(6, Config::default());
    for i in 0..6 {
        net.link(i, (i + 1) % 6);
    }
    assert_eq!(net.path(0, 2).map(|p| p.len()), Some(2));
    net.unlink(0, 1);
    // Requests travel and are answered within the same pump: instant delivery.
    for a in 0..6 {
        for b in 0..6 {
            if a != b {
                let path = net
                    .path(a, b)
                    .unwrap_or_else(|| panic!("{a}->{b} unroutable"));
                // The ring became a line 1-2-3-4-5-0.
                let pos = |x: usize| (x + 5) % 6;
                assert_eq!(path.len(), pos(a).abs_diff(pos(b)), "{a}->{b}");
            }
        }
    }
    assert!(net.routers[0].metrics().request_entries_sent > 0);
}

#[test]
fn the_next_hop_hears_a_poisoned_route() {
    let mut net = Net::new(3, Config::default());
    net.link(0, 1);
    net.link(1, 2);
    // 1 routes to 2 directly, so what it tells 2 about 2 is irrelevant; what it tells 2
    // about 0 is a real route, and what it tells 0 about 0 never happens (own id).
    // 2 routes to 0 via 1: 2's advertisement of 0 to 1 must be poisoned.
    let poisoned = net.sent.iter().any(|(from, to, m)| {
        *from == 2
            && *to == 1
            && matches!(m, Message::Update(es) if es.iter().any(|e| e.destination == net.ids[0] && e.metric == INFINITY))
    });
    assert!(poisoned);
    // Periodic dumps apply split horizon: no entry for 0 from 2 to 1 at all.
    net.sent.clear();
    net.advance(Config::default().update_interval + Duration::from_millis(1));
    assert!(!net.sent.iter().any(|(from, to, m)| *from == 2
        && *to == 1
        && matches!(m, Message::Update(es) if es.iter().any(|e| e.destination == net.ids[0]))));
    assert!(net.sent.iter().any(|(from, to, _)| *from == 2 && *to == 1));
}

#[test]
fn unfeasible_advertisements_are_not_used() {
    let now = start();
    let (a, b, d) = (peer(2), peer(3), peer(4));
    let mut r = Router::new(key(1), Config::default(), now);
    r.neighbour_up(now, a.into());
    r.neighbour_up(now, b.into());
    let update = |_: PeerId, seqno, metric, hops| {
        let mut e = signed(4, seqno, metric, hops);
        if metric == INFINITY {
            e.signature = None;
        }
        Message::Update(vec![e]).to_vec()
    };
    r.handle_frame(now, a, &update(d, 5, 2, 2)).unwrap();
    assert_eq!(r.next_hop(&d).map(|h| (h.peer, h.metric)), Some((a, 3)));
    // Same seqno, metric 3 from b: not strictly better than our FD (5, 3).
    r.handle_frame(now, b, &update(d, 5, 3, 3)).unwrap();
    r.handle_frame(now, a, &update(d, 5, INFINITY, 0)).unwrap();
    assert_eq!(r.next_hop(&d), None);
    // We asked for seqno 6.
    let mut asked = false;
    while let Some(out) = r.poll_output() {
        if let Output::Send { frame: bytes, .. } = out {
            if let Ok(Message::Request(es)) =
                wire::decode(&bytes, &wire::Limits::from_config(r.config()))
            {
                asked |= es.iter().any(|e| e.destination == d && e.seqno == 6);
            }
        }
    }
    assert!(asked);
    // A newer seqno is feasible whatever its metric.
    r.handle_frame(now, b, &update(d, 6, 9, 9)).unwrap();
    assert_eq!(r.next_hop(&d).map(|h| (h.peer, h.hops)), Some((b, 10)));
}

#[test]
fn a_restarted_node_jumps_past_its_old_seqno() {
    let mut net = Net::new(3, Config::default());
    net.link(0, 1);
    net.link(1, 2);
    // Make 2's seqno climb: ask it directly.
    let now = net.now;
    let request = Message::Request(vec![wire::RequestEntry {
        destination: net.ids[2],
        seqno: 40,
        hop_count: 1,
    }])
    .to_vec();
    let from = net.ids[1];
    net.routers[2].handle_frame(now, from, &request).unwrap();
    net.pump();
    assert_eq!(net.routers[2].seqno(), 40);
    // 2 restarts with seqno 0; 0's FD for 2 is (40, 2).
    net.unlink(1, 2);
    net.routers[2] = Router::new(
        key(3),
        Config {
            triggered_delay: Duration::ZERO,
            ..Config::default()
        },
        net.now,
    );
    net.link(1, 2);
    assert!(net.routers[2].seqno() > 40);
    assert_eq!(net.hop(0, 2).map(|h| h.1), Some(2));
}

#[test]
fn routes_expire_when_not_refreshed() {
    let now = start();
    let config = Config::default();
    let (a, d) = (peer(2), peer(4));
    let mut r = Router::new(key(1), config.clone(), now);
    r.neighbour_up(now, a.into());
    let update = Message::Update(vec![signed(4, 1, 1, 1)]).to_vec();
    r.handle_frame(now, a, &update).unwrap();
    assert!(r.next_hop(&d).is_some());
    let mut t = now;
    while t < now + config.route_expiry + Duration::from_secs(2) {
        t = r.poll_timeout().expect("timers run");
        r.handle_timeout(t);
        while r.poll_output().is_some() {}
    }
    assert_eq!(r.next_hop(&d), None);
}

#[test]
fn the_table_is_bounded() {
    let now = start();
    let config = Config {
        max_destinations: 10,
        ..Config::default()
    };
    let mut r = Router::new(key(1), config, now);
    r.neighbour_up(now, peer(2).into());
    let entries: Vec<UpdateEntry> = (10..40).map(|n| signed(n, 1, 1, 1)).collect();
    r.handle_frame(now, peer(2), &Message::Update(entries).to_vec())
        .unwrap();
    assert_eq!(r.destinations(), 10);
    assert_eq!(r.metrics().table_full_drops, 20);
    // Known routes stay; unknown ones were refused.
    assert!(r.next_hop(&peer(10)).is_some());
    assert!(r.next_hop(&peer(39)).is_none());
}

#[test]
fn hostile_frames_are_refused_not_panicked_on() {
    let now = start();
    let mut r = Router::new(key(1), Config::default(), now);
    assert_eq!(
        r.handle_frame(now, peer(2), &[1, 1, 0]),
        Err(MessageError::NotANeighbour)
    );
    r.neighbour_up(now, peer(2).into());
    assert!(matches!(
        r.handle_frame(now, peer(2), &[2, 7]),
        Err(MessageError::Decode(DecodeError::UnknownKind(7)))
    ));
    assert_eq!(r.metrics().frames_rejected, 2);
    // A trace whose path does not end with its sender.
    let probe = Message::Trace(wire::TraceProbe {
        id: 1,
        target: peer(5),
        ttl: 3,
        path: vec![peer(9)],
    });
    assert_eq!(
        r.handle_frame(now, peer(2), &probe.to_vec()),
        Err(MessageError::BadTracePath)
    );
}

#[test]
fn traces_report_the_path() {
    let mut net = Net::new(4, Config::default());
    for i in 1..4 {
        net.link(i - 1, i);
    }
    net.events.clear();
    let now = net.now;
    let target = net.ids[3];
    let id = net.routers[0].trace(now, target).unwrap();
    net.pump();
    let outcome = net
        .events
        .iter()
        .find_map(|(i, e)| match e {
            Event::TraceFinished(o) if *i == 0 => Some(o.clone()),
            _ => None,
        })
        .expect("trace finished");
    assert_eq!(outcome.id, id);
    assert_eq!(outcome.status, TraceStatus::Reached);
    assert_eq!(outcome.path, net.ids);
    // No route: refused locally. Self: reached at once.
    assert_eq!(
        net.routers[0].trace(now, peer(99)),
        Err(TraceError::NoRoute)
    );
    assert!(net.routers[0].trace(now, net.ids[0]).is_ok());
}

#[test]
fn traces_time_out() {
    let now = start();
    let (a, d) = (peer(2), peer(4));
    let mut r = Router::new(key(1), Config::default(), now);
    r.neighbour_up(now, a.into());
    let update = Message::Update(vec![signed(4, 1, 1, 1)]);
    r.handle_frame(now, a, &update.to_vec()).unwrap();
    let id = r.trace(now, d).unwrap();
    let mut finished = None;
    let mut t = now;
    while finished.is_none() && t < now + Duration::from_secs(10) {
        t = r.poll_timeout().unwrap();
        r.handle_timeout(t);
        while let Some(out) = r.poll_output() {
            if let Output::Event(Event::TraceFinished(o)) = out {
                finished = Some(o);
            }
        }
    }
    let o = finished.expect("timed out");
    assert_eq!((o.id, o.status), (id, TraceStatus::Timeout));
}

#[test]
fn fuzz_bodies_accept_anything() {
    let now = start();
    for data in [&[][..], &[1, 1, 0], &[2, 1, 0], &[2, 2, 1, 0], &[0xff; 40]] {
        fuzzing::fuzz_decode(data);
        fuzzing::fuzz_handle_message(now, data);
    }
}

#[test]
fn a_newer_seqno_goes_to_those_who_asked_not_to_everyone() {
    // A complete graph of five: when 0 loses its direct link to 1, every other route to 1
    // is unfeasible for 0 (they advertise metric 1, as 0 did), so 0 asks for a newer seqno.
    let mut net = Net::new(5, Config::default());
    for a in 0..5 {
        for b in a + 1..5 {
            net.link(a, b);
        }
    }
    let before = net.routers[1].seqno();
    net.sent.clear();
    net.unlink(0, 1);
    let after = net.routers[1].seqno();
    assert!(
        seq_gt_test(after, before),
        "1 raised its seqno for 0's request"
    );
    assert_eq!(net.hop(0, 1).map(|(_, hops)| hops), Some(2));
    // 2, 3 and 4 hear the new number from 1 and pass it to 0, who asked; they have
    // nothing new for each other (same next hop, same metric).
    let dest = net.ids[1];
    for (from, to, message) in &net.sent {
        let Message::Update(entries) = message else {
            continue;
        };
        let news = entries
            .iter()
            .any(|e| e.destination == dest && e.seqno == after && e.metric != INFINITY);
        assert!(
            !(news && *from >= 2 && *to >= 2),
            "{from} told {to} about 1's new seqno, which it did not ask for"
        );
    }
    assert!(
        net.sent
            .iter()
            .any(|(from, to, m)| *from >= 2 && *to == 0 && matches!(m, Message::Update(_))),
        "nobody answered 0"
    );
}

fn seq_gt_test(a: u32, b: u32) -> bool {
    a != b && (a.wrapping_sub(b) as i32) > 0
}

/// The frames `r` has queued, decoded.
fn drain(r: &mut Router) -> Vec<(PeerId, Message)> {
    let limits = wire::Limits::from_config(r.config());
    let mut out = Vec::new();
    while let Some(o) = r.poll_output() {
        if let Output::Send { to, frame } = o {
            out.push((to, wire::decode(&frame, &limits).expect("valid frame")));
        }
    }
    out
}

#[test]
fn a_forged_higher_seqno_for_a_victim_is_rejected() {
    // The attack of issue 16: mallory advertises victim 4 with a higher seqno and metric 0
    // to draw its traffic. Under 1.0.0 a newer seqno won whatever its metric.
    let now = start();
    let (a, mallory, victim) = (peer(2), peer(3), peer(4));
    let mut r = Router::new(key(1), Config::default(), now);
    r.neighbour_up(now, a.into());
    r.neighbour_up(now, mallory.into());
    r.handle_frame(now, a, &Message::Update(vec![signed(4, 5, 2, 2)]).to_vec())
        .unwrap();
    assert_eq!(r.next_hop(&victim).map(|h| h.peer), Some(a));
    // Signed with mallory's own key, replayed with a changed seqno, or unsigned.
    let mut own_key = signed(4, 6, 0, 0);
    own_key.signature = Some(key(3).sign(b"pheromone-route-record/2: victim 6"));
    let mut replayed = signed(4, 5, 0, 0);
    replayed.seqno = 6;
    let mut unsigned = signed(4, 6, 0, 0);
    unsigned.signature = None;
    for forged in [own_key, replayed, unsigned] {
        let err = r
            .handle_frame(now, mallory, &Message::Update(vec![forged]).to_vec())
            .unwrap_err();
        assert!(
            matches!(err, MessageError::BadSignature { destination, seqno: 6, .. } if destination == victim),
            "{err}"
        );
        assert_eq!(r.next_hop(&victim).map(|h| h.peer), Some(a));
    }
    assert_eq!(r.metrics().records_rejected, 3);
    // Nor can mallory push our own seqno around with a record of ours it made up.
    let mut ours = signed(1, 1_000, 0, 0);
    ours.signature = Some([0; 64]);
    assert!(r
        .handle_frame(now, mallory, &Message::Update(vec![ours]).to_vec())
        .is_err());
    assert_eq!(r.seqno(), 0);
    // The genuine newer record is taken from anyone (what it claims of its metric is the
    // probes' business).
    r.handle_frame(
        now,
        mallory,
        &Message::Update(vec![signed(4, 6, 0, 0)]).to_vec(),
    )
    .unwrap();
    assert_eq!(
        r.next_hop(&victim).map(|h| (h.peer, h.metric)),
        Some((mallory, 1))
    );
}

#[test]
fn version_one_frames_are_refused() {
    let now = start();
    let mut r = Router::new(key(1), Config::default(), now);
    r.neighbour_up(now, peer(2).into());
    assert_eq!(
        r.handle_frame(now, peer(2), &[1, 1, 0]),
        Err(MessageError::Decode(DecodeError::UnsupportedVersion(1)))
    );
}

#[test]
fn one_neighbour_cannot_fill_the_table() {
    let now = start();
    let config = Config {
        max_destinations: 30,
        max_destinations_per_neighbour: 10,
        ..Config::default()
    };
    let mut r = Router::new(key(1), config, now);
    r.neighbour_up(now, peer(2).into());
    r.neighbour_up(now, peer(3).into());
    // Freshly minted identities, every record genuinely signed.
    let flood: Vec<UpdateEntry> = (10..60).map(|n| signed(n, 1, 1, 1)).collect();
    let err = r
        .handle_frame(now, peer(2), &Message::Update(flood).to_vec())
        .unwrap_err();
    assert_eq!(
        err,
        MessageError::NeighbourRouteCap {
            peer: peer(2),
            limit: 10,
            dropped: 40
        }
    );
    assert_eq!(r.destinations(), 10);
    assert_eq!(r.metrics().neighbour_cap_drops, 40);
    // An honest neighbour still gets its destinations in.
    let honest: Vec<UpdateEntry> = (100..105).map(|n| signed(n, 1, 1, 1)).collect();
    r.handle_frame(now, peer(3), &Message::Update(honest).to_vec())
        .unwrap();
    assert!((100..105).all(|n| r.next_hop(&peer(n)).is_some()));
    // A retraction frees the flooder's slot for another of its destinations.
    let mut retract = signed(10, 1, INFINITY, 0);
    retract.signature = None;
    r.handle_frame(now, peer(2), &Message::Update(vec![retract]).to_vec())
        .unwrap();
    r.handle_frame(
        now,
        peer(2),
        &Message::Update(vec![signed(70, 1, 1, 1)]).to_vec(),
    )
    .unwrap();
    assert!(r.next_hop(&peer(70)).is_some());
}

#[test]
fn a_relay_cannot_fake_a_trace_arrival() {
    let now = start();
    let (a, d) = (peer(2), peer(4));
    let mut r = Router::new(key(1), Config::default(), now);
    r.neighbour_up(now, a.into());
    r.handle_frame(now, a, &Message::Update(vec![signed(4, 1, 1, 1)]).to_vec())
        .unwrap();
    drain(&mut r);
    let id = r.trace(now, d).unwrap();
    let path = vec![peer(1), a, d];
    let fake = wire::TraceReply {
        id: id.0,
        target: d,
        status: TraceStatus::Reached,
        signature: Some(super::record::sign_trace(&key(2), id.0, &path)),
        path: path.clone(),
    };
    assert_eq!(
        r.handle_frame(now, a, &Message::TraceReply(fake).to_vec()),
        Err(MessageError::BadTraceSignature { target: d })
    );
    let real = wire::TraceReply {
        id: id.0,
        target: d,
        status: TraceStatus::Reached,
        signature: Some(super::record::sign_trace(&key(4), id.0, &path)),
        path,
    };
    r.handle_frame(now, a, &Message::TraceReply(real).to_vec())
        .unwrap();
    assert!(drain_events(&mut r).iter().any(
        |e| matches!(e, Event::TraceFinished(o) if o.status == TraceStatus::Reached && o.id == id)
    ));
}

fn drain_events(r: &mut Router) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(o) = r.poll_output() {
        if let Output::Event(e) = o {
            out.push(e);
        }
    }
    out
}

#[test]
fn a_metric_lying_relay_loses_its_traffic_after_probes_fail() {
    // 0 reaches 4 through honest 5 (two links) or through 1, which relays 4's genuine
    // records but tells 0 it sits next to 4 (metric 0) and drops whatever it should carry
    // for 0 — the probes included. Real path through 1: 1-2-3-4.
    let config = Config {
        probe_all: true,
        ..Config::default()
    };
    let mut net = Net::new(6, config.clone());
    let victim = net.ids[4];
    let liar = net.ids[1];
    net.tamper = Some(Box::new(move |from, to, message| match message {
        Message::Update(entries) if from == 1 && to == 0 => Some(Message::Update(
            entries
                .into_iter()
                .map(|mut e| {
                    if e.destination == victim && e.metric != INFINITY {
                        e.metric = 0;
                        e.hops = 0;
                    }
                    e
                })
                .collect(),
        )),
        Message::Trace(t) if from == 0 && to == 1 && t.target != liar => None,
        other => Some(other),
    }));
    for (a, b) in [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 4)] {
        net.link(a, b);
    }
    assert_eq!(
        net.hop(0, 4),
        Some((1, 1)),
        "the lie wins before anything is probed"
    );
    // Two probe timeouts and a round or two of slack.
    let wait = config.probe_timeout * u32::from(config.probe_failures) + Duration::from_secs(4);
    net.advance(wait);
    assert_eq!(
        net.path(0, 4),
        Some(vec![5, 4]),
        "0 fell back to the honest route"
    );
    assert!(net.routers[0].is_suspect(net.now, &victim, &liar));
    let m = net.routers[0].metrics();
    assert!(m.routes_suspected >= 1 && m.probes_failed >= 2, "{m:?}");
    // It stays on the honest route through the liar's later dumps; probes of it succeed.
    net.advance(config.update_interval * 2);
    assert_eq!(net.path(0, 4), Some(vec![5, 4]));
    assert!(net.routers[0].metrics().probes_sent > m.probes_sent);
    assert!(net.routers[0].is_suspect(net.now, &victim, &liar));
}
