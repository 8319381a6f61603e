//! The per-node broadcast state machine: its fields, neighbours, local commands, frame
//! intake, timers and the output queue.
//!
//! The GOSSIP path (dedup, verify, deliver, forward once) lives in `gossip.rs`, topic
//! interest in `interest.rs`, the root tree in `tree.rs`, loss recovery (history,
//! announcements, retransmissions, GRAFT) in `recovery.rs`, the outbound control queue in
//! `control.rs`; all are `impl` blocks of [`Broadcast`]. Nothing here reads a clock: every
//! input carries `now`.

use super::gossip::FirstCopy;
use super::interest::TopicState;
use super::metrics::Metrics;
use super::order::OrderedDelivery;
use super::recovery::{History, Missing, Timer};
use super::seen::SeenCache;
use super::wire::{self, Entry, Frame, Limits};
use super::{
    Config, Ed25519Verifier, Event, FrameError, Message, MessageId, Output, PublishError,
    SignatureVerifier, Strategy, Topic, TopicError,
};
use crate::identity::{Keypair, PeerId};
use crate::overlay::{
    InboundId, Neighbour as OverlayNeighbour, Overlay, RequestFailure, RequestId, Wire,
};
use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::time::Instant;

/// One link to a neighbour, as the broadcast layer sees it.
#[derive(Debug)]
pub(super) struct Neighbour {
    /// Unique for the life of this node, so that stale references to a neighbour that
    /// left and came back never match the new link.
    pub(super) link: u64,
    /// Control entries waiting for the next flush, grouped by topic in arrival order.
    pub(super) pending: Vec<(Topic, Vec<Entry>)>,
    /// Number of entries in `pending`.
    pub(super) pending_len: usize,
    /// Whether `pending` must go out at the end of the current input.
    pub(super) urgent: bool,
    /// When our INTEREST and TREE state was last restated to it (see `send_control`).
    pub(super) restated_at: Option<Instant>,
    /// Topics it advertised a finite interest distance for (capped by
    /// `Config::max_topics_per_neighbour`).
    pub(super) interests: usize,
    /// GRAFT answer bytes it may still draw, and when the bucket was last refilled.
    pub(super) graft_tokens: usize,
    pub(super) graft_refilled_at: Option<Instant>,
}

/// The broadcast state machine of one node. See the [module docs](super) for the calling
/// contract and the rules it follows.
///
/// `V` checks origin signatures; production code uses the default, [`Ed25519Verifier`].
pub struct Broadcast<V: SignatureVerifier = Ed25519Verifier> {
    pub(super) keypair: Keypair,
    pub(super) local: PeerId,
    pub(super) config: Config,
    pub(super) limits: Limits,
    pub(super) verifier: V,
    pub(super) next_seq: u64,
    pub(super) next_link: u64,
    /// BTreeMaps wherever iteration order reaches the outputs, so that a seeded simulation
    /// replays bit for bit.
    pub(super) neighbours: BTreeMap<PeerId, Neighbour>,
    pub(super) topics: BTreeMap<Topic, TopicState>,
    pub(super) seen: SeenCache,
    pub(super) history: History,
    pub(super) missing: HashMap<MessageId, Missing>,
    pub(super) timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    pub(super) timer_seq: u64,
    /// Messages received since the last flush, to be announced lazily at the next one.
    pub(super) to_announce: Vec<MessageId>,
    pub(super) flush_at: Option<Instant>,
    pub(super) urgent: Vec<PeerId>,
    pub(super) outputs: VecDeque<Output>,
    /// Deliveries on their way to `outputs` in per-origin order (`None`: straight through).
    pub(super) order: Option<OrderedDelivery>,
    pub(super) metrics: Metrics,
    pub(super) scratch: Vec<u8>,
}

impl<V: SignatureVerifier> std::fmt::Debug for Broadcast<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcast")
            .field("local", &self.local)
            .field("strategy", &self.config.strategy)
            .field("neighbours", &self.neighbours.len())
            .field("topics", &self.topics.len())
            .field("seen", &self.seen.len())
            .finish_non_exhaustive()
    }
}

impl Broadcast<Ed25519Verifier> {
    /// A node with identity `keypair` that verifies signatures with Ed25519. It starts
    /// with no neighbours and no timers, so it takes no `now`.
    pub fn new(keypair: Keypair, config: Config) -> Self {
        Self::with_verifier(keypair, config, Ed25519Verifier)
    }
}

impl<V: SignatureVerifier> Broadcast<V> {
    /// A node with identity `keypair` that checks signatures with `verifier`.
    pub fn with_verifier(keypair: Keypair, config: Config, verifier: V) -> Self {
        let local = keypair.peer_id();
        let order = config
            .order_window
            .map(|w| OrderedDelivery::new(w, config.order_max_held, config.order_max_origins));
        Self {
            local,
            limits: Limits::from_config(&config),
            seen: SeenCache::new(config.seen_ttl, config.seen_capacity),
            history: History::default(),
            next_seq: config.first_seq,
            keypair,
            config,
            verifier,
            next_link: 0,
            neighbours: BTreeMap::new(),
            topics: BTreeMap::new(),
            missing: HashMap::new(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            to_announce: Vec::new(),
            flush_at: None,
            urgent: Vec::new(),
            outputs: VecDeque::new(),
            order,
            metrics: Metrics::default(),
            scratch: Vec::new(),
        }
    }

    /// This node's peer ID.
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Counters since start.
    pub fn metrics(&self) -> Metrics {
        let mut metrics = self.metrics;
        metrics.seen_evicted_early = self.seen.evicted_early();
        metrics
    }

    /// Current neighbours, in peer ID order.
    pub fn neighbours(&self) -> impl Iterator<Item = &PeerId> {
        self.neighbours.keys()
    }

    /// Topics this node is subscribed to.
    pub fn subscriptions(&self) -> impl Iterator<Item = &Topic> {
        self.topics
            .iter()
            .filter(|(_, state)| state.subscribed)
            .map(|(topic, _)| topic)
    }

    /// Whether this node delivers messages of `topic` locally.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.topics.get(topic).is_some_and(|state| state.subscribed)
    }

    /// Neighbours this node pushes `topic` to eagerly (the tree edges, with
    /// [`Strategy::Tree`]; every interested neighbour with [`Strategy::Flood`]).
    pub fn eager_peers(&self, topic: &str) -> Vec<PeerId> {
        let flood = self.config.strategy == Strategy::Flood;
        self.topics
            .get(topic)
            .map(|state| {
                state
                    .peers
                    .iter()
                    .filter(|p| p.wants() && (flood || p.eager))
                    .map(|p| p.peer)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Neighbours that asked for `topic` (advertised a finite interest distance).
    pub fn interested_peers(&self, topic: &str) -> Vec<PeerId> {
        self.topics
            .get(topic)
            .map(|state| {
                state
                    .peers
                    .iter()
                    .filter(|p| p.wants())
                    .map(|p| p.peer)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Number of ids in the seen-cache.
    pub fn seen_len(&self) -> usize {
        self.seen.len()
    }

    /// Number of messages kept to answer GRAFTs.
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// Number of messages announced to us that we are still trying to fetch.
    pub fn missing_len(&self) -> usize {
        self.missing.len()
    }

    /// A link to `peer` came up: it starts lazy (the root tree decides which links are
    /// eager) and is told every topic this node wants through it. Adding a current neighbour again
    /// changes nothing.
    fn add_neighbour(&mut self, now: Instant, peer: PeerId) {
        if peer == self.local || self.neighbours.contains_key(&peer) {
            return;
        }
        let link = self.next_link;
        self.next_link += 1;
        self.neighbours.insert(
            peer,
            Neighbour {
                link,
                pending: Vec::new(),
                pending_len: 0,
                urgent: false,
                restated_at: None,
                interests: 0,
                graft_tokens: self.config.graft_serve_burst,
                graft_refilled_at: None,
            },
        );
        self.interest_neighbour_added(now, peer, link);
        self.after_input(now);
    }

    /// The link to `peer` went down: forget its interest and stop sending to it.
    fn remove_neighbour(&mut self, now: Instant, peer: PeerId) {
        if self.neighbours.remove(&peer).is_none() {
            return;
        }
        self.urgent.retain(|p| *p != peer);
        self.interest_neighbour_removed(now, peer);
        self.after_input(now);
    }

    /// Starts delivering `topic` locally. Returns `Ok(false)` if already subscribed.
    pub fn subscribe(&mut self, now: Instant, topic: &Topic) -> Result<bool, TopicError> {
        self.check_topic(topic.as_str())?;
        let state = self.topic_state_mut(topic, true)?;
        if state.subscribed {
            return Ok(false);
        }
        state.subscribed = true;
        self.recompute_interest(now, topic);
        self.after_input(now);
        Ok(true)
    }

    /// Stops delivering `topic` locally (the node may keep relaying it for others).
    /// Returns `false` if it was not subscribed.
    pub fn unsubscribe(&mut self, now: Instant, topic: &Topic) -> bool {
        let Some(state) = self.topics.get_mut(topic) else {
            return false;
        };
        if !state.subscribed {
            return false;
        }
        state.subscribed = false;
        self.recompute_interest(now, topic);
        self.after_input(now);
        true
    }

    /// Signs and sends a message on `topic` to every interested neighbour. Returns its id.
    ///
    /// The node's own messages are delivered locally only if `Config::deliver_own` is set.
    pub fn publish(
        &mut self,
        now: Instant,
        topic: &Topic,
        data: &[u8],
    ) -> Result<MessageId, PublishError> {
        self.check_topic(topic.as_str())?;
        if data.len() > self.config.max_data_len {
            return Err(PublishError::DataTooLarge {
                len: data.len(),
                max: self.config.max_data_len,
            });
        }
        let seq = self.next_seq;
        self.next_seq = seq.checked_add(1).ok_or(PublishError::SeqExhausted)?;
        let keypair = &self.keypair;
        // Our own copy has crossed no link; copies we send carry 1.
        let frame = wire::encode_gossip(seq, &self.local, topic.as_str(), data, |input| {
            keypair.sign(input)
        });
        let id = MessageId::new(&self.local, seq);
        self.seen.insert(now, id);
        self.metrics.published += 1;
        if self.config.deliver_own && self.is_subscribed(topic.as_str()) {
            self.metrics.delivered += 1;
            let message = Message {
                id,
                origin: self.local,
                topic: topic.clone(),
                seq,
                data: Bytes::copy_from_slice(data),
                hops: 0,
            };
            self.deliver(now, message);
        }
        let topic = self.canonical_topic(topic.as_str());
        let first = FirstCopy {
            hops: 0,
            path_max: 0,
            link_weight: 0,
            from: None,
        };
        self.accept_new(now, id, topic, frame, first);
        self.after_input(now);
        Ok(id)
    }

    /// A whole frame arrived from neighbour `from`. Invalid frames are dropped, counted,
    /// and reported.
    fn receive_frame(
        &mut self,
        now: Instant,
        from: PeerId,
        bytes: &[u8],
    ) -> Result<(), FrameError> {
        let Some(link) = self.neighbours.get(&from).map(|n| n.link) else {
            self.metrics.dropped.not_a_neighbour += 1;
            return Err(FrameError::NotANeighbour);
        };
        let limits = self.limits;
        let result = match wire::decode(bytes, &limits) {
            Ok(Frame::Gossip(gossip)) => self.on_gossip(now, from, link, bytes, gossip),
            Ok(Frame::Control(control)) => {
                self.metrics.control_received += 1;
                control.for_each(|topic, entry| self.on_control(now, from, link, topic, entry));
                Ok(())
            }
            Err(error) => {
                let dropped = &mut self.metrics.dropped;
                match error {
                    super::DecodeError::Oversized { .. } => dropped.oversized += 1,
                    super::DecodeError::UnsupportedVersion(_) => dropped.unsupported_version += 1,
                    _ => dropped.malformed += 1,
                }
                Err(error.into())
            }
        };
        self.after_input(now);
        result
    }

    /// Hands a message to the application, through the per-origin ordering if it is on.
    pub(super) fn deliver(&mut self, now: Instant, message: Message) {
        match self.order.as_mut() {
            Some(order) => {
                order.push(now, message);
                while let Some(message) = order.pop() {
                    self.outputs
                        .push_back(Output::Event(Event::Delivered(message)));
                }
            }
            None => self
                .outputs
                .push_back(Output::Event(Event::Delivered(message))),
        }
    }

    /// Runs every timer due at or before `now`.
    fn run_timers(&mut self, now: Instant) {
        if let Some(order) = self.order.as_mut() {
            order.handle_timeout(now);
            while let Some(message) = order.pop() {
                self.outputs
                    .push_back(Output::Event(Event::Delivered(message)));
            }
        }
        self.history.expire(now, &self.config);
        self.seen.expire(now);
        while let Some(Reverse((at, _, timer))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let timer = *timer;
            self.timers.pop();
            match timer {
                Timer::Check(id) => self.on_check(now, id),
                Timer::Graft(id) => self.on_graft_timer(now, id),
            }
        }
        if self.flush_at.is_some_and(|at| at <= now) {
            self.flush_all(now);
        }
        self.after_input(now);
    }

    /// When the timers are next due.
    fn next_timer(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let order = self.order.as_ref().and_then(OrderedDelivery::poll_timeout);
        [timer, self.flush_at, order].into_iter().flatten().min()
    }

    fn check_topic(&self, topic: &str) -> Result<(), TopicError> {
        if topic.is_empty() {
            return Err(TopicError::Empty);
        }
        if topic.len() > self.config.max_topic_len {
            return Err(TopicError::TooLong {
                len: topic.len(),
                max: self.config.max_topic_len,
            });
        }
        Ok(())
    }

    /// The shared `Topic` for `name`: the one in our table if we have one (no allocation).
    pub(super) fn canonical_topic(&self, name: &str) -> Topic {
        match self.topics.get_key_value(name) {
            Some((topic, _)) => topic.clone(),
            None => Topic(name.into()),
        }
    }

    pub(super) fn send_gossip(&mut self, to: PeerId, bytes: Bytes) {
        self.metrics.gossip_sent += 1;
        self.metrics.gossip_bytes_sent += bytes.len() as u64;
        self.outputs.push_back(Output::Send { to, frame: bytes });
    }

    pub(super) fn schedule(&mut self, at: Instant, timer: Timer) {
        self.timer_seq += 1;
        self.timers.push(Reverse((at, self.timer_seq, timer)));
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;

impl<V: SignatureVerifier> Overlay for Broadcast<V> {
    type Event = Event;
    type Error = FrameError;

    fn protocol(&self) -> Option<&str> {
        Some(super::PROTOCOL)
    }

    fn wire(&self) -> Wire {
        Wire::Frames
    }

    fn accepts_relayed(&self) -> bool {
        true
    }

    fn max_message_len(&self) -> usize {
        self.config.max_frame_len()
    }

    fn local_peer_id(&self) -> PeerId {
        self.local
    }

    fn neighbour_up(&mut self, now: Instant, neighbour: OverlayNeighbour) {
        self.add_neighbour(now, neighbour.peer);
    }

    fn neighbour_down(&mut self, now: Instant, peer: PeerId) {
        self.remove_neighbour(now, peer);
    }

    fn handle_frame(&mut self, now: Instant, from: PeerId, frame: &[u8]) -> Result<(), FrameError> {
        self.receive_frame(now, from, frame)
    }

    fn handle_request(
        &mut self,
        _now: Instant,
        _from: PeerId,
        _id: InboundId,
        _request: &[u8],
    ) -> Result<(), FrameError> {
        Err(FrameError::NotARequest)
    }

    fn handle_response(
        &mut self,
        _now: Instant,
        _id: RequestId,
        _response: Result<&[u8], RequestFailure>,
    ) -> Result<(), FrameError> {
        Err(FrameError::NotARequest)
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.run_timers(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer()
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }
}
