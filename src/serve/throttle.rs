//! Failed tokens per client address: console sign-ins with a token that is not valid and
//! API requests with a bad bearer token. Each failure takes a cell of the address's
//! `governor` bucket (`[serve] auth_failures_per_minute` at once, refilled at that rate
//! per minute); the failure that finds the bucket empty locks the address out until a
//! cell is back, and while it is locked out every attempt from it is refused (429 with
//! `Retry-After`) before its token is even looked at, so a locked-out address learns
//! nothing about any token. The address is the TCP peer's (a proxy in front makes every
//! client one address; no forwarded header is trusted). Both maps are bounded.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most addresses tracked at once; beyond it the oldest are forgotten (pruned first).
const MAX_ADDRESSES: usize = 100_000;

/// The failure buckets and lock-outs of this process.
#[derive(Debug)]
pub struct Throttle {
    failures: DefaultKeyedRateLimiter<IpAddr>,
    locked: Mutex<HashMap<IpAddr, Instant>>,
}

impl Throttle {
    /// `per_minute` failures per address per minute (at least 1).
    pub fn new(per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute.max(1)).expect("at least 1");
        Throttle {
            failures: RateLimiter::keyed(Quota::per_minute(n)),
            locked: Mutex::new(HashMap::new()),
        }
    }

    /// How long `ip` is still locked out, if it is.
    pub fn locked_out(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut locked = self.locked.lock().expect("throttle lock");
        match locked.get(&ip) {
            Some(until) if *until > now => Some(*until - now),
            Some(_) => {
                locked.remove(&ip);
                None
            }
            None => None,
        }
    }

    /// Counts a failure from `ip`; returns the lock-out it earned when its bucket was
    /// empty.
    pub fn failed(&self, ip: IpAddr) -> Option<Duration> {
        if self.failures.len() > MAX_ADDRESSES {
            self.failures.retain_recent();
        }
        let wait = match self.failures.check_key(&ip) {
            Ok(()) => return None,
            Err(not_until) => not_until.wait_time_from(DefaultClock::default().now()),
        };
        let wait = wait.max(Duration::from_secs(1));
        let now = Instant::now();
        let mut locked = self.locked.lock().expect("throttle lock");
        if locked.len() >= MAX_ADDRESSES {
            locked.retain(|_, until| *until > now);
            if locked.len() >= MAX_ADDRESSES {
                if let Some(first) = locked.keys().next().copied() {
                    locked.remove(&first);
                }
            }
        }
        locked.insert(ip, now + wait);
        Some(wait)
    }
}

/// The request's client address, as an extractor ([`super::peer`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(super::peer(&parts.extensions)))
    }
}

/// Whole seconds for a `Retry-After` header (rounded up, at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_millis().div_ceil(1000) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failure_past_the_quota_locks_only_that_address_out() {
        let t = Throttle::new(3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(t.failed(a), None);
        }
        assert!(t.locked_out(a).is_none());
        let wait = t.failed(a).expect("the fourth failure in a minute");
        assert!(wait <= Duration::from_secs(20), "{wait:?}");
        assert!(t.locked_out(a).is_some());
        assert!(t.locked_out(b).is_none());
        assert_eq!(t.failed(b), None);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }
}
