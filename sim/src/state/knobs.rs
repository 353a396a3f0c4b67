//! The knobs: every latency, failure rate and limit the simulator applies, replaceable at
//! runtime (`PUT /sim/knobs`, [`crate::SimHandle::set_knobs`]), and their checks. The
//! latency distribution (uniform or lognormal) is one of them.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How generation times are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatencyDist {
    /// Uniform between `latency_min` and `latency_max`.
    Uniform,
    /// `latency_median · exp(latency_sigma · z)`, z standard normal.
    Lognormal,
}

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
    /// How generation times are drawn: `uniform` between `latency_min` and `latency_max`
    /// (the default), or `lognormal` around `latency_median` with `latency_sigma` (a long
    /// tail). Changing it (or any latency knob) at runtime applies to generations created
    /// afterwards: a mid-run shift.
    pub latency_dist: LatencyDist,
    /// `lognormal`: the median generation time, before `time_scale`.
    #[serde(with = "humantime_serde")]
    pub latency_median: Duration,
    /// `lognormal`: the standard deviation of the time's logarithm (0.5: p90 ≈ 1.9 × the
    /// median, p99 ≈ 3.2 ×). Draws are capped at a day.
    pub latency_sigma: f64,
    /// Probability a submit gets 429 (nothing created).
    pub submit_429_rate: f64,
    /// Probability a submit gets 503 `Service unavailable` (nothing created).
    pub submit_5xx_rate: f64,
    /// Probability a submit creates the generation but answers 504 `Generation timeout`,
    /// as if the response had been lost on the way back.
    pub submit_lost_response_rate: f64,
    /// aimlapi: how long an accepted submit's answer takes to come back (not time-scaled),
    /// as on a slow network path: the generation exists while the client still waits.
    #[serde(with = "humantime_serde")]
    pub submit_response_delay: Duration,
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
    /// aimlapi: output URLs are handed out under this base (`http://host:port`, optionally
    /// with a path prefix) instead of the address the client reached the simulator at: a
    /// provider whose link points at another port, another name or a path that answers 404.
    pub output_base: Option<String>,
    /// The output route answers `302 Found` to this URL instead of serving the file (a
    /// CDN link that redirects somewhere else).
    pub output_redirect: Option<String>,
    /// The output route announces the whole file, sends this many bytes of it, then
    /// nothing more while keeping the connection open (a stalled body).
    pub output_stall_after: Option<u64>,
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
    /// fal: how long a request's result is kept after it completes, before `time_scale`
    /// (fal keeps it 1 hour, 6 minutes for a result of 10 KB or more, which the
    /// simulator's results never are). Later the result fetch answers 404.
    #[serde(with = "humantime_serde")]
    pub fal_result_retention: Duration,
    /// fal: probability a request fails with the request error `fal_request_error_type`
    /// whatever `X-Fal-No-Retry` says (fal's own retries spent): COMPLETED with `error`
    /// and `error_type`, and the result answers the flat request-error body.
    pub fal_request_error_rate: f64,
    /// fal: probability a request's runner fails once, transiently. fal retries it and the
    /// request succeeds, unless it was submitted with `X-Fal-No-Retry: 1|true|yes`: then it
    /// fails with the request error `fal_request_error_type`.
    pub fal_runner_failure_rate: f64,
    /// fal: the request error type of the two knobs above (one of fal's documented types,
    /// e.g. `runner_disconnected`, `request_timeout`).
    pub fal_request_error_type: String,
    /// aimlapi: refuse keys the model's schema does not name ("Unrecognized key(s)"),
    /// instead of ignoring them as a non-strict zod object does (the default; the live
    /// gateway's choice is not documented).
    pub aimlapi_strict_keys: bool,
    /// Oxen: an Oxen generation's output (its `result_url`, and the SSE event's `url`) is
    /// served only to a request carrying `Authorization: Bearer <the owner's key>`; without
    /// it 401. Whether Oxen's `result_url` needs the key is not documented (ASSUMPTION,
    /// research O1: it is a repository API path, and Oxen repositories need a key).
    pub oxen_result_auth: bool,
    /// fal and Kling: probability a webhook or callback is never sent.
    pub push_drop_rate: f64,
    /// fal and Kling: probability a webhook or callback is sent twice.
    pub push_duplicate_rate: f64,
    /// fal and Kling: wait before sending a webhook or callback, before `time_scale`.
    #[serde(with = "humantime_serde")]
    pub push_delay: Duration,
    /// fal: sign webhooks with a key the simulator's JWKS does not publish.
    pub push_wrong_key: bool,
    /// fal: the signed timestamp lags the real time by this much (a skewed clock, a
    /// replay), not time-scaled.
    #[serde(with = "humantime_serde")]
    pub push_clock_skew: Duration,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            api_keys: Vec::new(),
            seed: None,
            time_scale: 1.0,
            latency_min: Duration::from_secs(200),
            latency_max: Duration::from_secs(240),
            latency_dist: LatencyDist::Uniform,
            latency_median: Duration::from_secs(200),
            latency_sigma: 0.5,
            submit_429_rate: 0.0,
            submit_5xx_rate: 0.0,
            submit_lost_response_rate: 0.0,
            submit_response_delay: Duration::ZERO,
            no_credits: false,
            poll_429_rate: 0.0,
            poll_5xx_rate: 0.0,
            retry_after_secs: None,
            stuck_rate: 0.0,
            error_rate: 0.0,
            stuck_prompts_containing: None,
            fail_prompts_containing: None,
            output_ttl: None,
            output_base: None,
            output_redirect: None,
            output_stall_after: None,
            drop_events_rate: 0.0,
            result_504_rate: 0.0,
            rate_limit: None,
            rate_burst: None,
            max_in_flight: None,
            fal_result_retention: Duration::from_secs(3600),
            fal_request_error_rate: 0.0,
            fal_runner_failure_rate: 0.0,
            fal_request_error_type: "runner_disconnected".to_owned(),
            aimlapi_strict_keys: false,
            oxen_result_auth: false,
            push_drop_rate: 0.0,
            push_duplicate_rate: 0.0,
            push_delay: Duration::ZERO,
            push_wrong_key: false,
            push_clock_skew: Duration::ZERO,
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
    /// is not a positive number, an output base or redirect that is not an http(s) URL,
    /// and a burst or in-flight cap of 0.
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
            ("fal_request_error_rate", self.fal_request_error_rate),
            ("fal_runner_failure_rate", self.fal_runner_failure_rate),
            ("push_drop_rate", self.push_drop_rate),
            ("push_duplicate_rate", self.push_duplicate_rate),
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
        if !self.latency_sigma.is_finite() || !(0.0..=5.0).contains(&self.latency_sigma) {
            return Err(format!(
                "latency_sigma must be within 0..=5, got {}",
                self.latency_sigma
            ));
        }
        if let Some(rate) = self.rate_limit {
            if !rate.is_finite() || rate <= 0.0 {
                return Err(format!("rate_limit must be finite and > 0, got {rate}"));
            }
        }
        for (name, url) in [
            ("output_base", &self.output_base),
            ("output_redirect", &self.output_redirect),
        ] {
            if let Some(u) = url {
                let ok = url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
                if !ok {
                    return Err(format!("{name} must be an http(s) URL, got {u:?}"));
                }
            }
        }
        if self.rate_burst == Some(0) {
            return Err("rate_burst must be >= 1".to_owned());
        }
        if self.max_in_flight == Some(0) {
            return Err("max_in_flight must be >= 1".to_owned());
        }
        if crate::fal::request_error(&self.fal_request_error_type).is_none() {
            return Err(format!(
                "fal_request_error_type must be one of fal's request error types, got {:?}",
                self.fal_request_error_type
            ));
        }
        Ok(())
    }
}
