//! The simulator's shared state behind its one lock: the knobs, the counters, the per-key
//! limits, the generations of the shared core (`generation`), and each protocol's own
//! bookkeeping, which lives in that protocol's module. Also the seeded randomness every
//! rate and id draws from, and the counting of refused requests.

mod generation;
mod knobs;
mod stats;

pub(crate) use generation::{NewGeneration, View};
pub use knobs::{Knobs, LatencyDist};
pub use stats::{ProviderCounters, SimStats, Spread};

use axum::http::StatusCode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::limits::Limits;
use generation::Generation;

/// Cheap to clone: every clone shares one state.
#[derive(Debug, Clone)]
pub struct SimState {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub knobs: Knobs,
    pub stats: SimStats,
    /// Where the server is bound, when known; fallback for a request without `Host`.
    pub bound: Option<SocketAddr>,
    /// Per-key buckets and in-flight sets, and the request log.
    pub limits: Limits,
    rng: Option<StdRng>,
    generations: HashMap<String, Generation>,
    client_ids: HashMap<String, u32>,
    /// End times of non-stuck, non-settled generations, soonest first; `true` = fails.
    pending: BinaryHeap<Reverse<(Instant, bool)>>,
    stuck: u64,
    failures_assigned: u64,
    /// Each protocol's own bookkeeping (ids, subscribers, URLs).
    pub oxen: crate::oxen::OxenState,
    pub fal: crate::fal::FalState,
    pub kling: crate::kling::KlingState,
    /// Webhooks and callbacks: the signing key, the client, the counters.
    pub push: crate::push::PushState,
}

impl SimState {
    /// A fresh simulator with no generations.
    pub fn new(knobs: Knobs) -> Self {
        let rng = knobs.seed.map(StdRng::seed_from_u64);
        SimState {
            inner: Arc::new(Mutex::new(Inner {
                knobs,
                stats: SimStats::default(),
                bound: None,
                limits: Limits::default(),
                rng,
                generations: HashMap::new(),
                client_ids: HashMap::new(),
                pending: BinaryHeap::new(),
                stuck: 0,
                failures_assigned: 0,
                oxen: Default::default(),
                fal: Default::default(),
                kling: Default::default(),
                push: Default::default(),
            })),
        }
    }

    /// Locks the state; a poisoned lock is recovered (counters stay usable).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A snapshot of the counters as of now.
    pub fn stats(&self) -> SimStats {
        let mut inner = self.lock();
        inner.settle(Instant::now());
        let mut stats = inner.stats.clone();
        stats.in_flight = inner.pending.len() as u64 + inner.stuck;
        let economy = inner.economy();
        drop(inner);
        let spreads = |of: &dyn Fn(&str) -> bool| {
            let mine = economy.iter().filter(|e| of(&e.provider));
            let delays = mine.clone().map(|e| e.delay_s).collect();
            let polls = mine.map(|e| f64::from(e.polls)).collect();
            (Spread::of(delays), Spread::of(polls))
        };
        (stats.detection_delay_s, stats.polls_per_generation) = spreads(&|_| true);
        let names: std::collections::BTreeSet<&str> =
            economy.iter().map(|e| e.provider.as_str()).collect();
        for name in names {
            let (d, p) = spreads(&|n| n == name);
            let c = stats.by_provider.entry(name.to_string()).or_default();
            (c.detection_delay_s, c.polls_per_generation) = (d, p);
        }
        stats
    }

    /// Starts the counters afresh (`DELETE /sim/stats`): every counter to zero, and the
    /// economy (detection delay, polls per generation) only of generations created from
    /// now on. Generations, limits and knobs are unchanged.
    pub fn reset_stats(&self) {
        let mut inner = self.lock();
        inner.settle(Instant::now());
        inner.stats = SimStats::default();
        inner.forget_economy();
    }

    /// The current knobs.
    pub fn knobs(&self) -> Knobs {
        self.lock().knobs.clone()
    }

    /// Replaces the knobs. A `seed` restarts the seeded RNG; existing generations keep
    /// their schedule and fate. Changing `rate_limit` or `rate_burst` refills every bucket.
    pub fn set_knobs(&self, knobs: Knobs) {
        let mut inner = self.lock();
        inner.rng = knobs.seed.map(StdRng::seed_from_u64);
        if (knobs.rate_limit, knobs.rate_burst) != (inner.knobs.rate_limit, inner.knobs.rate_burst)
        {
            inner.limits.reset_buckets();
        }
        inner.knobs = knobs;
    }

    /// Bumps counters under the lock.
    pub(crate) fn count(&self, f: impl FnOnce(&mut SimStats)) {
        f(&mut self.lock().stats);
    }

    pub(crate) fn set_bound(&self, addr: SocketAddr) {
        self.lock().bound = Some(addr);
    }
}

impl Inner {
    /// True with probability `p`; draws nothing when `p` is 0 or 1.
    pub fn chance(&mut self, p: f64) -> bool {
        if p.is_nan() || p <= 0.0 {
            return false;
        }
        if p >= 1.0 {
            return true;
        }
        match &mut self.rng {
            Some(rng) => rng.random_bool(p),
            None => rand::rng().random_bool(p),
        }
    }

    /// Uniform index below `n` (n > 0).
    pub fn pick(&mut self, n: usize) -> usize {
        match &mut self.rng {
            Some(rng) => rng.random_range(0..n),
            None => rand::rng().random_range(0..n),
        }
    }

    fn random_bytes(&mut self) -> [u8; 16] {
        match &mut self.rng {
            Some(rng) => rng.random(),
            None => rand::rng().random(),
        }
    }

    fn uniform01(&mut self) -> f64 {
        match &mut self.rng {
            Some(rng) => rng.random(),
            None => rand::rng().random(),
        }
    }

    /// A generation time drawn from the latency knobs, time-scaled.
    fn latency(&mut self) -> Duration {
        let base = match self.knobs.latency_dist {
            LatencyDist::Uniform => {
                let (mut lo, mut hi) = (self.knobs.latency_min, self.knobs.latency_max);
                if hi < lo {
                    std::mem::swap(&mut lo, &mut hi);
                }
                let f = if hi == lo { 0.0 } else { self.uniform01() };
                lo + (hi - lo).mul_f64(f)
            }
            LatencyDist::Lognormal => {
                // Box–Muller: one standard normal from two uniforms.
                let (u1, u2) = (self.uniform01().max(1e-12), self.uniform01());
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let f = (self.knobs.latency_sigma * z).exp();
                let median = self.knobs.latency_median.as_secs_f64();
                Duration::from_secs_f64((median * f).clamp(0.0, 86_400.0))
            }
        };
        let scale = self.knobs.time_scale;
        if scale.is_finite() && scale > 0.0 {
            base.mul_f64(scale)
        } else {
            Duration::ZERO
        }
    }

    /// A fresh uuid (seeded when the `seed` knob is set).
    pub fn new_uuid(&mut self) -> uuid::Uuid {
        uuid::Builder::from_random_bytes(self.random_bytes()).into_uuid()
    }

    /// The counters of one provider protocol.
    pub fn counters(&mut self, provider: &str) -> &mut ProviderCounters {
        self.stats
            .by_provider
            .entry(provider.to_string())
            .or_default()
    }

    /// Counts a request refused for its credential (a 401), in all and under `provider`.
    pub fn count_unauthorized(&mut self, provider: &str) {
        self.stats.unauthorized_total += 1;
        self.counters(provider).unauthorized_total += 1;
    }

    /// Counts a request refused for its content (400, 404 or 422: the protocol's schema or
    /// a conflict with what exists), in all and under `provider`.
    pub fn count_invalid(&mut self, provider: &str) {
        self.stats.validation_errors_total += 1;
        self.counters(provider).validation_errors_total += 1;
    }

    /// Counts a request refused with `status` by a limit or a fault: a 429 as rate limited
    /// and a 5xx as a server error (in all and under `provider`), a 403 as forbidden (in
    /// all only: the per-provider counters have no such field). Other statuses count as
    /// nothing.
    pub fn count_refused(&mut self, provider: &str, status: StatusCode) {
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.stats.rate_limited_total += 1;
            self.counters(provider).rate_limited_total += 1;
        } else if status.is_server_error() {
            self.stats.server_errors_total += 1;
            self.counters(provider).server_errors_total += 1;
        } else if status == StatusCode::FORBIDDEN {
            self.stats.forbidden_total += 1;
        }
    }
}
