//! Detecting the guarantee: `INFO` (version, `aof_enabled`, replicas online) and `CONFIG
//! GET append*` (the fsync policy; refused under some ACLs and managed services, then the
//! policy is unknown), decided by [`Facts::decide`].

use super::Durability;
use crate::queue::conn::Conn;
use crate::queue::{Queue, QueueError, RedisVersion};
use std::collections::HashMap;

/// What detection read from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    /// `redis_version` as (major, minor).
    pub version: (u32, u32),
    pub version_text: String,
    pub aof_enabled: bool,
    /// `appendfsync`, or why it could not be read (`CONFIG GET` refused).
    pub appendfsync: Result<String, String>,
    /// Replicas in state `online`.
    pub replicas: u32,
}

impl Facts {
    /// From the text of `INFO` and the answer to `CONFIG GET append*`.
    pub(crate) fn parse(info: &str, config: Result<HashMap<String, String>, String>) -> Facts {
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
                .map(str::to_string)
        };
        let version_text = field("redis_version").unwrap_or_default();
        let version = RedisVersion::from_info(info).map_or((0, 0), |v| (v.major, v.minor));
        let replicas = info
            .lines()
            .filter(|l| {
                let l = l.trim();
                l.strip_prefix("slave")
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                    && l.contains("state=online")
            })
            .count() as u32;
        let aof_info = field("aof_enabled").is_some_and(|v| v == "1");
        let (aof_enabled, appendfsync) = match config {
            Ok(map) => (
                map.get("appendonly").map_or(aof_info, |v| v == "yes"),
                map.get("appendfsync")
                    .cloned()
                    .ok_or_else(|| "CONFIG GET returned no appendfsync".to_string()),
            ),
            Err(e) => (aof_info, Err(e)),
        };
        Facts {
            version,
            version_text,
            aof_enabled,
            appendfsync,
            replicas,
        }
    }

    /// The strongest guarantee these facts support.
    pub(crate) fn decide(&self) -> Durability {
        let waitaof = self.version >= (7, 2);
        if waitaof && self.aof_enabled {
            return Durability::WaitAof {
                local: 1,
                replicas: self.replicas,
            };
        }
        if self.replicas > 0 {
            return Durability::WaitReplicas(self.replicas);
        }
        let v = &self.version_text;
        let no_wait = if waitaof {
            "no replicas to WAIT for".to_string()
        } else {
            format!("no replicas to WAIT for, and Redis {v} has no WAITAOF (7.2+)")
        };
        let (why, loss) = if !self.aof_enabled {
            (
                format!("AOF is off (appendonly no), {no_wait}"),
                "every write since the last RDB snapshot (all of them without one)",
            )
        } else {
            match self.appendfsync.as_deref() {
                Ok("always") => return Durability::FsyncAlways,
                Ok("everysec") => (
                    format!("the AOF is fsynced once a second (appendfsync everysec), {no_wait}"),
                    "up to ~1 s of writes",
                ),
                Ok(other) => (
                    format!(
                        "the AOF is fsynced when the OS likes (appendfsync {other}), {no_wait}"
                    ),
                    "up to ~30 s of writes",
                ),
                Err(e) => (
                    format!(
                        "AOF is on but its fsync policy is unknown (CONFIG GET refused: {e}), \
                         {no_wait}"
                    ),
                    "up to ~1 s of writes (more under appendfsync no)",
                ),
            }
        };
        Durability::None {
            why,
            loss: loss.to_string(),
        }
    }
}

impl Queue {
    pub(super) async fn detect_durability(&self) -> Result<Durability, QueueError> {
        if matches!(self.conn, Conn::Cluster(_)) {
            return Ok(Durability::None {
                why: "Redis Cluster (redis.cluster = true): restyle does not confirm writes \
                      on a cluster's shards"
                    .into(),
                loss: "what the namespace's shard had not fsynced or replicated (up to ~1 s \
                       under appendfsync everysec)"
                    .into(),
            });
        }
        let info = self
            .retry(|mut c| async move { redis::cmd("INFO").query_async::<String>(&mut c).await })
            .await;
        let info = match info {
            Ok(text) => text,
            Err(QueueError::Redis(e)) => {
                return Ok(Durability::None {
                    why: format!("INFO was refused ({e}), so no guarantee can be detected"),
                    loss: "up to ~1 s of writes under appendfsync everysec".into(),
                })
            }
            Err(e) => return Err(e),
        };
        let config = self
            .retry(|mut c| async move {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("append*")
                    .query_async::<HashMap<String, String>>(&mut c)
                    .await
            })
            .await;
        let config = match config {
            Ok(m) => Ok(m),
            // Refused (ACL, a managed Redis that renames CONFIG): fall back to INFO.
            Err(QueueError::Redis(e)) => Err(e),
            Err(e) => return Err(e),
        };
        Ok(Facts::parse(&info, config).decide())
    }
}
