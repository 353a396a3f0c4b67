//! Completion-time samples in Redis, the learned poll schedule's memory: one capped list
//! per provider × model (× output duration where the batch sets one),
//! `latency:<provider>:<model>[:<n>s]`, newest first, each entry `lo:hi` milliseconds
//! from the submit ([`Sample`]). Every worker appends on every completion it detects
//! (LPUSH in one small script, trimmed back to [`MAX_SAMPLES`] whenever it runs 32 past
//! it, so the ring follows a shift in the provider's latency by forgetting and costs
//! about two commands per completion), and reads the newest [`MAX_SAMPLES`] entries of at
//! most 40 bytes each: a planted huge list or huge entry never reaches the worker, and an
//! entry that does not parse is dropped (Redis contents are untrusted). A key of the wrong
//! type reads as empty and is replaced by the next write.

use super::{Queue, QueueError};
use crate::model::{ModelKind, ProviderName};
use crate::upstream::learned::{Sample, MAX_SAMPLES};
use redis::Script;
use std::sync::LazyLock;

/// A ring nobody writes to for this long (a provider or model no longer used) expires.
const RING_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// A ring may run this many entries past its cap before a write trims it: the trim (and
/// the expiry's renewal) run once per this many completions instead of on each.
const RING_SLACK: u64 = 32;

/// ARGV: prefix, key suffix, entry, cap, ttl, slack. The list is trimmed back to the cap
/// once it passes cap + slack, and its expiry renewed on its first entry and on every
/// slack-th length; readers take only the newest `cap`.
static RECORD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local key = ARGV[1] .. 'latency:' .. ARGV[2]
local n = redis.pcall('LPUSH', key, ARGV[3])
if type(n) == 'table' and n.err then
  redis.call('DEL', key)
  n = redis.call('LPUSH', key, ARGV[3])
end
local cap, slack = tonumber(ARGV[4]), tonumber(ARGV[6])
if n > cap + slack then
  redis.call('LTRIM', key, 0, cap - 1)
end
if n == 1 or n % slack == 0 then
  redis.call('PEXPIRE', key, ARGV[5])
end
return 1
",
    )
});

/// ARGV: prefix, key suffix, cap. Entries over 40 bytes stay in Redis.
static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local key = ARGV[1] .. 'latency:' .. ARGV[2]
local r = redis.pcall('LRANGE', key, 0, tonumber(ARGV[3]) - 1)
local out = {}
if type(r) ~= 'table' or r.err then return out end
for i = 1, #r do
  if string.len(r[i]) <= 40 then out[#out + 1] = r[i] end
end
return out
",
    )
});

/// Which distribution a job's completion belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LatencyKey(String);

impl LatencyKey {
    /// Provider × model, and the output duration where the batch sets one (a 10 s output
    /// takes longer than a 5 s one).
    pub fn new(provider: ProviderName, model: ModelKind, duration: Option<u32>) -> Self {
        let mut k = format!("{provider}:{}", model.as_str());
        if let Some(d) = duration {
            k.push_str(&format!(":{d}s"));
        }
        LatencyKey(k)
    }

    /// The key's name after the namespace prefix (`latency:<…>`).
    pub fn name(&self) -> String {
        format!("latency:{}", self.0)
    }
}

impl Queue {
    /// Adds one completion to its ring (newest first, capped at [`MAX_SAMPLES`]).
    pub async fn record_latency(&self, key: &LatencyKey, s: Sample) -> Result<(), QueueError> {
        let a = args![
            key.0.as_str(),
            s.encode(),
            MAX_SAMPLES as u64,
            RING_TTL_MS,
            RING_SLACK
        ];
        self.eval::<i64>(&RECORD, &a).await.map(|_| ())
    }

    /// The ring's samples, newest first: at most [`MAX_SAMPLES`], garbage dropped.
    pub async fn latency_samples(&self, key: &LatencyKey) -> Result<Vec<Sample>, QueueError> {
        let a = args![key.0.as_str(), MAX_SAMPLES as u64];
        let raw: Vec<Vec<u8>> = self.eval(&READ, &a).await?;
        Ok(raw.iter().filter_map(|r| Sample::decode(r)).collect())
    }
}
