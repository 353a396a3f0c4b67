//! The counters a simulator keeps since start (`GET /sim/stats`), in all and per provider
//! protocol.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// Requests to the output route that carried an `Authorization` header (any scheme,
    /// any value, answered or not): where a client sends its key with a download.
    pub downloads_with_authorization: u64,
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
    /// Per generation seen terminal by a poll: the first such poll minus the time it
    /// ended, in simulated seconds (real seconds ÷ its `time_scale`). Push deliveries
    /// (Oxen SSE) count not at all: the detection is the client's poll.
    pub detection_delay_s: Spread,
    /// Per generation seen terminal by a poll: its polls, up to and including that one.
    pub polls_per_generation: Spread,
}

/// A distribution of per-generation figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Spread {
    pub count: u64,
    pub mean: f64,
    pub median: f64,
    pub p90: f64,
    pub max: f64,
}

impl Spread {
    /// Nearest-rank median and p90, mean and max of `v` (all 0 when empty).
    pub fn of(mut v: Vec<f64>) -> Spread {
        if v.is_empty() {
            return Spread::default();
        }
        v.sort_by(f64::total_cmp);
        let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Spread {
            count: v.len() as u64,
            mean: v.iter().sum::<f64>() / v.len() as f64,
            median: rank(0.5),
            p90: rank(0.9),
            max: v[v.len() - 1],
        }
    }
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
    /// fal: transient runner failures fal retried itself (`fal_runner_failure_rate`
    /// without `X-Fal-No-Retry`).
    pub runner_retries: u64,
    /// fal: accepted submits that carried `X-Fal-No-Retry: 1|true|yes` (fal's own retries
    /// turned off).
    pub no_retry_submits: u64,
    /// fal: files stored by its storage API (CDN v3 upload, multipart, or initiate + PUT).
    pub uploads_total: u64,
    /// Bytes of request bodies received under this protocol's routes (submits, polls,
    /// storage uploads), counted as they arrive, whatever the answer.
    pub request_bytes_total: u64,
    pub rate_limited_total: u64,
    pub server_errors_total: u64,
    pub unauthorized_total: u64,
    pub validation_errors_total: u64,
    /// `SimStats::detection_delay_s` for this protocol's generations.
    pub detection_delay_s: Spread,
    /// `SimStats::polls_per_generation` for this protocol's generations.
    pub polls_per_generation: Spread,
}
