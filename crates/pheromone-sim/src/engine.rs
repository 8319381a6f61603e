//! The simulator's event loop: the queue of timed events, what each event does when its
//! time comes, and how an overlay's outputs become events (frames over links, requests
//! and responses across the network, dials that end in links).
//!
//! An `impl` block of [`Sim`]; the public API is in `lib.rs`, how outputs cross the
//! network in `transfer.rs`. Nothing here reads a clock.

mod transfer;

use crate::{key, Asked, LinkConfig, NodeId, Sim};
use bytes::Bytes;
use pheromone_core::overlay::{DialFailure, DialId, InboundId, Output, RequestFailure, RequestId};
use std::cmp::Reverse;
use std::time::{Duration, Instant};

/// One (bidirectional) link.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) config: LinkConfig,
    pub(crate) up: bool,
    /// Bumped whenever the link goes down, so frames in flight on an old incarnation of
    /// the link are discarded (a dead TCP connection loses its buffers).
    pub(crate) epoch: u32,
    /// Made only to carry a request (nobody asked for the connection itself): closed once
    /// idle for the simulator's idle timeout, as the node closes idle connections.
    pub(crate) on_demand: bool,
    /// Last time a request used it.
    pub(crate) last_used: Instant,
}

impl Link {
    pub(crate) fn new(config: LinkConfig, now: Instant) -> Self {
        Self {
            config,
            up: true,
            epoch: 0,
            on_demand: false,
            last_used: now,
        }
    }
}

/// What waits for a connection that is being made.
#[derive(Default)]
pub(crate) struct Waiting {
    /// Requests to send once connected: (protocol, id, bytes).
    requests: Vec<(u16, RequestId, Bytes)>,
    /// Overlay dials to answer: (slot, id).
    dials: Vec<(usize, DialId)>,
}

/// Something that happens at a given time.
pub(crate) enum EventKind {
    /// A frame arrives over a link, if that incarnation of the link is still up.
    Frame {
        to: NodeId,
        from: NodeId,
        epoch: u32,
        proto: u16,
        bytes: Bytes,
    },
    /// A request arrives, if the receiver is alive.
    Request {
        to: NodeId,
        from: NodeId,
        from_incarnation: u32,
        proto: u16,
        id: RequestId,
        bytes: Bytes,
    },
    /// A response (or the news that none will come) reaches the requester, if it is still
    /// the incarnation that asked.
    Response {
        to: NodeId,
        incarnation: u32,
        proto: u16,
        id: RequestId,
        result: Result<Bytes, RequestFailure>,
    },
    /// A dial's handshake is done (or nobody answered).
    Dialled {
        node: NodeId,
        incarnation: u32,
        target: NodeId,
    },
    /// A dial to an address nobody listens on fails.
    DialFailed {
        node: NodeId,
        incarnation: u32,
        slot: usize,
        id: DialId,
    },
    /// An on-demand link may have gone idle.
    IdleCheck {
        a: NodeId,
        b: NodeId,
        epoch: u32,
    },
    Timer {
        node: NodeId,
        incarnation: u32,
    },
    /// A node hears that its link to `peer` died (the peer was killed).
    LinkDown {
        node: NodeId,
        peer: NodeId,
        incarnation: u32,
    },
}

/// A queue entry: time (nanoseconds since the start), insertion number, payload slot.
/// Kept small because the heap moves it around on every push and pop; the payload waits
/// in a slab.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Event {
    // Ties in time break by insertion order: the determinism of the whole run rests on
    // this.
    pub(crate) at: u64,
    seq: u64,
    slot: u32,
}

impl<E: 'static> Sim<E> {
    pub(crate) fn push(&mut self, at: Instant, kind: EventKind) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.payloads[slot as usize] = Some(kind);
                slot
            }
            None => {
                self.payloads.push(Some(kind));
                // Slots never exceed the events in flight at once, far below 2^32.
                (self.payloads.len() - 1) as u32
            }
        };
        let at = self.nanos(at);
        self.queue.push(Reverse(Event {
            at,
            seq: self.seq,
            slot,
        }));
    }

    pub(crate) fn pop_and_step(&mut self) {
        let Some(Reverse(event)) = self.queue.pop() else {
            return;
        };
        let Some(kind) = self
            .payloads
            .get_mut(event.slot as usize)
            .and_then(Option::take)
        else {
            return;
        };
        self.free.push(event.slot);
        self.now = self.now.max(self.start + Duration::from_nanos(event.at));
        self.stats.events += 1;
        self.step(kind);
    }

    fn same_side(&self, a: NodeId, b: NodeId) -> bool {
        self.nodes[a].group == self.nodes[b].group
    }

    fn step(&mut self, kind: EventKind) {
        match kind {
            EventKind::Frame {
                to,
                from,
                epoch,
                proto,
                bytes,
            } => {
                let live_link = self
                    .links
                    .get(&key(to, from))
                    .is_some_and(|l| l.up && l.epoch == epoch);
                let slot = self.nodes[to].slot_of(proto);
                let (Some(slot), true, true, true) =
                    (slot, live_link, self.same_side(to, from), self.is_alive(to))
                else {
                    self.stats.frames_dropped += 1;
                    return;
                };
                self.stats.frames_delivered += 1;
                let peer = self.nodes[from].peer;
                let mut refused = false;
                self.each_slot(to, &[slot], |s, now| {
                    refused = s.handle_frame(now, peer, &bytes).is_err();
                });
                self.stats.inputs_refused += u64::from(refused);
            }
            EventKind::Request {
                to,
                from,
                from_incarnation,
                proto,
                id,
                bytes,
            } => {
                let slot = self.nodes[to].slot_of(proto);
                let (Some(slot), true, true) = (slot, self.same_side(to, from), self.is_alive(to))
                else {
                    self.stats.frames_dropped += 1;
                    return;
                };
                self.stats.frames_delivered += 1;
                let node = &mut self.nodes[to];
                let inbound = InboundId(node.next_inbound);
                node.next_inbound += 1;
                node.inbound.insert(
                    inbound,
                    Asked {
                        from,
                        from_incarnation,
                        proto,
                        id,
                    },
                );
                let peer = self.nodes[from].peer;
                let mut refused = false;
                self.each_slot(to, &[slot], |s, now| {
                    refused = s.handle_request(now, peer, inbound, &bytes).is_err();
                });
                if refused {
                    // The driver resets the stream: the requester hears of it at once.
                    self.stats.inputs_refused += 1;
                    if let Some(asked) = self.nodes[to].inbound.remove(&inbound) {
                        self.answer(to, asked, Err(RequestFailure::Io));
                    }
                }
            }
            EventKind::Response {
                to,
                incarnation,
                proto,
                id,
                result,
            } => {
                let slot = self.nodes[to].slot_of(proto);
                let (Some(slot), true) = (slot, self.nodes[to].incarnation == incarnation) else {
                    return;
                };
                if !self.is_alive(to) {
                    return;
                }
                self.stats.frames_delivered += 1;
                let mut refused = false;
                self.each_slot(to, &[slot], |s, now| {
                    let response = result.as_ref().map(|b| b.as_ref()).map_err(|e| *e);
                    refused = s.handle_response(now, id, response).is_err();
                });
                self.stats.inputs_refused += u64::from(refused);
            }
            EventKind::Dialled {
                node,
                incarnation,
                target,
            } => self.dialled(node, incarnation, target),
            EventKind::DialFailed {
                node,
                incarnation,
                slot,
                id,
            } => {
                if self.nodes[node].incarnation == incarnation && self.is_alive(node) {
                    self.stats.dials_failed += 1;
                    self.each_slot(node, &[slot], |s, now| {
                        s.handle_dial_result(now, id, Err(DialFailure::Unreachable));
                    });
                }
            }
            EventKind::IdleCheck { a, b, epoch } => {
                let Some(link) = self.links.get(&key(a, b)) else {
                    return;
                };
                if !link.up || link.epoch != epoch || !link.on_demand {
                    return;
                }
                let due = link.last_used + self.idle_timeout;
                if due <= self.now {
                    self.disconnect(a, b);
                } else {
                    self.push(due, EventKind::IdleCheck { a, b, epoch });
                }
            }
            EventKind::Timer { node, incarnation } => {
                let now = self.nanos(self.now);
                let scheduled = self.nodes[node].timer_at.map(|at| self.nanos(at));
                let slot = &mut self.nodes[node];
                if slot.incarnation != incarnation || scheduled != Some(now) {
                    return;
                }
                slot.timer_at = None;
                let due: Vec<usize> = slot.stack.as_ref().map_or(Vec::new(), |stack| {
                    let now = self.now;
                    (0..stack.slots.len())
                        .filter(|&i| stack.slots[i].poll_timeout().is_some_and(|at| at <= now))
                        .collect()
                });
                self.each_slot(node, &due, |s, now| s.handle_timeout(now));
            }
            EventKind::LinkDown {
                node,
                peer,
                incarnation,
            } => {
                if self.nodes[node].incarnation != incarnation {
                    return;
                }
                self.notify_down(node, peer);
            }
        }
    }

    /// Collects a node's outputs after an input and (re)schedules its timer.
    pub(crate) fn drain(&mut self, node: NodeId) {
        let now = self.now;
        loop {
            let Some(stack) = self.nodes[node].stack.as_mut() else {
                return;
            };
            let mut got = None;
            for (i, s) in stack.slots.iter_mut().enumerate() {
                if let Some(out) = s.poll_output() {
                    got = Some((i, out));
                    break;
                }
            }
            let Some((slot, output)) = got else {
                break;
            };
            let proto = self.nodes[node]
                .protocols
                .iter()
                .find(|(_, s)| *s == slot)
                .map(|(p, _)| *p);
            match output {
                Output::Event(event) => {
                    if let (Some(hook), Some(stack)) =
                        (self.hook.as_mut(), self.nodes[node].stack.as_mut())
                    {
                        hook(now, &event, stack);
                    }
                    self.events.push((now, node, event));
                }
                Output::Send { to, frame } => {
                    if let Some(proto) = proto {
                        self.send_frame(node, to, proto, frame);
                    }
                }
                Output::Request {
                    id, to, request, ..
                } => match proto {
                    Some(proto) => self.send_request(node, to, proto, id, request),
                    None => self.fail_request(node, slot, id),
                },
                Output::Respond { id, response } => {
                    if let Some(asked) = self.nodes[node].inbound.remove(&id) {
                        self.answer(node, asked, Ok(response));
                    }
                }
                Output::Dial { id, peer, addrs } => self.dial(node, slot, id, peer, &addrs),
                Output::Disconnect { peer } => {
                    if let Some(&other) = self.by_peer.get(&peer) {
                        self.disconnect(node, other);
                    }
                }
            }
        }
        let slot = &mut self.nodes[node];
        let Some(at) = slot.stack.as_ref().and_then(|s| s.poll_timeout()) else {
            return;
        };
        let at = at.max(now);
        if slot.timer_at.is_none_or(|current| at < current) {
            slot.timer_at = Some(at);
            let incarnation = slot.incarnation;
            self.push(at, EventKind::Timer { node, incarnation });
        }
    }
}
