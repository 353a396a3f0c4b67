//! Per-API-key limits as a provider enforces them (a token bucket for the request rate and
//! a cap on generations in flight), plus the log and per-second counts of API requests.

use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::state::{Knobs, SimState};

/// Entries kept by the request log; older ones are dropped first.
pub(crate) const REQUEST_LOG_CAP: usize = 100_000;
/// Seconds kept by the per-second request counters.
pub(crate) const PER_SECOND_WINDOW: u64 = 3600;

/// Which kind of API request a logged request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    /// A submit: `POST /v2/video/generations` (aimlapi), Oxen's enqueue, a fal submit or a
    /// Kling create.
    Submit,
    /// A poll: `GET /v2/video/generations` (aimlapi), an Oxen row, a fal status, result
    /// or cancel, a Kling query.
    Poll,
}

/// One authorized API request, as `GET /sim/requests` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLogEntry {
    /// Arrival time, Unix milliseconds.
    pub at_ms: u64,
    /// Submit or poll.
    pub kind: RequestKind,
    /// The HTTP status it was answered with.
    pub status: u16,
    /// A submit's path, where it says more than the kind (fal: the endpoint, hence the
    /// tier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The `mode` a Kling create asked for (`std`, `pro`; `pro` when none was sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// A token bucket that starts full and refills continuously.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Refills for the time since the last call, then takes one token if there is one.
    fn take(&mut self, now: Instant, rate: f64, capacity: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        if now > self.last {
            self.last = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One key's generations that were not yet terminal when last looked at.
#[derive(Debug, Default)]
struct Flight {
    /// End times of its non-stuck generations, soonest first.
    ends: BinaryHeap<Reverse<Instant>>,
    /// Its generations that never end.
    stuck: u64,
}

impl Flight {
    /// Generations created and not terminal at `now` (an end at or before `now` is terminal,
    /// as in the generation view).
    fn count_at(&mut self, now: Instant) -> u64 {
        while self.ends.peek().is_some_and(|Reverse(end)| *end <= now) {
            self.ends.pop();
        }
        self.ends.len() as u64 + self.stuck
    }
}

/// Per-key buckets and in-flight sets, and the request log.
#[derive(Debug, Default)]
pub(crate) struct Limits {
    buckets: HashMap<String, Bucket>,
    flights: HashMap<String, Flight>,
    log: VecDeque<RequestLogEntry>,
}

impl Limits {
    /// Takes one request token for `key`; always succeeds when `rate_limit` is unset.
    pub fn take_token(&mut self, key: &str, now: Instant, knobs: &Knobs) -> bool {
        let Some(rate) = knobs.rate_limit else {
            return true;
        };
        let capacity = f64::from(knobs.effective_burst().unwrap_or(1));
        let bucket = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        bucket.take(now, rate, capacity)
    }

    /// Forgets every bucket, so each key starts full again (after the rate knobs change).
    pub fn reset_buckets(&mut self) {
        self.buckets.clear();
    }

    /// Generations of `key` created and not yet terminal at `now` (stuck ones included).
    pub fn in_flight(&mut self, key: &str, now: Instant) -> u64 {
        self.flights.get_mut(key).map_or(0, |f| f.count_at(now))
    }

    /// Records a generation created for `key` ending at `end` (`None` = stuck); returns the
    /// key's in-flight count including it.
    pub fn track(&mut self, key: &str, end: Option<Instant>, now: Instant) -> u64 {
        let flight = self.flights.entry(key.to_owned()).or_default();
        match end {
            Some(end) => flight.ends.push(Reverse(end)),
            None => flight.stuck += 1,
        }
        flight.count_at(now)
    }

    /// Forgets one in-flight generation of `key` ending at `end` (`None` = stuck): a cancel.
    pub fn untrack(&mut self, key: &str, end: Option<Instant>) {
        let Some(flight) = self.flights.get_mut(key) else {
            return;
        };
        match end {
            None => flight.stuck = flight.stuck.saturating_sub(1),
            Some(end) => {
                let mut rest = std::mem::take(&mut flight.ends).into_vec();
                if let Some(pos) = rest.iter().position(|Reverse(e)| *e == end) {
                    rest.swap_remove(pos);
                }
                flight.ends = rest.into_iter().collect();
            }
        }
    }

    fn log(&mut self, entry: RequestLogEntry) {
        if self.log.len() >= REQUEST_LOG_CAP {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }
}

/// Adds one to `second` and drops seconds that fell out of the window behind the newest.
fn bump(map: &mut BTreeMap<u64, u64>, second: u64) {
    *map.entry(second).or_insert(0) += 1;
    let newest = map.last_key_value().map_or(second, |(k, _)| *k);
    while map
        .first_key_value()
        .is_some_and(|(k, _)| k + PER_SECOND_WINDOW <= newest)
    {
        map.pop_first();
    }
}

impl SimState {
    /// Every authorized API request still in the log (the last 100,000), oldest first.
    pub fn requests(&self) -> Vec<RequestLogEntry> {
        self.lock().limits.log.iter().cloned().collect()
    }

    /// Logs an authorized API request and counts it under its arrival second.
    pub(crate) fn record_request(
        &self,
        arrival: SystemTime,
        kind: RequestKind,
        status: u16,
        tag: crate::gate::Tag,
    ) {
        let since = arrival.duration_since(UNIX_EPOCH).unwrap_or_default();
        let at_ms = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
        let second = since.as_secs();
        let mut inner = self.lock();
        bump(&mut inner.stats.requests_per_second, second);
        if status != 429 {
            bump(&mut inner.stats.accepted_per_second, second);
        }
        inner.limits.log(RequestLogEntry {
            at_ms,
            kind,
            status,
            path: tag.path,
            mode: tag.mode,
        });
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_starts_full_and_refills_continuously() {
        let t0 = Instant::now();
        let mut b = Bucket {
            tokens: 3.0,
            last: t0,
        };
        assert!((0..3).all(|_| b.take(t0, 2.0, 3.0)));
        assert!(!b.take(t0, 2.0, 3.0));
        // 2 tokens/s: a quarter second is half a token, half a second is one.
        assert!(!b.take(t0 + Duration::from_millis(250), 2.0, 3.0));
        assert!(b.take(t0 + Duration::from_millis(500), 2.0, 3.0));
        // A long pause refills only up to the capacity.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| b.take(later, 2.0, 3.0)));
        assert!(!b.take(later, 2.0, 3.0));
    }

    #[test]
    fn in_flight_follows_the_clock() {
        let t0 = Instant::now();
        let mut l = Limits::default();
        assert_eq!(l.in_flight("k", t0), 0);
        assert_eq!(l.track("k", Some(t0 + Duration::from_secs(1)), t0), 1);
        assert_eq!(l.track("k", None, t0), 2);
        assert_eq!(l.track("j", Some(t0 + Duration::from_secs(5)), t0), 1);
        assert_eq!(l.in_flight("k", t0 + Duration::from_millis(999)), 2);
        assert_eq!(l.in_flight("k", t0 + Duration::from_secs(1)), 1);
        assert_eq!(l.in_flight("j", t0 + Duration::from_secs(1)), 1);
    }

    #[test]
    fn per_second_counts_keep_one_hour() {
        let mut m = BTreeMap::new();
        bump(&mut m, 100);
        bump(&mut m, 100);
        bump(&mut m, 100 + PER_SECOND_WINDOW - 1);
        assert_eq!(m.get(&100), Some(&2));
        bump(&mut m, 100 + PER_SECOND_WINDOW);
        assert_eq!(m.get(&100), None);
        assert_eq!(m.len(), 2);
    }
}
