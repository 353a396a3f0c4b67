//! Admission and pause state in Redis: the fleet-wide rate limiter and cool-down, the
//! in-flight slots, batch budgets, provider pauses, and waking the jobs that wait on them.

use super::{Budget, ProviderPause, ProviderView, Queue, QueueError};
use crate::money::Usd;
use redis::AsyncCommands;

/// What an admission gate script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateReply {
    Go,
    /// The provider's account is paused until this time (ms).
    Paused(u64),
    /// The batch's budget says no.
    Budget(Budget),
    /// The provider is at its in-flight cap.
    SlotFull,
    /// The fleet rate or a cool-down: try again in this many ms.
    RateWait(u64),
}

impl GateReply {
    fn from_code(code: i64, n: u64) -> Self {
        match code {
            0 => GateReply::Go,
            1 => GateReply::Paused(n),
            2 => GateReply::Budget(Budget::Exceeded),
            3 => GateReply::Budget(Budget::UnknownCost),
            4 => GateReply::SlotFull,
            _ => GateReply::RateWait(n),
        }
    }
}

/// A read of admission state that may be damaged: a reply that is not what it should be
/// (a key of the wrong type, a value that is not text) reads as absent; only Redis trouble
/// worth retrying stays an error.
fn lenient<T: Default>(r: redis::RedisResult<T>) -> redis::RedisResult<T> {
    match r {
        Err(e) if !super::transient(&e) => Ok(T::default()),
        other => other,
    }
}

impl Queue {
    /// The gate before a submit, in one round trip (see `GATE_SUBMIT`): the account
    /// pause, the batch budget, the in-flight slot (`cap` > 0) and, when `rate` is given
    /// as (interval_ms, tolerance_ms), the fleet-wide rate and cool-down.
    pub async fn gate_submit(
        &self,
        provider: &str,
        job: (&str, &str),
        cost: Option<Usd>,
        slot: (u32, u64),
        rate: Option<(f64, f64)>,
    ) -> Result<GateReply, QueueError> {
        let (batch_id, job_id) = job;
        let cost = cost.map(Usd::to_wire).unwrap_or_default();
        let (global, t, tau) = rate.map_or(("", 0.0, 0.0), |(t, tau)| ("1", t, tau));
        let a = args![
            provider,
            self.now_ms(),
            batch_id,
            job_id,
            cost,
            slot.0,
            slot.1,
            global,
            t,
            tau
        ];
        let (code, n, repaired): (i64, u64, redis::Value) =
            self.eval(&self.scripts.gate_submit, &a).await?;
        super::warn_repaired(provider, &repaired);
        Ok(GateReply::from_code(code, n))
    }

    /// The gate before a poll, in one round trip: the account pause, then (when `rate`
    /// is given) the fleet-wide rate and cool-down.
    pub async fn gate_poll(
        &self,
        provider: &str,
        rate: Option<(f64, f64)>,
    ) -> Result<GateReply, QueueError> {
        let (global, t, tau) = rate.map_or(("", 0.0, 0.0), |(t, tau)| ("1", t, tau));
        let a = args![provider, self.now_ms(), global, t, tau];
        let (code, n, repaired): (i64, u64, redis::Value) =
            self.eval(&self.scripts.gate_poll, &a).await?;
        super::warn_repaired(provider, &repaired);
        Ok(GateReply::from_code(code, n))
    }

    /// Adds (provider, second, count) request counts to the fleet's per-second counters.
    pub async fn add_rates(
        &self,
        counts: &[(crate::model::ProviderName, u64, u64)],
    ) -> Result<(), QueueError> {
        let mut a: Vec<Vec<u8>> = Vec::new();
        for (p, s, n) in counts {
            a.extend(args![p.as_str(), s, n]);
        }
        let repaired: redis::Value = self.eval(&self.scripts.add_rates, &a).await?;
        super::warn_repaired("rates", &repaired);
        Ok(())
    }

    /// Pauses every request to the provider for `ms` (extends, never shortens).
    /// Returns the end of the cool-down (Redis clock, ms).
    pub async fn cooldown(&self, provider: &str, ms: u64) -> Result<u64, QueueError> {
        let (until, repaired): (u64, redis::Value) = self
            .eval(&self.scripts.cooldown, &args![provider, ms])
            .await?;
        super::warn_repaired(provider, &repaired);
        Ok(until)
    }

    /// Sets a batch's budget; returns how many jobs that waited for budget were woken.
    pub async fn set_budget(&self, batch_id: &str, max_cost: Usd) -> Result<u64, QueueError> {
        let a = args![batch_id, max_cost.to_wire()];
        self.eval(&self.scripts.set_budget, &a).await
    }

    /// Jobs of the batch waiting for budget.
    pub async fn budget_waiting(&self, batch_id: &str) -> Result<u64, QueueError> {
        let key = format!("{}budget:{batch_id}", self.keys.prefix());
        self.retry(|mut c| {
            let key = key.clone();
            async move { c.llen(key).await }
        })
        .await
    }

    /// A provider event: the job of `upstream_id`, if parked, becomes due now.
    pub async fn poke(&self, provider: &str, upstream_id: &str) -> Result<bool, QueueError> {
        let a = args![provider, upstream_id, self.now_ms()];
        let moved: i64 = self.eval(&self.scripts.poke, &a).await?;
        Ok(moved == 1)
    }

    /// Lifts a provider's account pause; returns how many waiting jobs were woken.
    pub async fn resume_provider(&self, provider: &str) -> Result<u64, QueueError> {
        self.eval(&self.scripts.resume, &args![provider]).await
    }

    /// A provider's admission state (in flight, waiters, rate, cool-down). Read as it is:
    /// a key of the wrong type counts as empty, a value that is not a number as absent.
    pub async fn provider_view(&self, provider: &str) -> Result<ProviderView, QueueError> {
        let p = self.keys.prefix().to_string();
        let number = |v: &redis::Value| -> Option<u64> {
            let text: String = redis::from_redis_value(v.clone()).ok()?;
            text.trim().parse::<f64>().ok().map(|n| n.max(0.0) as u64)
        };
        let replies: Vec<redis::Value> = self
            .retry(|mut c| {
                let p = p.clone();
                async move {
                    redis::pipe()
                        .ignore_errors()
                        .zcount(format!("{p}slots:{provider}"), self.now_ms(), "+inf")
                        .llen(format!("{p}waiting:{provider}"))
                        .llen(format!("{p}paused:{provider}"))
                        .hget(format!("{p}pause:{provider}"), "cooldown")
                        .cmd("TIME")
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        let at = |i: usize| replies.get(i).and_then(number);
        let time: (u64, u64) = replies
            .get(4)
            .and_then(|t| redis::from_redis_value(t.clone()).ok())
            .unwrap_or_default();
        let now = time.0 * 1000 + time.1 / 1000;
        // The second before the last: every running worker has added its count of it
        // (`admission::rates`).
        let last_sec = (now / 1000).saturating_sub(2);
        let key = format!("{p}rate:{provider}:{last_sec}");
        let rate: Option<String> = self
            .retry(|mut c| {
                let key = key.clone();
                async move { lenient(c.get(key).await) }
            })
            .await?;
        Ok(ProviderView {
            in_flight: at(0).unwrap_or(0),
            waiting_for_slot: at(1).unwrap_or(0),
            waiting_for_resume: at(2).unwrap_or(0),
            rate_last_second: rate.and_then(|r| r.parse().ok()).unwrap_or(0),
            cooldown_ms: at(3).map_or(0, |c| c.saturating_sub(now)),
        })
    }

    /// The pause recorded for a provider, if any (expired pauses included).
    pub async fn provider_pause(
        &self,
        provider: &str,
    ) -> Result<Option<ProviderPause>, QueueError> {
        let key = self.keys.pause(provider);
        let fields: (Option<Vec<u8>>, Option<Vec<u8>>) = self
            .retry(|mut c| {
                let key = key.clone();
                async move {
                    // A pause key of the wrong type is no pause (the gate deletes it).
                    let fields = redis::cmd("HMGET")
                        .arg(key)
                        .arg("message")
                        .arg("until")
                        .query_async(&mut c)
                        .await;
                    lenient(fields)
                }
            })
            .await?;
        let (message, until) = fields;
        let until = until.and_then(|u| String::from_utf8(u).ok()?.trim().parse().ok());
        Ok(match (message, until) {
            (Some(message), Some(until)) => Some(ProviderPause {
                message: String::from_utf8_lossy(&message).into_owned(),
                until,
            }),
            // An end that is not a time is no pause (the gate deletes it).
            _ => None,
        })
    }

    /// Pauses a provider for every worker until `until` (ms).
    pub async fn set_provider_pause(
        &self,
        provider: &str,
        message: &str,
        until: u64,
    ) -> Result<(), QueueError> {
        let key = self.keys.pause(provider);
        self.retry(|mut c| {
            let key = key.clone();
            async move {
                redis::cmd("HSET")
                    .arg(key)
                    .arg("message")
                    .arg(message)
                    .arg("until")
                    .arg(until)
                    .query_async::<()>(&mut c)
                    .await
            }
        })
        .await
    }

    /// Lifts a provider pause (a 429 cool-down in the same hash stays).
    pub async fn clear_provider_pause(&self, provider: &str) -> Result<(), QueueError> {
        let key = self.keys.pause(provider);
        self.retry(|mut c| {
            let key = key.clone();
            async move { lenient(c.hdel::<_, _, ()>(key, &["message", "until"]).await) }
        })
        .await
    }
}
