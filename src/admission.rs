//! Admission control shared by every worker: a fleet-wide request rate (GCRA in Redis,
//! with `governor` smoothing each process in front), a fleet-wide cool-down after 429s,
//! and the in-flight cap (slots held from submit until terminal; scripts in `queue`).

mod rates;

pub use rates::FLUSH_EVERY;

use crate::config::{ProviderLimits, Settings};
use crate::model::ProviderName;
use crate::money::Usd;
use crate::queue::{Budget, GateReply, Queue, QueueError, SlotCtx};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

/// Which kind of call a request is, for the per-provider `rate_counts` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Submit,
    Poll,
}

/// What the gate before an upstream call decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Send the request now (for a submit: budget reserved and slot held).
    Go,
    /// The provider's account is paused until this time (ms).
    Paused(u64),
    /// The batch's budget says no.
    Budget(Budget),
    /// The provider is at its in-flight cap.
    SlotFull,
    /// Not for a while (a cool-down): park the job instead of holding a worker slot.
    Later(Duration),
}

/// The longest fleet-wide cool-down one 429 can set, whatever its `Retry-After` says
/// (seen: `Retry-After: 9999999999`).
pub const MAX_COOLDOWN: Duration = Duration::from_secs(300);

/// Waits up to this long inside a stage; longer waits park the job.
const MAX_INLINE_WAIT: Duration = Duration::from_millis(1500);

struct Limiter {
    limits: ProviderLimits,
    local: Option<DefaultDirectRateLimiter>,
}

impl Limiter {
    /// Whether calls of this kind count against the provider's rate (`rate_counts`).
    fn counts(&self, call: Call) -> bool {
        match call {
            Call::Submit => self.limits.count_submit,
            Call::Poll => self.limits.count_poll,
        }
    }
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Admission for every provider, for one worker process.
#[derive(Debug)]
pub struct Admission {
    queue: Queue,
    limiters: HashMap<ProviderName, Limiter>,
    slot_ttl_ms: u64,
    /// Requests let through, until [`Admission::report_rates`] adds them to the fleet's.
    tally: rates::Tally,
}

impl Admission {
    pub fn new(queue: Queue, settings: &Settings) -> Self {
        let limiters = settings
            .providers
            .iter()
            .map(|(name, p)| {
                let l = &p.limits;
                let local = (l.rate_limit > 0.0).then(|| {
                    let period = Duration::from_secs_f64(1.0 / l.rate_limit);
                    let burst = NonZeroU32::new(l.rate_burst).unwrap_or(NonZeroU32::MIN);
                    let quota = Quota::with_period(period)
                        .expect("positive period")
                        .allow_burst(burst);
                    RateLimiter::direct(quota)
                });
                (
                    *name,
                    Limiter {
                        limits: l.clone(),
                        local,
                    },
                )
            })
            .collect();
        // A slot outlives its job's next due time by two leases plus a renewal, so only
        // a job nobody has touched for that long loses it.
        let q = &settings.queue;
        let slot_ttl_ms = (q.lease * 2 + q.renew_every).as_millis() as u64;
        Admission {
            queue,
            limiters,
            slot_ttl_ms,
            tally: rates::Tally::default(),
        }
    }

    fn limits(&self, p: ProviderName) -> Option<&Limiter> {
        self.limiters.get(&p)
    }

    /// The slot context transitions of this provider's jobs carry.
    pub fn slot_ctx(&self, p: ProviderName) -> SlotCtx {
        SlotCtx {
            provider: p.to_string(),
            cap: self.limits(p).map_or(0, |l| l.limits.max_in_flight),
            ttl_ms: self.slot_ttl_ms,
        }
    }

    /// The fleet rate arguments for a call of this kind: `None` when the fleet-wide
    /// limiter does not apply (not global), (0, 0) when the call is not counted (the
    /// cool-down still applies).
    fn rate_args(&self, l: &Limiter, call: Call) -> Option<(f64, f64)> {
        if !l.limits.global {
            return None;
        }
        Some(if l.counts(call) && l.limits.rate_limit > 0.0 {
            let t = 1000.0 / l.limits.rate_limit;
            (t, t * f64::from(l.limits.rate_burst.saturating_sub(1)))
        } else {
            (0.0, 0.0)
        })
    }

    /// Smooths this process's own bursts so Redis is asked at most at the rate.
    async fn smooth(&self, l: &Limiter, call: Call) {
        if let (true, Some(local)) = (l.counts(call), &l.local) {
            local.until_ready().await;
        }
    }

    /// Everything before a submit in one script round trip: the account pause, the
    /// batch's budget (the job's estimated `cost` reserved once), the in-flight slot and
    /// the fleet rate. Short rate waits are waited out here; long ones park the job.
    pub async fn submit_gate(
        &self,
        p: ProviderName,
        batch_id: &str,
        job_id: &str,
        cost: Option<Usd>,
    ) -> Result<Gate, QueueError> {
        let (rate, cap) = match self.limits(p) {
            Some(l) => {
                self.smooth(l, Call::Submit).await;
                (self.rate_args(l, Call::Submit), l.limits.max_in_flight)
            }
            None => (None, 0),
        };
        loop {
            let reply = self
                .queue
                .gate_submit(
                    p.as_str(),
                    (batch_id, job_id),
                    cost,
                    (cap, self.slot_ttl_ms),
                    rate,
                )
                .await?;
            if let Some(gate) = self.settle(p, reply, rate.is_some()).await {
                return Ok(gate);
            }
        }
    }

    /// Everything before a poll in one round trip: the account pause and the fleet rate.
    pub async fn poll_gate(&self, p: ProviderName) -> Result<Gate, QueueError> {
        let rate = match self.limits(p) {
            Some(l) => {
                self.smooth(l, Call::Poll).await;
                self.rate_args(l, Call::Poll)
            }
            None => None,
        };
        loop {
            let reply = self.queue.gate_poll(p.as_str(), rate).await?;
            if let Some(gate) = self.settle(p, reply, rate.is_some()).await {
                return Ok(gate);
            }
        }
    }

    /// A gate's reply as a decision; `None` after a short rate wait (ask again). A request
    /// let through under the fleet limiter (`global`) is counted for the fleet's req/s.
    async fn settle(&self, p: ProviderName, reply: GateReply, global: bool) -> Option<Gate> {
        Some(match reply {
            GateReply::Go => {
                if global {
                    self.tally.count(p, self.queue.now_ms());
                }
                Gate::Go
            }
            GateReply::Paused(until) => Gate::Paused(until),
            GateReply::Budget(b) => Gate::Budget(b),
            GateReply::SlotFull => Gate::SlotFull,
            GateReply::RateWait(ms) => {
                let wait = Duration::from_millis(ms);
                if wait > MAX_INLINE_WAIT {
                    return Some(Gate::Later(wait));
                }
                crate::metrics::limiter_wait(p, wait.as_secs_f64());
                tokio::time::sleep(wait).await;
                return None;
            }
        })
    }

    /// A 429 from the provider: the whole fleet pauses that provider, for at most
    /// [`MAX_COOLDOWN`]. Returns the pause.
    pub async fn rate_limited(
        &self,
        p: ProviderName,
        retry_after: Option<Duration>,
    ) -> Result<Duration, QueueError> {
        let d = cooldown_for(retry_after, self.limits(p).map(|l| l.limits.cooldown));
        self.queue
            .cooldown(p.as_str(), d.as_millis() as u64)
            .await?;
        tracing::warn!(provider = %p, cooldown_ms = d.as_millis() as u64,
            "Provider answered 429: fleet-wide cool-down.");
        Ok(d)
    }
}

/// The cool-down after a 429: the provider's `Retry-After` (else the configured cool-down,
/// else 5 s), never longer than [`MAX_COOLDOWN`].
fn cooldown_for(retry_after: Option<Duration>, configured: Option<Duration>) -> Duration {
    retry_after
        .filter(|d| !d.is_zero())
        .or(configured)
        .unwrap_or(Duration::from_secs(5))
        .min(MAX_COOLDOWN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_retry_after_is_capped() {
        let huge = Some(Duration::from_secs(9_999_999_999));
        assert_eq!(cooldown_for(huge, None), MAX_COOLDOWN);
        assert_eq!(
            cooldown_for(Some(Duration::from_secs(7)), None),
            Duration::from_secs(7)
        );
        let cfg = Some(Duration::from_millis(200));
        assert_eq!(cooldown_for(None, cfg), Duration::from_millis(200));
        assert_eq!(
            cooldown_for(Some(Duration::ZERO), cfg),
            Duration::from_millis(200)
        );
    }
}
