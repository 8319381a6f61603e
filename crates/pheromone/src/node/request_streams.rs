//! Request streams kept open between requests, per connection and protocol.
//!
//! A request on a stream of its own pays for opening the stream, negotiating the protocol
//! and closing it again; on a stream kept from an earlier request of the same protocol it
//! costs one frame each way. This pool holds such idle streams — at most
//! [`MAX_IDLE_PER_PROTOCOL`] per connection and protocol — and hands out the most recently
//! used first. A watcher task per connection half-closes idle streams once they have been
//! idle for the idle limit (`NodeConfig::request_stream_idle`; responders wait longer, so
//! the requester is the one that ends a stream), and all of them as soon as the connection goes away, so that
//! idle detection still sees an unused connection and a closing one is not held up by
//! streams nobody uses.
//!
//! The requester decides when a kept stream ends (it half-closes; the responder answers
//! with its own FIN), which keeps "the responder dropped the stream while we were sending"
//! out of normal operation. Nothing here reads or writes requests.

use crate::connection::{Connection, ConnectionId, Reuse, Stream};
use crate::deadline::ReusableTimer;
use crate::FastMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Idle streams kept per connection and protocol: enough for 64 requests in flight to
/// reuse theirs.
pub(super) const MAX_IDLE_PER_PROTOCOL: usize = 64;

/// Largest request buffer kept with an idle stream; a bigger one (a request of up to the
/// coalescing limit went out) is dropped rather than held by every idle stream.
pub(super) const KEPT_BUFFER_MAX: usize = 4096;

/// Longest a half-closed stream waits for the responder's FIN before it is dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A request stream with what its requests reuse: the timer that bounds each one's wait
/// (a request on a kept stream arms no timer of its own) and the buffer its requests are
/// written from.
pub(super) struct RequestStream {
    pub(super) stream: Stream,
    pub(super) timer: ReusableTimer,
    pub(super) buf: bytes::BytesMut,
}

struct Idle {
    kept: RequestStream,
    /// Its connection's tick count when the stream went idle (reading a counter is cheaper
    /// than reading the clock on every request).
    since_tick: u64,
}

/// The idle streams of one connection, by protocol. A connection carries requests of a
/// few protocols, so a list compared by name beats hashing the name on every request.
#[derive(Default)]
struct ConnectionStreams {
    by_protocol: Vec<(Box<str>, Vec<Idle>)>,
    /// Periods of half the idle limit counted by this connection's watcher.
    tick: u64,
}

impl ConnectionStreams {
    fn is_empty(&self) -> bool {
        self.by_protocol.iter().all(|(_, list)| list.is_empty())
    }

    fn list(&mut self, protocol: &str) -> Option<&mut Vec<Idle>> {
        self.by_protocol
            .iter_mut()
            .find(|(p, _)| &**p == protocol)
            .map(|(_, list)| list)
    }

    /// Takes out the streams idle since before tick `cutoff` (all of them without one).
    fn take_expired(&mut self, cutoff: Option<u64>) -> Vec<Stream> {
        let mut expired = Vec::new();
        for (_, list) in &mut self.by_protocol {
            let keep: Vec<Idle> = std::mem::take(list)
                .into_iter()
                .filter_map(|idle| match cutoff {
                    Some(cutoff) if idle.since_tick >= cutoff => Some(idle),
                    _ => {
                        expired.push(idle.kept.stream);
                        None
                    }
                })
                .collect();
            *list = keep;
        }
        self.by_protocol.retain(|(_, list)| !list.is_empty());
        expired
    }
}

/// Idle request streams by connection and protocol.
pub(super) struct RequestStreams {
    idle: Mutex<FastMap<ConnectionId, ConnectionStreams>>,
    idle_limit: Duration,
}

impl RequestStreams {
    /// A pool whose streams are kept at most `idle_limit` between requests.
    pub(super) fn new(idle_limit: Duration) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::new(FastMap::default()),
            idle_limit,
        })
    }

    fn lock(&self) -> MutexGuard<'_, FastMap<ConnectionId, ConnectionStreams>> {
        // Nothing here panics while holding the lock; if something did, the map is still
        // a valid map.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A kept stream of `conn` negotiated for `protocol`, if one is idle and still open.
    pub(super) fn take(&self, conn: &Connection, protocol: &str) -> Option<RequestStream> {
        let mut idle = self.lock();
        let list = idle.get_mut(&conn.id())?.list(protocol)?;
        while let Some(mut entry) = list.pop() {
            match entry.kept.stream.reuse() {
                Reuse::Ready => return Some(entry.kept),
                // The responder ended it meanwhile: it is closed already.
                Reuse::Ended => {}
                // Streams of a connection going away are left to the watcher, which ends
                // them cleanly.
                Reuse::WindingDown => {
                    list.push(entry);
                    return None;
                }
            }
        }
        None
    }

    /// Keeps `kept` (negotiated for `protocol`, its last exchange complete) for the next
    /// request, or half-closes it when it cannot be reused or there are enough idle ones.
    pub(super) fn put(
        self: &Arc<Self>,
        conn: &Connection,
        protocol: &str,
        mut kept: RequestStream,
        spawn: impl FnOnce(futures::future::BoxFuture<'static, ()>),
    ) {
        if !kept.stream.is_open_and_drained() {
            spawn(Box::pin(finish(vec![kept.stream])));
            return;
        }
        if kept.buf.capacity() > KEPT_BUFFER_MAX {
            kept.buf = bytes::BytesMut::new();
        }
        let mut idle = self.lock();
        let mut first = false;
        let streams = idle.entry(conn.id()).or_insert_with(|| {
            first = true;
            ConnectionStreams::default()
        });
        let since_tick = streams.tick;
        let list = match streams
            .by_protocol
            .iter()
            .position(|(p, _)| &**p == protocol)
        {
            Some(i) => &mut streams.by_protocol[i].1,
            None => {
                let i = streams.by_protocol.len();
                streams.by_protocol.push((protocol.into(), Vec::new()));
                &mut streams.by_protocol[i].1
            }
        };
        if list.len() >= MAX_IDLE_PER_PROTOCOL {
            drop(idle);
            spawn(Box::pin(finish(vec![kept.stream])));
            return;
        }
        list.push(Idle { kept, since_tick });
        drop(idle);
        if first {
            spawn(Box::pin(self.clone().watch(conn.clone())));
        }
    }

    /// Half-closes every idle stream (the node is closing).
    pub(super) async fn close_all(&self) {
        let streams: Vec<Stream> = self
            .lock()
            .drain()
            .flat_map(|(_, mut s)| s.take_expired(None))
            .collect();
        finish(streams).await;
    }

    /// Expires `conn`'s idle streams as they age, and ends them all when it goes away.
    /// A stream idle for two ticks of half the idle limit has been idle for at least the
    /// limit (and at most one and a half times it).
    async fn watch(self: Arc<Self>, conn: Connection) {
        let tick = self.idle_limit / 2;
        loop {
            let going_away = tokio::select! {
                () = conn.going_away() => true,
                () = tokio::time::sleep(tick) => false,
            };
            let (expired, empty) = {
                let mut idle = self.lock();
                let Some(streams) = idle.get_mut(&conn.id()) else {
                    return;
                };
                streams.tick += 1;
                // Streams put before the previous tick have been idle a whole limit.
                let cutoff = (!going_away).then(|| streams.tick.saturating_sub(1));
                let expired = streams.take_expired(cutoff);
                let empty = streams.is_empty();
                if empty {
                    idle.remove(&conn.id());
                }
                (expired, empty)
            };
            finish(expired).await;
            if empty {
                return;
            }
        }
    }
}

/// Half-closes `streams` and waits (bounded) for each responder's FIN, so the streams end
/// cleanly rather than with a reset.
async fn finish(streams: Vec<Stream>) {
    let each = streams.into_iter().map(|mut stream| async move {
        if stream.shutdown().await.is_err() {
            return;
        }
        let drain = async { while let Ok(Some(_)) = stream.read_chunk().await {} };
        let _ = tokio::time::timeout(CLOSE_WAIT, drain).await;
    });
    futures::future::join_all(each).await;
}
