//! How an overlay's outputs cross the simulated network: frames over neighbour links,
//! requests and their answers (dialling first where no link exists), and dials that end
//! in links. Each becomes a timed event for `engine.rs` to deliver.
//!
//! An `impl` block of [`Sim`]; nothing here reads a clock or decides what a node does.

use crate::engine::EventKind;
use crate::{key, Asked, NodeId, Sim};
use bytes::Bytes;
use pheromone_core::identity::PeerId;
use pheromone_core::overlay::{DialFailure, DialId, RequestFailure, RequestId};
use rand::Rng;
use std::time::Duration;

impl<E: 'static> Sim<E> {
    /// How a message from `from` to `to` travels: over their link if it is up, otherwise
    /// with the reachability model, or not at all. `None` also when the draw says lost.
    pub(crate) fn route_delay(&mut self, from: NodeId, to: NodeId) -> Option<Duration> {
        let config = match self.links.get(&key(from, to)) {
            Some(link) if link.up => link.config,
            _ => self
                .reach?
                .link(self.nodes[from].position, self.nodes[to].position),
        };
        if config.loss > 0.0 && self.rng.gen_bool(config.loss.clamp(0.0, 1.0)) {
            self.stats.frames_lost += 1;
            return None;
        }
        let mut delay = config.latency;
        if !config.jitter.is_zero() {
            let jitter = self.rng.gen_range(0..=config.jitter.as_nanos() as u64);
            delay += Duration::from_nanos(jitter);
        }
        Some(delay)
    }

    pub(crate) fn send_frame(&mut self, from: NodeId, to: PeerId, proto: u16, bytes: Bytes) {
        self.stats.frames_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        let Some(&to) = self.by_peer.get(&to) else {
            self.stats.frames_dropped += 1;
            return;
        };
        let Some(link) = self.links.get(&key(from, to)).filter(|l| l.up) else {
            // Frames travel only on neighbour links.
            self.stats.frames_dropped += 1;
            return;
        };
        let epoch = link.epoch;
        let Some(delay) = self.route_delay(from, to) else {
            return;
        };
        let at = self.now + delay;
        self.push(
            at,
            EventKind::Frame {
                to,
                from,
                epoch,
                proto,
                bytes,
            },
        );
    }

    /// Sends a request: over the link to its target if there is one, otherwise after
    /// connecting to it, as the driver dials a peer it is asked to reach.
    pub(crate) fn send_request(
        &mut self,
        from: NodeId,
        to: PeerId,
        proto: u16,
        id: RequestId,
        bytes: Bytes,
    ) {
        self.stats.requests_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        let target = self.by_peer.get(&to).copied().filter(|&t| t != from);
        let Some(to) = target else {
            self.fail_now(from, proto, id);
            return;
        };
        if self.link_is_up(from, to) {
            self.request_over_link(from, to, proto, id, bytes);
            return;
        }
        if self.reach.is_none() {
            self.fail_now(from, proto, id);
            return;
        }
        self.waiting
            .entry((from, to))
            .or_default()
            .requests
            .push((proto, id, bytes));
        self.start_dial(from, to);
    }

    pub(crate) fn request_over_link(
        &mut self,
        from: NodeId,
        to: NodeId,
        proto: u16,
        id: RequestId,
        bytes: Bytes,
    ) {
        let now = self.now;
        if let Some(link) = self.links.get_mut(&key(from, to)) {
            link.last_used = now;
        }
        let Some(delay) = self.route_delay(from, to) else {
            return;
        };
        let from_incarnation = self.nodes[from].incarnation;
        let at = self.now + delay;
        self.push(
            at,
            EventKind::Request {
                to,
                from,
                from_incarnation,
                proto,
                id,
                bytes,
            },
        );
    }

    /// The requester hears at once that its request cannot be sent.
    pub(crate) fn fail_now(&mut self, from: NodeId, proto: u16, id: RequestId) {
        let incarnation = self.nodes[from].incarnation;
        let at = self.now;
        self.push(
            at,
            EventKind::Response {
                to: from,
                incarnation,
                proto,
                id,
                result: Err(RequestFailure::Dial),
            },
        );
    }

    /// Starts connecting `from` to `to` unless that is under way. A handshake takes one and
    /// a half round trips (TCP, then Noise XX); a dead host refuses after one.
    pub(crate) fn start_dial(&mut self, from: NodeId, to: NodeId) {
        if self.dialing.contains(&(from, to)) {
            return;
        }
        self.dialing.insert((from, to));
        self.stats.dials += 1;
        let one_way = self.latency(from, to);
        let delay = if self.is_alive(to) {
            one_way * 3
        } else {
            one_way * 2
        };
        let incarnation = self.nodes[from].incarnation;
        let at = self.now + delay;
        self.push(
            at,
            EventKind::Dialled {
                node: from,
                incarnation,
                target: to,
            },
        );
    }

    /// A connection attempt from `node` to `target` ended: the link comes up (both ends'
    /// overlays hear of it), then what waited for it goes out or fails.
    pub(crate) fn dialled(&mut self, node: NodeId, incarnation: u32, target: NodeId) {
        self.dialing.remove(&(node, target));
        let waiting = self.waiting.remove(&(node, target)).unwrap_or_default();
        if self.nodes[node].incarnation != incarnation || !self.is_alive(node) {
            return;
        }
        let ok = self.is_alive(target) && self.same_side(node, target) && self.reach.is_some();
        let explicit = !waiting.dials.is_empty();
        if ok && !self.link_is_up(node, target) {
            let config = self
                .reach
                .unwrap_or_default()
                .link(self.nodes[node].position, self.nodes[target].position);
            self.connect(node, target, config);
            if let Some(link) = self.links.get_mut(&key(node, target)) {
                link.on_demand = !explicit;
                link.last_used = self.now;
                if link.on_demand {
                    let (epoch, at) = (link.epoch, self.now + self.idle_timeout);
                    let (a, b) = key(node, target);
                    self.push(at, EventKind::IdleCheck { a, b, epoch });
                }
            }
        } else if ok && explicit {
            if let Some(link) = self.links.get_mut(&key(node, target)) {
                link.on_demand = false;
            }
        }
        if !ok {
            self.stats.dials_failed += 1;
        }
        let peer = self.nodes[target].peer;
        for (slot, id) in waiting.dials {
            let result = if ok {
                Ok(peer)
            } else {
                Err(DialFailure::Unreachable)
            };
            self.each_slot(node, &[slot], |s, now| {
                s.handle_dial_result(now, id, result)
            });
        }
        for (proto, id, bytes) in waiting.requests {
            if ok {
                self.request_over_link(node, target, proto, id, bytes);
            } else {
                self.fail_now(node, proto, id);
            }
        }
    }

    /// A request from an overlay with no protocol cannot be sent anywhere.
    pub(crate) fn fail_request(&mut self, node: NodeId, slot: usize, id: RequestId) {
        self.each_slot(node, &[slot], |s, now| {
            let _ = s.handle_response(now, id, Err(RequestFailure::Unsupported));
        });
    }

    /// Sends the answer to `asked` back from `node`.
    pub(crate) fn answer(
        &mut self,
        node: NodeId,
        asked: Asked,
        result: Result<Bytes, RequestFailure>,
    ) {
        self.stats.responses_sent += 1;
        if let Ok(bytes) = &result {
            self.stats.bytes_sent += bytes.len() as u64;
        }
        let Some(delay) = self.route_delay(node, asked.from) else {
            return;
        };
        let at = self.now + delay;
        self.push(
            at,
            EventKind::Response {
                to: asked.from,
                incarnation: asked.from_incarnation,
                proto: asked.proto,
                id: asked.id,
                result,
            },
        );
    }

    pub(crate) fn dial(
        &mut self,
        node: NodeId,
        slot: usize,
        id: DialId,
        peer: Option<PeerId>,
        addrs: &[pheromone_core::addr::Multiaddr],
    ) {
        let target = match peer {
            Some(peer) => self.by_peer.get(&peer).copied(),
            None => addrs
                .iter()
                .find_map(|a| self.by_addr.get(&a.clone().without_p2p()).copied()),
        }
        .filter(|&t| t != node);
        match target {
            Some(target) if self.link_is_up(node, target) => {
                if let Some(link) = self.links.get_mut(&key(node, target)) {
                    link.on_demand = false;
                }
                let peer = self.nodes[target].peer;
                self.each_slot(node, &[slot], |s, now| {
                    s.handle_dial_result(now, id, Ok(peer))
                });
            }
            Some(target) if self.reach.is_some() => {
                self.waiting
                    .entry((node, target))
                    .or_default()
                    .dials
                    .push((slot, id));
                self.start_dial(node, target);
            }
            _ => {
                self.stats.dials += 1;
                let incarnation = self.nodes[node].incarnation;
                let at = self.now + self.reach.unwrap_or_default().base * 2;
                self.push(
                    at,
                    EventKind::DialFailed {
                        node,
                        incarnation,
                        slot,
                        id,
                    },
                );
            }
        }
    }
}
