//! Log throttling: what a stranger can provoke at will (refused connections, streams,
//! negotiations) is logged at most once per interval for each kind, with the number of
//! lines left out since, so that a flood cannot fill the disk or drown the rest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A kind of line: (what was refused, why), both fixed strings.
pub(crate) type Kind = (&'static str, &'static str);

/// Decides whether a line of some kind may be logged now.
#[derive(Debug)]
pub(crate) struct Throttle {
    interval: Duration,
    /// Per kind: when it was last logged and how many were left out since.
    last: Mutex<HashMap<Kind, (Instant, u64)>>,
}

impl Throttle {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(left_out)` when a line of `kind` may be logged now (with how many were left
    /// out since the last one); `None` when it must be left out.
    pub(crate) fn allow(&self, kind: Kind) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match last.get_mut(&kind) {
            Some((at, skipped)) if now.duration_since(*at) < self.interval => {
                *skipped += 1;
                None
            }
            Some((at, skipped)) => {
                *at = now;
                Some(std::mem::take(skipped))
            }
            None => {
                last.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

/// The process-wide throttle for lines about refused stream negotiations (`na`, access
/// denied, timeouts): one per kind per ten seconds.
pub(crate) fn negotiation() -> &'static Throttle {
    static THROTTLE: std::sync::OnceLock<Throttle> = std::sync::OnceLock::new();
    THROTTLE.get_or_init(|| Throttle::new(Duration::from_secs(10)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval_and_the_rest_counted() {
        let throttle = Throttle::new(Duration::from_secs(3600));
        assert_eq!(throttle.allow(("a", "x")), Some(0));
        for _ in 0..1000 {
            assert_eq!(throttle.allow(("a", "x")), None);
        }
        assert_eq!(throttle.allow(("b", "x")), Some(0));
        let fast = Throttle::new(Duration::ZERO);
        assert_eq!(fast.allow(("a", "x")), Some(0));
        assert_eq!(fast.allow(("a", "x")), Some(0));
    }
}
