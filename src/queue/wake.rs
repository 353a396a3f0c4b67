//! Blocking claims: an idle worker waits on Redis for work instead of asking again and
//! again. A claim that finds nothing lists the worker in `idle` (scored by when it looks
//! again on its own: the earliest parked job's due time, at most `queue.idle_poll`) and the
//! worker then blocks on the `wake` list (`BLPOP`) until that time. Every script that makes
//! work ready — enqueue, a release, a parked job made due (poke, operator moves), a
//! wait list's wake-up for a slot, budget or resume, a sweep — pushes a token there when
//! some worker is idle, and a woken worker that claims a full batch passes it on, so a
//! burst wakes as many workers as it needs (see `WAKE_LUA` in `scripts`).
//!
//! The blocking call runs on a connection of its own: on the queue's multiplexed one it
//! would stall every other call of the process for as long as it waits. It is bounded by
//! its timeout (and the connection's response timeout past that), and a connection that
//! failed is opened again on the next wait.

use super::conn::{self, Conn};
use super::{Queue, QueueError};
use crate::config::RedisSettings;
use std::time::Duration;

/// How long one blocking wait may last at most, whatever the caller asks.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// An idle worker's own connection for blocking on the `wake` list.
pub struct Waiter {
    redis: RedisSettings,
    key: String,
    conn: Option<Conn>,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl Queue {
    /// A waiter for this namespace's wake-ups (connects on first use).
    pub fn waiter(&self) -> Waiter {
        let mut redis = (*self.redis).clone();
        // The reply comes when the wait ends: allow for the longest wait on top (a link
        // that went silent is noticed that much later than a closed one).
        redis.response_timeout += self.settings.idle_poll.min(MAX_WAIT);
        Waiter {
            redis,
            key: self.keys.wake(),
            conn: None,
        }
    }
}

impl Waiter {
    /// Blocks until a wake-up token arrives or `timeout` passes (at least 1 ms, at most
    /// [`MAX_WAIT`]). Returns true when woken. On an error the connection is dropped (the
    /// next wait opens another) and the error returned; the caller pauses before it claims.
    pub async fn wait(&mut self, timeout: Duration) -> Result<bool, QueueError> {
        let timeout = timeout.clamp(Duration::from_millis(1), MAX_WAIT);
        let conn = match self.conn.as_mut() {
            Some(c) => c,
            None => {
                let c = conn::open(&self.redis, 1)
                    .await
                    .map_err(|e| QueueError::Unavailable {
                        url: self.redis.redacted_url(),
                        reason: e.to_string(),
                    })?;
                self.conn.insert(c)
            }
        };
        // BLPOP takes fractional seconds; 0 would mean forever, which the clamp rules out.
        let secs = format!("{:.3}", timeout.as_secs_f64());
        let reply: Result<Option<(String, String)>, _> = redis::cmd("BLPOP")
            .arg(&self.key)
            .arg(secs)
            .query_async(conn)
            .await;
        match reply {
            Ok(got) => Ok(got.is_some()),
            Err(e) => {
                self.conn = None;
                Err(QueueError::from_redis(&e))
            }
        }
    }
}
