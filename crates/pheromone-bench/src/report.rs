//! What a benchmark run reports and how it is measured: the three result records (one
//! JSON line each), latency percentiles, and the process CPU clock. Nothing here knows
//! about a particular stack or touches a socket.

use std::time::Duration;

use serde::Serialize;

/// Bulk transfer over one connection and one stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThroughputResult {
    /// Always `"throughput"`; the first key so a reader can dispatch on it.
    pub bench: &'static str,
    /// Which stack moved the bytes.
    pub stack: &'static str,
    /// Payload megabytes (10^6 bytes) per second, measured until the receiver acknowledged
    /// the last byte.
    pub mb_per_s: f64,
    /// User + system CPU seconds of the whole process (sender and receiver both live in
    /// it) per 10^9 payload bytes.
    pub cpu_s_per_gb: f64,
    /// The transport cipher the connection negotiated (`aes256gcm` or
    /// `chacha20poly1305`); only on the `pheromone` line, whose cipher depends on the CPU
    /// and `--no-aes-gcm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cipher: Option<&'static str>,
}

/// Request/response round trips.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RrResult {
    /// Always `"rr"`.
    pub bench: &'static str,
    /// Which stack carried the round trips.
    pub stack: &'static str,
    /// Round trips in flight at once on the one connection.
    pub concurrency: usize,
    /// Completed round trips per second.
    pub per_s: f64,
    /// Median round-trip latency in microseconds.
    pub p50_us: f64,
    /// 99th-percentile round-trip latency in microseconds.
    pub p99_us: f64,
}

/// Sequential connection set-ups, each ending with one ping.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectResult {
    /// Always `"connect"`.
    pub bench: &'static str,
    /// Which stack made the connections.
    pub stack: &'static str,
    /// Connections per second, counting dial, upgrade, ping and close.
    pub per_s: f64,
    /// Median time from dial to ping reply, in microseconds.
    pub p50_us: f64,
}

/// Node-level request/response: `Node::dispatch` (or rust-libp2p's request-response
/// behaviour), a new stream per request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DispatchResult {
    /// Always `"dispatch"`.
    pub bench: &'static str,
    /// Which stack carried the requests.
    pub stack: &'static str,
    /// `"long"`: one connection for every request; `"short"`: a connection per request.
    pub mode: &'static str,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Completed requests per second.
    pub per_s: f64,
    /// Median request latency in microseconds.
    pub p50_us: f64,
    /// Round trips per second of the same messages on raw streams between the same two
    /// nodes, measured in blocks interleaved with the dispatch blocks (pheromone, long
    /// mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_stream_per_s: Option<f64>,
    /// Median raw-stream round trip in microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_stream_p50_us: Option<f64>,
    /// `per_s / raw_stream_per_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_raw_stream: Option<f64>,
}

/// `Node::dispatch_all` to many in-process peers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DispatchAllResult {
    /// Always `"dispatch_all"`.
    pub bench: &'static str,
    /// Which stack.
    pub stack: &'static str,
    /// Routes each round asks.
    pub peers: usize,
    /// Completed rounds (every peer answered) per second.
    pub per_s: f64,
    /// Median round latency in microseconds.
    pub p50_us: f64,
}

/// Resident memory after a small and a large number of sequential dispatches on one
/// connection: equal figures mean nothing accumulates per request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DispatchMemoryResult {
    /// Always `"dispatch_memory"`.
    pub bench: &'static str,
    /// Which stack.
    pub stack: &'static str,
    /// Dispatches before the first reading.
    pub small: usize,
    /// Dispatches before the second reading.
    pub large: usize,
    /// Resident set size after `small` dispatches, KiB.
    pub rss_small_kib: u64,
    /// Resident set size after `large` dispatches, KiB.
    pub rss_large_kib: u64,
    /// Streams still open on the node's connections after `large`, once kept request
    /// streams had their idle time to expire (0 when nothing leaks).
    pub streams_after: usize,
}

/// A TCP connection forwarded through two nodes against a raw stream between them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForwardResult {
    /// Always `"forward"`.
    pub bench: &'static str,
    /// Which stack.
    pub stack: &'static str,
    /// Payload bytes per transfer.
    pub bytes: u64,
    /// MB/s (10^6 bytes) of the forwarded TCP connection, best of the rounds.
    pub forwarded_mb_per_s: f64,
    /// MB/s of the same transfer on a raw stream between the same nodes, best of the
    /// rounds.
    pub raw_stream_mb_per_s: f64,
    /// `forwarded_mb_per_s / raw_stream_mb_per_s`.
    pub ratio: f64,
    /// Process CPU seconds per 10^9 payload bytes forwarded (both nodes, the client and
    /// the sink), in the fastest forwarded round.
    pub forwarded_cpu_s_per_gb: f64,
    /// Process CPU seconds per 10^9 payload bytes on the raw stream, fastest round.
    pub raw_cpu_s_per_gb: f64,
}

impl ForwardResult {
    /// Builds the record from the fastest (wall, cpu) times of the two transfers.
    pub fn new(
        stack: &'static str,
        bytes: u64,
        forwarded: (Duration, Duration),
        raw: (Duration, Duration),
    ) -> Self {
        let rate = |wall: Duration| bytes as f64 / 1e6 / wall.as_secs_f64().max(f64::MIN_POSITIVE);
        let per_gb = |cpu: Duration| cpu.as_secs_f64() / (bytes as f64 / 1e9);
        let (f, r) = (rate(forwarded.0), rate(raw.0));
        Self {
            bench: "forward",
            stack,
            bytes,
            forwarded_mb_per_s: round(f, 1),
            raw_stream_mb_per_s: round(r, 1),
            ratio: round(f / r.max(f64::MIN_POSITIVE), 3),
            forwarded_cpu_s_per_gb: round(per_gb(forwarded.1), 3),
            raw_cpu_s_per_gb: round(per_gb(raw.1), 3),
        }
    }
}

/// One printed line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Record {
    /// A node-level request/response line.
    Dispatch(DispatchResult),
    /// A dispatch-to-all line.
    DispatchAll(DispatchAllResult),
    /// A memory-after-dispatches line.
    DispatchMemory(DispatchMemoryResult),
    /// A throughput line.
    Throughput(ThroughputResult),
    /// A request/response line.
    Rr(RrResult),
    /// A connect line.
    Connect(ConnectResult),
    /// A relayed-throughput line.
    Relay(RelayResult),
    /// A forward line.
    Forward(ForwardResult),
}

/// Bulk transfer over a direct link and over a circuit through one relay, same run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RelayResult {
    /// Always `"relay"`.
    pub bench: &'static str,
    /// Which stack.
    pub stack: &'static str,
    /// Payload bytes per transfer.
    pub bytes: u64,
    /// Intermediate hops of the relayed transfer.
    pub relays: u32,
    /// Direct link, payload MB/s.
    pub direct_mb_per_s: f64,
    /// Through the relay, payload MB/s.
    pub relayed_mb_per_s: f64,
    /// `relayed_mb_per_s / direct_mb_per_s`.
    pub ratio: f64,
    /// Process CPU seconds per 10^9 payload bytes, direct.
    pub direct_cpu_s_per_gb: f64,
    /// Process CPU seconds per 10^9 payload bytes, relayed (the relay's work included).
    pub relayed_cpu_s_per_gb: f64,
}

impl RelayResult {
    /// Builds the record from the (wall, cpu) times of the two transfers.
    pub fn new(
        stack: &'static str,
        bytes: u64,
        direct: (Duration, Duration),
        relayed: (Duration, Duration),
    ) -> Self {
        let rate = |wall: Duration| bytes as f64 / 1e6 / wall.as_secs_f64().max(f64::MIN_POSITIVE);
        let per_gb = |cpu: Duration| cpu.as_secs_f64() / (bytes as f64 / 1e9);
        let (d, r) = (rate(direct.0), rate(relayed.0));
        Self {
            bench: "relay",
            stack,
            bytes,
            relays: 1,
            direct_mb_per_s: round(d, 1),
            relayed_mb_per_s: round(r, 1),
            ratio: round(r / d.max(f64::MIN_POSITIVE), 3),
            direct_cpu_s_per_gb: round(per_gb(direct.1), 3),
            relayed_cpu_s_per_gb: round(per_gb(relayed.1), 3),
        }
    }
}

impl ThroughputResult {
    /// Builds the record from what was moved, how long it took and the CPU spent.
    pub fn new(stack: &'static str, bytes: u64, wall: Duration, cpu: Duration) -> Self {
        let secs = wall.as_secs_f64().max(f64::MIN_POSITIVE);
        let gb = bytes as f64 / 1e9;
        Self {
            bench: "throughput",
            stack,
            mb_per_s: round(bytes as f64 / 1e6 / secs, 1),
            cpu_s_per_gb: round(cpu.as_secs_f64() / gb, 3),
            cipher: None,
        }
    }

    /// Names the transport cipher the run used.
    pub fn with_cipher(mut self, cipher: &'static str) -> Self {
        self.cipher = Some(cipher);
        self
    }
}

impl RrResult {
    /// Builds the record from the measured latencies and the wall time of the whole run.
    /// `latencies` is sorted in place.
    pub fn new(
        stack: &'static str,
        concurrency: usize,
        latencies: &mut [Duration],
        wall: Duration,
    ) -> Self {
        latencies.sort_unstable();
        Self {
            bench: "rr",
            stack,
            concurrency,
            per_s: round(latencies.len() as f64 / wall.as_secs_f64().max(1e-9), 1),
            p50_us: round(micros(percentile(latencies, 50.0)), 1),
            p99_us: round(micros(percentile(latencies, 99.0)), 1),
        }
    }
}

impl ConnectResult {
    /// Builds the record from per-connection latencies and the wall time of the whole run.
    /// `latencies` is sorted in place.
    pub fn new(stack: &'static str, latencies: &mut [Duration], wall: Duration) -> Self {
        latencies.sort_unstable();
        Self {
            bench: "connect",
            stack,
            per_s: round(latencies.len() as f64 / wall.as_secs_f64().max(1e-9), 1),
            p50_us: round(micros(percentile(latencies, 50.0)), 1),
        }
    }
}

impl DispatchResult {
    /// Builds the record from per-request latencies and the wall time of the whole run.
    /// `latencies` is sorted in place.
    pub fn new(
        stack: &'static str,
        mode: &'static str,
        concurrency: usize,
        latencies: &mut [Duration],
        wall: Duration,
    ) -> Self {
        latencies.sort_unstable();
        Self {
            bench: "dispatch",
            stack,
            mode,
            concurrency,
            per_s: round(latencies.len() as f64 / wall.as_secs_f64().max(1e-9), 1),
            p50_us: round(micros(percentile(latencies, 50.0)), 1),
            raw_stream_per_s: None,
            raw_stream_p50_us: None,
            vs_raw_stream: None,
        }
    }

    /// Adds the raw-stream baseline: round trips of `latencies` completed in `wall`.
    /// `latencies` is sorted in place.
    pub fn against_raw_stream(mut self, latencies: &mut [Duration], wall: Duration) -> Self {
        latencies.sort_unstable();
        let raw = latencies.len() as f64 / wall.as_secs_f64().max(1e-9);
        self.raw_stream_per_s = Some(round(raw, 1));
        self.raw_stream_p50_us = Some(round(micros(percentile(latencies, 50.0)), 1));
        self.vs_raw_stream = Some(round(self.per_s / raw.max(f64::MIN_POSITIVE), 3));
        self
    }
}

impl DispatchAllResult {
    /// Builds the record from per-round latencies and the wall time of all rounds.
    pub fn new(
        stack: &'static str,
        peers: usize,
        latencies: &mut [Duration],
        wall: Duration,
    ) -> Self {
        latencies.sort_unstable();
        Self {
            bench: "dispatch_all",
            stack,
            peers,
            per_s: round(latencies.len() as f64 / wall.as_secs_f64().max(1e-9), 1),
            p50_us: round(micros(percentile(latencies, 50.0)), 1),
        }
    }
}

/// Keys that say what was measured rather than how it went: equal in every round of one
/// measurement, so they are printed once and never summarised.
const IDENTITY_KEYS: &[&str] = &[
    "bench",
    "stack",
    "mode",
    "concurrency",
    "bytes",
    "relays",
    "peers",
    "small",
    "large",
    "cipher",
];

/// One printed line from the rounds of one measurement (JSON objects of one shape, in
/// round order): a single round as it is; several as the median of every figure, followed
/// by `runs` and the `min` and `max` of every figure. Ratios are the median of the rounds'
/// ratios, so each stays a same-round comparison. `None` for no rounds.
pub fn summarise(rounds: &[serde_json::Value]) -> Option<serde_json::Value> {
    use serde_json::{Map, Value};
    let first = rounds.first()?.as_object()?;
    if rounds.len() == 1 {
        return Some(rounds[0].clone());
    }
    let (mut line, mut min, mut max) = (Map::new(), Map::new(), Map::new());
    for (key, value) in first {
        let figures: Option<Vec<f64>> = rounds.iter().map(|r| r.get(key)?.as_f64()).collect();
        match figures {
            Some(mut figures) if !IDENTITY_KEYS.contains(&key.as_str()) => {
                figures.sort_by(f64::total_cmp);
                let integral = value.is_u64() || value.is_i64();
                let number = |x: f64| {
                    if integral {
                        Value::from(x.round() as u64)
                    } else {
                        Value::from(x)
                    }
                };
                line.insert(key.clone(), number(median(&figures)));
                min.insert(key.clone(), number(figures[0]));
                max.insert(key.clone(), number(figures[figures.len() - 1]));
            }
            _ => {
                line.insert(key.clone(), value.clone());
            }
        }
    }
    line.insert("runs".into(), Value::from(rounds.len()));
    line.insert("min".into(), Value::Object(min));
    line.insert("max".into(), Value::Object(max));
    Some(Value::Object(line))
}

/// The median of sorted figures: the middle one, or the mean of the middle two.
fn median(sorted: &[f64]) -> f64 {
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// This process's resident set size in KiB (`VmRSS` in `/proc/self/status`); 0 where
/// that file does not exist.
pub fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The nearest-rank percentile `p` (0..=100) of `sorted`, which must be sorted ascending;
/// zero for an empty slice.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank: the smallest value with at least p% of the samples at or below it.
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Rounds to `digits` decimals so the JSON lines stay readable.
fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// User + system CPU time consumed so far by every thread of this process.
pub fn process_cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a full `rusage` into the pointer we pass, which points to
    // writable memory of exactly that type; RUSAGE_SELF is always a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: rc == 0 means the kernel filled the struct; a zeroed rusage is valid anyway.
    let usage = unsafe { usage.assume_init() };
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

fn timeval(tv: libc::timeval) -> Duration {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u64::try_from(tv.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&x| Duration::from_micros(x)).collect()
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let sorted = us(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&sorted, 50.0), Duration::from_micros(50));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_micros(99));
        assert_eq!(percentile(&sorted, 100.0), Duration::from_micros(100));
        assert_eq!(percentile(&sorted, 0.0), Duration::from_micros(1));
    }

    #[test]
    fn percentile_of_small_and_empty_sets() {
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
        let one = us(&[7]);
        assert_eq!(percentile(&one, 50.0), Duration::from_micros(7));
        assert_eq!(percentile(&one, 99.0), Duration::from_micros(7));
        let two = us(&[1, 9]);
        assert_eq!(percentile(&two, 50.0), Duration::from_micros(1));
        assert_eq!(percentile(&two, 99.0), Duration::from_micros(9));
    }

    #[test]
    fn rr_result_sorts_and_summarises() {
        let mut lat = us(&[300, 100, 200, 400]);
        let r = RrResult::new("tcp", 1, &mut lat, Duration::from_secs(2));
        assert_eq!(r.per_s, 2.0);
        assert_eq!(r.p50_us, 200.0);
        assert_eq!(r.p99_us, 400.0);
    }

    #[test]
    fn throughput_units() {
        let r = ThroughputResult::new(
            "tcp",
            2_000_000_000,
            Duration::from_secs(2),
            Duration::from_secs(1),
        );
        assert_eq!(r.mb_per_s, 1000.0);
        assert_eq!(r.cpu_s_per_gb, 0.5);
    }

    #[test]
    fn records_serialise_with_keys_in_order() {
        let line = serde_json::to_string(&Record::Connect(ConnectResult {
            bench: "connect",
            stack: "libp2p",
            per_s: 1.5,
            p50_us: 2.0,
        }))
        .unwrap();
        assert_eq!(
            line,
            r#"{"bench":"connect","stack":"libp2p","per_s":1.5,"p50_us":2.0}"#
        );
    }

    #[test]
    fn dispatch_lines_have_the_documented_keys() {
        let mut lat = us(&[10, 30, 20]);
        let line = serde_json::to_string(&Record::Dispatch(DispatchResult::new(
            "pheromone",
            "long",
            64,
            &mut lat,
            Duration::from_secs(1),
        )))
        .unwrap();
        assert_eq!(
            line,
            r#"{"bench":"dispatch","stack":"pheromone","mode":"long","concurrency":64,"per_s":3.0,"p50_us":20.0}"#
        );
        assert!(resident_kib() > 0);
    }

    #[test]
    fn rounds_summarise_to_median_min_and_max() {
        let rounds: Vec<serde_json::Value> = [(300.0, 9, 2.5), (100.0, 7, 1.5), (200.0, 8, 0.5)]
            .iter()
            .map(|&(per_s, after, ratio)| {
                serde_json::json!({"bench": "rr", "stack": "tcp", "concurrency": 64,
                    "per_s": per_s, "streams_after": after, "ratio": ratio})
            })
            .collect();
        let line = summarise(&rounds).unwrap().to_string();
        assert_eq!(
            line,
            concat!(
                r#"{"bench":"rr","stack":"tcp","concurrency":64,"per_s":200.0,"streams_after":8,"#,
                r#""ratio":1.5,"runs":3,"min":{"per_s":100.0,"streams_after":7,"ratio":0.5},"#,
                r#""max":{"per_s":300.0,"streams_after":9,"ratio":2.5}}"#
            )
        );
        // An even count takes the mean of the middle two; one round prints as it is.
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), 3.0);
        assert_eq!(summarise(&rounds[..1]).unwrap(), rounds[0]);
        assert!(summarise(&[]).is_none());
    }

    #[test]
    fn cpu_clock_advances_with_work() {
        let before = process_cpu_time();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        std::hint::black_box(x);
        assert!(process_cpu_time() > before);
    }
}
