//! What both benchmarks share: reading numeric knobs from the environment, the settings of
//! a run against the simulator, counting the commands Redis ran (`INFO commandstats`),
//! building a batch of N distinct prompts, and deleting a namespace afterwards.
#![allow(dead_code)] // each bench uses its own subset

use anyhow::anyhow;
use restyle::config::testing::TestSettings;
use restyle::model::{BatchShared, ModelKind, ProviderName, ValidatedBatch};
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

/// A positive number from the environment, or `default` when the variable is unset.
pub fn env_positive<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr + PartialOrd + Default,
{
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse::<T>()
            .ok()
            .filter(|n| *n > T::default())
            .ok_or_else(|| anyhow!("{name}={v:?} is not a positive number")),
        Err(_) => Ok(default),
    }
}

/// A run against the simulator: the bench's Redis namespace, the simulator as aimlapi
/// (accepting `key`), outputs in `out`. One description for the in-process side
/// (`.settings()`) and every `restyle worker` child (`.apply(&mut cmd)`).
pub fn sim_settings(
    redis_url: &str,
    namespace: &str,
    sim_url: &str,
    key: &str,
    out: &Path,
) -> TestSettings {
    TestSettings::new()
        .redis(redis_url, namespace)
        .provider_at(ProviderName::Aimlapi, sim_url, key)
        .output(out)
}

/// `INFO commandstats` as calls per command name (`cmdstat_` stripped).
pub async fn commandstats(
    conn: &mut impl redis::aio::ConnectionLike,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    let mut calls = BTreeMap::new();
    for line in text.lines() {
        let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let n = rest
            .split(',')
            .find_map(|kv| kv.strip_prefix("calls="))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("cannot read commandstats line {line:?}"))?;
        calls.insert(name.to_string(), n);
    }
    Ok(calls)
}

/// Deletes every key under `prefix` (so a shared `REDIS_URL` is left as it was found).
pub async fn drop_namespace(
    conn: &mut impl redis::aio::ConnectionLike,
    prefix: &str,
) -> anyhow::Result<()> {
    let pattern = format!("{prefix}*");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(5000)
            .query_async(conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<()>(conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// An edit batch on aimlapi with `n` distinct prompts.
pub fn batch(
    batch_id: &str,
    n: usize,
    video: &str,
    prompt: impl Fn(usize) -> String,
) -> ValidatedBatch {
    ValidatedBatch {
        shared: BatchShared::new(batch_id, ProviderName::Aimlapi, ModelKind::Edit, video),
        prompts: (0..n).map(prompt).collect(),
    }
}

/// Ordered JSON object (serde_json's map would sort the keys and bury `case`).
#[derive(Default)]
pub struct Line(Vec<(&'static str, serde_json::Value)>);

impl Line {
    pub fn add(&mut self, k: &'static str, v: impl Into<serde_json::Value>) -> &mut Self {
        self.0.push((k, v.into()));
        self
    }
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{v}", serde_json::Value::from(*k))?;
        }
        f.write_str("}")
    }
}
