//! The generic overlay driver against a neighbour that stops reading: a test overlay sends
//! frames to every neighbour, one neighbour accepts the stream and never reads it. The
//! driver must drop that neighbour once a write misses its deadline, hold no more than the
//! byte cap for it meanwhile, and keep serving the neighbour that reads.

mod node_util;

use bytes::Bytes;
use node_util::{addr, bounded, eventually, listening};
use pheromone::connection::Stream;
use pheromone::node::Peer;
use pheromone::overlay::{DriverConfig, OverlayDriver, OverlayHandle, Service, StreamUse};
use pheromone_core::identity::PeerId;
use pheromone_core::overlay::{
    InboundId, Neighbour, Output, Overlay, RequestFailure, RequestId, Wire,
};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BLAST: &str = "/test/blast/1.0.0";
const FRAME_LEN: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("unexpected input")]
struct Unexpected;

/// Sends a frame to every neighbour on command; counts the frames each peer sent it.
struct Blaster {
    local: PeerId,
    neighbours: BTreeSet<PeerId>,
    received: HashMap<PeerId, usize>,
    outputs: VecDeque<Output<()>>,
}

impl Blaster {
    fn new(local: PeerId) -> Self {
        Self {
            local,
            neighbours: BTreeSet::new(),
            received: HashMap::new(),
            outputs: VecDeque::new(),
        }
    }

    fn blast(&mut self, frames: usize) {
        for i in 0..frames {
            let frame = Bytes::from(vec![i as u8; FRAME_LEN]);
            for to in &self.neighbours {
                self.outputs.push_back(Output::Send {
                    to: *to,
                    frame: frame.clone(),
                });
            }
        }
    }
}

impl Overlay for Blaster {
    type Event = ();
    type Error = Unexpected;

    fn protocol(&self) -> Option<&str> {
        Some(BLAST)
    }
    fn wire(&self) -> Wire {
        Wire::Frames
    }
    fn max_message_len(&self) -> usize {
        FRAME_LEN
    }
    fn local_peer_id(&self) -> PeerId {
        self.local
    }
    fn neighbour_up(&mut self, _now: Instant, neighbour: Neighbour) {
        self.neighbours.insert(neighbour.peer);
    }
    fn neighbour_down(&mut self, _now: Instant, peer: PeerId) {
        self.neighbours.remove(&peer);
    }
    fn handle_frame(
        &mut self,
        _now: Instant,
        from: PeerId,
        frame: &[u8],
    ) -> Result<(), Unexpected> {
        if frame.len() != FRAME_LEN {
            return Err(Unexpected);
        }
        *self.received.entry(from).or_default() += 1;
        Ok(())
    }
    fn handle_request(
        &mut self,
        _: Instant,
        _: PeerId,
        _: InboundId,
        _: &[u8],
    ) -> Result<(), Unexpected> {
        Err(Unexpected)
    }
    fn handle_response(
        &mut self,
        _: Instant,
        _: RequestId,
        _: Result<&[u8], RequestFailure>,
    ) -> Result<(), Unexpected> {
        Err(Unexpected)
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_output(&mut self) -> Option<Output<()>> {
        self.outputs.pop_front()
    }
}

struct Quiet;

impl Service<Blaster> for Quiet {
    fn on_event(&mut self, _: &mut Blaster, _: Instant, _: ()) {}
}

fn neighbours(handle: &OverlayHandle<Blaster, Quiet>) -> BTreeSet<PeerId> {
    handle.read(|o, _| o.neighbours.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_neighbour_that_stops_reading_is_dropped_and_the_others_keep_receiving() {
    bounded(async {
        const QUEUE_BYTES: usize = 256 * 1024;
        let config = DriverConfig {
            streams: StreamUse::Persistent,
            queue_bytes: QUEUE_BYTES,
            write_timeout: Duration::from_secs(1),
            ..DriverConfig::default()
        };
        let sender = listening("sender").build().await.unwrap();
        let reader = listening("reader").build().await.unwrap();
        // The stalled peer takes the overlay's streams and keeps them unread.
        let held: Arc<Mutex<Vec<Stream>>> = Arc::default();
        let keep = held.clone();
        let stalled = listening("stalled")
            .handle_streams(BLAST, move |_peer: Peer, stream: Stream| {
                let keep = keep.clone();
                async move { keep.lock().unwrap().push(stream) }
            })
            .build()
            .await
            .unwrap();

        let sending = OverlayDriver::spawn(
            sender.swarm(),
            Blaster::new(sender.peer_id()),
            Quiet,
            config.clone(),
        );
        let reading = OverlayDriver::spawn(
            reader.swarm(),
            Blaster::new(reader.peer_id()),
            Quiet,
            config,
        );
        reader.add_contact("sender", addr(&sender)).await.unwrap();
        stalled.add_contact("sender", addr(&sender)).await.unwrap();
        let both: BTreeSet<PeerId> = [reader.peer_id(), stalled.peer_id()].into();
        eventually(|| neighbours(&sending) == both).await;

        // Rounds of 8 frames (128 KiB per neighbour), each waiting until the reader has
        // them, so the reader's queue never overflows while the stalled one's must: its
        // stream window, the connection's buffers and then the byte cap fill up.
        let received_by_reader =
            || reading.read(|o, _| o.received.get(&sender.peer_id()).copied().unwrap_or(0));
        let mut sent = 0;
        for _round in 0..512 {
            sending.with(|o, _, _| o.blast(8)).unwrap();
            sent += 8;
            eventually(|| received_by_reader() == sent).await;
            if sending.driver_stats().stalled > 0 {
                break;
            }
        }

        let stats = sending.driver_stats();
        assert_eq!(
            stats.stalled, 1,
            "the unread neighbour was dropped: {stats:?}"
        );
        assert!(
            stats.frames_dropped > 0,
            "frames beyond the byte cap were dropped rather than queued: {stats:?}"
        );
        eventually(|| neighbours(&sending) == [reader.peer_id()].into()).await;
        assert_eq!(
            held.lock().unwrap().len(),
            1,
            "one stream was opened to the stalled peer"
        );

        // The reader is still served, and nothing is queued for the dropped peer.
        sending.with(|o, _, _| o.blast(8)).unwrap();
        sent += 8;
        eventually(|| received_by_reader() == sent).await;
        let dropped_before = sending.driver_stats().frames_dropped;
        sending
            .with(|o, _, _| {
                o.outputs.push_back(Output::Send {
                    to: stalled.peer_id(),
                    frame: Bytes::from(vec![0; FRAME_LEN]),
                })
            })
            .unwrap();
        eventually(|| sending.driver_stats().frames_dropped == dropped_before + 1).await;
    })
    .await;
}
