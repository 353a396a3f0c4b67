//! Validation of the general sections: raw `[redis]`, `[queue]`, `[worker]`, `[poll]`,
//! `[retry]`, `[output]`, `[limits]` and `[egress]` into their settings types, each
//! section checked by its own function, every failure naming its key. `[providers.*]` is
//! in `providers`, `[hooks.*]` in `hooks`.

use super::raw::{Raw, RawEgress, RawOutput, RawPoll, RawQueue, RawRedis, RawRetry, RawWorker};
use super::{invalid, positive, ConfigError, Settings};
use super::{EgressSettings, WorkerSettings};
use super::{OutputSettings, PollSettings, QueueSettings, RedisSettings, RetrySettings};
use secrecy::ExposeSecret;

impl Raw {
    /// Checks every value and assembles [`Settings`].
    pub(super) fn validate(self) -> Result<Settings, ConfigError> {
        let redis = redis(self.redis)?;
        let queue = queue(self.queue)?;
        let worker = worker(self.worker)?;
        let retry = retry(self.retry)?;
        let poll = poll(&self.poll)?;
        let learned_poll = super::providers::learned(
            "learned_poll",
            self.learned_poll.enabled,
            self.learned_poll.min_samples,
        )?;
        let providers = super::providers::validate(self.providers, poll, learned_poll)?;
        let hooks = super::hooks::validate(self.hooks, self.output.allow_http)?;
        Ok(Settings {
            redis,
            queue,
            worker,
            poll,
            learned_poll,
            retry,
            output: output(self.output)?,
            limits: crate::batch::BatchLimits {
                max_video_bytes: self.limits.max_video_bytes,
                max_batch_file_bytes: self.limits.max_batch_file_bytes,
                max_prompt_file_bytes: self.limits.max_prompt_file_bytes,
                hooks: hooks.keys().cloned().collect(),
            },
            providers,
            egress: egress(self.egress)?,
            hooks,
        })
    }
}

/// The Redis URL schemes the client speaks (TCP, TLS, a Unix socket).
const REDIS_SCHEMES: &[&str] = &["redis://", "rediss://", "unix://", "redis+unix://"];

fn redis(r: RawRedis) -> Result<RedisSettings, ConfigError> {
    let url = r.url.expose_secret();
    if !REDIS_SCHEMES.iter().any(|s| url.starts_with(s)) {
        return Err(invalid(
            "redis.url",
            format!("must start with {}", REDIS_SCHEMES.join(", ")),
        ));
    }
    let ns = &r.namespace;
    if ns.is_empty()
        || ns.len() > 64
        || !ns
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(invalid(
            "redis.namespace",
            "must be 1–64 characters of [A-Za-z0-9_-]",
        ));
    }
    Ok(RedisSettings {
        connect_timeout: positive("redis.connect_timeout", r.connect_timeout)?,
        response_timeout: positive("redis.response_timeout", r.response_timeout)?,
        url: r.url,
        namespace: r.namespace,
        cluster: r.cluster,
        tls_ca_file: r.tls_ca_file,
        durable_timeout: positive("redis.durable_timeout", r.durable_timeout)?,
        require_durable: r.require_durable,
    })
}

fn queue(q: RawQueue) -> Result<QueueSettings, ConfigError> {
    let lease = positive("queue.lease", q.lease)?;
    let renew_every = positive("queue.renew_every", q.renew_every)?;
    if renew_every * 2 > lease {
        return Err(invalid(
            "queue.renew_every",
            "must be at most half of queue.lease, so one missed renewal loses nothing",
        ));
    }
    Ok(QueueSettings {
        lease,
        renew_every,
        idle_poll: positive("queue.idle_poll", q.idle_poll)?,
        promote_chunk: q.promote_chunk.max(1),
        sweep_chunk: q.sweep_chunk.max(1),
    })
}

fn worker(w: RawWorker) -> Result<WorkerSettings, ConfigError> {
    if w.concurrency == 0 || w.concurrency > 10_000 {
        return Err(invalid("worker.concurrency", "must be 1–10000"));
    }
    Ok(WorkerSettings {
        concurrency: w.concurrency,
        shutdown_grace: w.shutdown_grace,
    })
}

fn retry(r: RawRetry) -> Result<RetrySettings, ConfigError> {
    if r.max_attempts == 0 {
        return Err(invalid("retry.max_attempts", "must be at least 1"));
    }
    Ok(RetrySettings {
        max_attempts: r.max_attempts,
        base_delay: positive("retry.base_delay", r.base_delay)?,
        max_delay: positive("retry.max_delay", r.max_delay)?,
        account_pause: positive("retry.account_pause", r.account_pause)?,
    })
}

fn poll(p: &RawPoll) -> Result<PollSettings, ConfigError> {
    Ok(PollSettings {
        first_delay: positive("poll.first_delay", p.first_delay)?,
        max_interval: positive("poll.max_interval", p.max_interval)?,
        deadline: positive("poll.deadline", p.deadline)?,
    })
}

fn output(o: RawOutput) -> Result<OutputSettings, ConfigError> {
    Ok(OutputSettings {
        dir: o.dir,
        max_download_bytes: o.max_download_bytes,
        allow_http: o.allow_http,
        connect_timeout: positive("output.connect_timeout", o.connect_timeout)?,
        idle_timeout: positive("output.idle_timeout", o.idle_timeout)?,
    })
}

fn egress(e: RawEgress) -> Result<EgressSettings, ConfigError> {
    let mut allow = Vec::with_capacity(e.allow.len());
    for raw in &e.allow {
        let entry = raw
            .parse()
            .map_err(|why| invalid("egress.allow", format!("entry {raw:?} {why}")))?;
        allow.push(entry);
    }
    Ok(EgressSettings { allow })
}
