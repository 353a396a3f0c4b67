//! One clock for the fleet: the Redis server's (`TIME`), never a worker's wall clock.
//!
//! Every lease expiry, park time, sweep, slot expiry, pause and deadline is a point on the
//! server's timeline. A worker samples the server's `TIME` (through a script on the
//! namespace's shard, so a cluster answers from the node that holds the keys) and carries
//! it forward with its monotonic clock, so a worker whose wall clock is minutes off — or
//! jumps — still agrees with every other worker to within a round trip. The sample is
//! refreshed on every sweep.

use std::sync::Mutex;
use std::time::Instant;

/// The server's clock as this process knows it.
#[derive(Debug)]
pub struct ServerClock {
    /// (local monotonic instant, server epoch ms at that instant).
    sample: Mutex<(Instant, u64)>,
}

impl ServerClock {
    /// Until the first sample: the local wall clock (replaced at connect).
    pub fn new() -> Self {
        ServerClock {
            sample: Mutex::new((Instant::now(), super::now_ms())),
        }
    }

    /// Records a sample: the server said `server_ms` at some point between `sent` and now;
    /// the midpoint is taken.
    pub fn observe(&self, sent: Instant, server_ms: u64) {
        let now = Instant::now();
        let at = sent + now.duration_since(sent) / 2;
        *self.sample.lock().expect("clock") = (at, server_ms);
    }

    /// Epoch milliseconds on the server's timeline, now.
    pub fn now_ms(&self) -> u64 {
        let (at, ms) = *self.sample.lock().expect("clock");
        ms + Instant::now().saturating_duration_since(at).as_millis() as u64
    }
}

impl Default for ServerClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_the_sample_forward_monotonically() {
        let c = ServerClock::new();
        let sent = Instant::now();
        c.observe(sent, 1_000_000);
        let a = c.now_ms();
        assert!((1_000_000..1_000_100).contains(&a), "{a}");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = c.now_ms();
        assert!(b >= a + 20, "{a} → {b}");
    }
}
