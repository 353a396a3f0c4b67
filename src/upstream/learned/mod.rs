//! The learned poll schedule as pure functions (random draws passed in, times as seconds
//! since the submit), unit-tested without clocks.
//!
//! A [`Dist`] is the completion-time distribution of one provider × model (× duration),
//! built from the last [`MAX_SAMPLES`] completions every worker recorded. A worker never
//! sees a completion, only the first poll that saw it, so each sample is an interval:
//! the generation finished after the last poll that saw it pending (`lo`) and no later
//! than the poll that saw it done (`hi`). The distribution treats each as uniform over
//! its interval (a mixture of boxes), which is unbiased where the midpoint is not, and
//! sharpens by itself as the learned schedule polls densely where completions happen.
//!
//! Placement ([`next_wait`]): a poll costs `c` seconds of detection delay (the exchange
//! rate). The gap `g` after a pending poll at `t` that balances one more poll against the
//! delay it saves satisfies `g · P(done in (t, t+g] | pending at t) = 2c`: the continuous
//! optimum is `g = sqrt(2c / hazard)`, and this discrete form needs no density estimate.
//! Before the early quantiles `P` is 0, so the first poll lands where completions begin
//! (sparse); where completions happen it is dense; in a falling tail it thins out.
//! `c` scales with the distribution's spread (`K_COST · (q90 − q10)`, at most
//! `MAX_COST_PER_MEDIAN · q50`), so a narrow distribution is polled tightly and a wide one neither polled
//! to death nor left to the sparse gaps of the default schedule. Past every sample
//! (a shift to slower generations) a gap is the larger of half the overrun and a tenth of
//! the time since the submit, up to `max_interval`.
//! Jitter across jobs draws the exchange rate (±40 %), which moves each job's polls in
//! time without leaving the distribution. The rate budget is a floor on the gap.

#[cfg(test)]
mod tests;

use std::time::Duration;

/// Completions kept per distribution (the ring in Redis is capped at this many): about
/// one batch, so a shift in the provider's latency is forgotten within 256 completions.
pub const MAX_SAMPLES: usize = 256;

/// The longest completion time accepted as a sample: a week (anything above is garbage).
pub const MAX_SAMPLE_MS: u64 = 7 * 24 * 3600 * 1000;

/// The exchange rate per second of spread: `c = K_COST · (q90 − q10)`.
const K_COST: f64 = 0.02;

/// The most a poll is worth, per second of the median: a wide distribution (a long-tailed
/// lognormal) is still polled densely enough to beat the default schedule's delay. Both
/// factors are relative to the distribution, so placement does not depend on the unit of
/// time (a time-scaled simulator gets the same schedule, scaled).
const MAX_COST_PER_MEDIAN: f64 = 0.01;

/// How far each job's exchange rate is drawn around `c` (jitter across jobs).
const COST_JITTER: f64 = 0.4;

/// Past every sample, no gap is shorter than this part of the time since the submit: a
/// job already slower than every one seen is not polled as densely as the usual ones.
const TAIL_STEP: f64 = 0.1;

/// Below this survival the distribution has nothing left to say (past its samples).
const TAIL: f64 = 1e-3;

/// One observed completion: after `lo_ms` and no later than `hi_ms`, both measured from
/// the submit (the last pending poll and the first poll that saw the generation done).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub lo_ms: u64,
    pub hi_ms: u64,
}

impl Sample {
    /// The ring's text form, `lo:hi` in milliseconds.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.lo_ms, self.hi_ms)
    }

    /// Parses the ring's text form; anything else (not two numbers, `lo > hi`, past
    /// [`MAX_SAMPLE_MS`], longer than 40 bytes) is `None`: Redis contents are untrusted.
    pub fn decode(raw: &[u8]) -> Option<Sample> {
        if raw.len() > 40 {
            return None;
        }
        let text = std::str::from_utf8(raw).ok()?;
        let (lo, hi) = text.split_once(':')?;
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(lo) || !all_digits(hi) {
            return None;
        }
        let (lo_ms, hi_ms) = (lo.parse().ok()?, hi.parse().ok()?);
        (lo_ms <= hi_ms && hi_ms <= MAX_SAMPLE_MS).then_some(Sample { lo_ms, hi_ms })
    }
}

/// A completion-time distribution: a mixture of uniform intervals, in seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dist {
    iv: Vec<(f64, f64)>,
    /// The latest `hi` of any sample: past it the distribution knows nothing.
    end: f64,
    /// The exchange rate `c` (seconds of delay one poll is worth).
    cost: f64,
}

impl Dist {
    /// The distribution of at most [`MAX_SAMPLES`] samples (the first ones given).
    pub fn new(samples: impl IntoIterator<Item = Sample>) -> Dist {
        let iv: Vec<(f64, f64)> = samples
            .into_iter()
            .take(MAX_SAMPLES)
            .map(|s| (s.lo_ms as f64 / 1000.0, s.hi_ms as f64 / 1000.0))
            .collect();
        let end = iv.iter().map(|s| s.1).fold(0.0, f64::max);
        let mut d = Dist { iv, end, cost: 0.0 };
        if !d.iv.is_empty() {
            let spread = d.quantile(0.9) - d.quantile(0.1);
            let cap = MAX_COST_PER_MEDIAN * d.quantile(0.5);
            // At least a millisecond: a point mass still gets a finite gap.
            d.cost = (K_COST * spread).min(cap).max(0.001);
        }
        d
    }

    /// How many samples it has.
    pub fn len(&self) -> usize {
        self.iv.len()
    }

    pub fn is_empty(&self) -> bool {
        self.iv.is_empty()
    }

    /// P(completion ≤ t).
    pub fn cdf(&self, t: f64) -> f64 {
        if self.iv.is_empty() {
            return 0.0;
        }
        let sum: f64 = self
            .iv
            .iter()
            .map(|&(lo, hi)| {
                if t >= hi {
                    1.0
                } else if t <= lo {
                    0.0
                } else {
                    (t - lo) / (hi - lo)
                }
            })
            .sum();
        sum / self.iv.len() as f64
    }

    /// The smallest t with `cdf(t) ≥ q` (to a millisecond).
    pub fn quantile(&self, q: f64) -> f64 {
        let (mut lo, mut hi) = (0.0, self.end);
        while hi - lo > 1e-3 {
            let mid = (lo + hi) / 2.0;
            if self.cdf(mid) >= q {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    }
}

/// What bounds a learned schedule besides the distribution, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// The shortest gap between two polls of one job: the rate budget's share per job
    /// ([`min_gap`]), never below a floor.
    pub min_gap: f64,
    /// The longest gap after the first poll (`poll.max_interval`).
    pub max_gap: f64,
}

/// The rate budget's floor on a job's gap: with `rate_limit` requests per second for the
/// whole fleet (0 = none), polls counted against it, and up to `in_flight` jobs polling
/// at once, no job may poll more often than `in_flight / (share · rate_limit)` seconds,
/// `share` of the budget being left to polls (the rest to submits). Never below `floor`.
pub fn min_gap(rate_limit: f64, counts_polls: bool, in_flight: u32, floor: f64) -> f64 {
    const POLL_SHARE: f64 = 0.8;
    if rate_limit <= 0.0 || !rate_limit.is_finite() || !counts_polls {
        return floor;
    }
    (f64::from(in_flight.max(1)) / (POLL_SHARE * rate_limit)).max(floor)
}

/// The wait from a pending poll (or the submit, `elapsed` 0) to the next poll of a job
/// `elapsed` seconds after its submit. `draw` in [0, 1] jitters it across jobs.
pub fn next_wait(d: &Dist, elapsed: f64, b: &Bounds, draw: f64) -> Duration {
    let t = elapsed.max(0.0);
    let draw = draw.clamp(0.0, 1.0);
    let target = 2.0 * d.cost * (1.0 - COST_JITTER + 2.0 * COST_JITTER * draw);
    let f0 = d.cdf(t);
    let survive = 1.0 - f0;
    let g = if d.is_empty() || survive < TAIL {
        // Past every sample: gaps grow with the overrun and the age, jittered ±25 %.
        let over = t - d.end;
        (over / 2.0).max(target).max(TAIL_STEP * t) * (0.75 + 0.5 * draw)
    } else {
        // The smallest g with g · P(done in (t, t+g] | pending at t) ≥ target: the product
        // only grows with g, and at `end - t + target` it is at least the target.
        let ok = |g: f64| g * (d.cdf(t + g) - f0) / survive >= target;
        let (mut lo, mut hi) = (0.0, (d.end - t).max(0.0) + target);
        while hi - lo > 1e-3 {
            let mid = (lo + hi) / 2.0;
            if ok(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi
    };
    // The first wait may be long (nothing completes before the early quantiles); after
    // it no gap passes max_interval.
    let g = if t > 0.0 { g.min(b.max_gap) } else { g };
    Duration::from_secs_f64(g.max(b.min_gap).clamp(0.0, MAX_SAMPLE_MS as f64 / 1000.0))
}
