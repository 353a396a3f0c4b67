//! The simulator's shared state: knobs, counters, and every generation with its fate,
//! whose status is derived lazily from the clock (no background timers).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::limits::Limits;
use crate::model::ModelKind;

/// Behaviour of the simulator: latencies and failure injection. Replaceable at runtime.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Knobs {
    /// Accepted keys (Bearer for aimlapi and Oxen, `Key` for fal; for Kling `AK:SK`
    /// pairs whose JWTs are verified). Empty: any non-empty key, and any unexpired Kling
    /// JWT without a signature check.
    pub api_keys: Vec<String>,
    /// Seeds the RNG behind every rate and every generation id; `None` uses the thread RNG.
    pub seed: Option<u64>,
    /// Multiplies every generation latency (0.01 turns 200 s into 2 s).
    pub time_scale: f64,
    /// Shortest generation time, before `time_scale`.
    #[serde(with = "humantime_serde")]
    pub latency_min: Duration,
    /// Longest generation time, before `time_scale`.
    #[serde(with = "humantime_serde")]
    pub latency_max: Duration,
    /// Probability a submit gets 429 (nothing created).
    pub submit_429_rate: f64,
    /// Probability a submit gets 503 `Service unavailable` (nothing created).
    pub submit_5xx_rate: f64,
    /// Probability a submit creates the generation but answers 504 `Generation timeout`,
    /// as if the response had been lost on the way back.
    pub submit_lost_response_rate: f64,
    /// When true every submit gets 403 "You've run out of credits" (nothing created).
    pub no_credits: bool,
    /// Probability a poll gets 429.
    pub poll_429_rate: f64,
    /// Probability a poll gets 500, 502 or 503.
    pub poll_5xx_rate: f64,
    /// When set, every 429 carries `Retry-After` with this many seconds.
    pub retry_after_secs: Option<u64>,
    /// Probability a new generation stays `generating` forever.
    pub stuck_rate: f64,
    /// Probability a new generation ends with `status: "error"`.
    pub error_rate: f64,
    /// A prompt containing this substring gets stuck.
    pub stuck_prompts_containing: Option<String>,
    /// A prompt containing this substring ends with `status: "error"`.
    pub fail_prompts_containing: Option<String>,
    /// Output URLs answer 403 once this long has passed since completion (not time-scaled).
    #[serde(with = "humantime_serde")]
    pub output_ttl: Option<Duration>,
    /// Oxen: probability a completion event is not sent on the SSE stream.
    pub drop_events_rate: f64,
    /// fal: probability a result fetch of a COMPLETED request answers 504 (a later fetch
    /// succeeds).
    pub result_504_rate: f64,
    /// Requests per second allowed per API key (submits and polls); `None` = unlimited.
    pub rate_limit: Option<f64>,
    /// Token-bucket capacity per key; `None` = `max(1, ceil(rate_limit))`.
    pub rate_burst: Option<u32>,
    /// Generations per API key created and not yet terminal (stuck ones count) beyond
    /// which a submit gets 429; `None` = unlimited.
    pub max_in_flight: Option<u32>,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            api_keys: Vec::new(),
            seed: None,
            time_scale: 1.0,
            latency_min: Duration::from_secs(200),
            latency_max: Duration::from_secs(240),
            submit_429_rate: 0.0,
            submit_5xx_rate: 0.0,
            submit_lost_response_rate: 0.0,
            no_credits: false,
            poll_429_rate: 0.0,
            poll_5xx_rate: 0.0,
            retry_after_secs: None,
            stuck_rate: 0.0,
            error_rate: 0.0,
            stuck_prompts_containing: None,
            fail_prompts_containing: None,
            output_ttl: None,
            drop_events_rate: 0.0,
            result_504_rate: 0.0,
            rate_limit: None,
            rate_burst: None,
            max_in_flight: None,
        }
    }
}

impl Knobs {
    /// The token-bucket capacity in force, or `None` when there is no rate limit.
    pub fn effective_burst(&self) -> Option<u32> {
        let rate = self.rate_limit?;
        Some(self.rate_burst.unwrap_or_else(|| {
            // Saturating float-to-int cast; `check` rejects non-finite rates.
            (rate.ceil() as u32).max(1)
        }))
    }

    /// Rejects rates outside 0..=1, a negative or non-finite time scale, a rate limit that
    /// is not a positive number, and a burst or in-flight cap of 0.
    pub fn check(&self) -> Result<(), String> {
        let rates = [
            ("submit_429_rate", self.submit_429_rate),
            ("submit_5xx_rate", self.submit_5xx_rate),
            ("submit_lost_response_rate", self.submit_lost_response_rate),
            ("poll_429_rate", self.poll_429_rate),
            ("poll_5xx_rate", self.poll_5xx_rate),
            ("stuck_rate", self.stuck_rate),
            ("error_rate", self.error_rate),
            ("drop_events_rate", self.drop_events_rate),
            ("result_504_rate", self.result_504_rate),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be within 0..=1, got {rate}"));
            }
        }
        if !self.time_scale.is_finite() || self.time_scale < 0.0 {
            return Err(format!(
                "time_scale must be finite and >= 0, got {}",
                self.time_scale
            ));
        }
        if let Some(rate) = self.rate_limit {
            if !rate.is_finite() || rate <= 0.0 {
                return Err(format!("rate_limit must be finite and > 0, got {rate}"));
            }
        }
        if self.rate_burst == Some(0) {
            return Err("rate_burst must be >= 1".to_owned());
        }
        if self.max_in_flight == Some(0) {
            return Err("max_in_flight must be >= 1".to_owned());
        }
        Ok(())
    }
}

/// Counters since start. `in_flight` and the generation totals follow the clock.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SimStats {
    /// Generations created (every accepted submit, including lost responses).
    pub submissions_total: u64,
    /// Created generations whose valid client request id had already created one.
    pub duplicate_submissions: u64,
    /// Authorized poll requests, whatever they were answered.
    pub polls_total: u64,
    /// Complete (200) output downloads.
    pub downloads_total: u64,
    /// 429 responses served (injected, per-key rate limit, per-key concurrency cap).
    pub rate_limited_total: u64,
    /// Submits answered 429 because their key had `max_in_flight` generations in flight.
    pub concurrency_limited_total: u64,
    /// 5xx responses served.
    pub server_errors_total: u64,
    /// 401 responses served.
    pub unauthorized_total: u64,
    /// 403 responses served (no credits, expired output URL).
    pub forbidden_total: u64,
    /// 400 responses served.
    pub validation_errors_total: u64,
    /// Generations that have reached `completed`.
    pub generations_completed: u64,
    /// Generations that have reached `error`.
    pub generations_failed: u64,
    /// Generations created and not yet terminal (stuck ones included).
    pub in_flight: u64,
    /// Highest `in_flight` ever seen (all keys together).
    pub peak_in_flight: u64,
    /// Highest in-flight count any single API key reached.
    pub peak_in_flight_by_key_max: u64,
    /// Most generations created under any single client request id.
    pub submissions_by_client_id_max: u32,
    /// Authorized API requests (submits and polls, whatever the answer) by Unix second of
    /// arrival; the last hour only.
    pub requests_per_second: BTreeMap<u64, u64>,
    /// Like `requests_per_second`, but only requests not answered 429.
    pub accepted_per_second: BTreeMap<u64, u64>,
    /// The same story per provider protocol (`aimlapi`, `oxen`, `fal`, `kling`).
    pub by_provider: BTreeMap<String, ProviderCounters>,
}

/// Counters for one provider protocol.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderCounters {
    /// Generations created.
    pub submissions_total: u64,
    /// Created generations whose client key (client request id, `external_task_id`, or
    /// for providers without one the prompt + video) had already created one.
    pub duplicate_submissions: u64,
    pub polls_total: u64,
    /// Result fetches (fal `response_url`).
    pub results_total: u64,
    pub cancels_total: u64,
    /// Completion events sent (Oxen SSE) and dropped by the `drop_events_rate` knob.
    pub events_sent: u64,
    pub events_dropped: u64,
    pub rate_limited_total: u64,
    pub server_errors_total: u64,
    pub unauthorized_total: u64,
    pub validation_errors_total: u64,
}

/// What a generation will do when its time is up.
#[derive(Debug, Clone)]
pub(crate) enum Fate {
    Complete { credits: u64 },
    Fail(Value),
}

#[derive(Debug, Clone)]
struct Generation {
    /// End of the `queued` phase.
    started: Instant,
    /// Set when the client cancelled it.
    cancelled: bool,
    /// The API key it counts against.
    key: Option<String>,
    /// When it turns terminal; `None` means stuck in `generating`.
    end: Option<Instant>,
    fate: Fate,
}

/// A generation's state as of now.
#[derive(Debug, Clone)]
pub(crate) enum View {
    Queued,
    Generating,
    /// Cancelled by the client before it finished.
    Cancelled,
    Completed {
        at: Instant,
        credits: u64,
    },
    Failed(Value),
}

/// What the submit handler learned about a valid body, enough to decide a fate.
#[derive(Debug, Clone)]
pub(crate) struct NewGeneration {
    pub model: ModelKind,
    pub prompt: String,
    /// `image_list` items plus `elements` items.
    pub refs: usize,
    pub duration: Option<u32>,
}

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
    pub oxen: super::oxen::OxenState,
    pub fal: super::fal::FalState,
    pub kling: super::kling::KlingState,
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
        stats
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

    fn latency(&mut self) -> Duration {
        let (mut lo, mut hi) = (self.knobs.latency_min, self.knobs.latency_max);
        if hi < lo {
            std::mem::swap(&mut lo, &mut hi);
        }
        let base = if hi == lo {
            lo
        } else {
            let f: f64 = match &mut self.rng {
                Some(rng) => rng.random(),
                None => rand::rng().random(),
            };
            lo + (hi - lo).mul_f64(f)
        };
        let scale = self.knobs.time_scale;
        if scale.is_finite() && scale > 0.0 {
            base.mul_f64(scale)
        } else {
            Duration::ZERO
        }
    }

    /// Moves every generation whose end has passed into the terminal counters.
    fn settle(&mut self, now: Instant) {
        while let Some(Reverse((end, fails))) = self.pending.peek().copied() {
            if end > now {
                break;
            }
            self.pending.pop();
            if fails {
                self.stats.generations_failed += 1;
            } else {
                self.stats.generations_completed += 1;
            }
        }
    }

    fn failure_body(&mut self, prompt: &str) -> Value {
        const MSG: &str = "Content rejected by upstream safety system";
        self.failures_assigned += 1;
        if self.failures_assigned % 2 == 1 {
            json!({"name": "ContentPolicyViolation", "message": MSG})
        } else {
            json!({"detail": [{
                "loc": ["body", "prompt"],
                "msg": MSG,
                "type": "content_policy_violation",
                "input": prompt,
            }]})
        }
    }

    fn decide_fate(&mut self, g: &NewGeneration) -> (bool, Fate) {
        let contains = |needle: &Option<String>| {
            needle
                .as_deref()
                .is_some_and(|n| !n.is_empty() && g.prompt.contains(n))
        };
        let stuck_by_prompt = contains(&self.knobs.stuck_prompts_containing);
        let fail_by_prompt = contains(&self.knobs.fail_prompts_containing);
        let stuck = stuck_by_prompt || self.chance(self.knobs.stuck_rate);
        let fail = fail_by_prompt || self.chance(self.knobs.error_rate);
        let fate = if g.refs > 4 {
            Fate::Fail(json!({"detail": [{
                "loc": ["body", "image_list"],
                "msg": "The total number of images and elements must not exceed 4 \
                        when a video is provided",
                "type": "value_error",
                "input": g.refs,
            }]}))
        } else if fail {
            Fate::Fail(self.failure_body(&g.prompt))
        } else {
            let seconds = match g.model {
                ModelKind::Reference => u64::from(g.duration.unwrap_or(5)),
                ModelKind::Edit => 5,
            };
            Fate::Complete {
                credits: seconds * 21_000,
            }
        };
        (stuck, fate)
    }

    /// Creates a generation and returns its id (`<uuid>:<model id>`). With an API `key`
    /// it counts towards that key's in-flight generations.
    pub fn create(
        &mut self,
        g: &NewGeneration,
        key: Option<&str>,
        client_id: Option<&str>,
        now: Instant,
    ) -> String {
        let id = format!("{}:{}", self.new_uuid(), g.model.aimlapi_id());
        self.create_as("aimlapi", id, g, key, client_id, now)
    }

    /// A fresh uuid (seeded when the `seed` knob is set).
    pub fn new_uuid(&mut self) -> uuid::Uuid {
        uuid::Builder::from_random_bytes(self.random_bytes()).into_uuid()
    }

    /// Creates a generation under a caller-chosen id for `provider`'s protocol. `dedupe`
    /// is the client key that makes a second creation a duplicate submission.
    pub fn create_as(
        &mut self,
        provider: &str,
        id: String,
        g: &NewGeneration,
        key: Option<&str>,
        dedupe: Option<&str>,
        now: Instant,
    ) -> String {
        self.settle(now);
        let latency = self.latency();
        let (stuck, fate) = self.decide_fate(g);
        let end = if stuck {
            self.stuck += 1;
            None
        } else {
            let end = now + latency;
            self.pending
                .push(Reverse((end, matches!(fate, Fate::Fail(_)))));
            Some(end)
        };
        let started = now + latency / 10;
        self.generations.insert(
            id.clone(),
            Generation {
                started,
                end,
                fate,
                cancelled: false,
                key: key.map(str::to_string),
            },
        );

        self.stats.submissions_total += 1;
        self.counters(provider).submissions_total += 1;
        if let Some(cid) = dedupe {
            let n = self
                .client_ids
                .entry(format!("{provider}\u{0}{cid}"))
                .or_insert(0);
            *n += 1;
            let n = *n;
            if n > 1 {
                self.stats.duplicate_submissions += 1;
                self.counters(provider).duplicate_submissions += 1;
            }
            self.stats.submissions_by_client_id_max =
                self.stats.submissions_by_client_id_max.max(n);
        }
        let in_flight = self.pending.len() as u64 + self.stuck;
        self.stats.peak_in_flight = self.stats.peak_in_flight.max(in_flight);
        if let Some(key) = key {
            let by_key = self.limits.track(key, end, now);
            self.stats.peak_in_flight_by_key_max = self.stats.peak_in_flight_by_key_max.max(by_key);
        }
        id
    }

    /// The counters of one provider protocol.
    pub fn counters(&mut self, provider: &str) -> &mut ProviderCounters {
        self.stats
            .by_provider
            .entry(provider.to_string())
            .or_default()
    }

    /// Cancels a generation that has not finished. `running_too`: also one that already
    /// left the queue (Oxen); otherwise only a queued one is cancelled (fal's best effort).
    /// Returns the view after the attempt, `None` for an unknown id.
    pub fn cancel(&mut self, id: &str, running_too: bool, now: Instant) -> Option<View> {
        let view = self.view(id, now)?;
        let cancellable = match view {
            View::Queued => true,
            View::Generating => running_too,
            _ => false,
        };
        if cancellable {
            let g = self.generations.get_mut(id)?;
            g.cancelled = true;
            let (key, end) = (g.key.clone(), g.end);
            if let Some(key) = key {
                self.limits.untrack(&key, end);
            }
            let g = self.generations.get_mut(id)?;
            if g.end.is_none() {
                self.stuck = self.stuck.saturating_sub(1);
            } else if let Some(end) = g.end {
                // Leaves the in-flight heap: rebuild without this end time (rare path).
                let fails = matches!(g.fate, Fate::Fail(_));
                let mut rest: Vec<_> = std::mem::take(&mut self.pending).into_vec();
                if let Some(pos) = rest.iter().position(|Reverse(e)| *e == (end, fails)) {
                    rest.swap_remove(pos);
                }
                self.pending = rest.into_iter().collect();
            }
            return Some(View::Cancelled);
        }
        Some(view)
    }

    /// The generation's state as of `now`, or `None` when the id is unknown.
    pub fn view(&mut self, id: &str, now: Instant) -> Option<View> {
        self.settle(now);
        let g = self.generations.get(id)?;
        Some(match g.end {
            _ if g.cancelled => View::Cancelled,
            _ if now < g.started => View::Queued,
            None => View::Generating,
            Some(end) if now < end => View::Generating,
            Some(end) => match &g.fate {
                Fate::Complete { credits } => View::Completed {
                    at: end,
                    credits: *credits,
                },
                Fate::Fail(body) => View::Failed(body.clone()),
            },
        })
    }
}
