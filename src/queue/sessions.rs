//! Console sign-ins in Redis, so every console process serves the same sessions and a
//! restart signs nobody out. A session is a hash under the SHA-256 of its id
//! (`session:<digest>`: token name and CSRF token) expiring with the session; the id
//! itself (the cookie's value, a bearer credential) is never stored. A sorted set of
//! digests by sign-in time on the Redis clock (`sessions`) bounds how many exist: past the
//! cap the oldest are ended first.

use super::{Queue, QueueError};
use redis::Script;
use std::sync::LazyLock;

/// A session as stored: whose token (its role is the token's, looked up on each request)
/// and its CSRF token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub name: String,
    pub csrf: String,
}

/// ARGV: prefix, digest, name, csrf, ttl_ms, cap.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local p, digest, ttl, cap = ARGV[1], ARGV[2], tonumber(ARGV[5]), tonumber(ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local idx = p .. 'sessions'
if redis.call('TYPE', idx).ok ~= 'zset' then redis.call('DEL', idx) end
redis.call('ZREMRANGEBYSCORE', idx, '-inf', now - ttl)
redis.call('ZADD', idx, now, digest)
local over = redis.call('ZCARD', idx) - cap
if over > 0 then
  local gone = redis.call('ZPOPMIN', idx, over)
  for i = 1, #gone, 2 do redis.call('DEL', p .. 'session:' .. gone[i]) end
end
local key = p .. 'session:' .. digest
redis.call('DEL', key)
redis.call('HSET', key, 'name', ARGV[3], 'csrf', ARGV[4])
redis.call('PEXPIRE', key, ttl)
redis.call('PEXPIRE', idx, ttl)
return 1
"#,
    )
});

/// ARGV: prefix, digest.
static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local p, digest = ARGV[1], ARGV[2]
redis.call('DEL', p .. 'session:' .. digest)
if redis.call('TYPE', p .. 'sessions').ok == 'zset' then
  redis.call('ZREM', p .. 'sessions', digest)
end
return 1
"#,
    )
});

impl Queue {
    /// Stores a new session under `digest` for `ttl_ms`, ending the oldest past `cap`.
    pub async fn session_create(
        &self,
        digest: &str,
        s: &StoredSession,
        ttl_ms: u64,
        cap: usize,
    ) -> Result<(), QueueError> {
        let a = args![digest, s.name.as_str(), s.csrf.as_str(), ttl_ms, cap];
        let _: i64 = self.eval(&CREATE, &a).await?;
        Ok(())
    }

    /// The live session stored under `digest`; `None` when there is none or it is not a
    /// whole one (a key of another type, a missing field).
    pub async fn session(&self, digest: &str) -> Result<Option<StoredSession>, QueueError> {
        let key = format!("{}session:{digest}", self.keys.prefix());
        type Fields = (Option<String>, Option<String>);
        let got: Fields = self
            .retry(|mut c| {
                let key = key.clone();
                async move {
                    let r: redis::RedisResult<Fields> = redis::cmd("HMGET")
                        .arg(key)
                        .arg(&["name", "csrf"])
                        .query_async(&mut c)
                        .await;
                    // A key of another type, or fields that are not text: no session.
                    match r {
                        Err(e) if !super::transient(&e) => Ok((None, None)),
                        other => other,
                    }
                }
            })
            .await?;
        Ok(match got {
            (Some(name), Some(csrf)) => Some(StoredSession { name, csrf }),
            _ => None,
        })
    }

    /// Ends the session stored under `digest`.
    pub async fn session_remove(&self, digest: &str) -> Result<(), QueueError> {
        let _: i64 = self.eval(&REMOVE, &args![digest]).await?;
        Ok(())
    }
}
