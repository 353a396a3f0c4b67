//! Validation of the general sections: raw `[redis]`, `[queue]`, `[worker]`, `[poll]`,
//! `[retry]`, `[output]`, `[limits]`, `[egress]` and `[push]` into their settings types, each
//! section checked by its own function, every failure naming its key. `[providers.*]` is
//! in `providers`, `[hooks.*]` in `hooks`.

use super::raw::{
    Raw, RawEgress, RawOutput, RawPoll, RawPush, RawQueue, RawRedis, RawRetry, RawWorker,
};
use super::{invalid, positive, ConfigError, Settings};
use super::{EgressSettings, PushSettings, WorkerSettings};
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
            limits: crate::batch::BatchLimits {
                store_uploads: !self.output.store.trim().is_empty()
                    && self.output.store.contains("://")
                    && !self.output.store.trim_start().starts_with("file:"),
                max_video_bytes: self.limits.max_video_bytes,
                max_batch_file_bytes: self.limits.max_batch_file_bytes,
                max_prompt_file_bytes: self.limits.max_prompt_file_bytes,
                hooks: hooks.keys().cloned().collect(),
            },
            output: output(self.output)?,
            providers,
            egress: egress(self.egress)?,
            push: push(self.push)?,
            serve: super::serve::validate(self.serve)?,
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
    let (dir, store) = super::store::location(&o.store, o.dir)?;
    Ok(OutputSettings {
        dir,
        max_download_bytes: o.max_download_bytes,
        allow_http: o.allow_http,
        connect_timeout: positive("output.connect_timeout", o.connect_timeout)?,
        idle_timeout: positive("output.idle_timeout", o.idle_timeout)?,
        store,
        store_endpoint: super::store::endpoint(o.store_endpoint.as_deref())?,
        store_ca_file: o.store_ca_file,
        link_ttl: super::store::link_ttl(o.link_ttl)?,
        retention: o.retention,
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

/// `[push]`: a public URL providers can reach (https, or http on a loopback host for local
/// runs), a secret of at least 16 bytes whenever it is set, and bounded receiver limits.
fn push(p: RawPush) -> Result<PushSettings, ConfigError> {
    let public_url = match p.public_url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(public_url(raw)?),
    };
    let secret = p.secret.filter(|s| !s.expose_secret().is_empty());
    if let Some(s) = &secret {
        if s.expose_secret().len() < 16 {
            return Err(invalid("push.secret", "must be at least 16 bytes"));
        }
    }
    if public_url.is_some() && secret.is_none() {
        return Err(invalid(
            "push.secret",
            "must be set when push.public_url is (RESTYLE__PUSH__SECRET)",
        ));
    }
    if !(1024..=16 * 1024 * 1024).contains(&p.max_body_bytes) {
        return Err(invalid("push.max_body_bytes", "must be 1024–16777216"));
    }
    if !(1..=10_000).contains(&p.max_concurrency) {
        return Err(invalid("push.max_concurrency", "must be 1–10000"));
    }
    Ok(PushSettings {
        public_url,
        secret,
        max_body_bytes: p.max_body_bytes,
        max_concurrency: p.max_concurrency,
        request_timeout: positive("push.request_timeout", p.request_timeout)?,
        timestamp_tolerance: positive("push.timestamp_tolerance", p.timestamp_tolerance)?,
        jwks_ttl: positive("push.jwks_ttl", p.jwks_ttl)?,
    })
}

fn public_url(raw: &str) -> Result<url::Url, ConfigError> {
    let key = "push.public_url";
    let u = url::Url::parse(raw).map_err(|e| invalid(key, format!("not a URL: {e}")))?;
    if !u.username().is_empty()
        || u.password().is_some()
        || u.query().is_some()
        || u.fragment().is_some()
    {
        return Err(invalid(
            key,
            "must not carry credentials, a query or a fragment",
        ));
    }
    let loopback = match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match u.scheme() {
        "https" if u.host().is_some() => Ok(u),
        "http" if loopback => Ok(u),
        _ => Err(invalid(
            key,
            "must be an https URL (http only on a loopback host, for local runs)",
        )),
    }
}
