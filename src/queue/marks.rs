//! Review marks: a person's *keep* or *reject* on each variant of a batch, one hash per
//! batch (`marks:<batch>`, job id → `keep` | `reject`). Bounded by construction: the
//! script writes a mark only for a job of that batch (its record exists and names the
//! batch), so the hash never holds more fields than the batch has jobs; the batch's purge
//! (`restyle purge`, retention) deletes it with the records.

use super::{Queue, QueueError};
use redis::Script;
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// What a reviewer said about one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mark {
    Keep,
    Reject,
}

impl Mark {
    pub fn as_str(self) -> &'static str {
        match self {
            Mark::Keep => "keep",
            Mark::Reject => "reject",
        }
    }

    /// `keep` or `reject`; anything else is `None`.
    pub fn parse(s: &str) -> Option<Mark> {
        match s {
            "keep" => Some(Mark::Keep),
            "reject" => Some(Mark::Reject),
            _ => None,
        }
    }
}

impl serde::Serialize for Mark {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What setting a mark did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkSet {
    /// Written (or cleared).
    Done,
    /// No such batch in Redis.
    NoBatch,
    /// The job is not one of the batch's.
    NotInBatch,
}

/// KEYS[1] the ready list (hash tag); ARGV: prefix, batch, job, mark ('' clears).
/// 1 done, 0 no batch, -1 the job is not the batch's.
static SET_MARK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local p, bid, jid, mark = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', p .. 'batch:' .. bid) == 0 then return 0 end
if redis.call('HGET', p .. 'job:' .. jid, 'batch') ~= bid then return -1 end
local mkey = p .. 'marks:' .. bid
if mark == '' then redis.call('HDEL', mkey, jid) else redis.call('HSET', mkey, jid, mark) end
return 1
"#,
    )
});

impl Queue {
    /// Sets (or with `None` clears) the mark of `job_id`, a job of `batch_id`. The caller
    /// checks the ids' form; the script checks the job belongs to the batch.
    pub async fn set_mark(
        &self,
        batch_id: &str,
        job_id: &str,
        mark: Option<Mark>,
    ) -> Result<MarkSet, QueueError> {
        let m = mark.map(Mark::as_str).unwrap_or("");
        let n: i64 = self.eval(&SET_MARK, &args![batch_id, job_id, m]).await?;
        Ok(match n {
            1 => MarkSet::Done,
            0 => MarkSet::NoBatch,
            _ => MarkSet::NotInBatch,
        })
    }

    /// The batch's marks by job id (values that are no mark are skipped).
    pub async fn marks(&self, batch_id: &str) -> Result<BTreeMap<String, Mark>, QueueError> {
        let key = self.keys.marks(batch_id);
        let raw: Vec<(String, String)> = self
            .retry(|mut c| {
                let key = key.clone();
                async move { redis::AsyncCommands::hgetall(&mut c, key).await }
            })
            .await?;
        Ok(raw
            .into_iter()
            .filter_map(|(job, m)| Mark::parse(&m).map(|m| (job, m)))
            .collect())
    }
}
