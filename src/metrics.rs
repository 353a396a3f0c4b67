//! Prometheus metrics (every name `restyle_…`, labels bounded: never a job or batch id)
//! and the worker's `/metrics`, `/healthz` and `/readyz` listener.

use crate::job::JobState;
use crate::model::ProviderName;
use crate::queue::Queue;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once per process; later calls return the same handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ];
            PrometheusBuilder::new()
                .set_buckets(&buckets)
                .expect("valid buckets")
                .install_recorder()
                .expect("one metrics recorder per process")
        })
        .clone()
}

/// A job changed state.
pub fn transition(state: JobState) {
    counter!("restyle_job_transitions_total", "state" => state.as_str()).increment(1);
    if state == JobState::Dead {
        counter!("restyle_dead_jobs_total").increment(1);
    }
}

/// A stage (submit, poll, finish, announce) ran for `secs`.
pub fn stage(stage: &'static str, secs: f64) {
    histogram!("restyle_stage_duration_seconds", "stage" => stage).record(secs);
}

/// One upstream request and how it ended (`ok`, `retryable`, `ambiguous`, `job`,
/// `account`, `rate_limited`).
pub fn upstream(provider: ProviderName, call: &'static str, outcome: &'static str, secs: f64) {
    let p = provider.as_str();
    counter!("restyle_upstream_requests_total", "provider" => p, "call" => call, "outcome" => outcome)
        .increment(1);
    histogram!("restyle_upstream_request_duration_seconds", "provider" => p, "call" => call)
        .record(secs);
}

/// Time spent waiting for the fleet-wide limiter before a request.
pub fn limiter_wait(provider: ProviderName, secs: f64) {
    counter!("restyle_limiter_waits_total", "provider" => provider.as_str()).increment(1);
    gauge!("restyle_limiter_wait_seconds_total", "provider" => provider.as_str()).increment(secs);
}

/// A claim that failed (the fetcher pauses before the next, longer each time in a row).
pub fn claim_error() {
    counter!("restyle_claim_errors_total").increment(1);
}

/// Expired leases of dead workers returned to the queue.
pub fn lease_recoveries(n: u64) {
    counter!("restyle_lease_recoveries_total").increment(n);
}

/// A durable transition's wait (WAITAOF / WAIT) and whether it confirmed the write.
pub fn durable_wait(confirmed: bool) {
    let outcome = if confirmed {
        "confirmed"
    } else {
        "unconfirmed"
    };
    counter!("restyle_durable_waits_total", "outcome" => outcome).increment(1);
}

/// A retryable failure that will be tried again.
pub fn retry(provider: &str) {
    counter!("restyle_retries_total", "provider" => provider.to_string()).increment(1);
}

/// Estimated cost of a job that succeeded (USD; a monotonic gauge, since counters are
/// integers).
pub fn cost(provider: ProviderName, usd: crate::money::Usd) {
    gauge!("restyle_estimated_cost_usd_total", "provider" => provider.as_str())
        .increment(usd.as_f64());
}

/// A push (fal webhook, Kling callback) reached the receiver, and what came of it
/// (`poked`, `already_due`, `finished`, `ignored`, `not_yet`, `refused`, `error`).
pub fn push_received(provider: &'static str, outcome: &'static str) {
    counter!("restyle_push_received_total", "provider" => provider, "outcome" => outcome)
        .increment(1);
}

/// A push refused, and why (`bad_signature`, `stale_timestamp`, `wrong_token`, …).
pub fn push_refused(provider: &'static str, reason: &'static str) {
    counter!("restyle_push_refused_total", "provider" => provider, "reason" => reason).increment(1);
}

/// Liveness of the worker loop, and which providers it can use, for `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    running: AtomicBool,
    /// One line per provider: enabled, or disabled and why (never a value).
    providers: Mutex<Vec<String>>,
}

impl Health {
    pub fn set_running(&self, on: bool) {
        self.running.store(on, Ordering::SeqCst);
    }
    pub fn running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }
    pub fn set_providers(&self, lines: Vec<String>) {
        *self.providers.lock().expect("providers lock") = lines;
    }
    fn providers(&self) -> Vec<String> {
        self.providers.lock().expect("providers lock").clone()
    }
}

/// The queue, once the worker has connected (the listener starts before that, so
/// `/healthz` answers while Redis is still unreachable).
pub type QueueCell = Arc<OnceLock<Queue>>;

#[derive(Debug, Clone)]
struct Ctx {
    handle: PrometheusHandle,
    queue: QueueCell,
    health: Arc<Health>,
}

/// Serves `/metrics`, `/healthz` (the process answers) and `/readyz` (Redis answers and
/// the worker loop runs) until the process ends. Also refreshes the queue gauges.
pub async fn serve(
    listen: SocketAddr,
    queue: QueueCell,
    health: Arc<Health>,
) -> std::io::Result<SocketAddr> {
    let handle = install();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let ctx = Ctx {
        handle,
        queue: queue.clone(),
        health,
    };
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(ctx);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    tokio::spawn(refresh_gauges(queue));
    tracing::info!(%addr, "Metrics and health listening.");
    Ok(addr)
}

async fn metrics_text(State(ctx): State<Ctx>) -> String {
    ctx.handle.render()
}

/// `/readyz`: the status line as before, then the durability guarantee in effect and a
/// line per provider, enabled or disabled and why (the status code depends on neither:
/// `redis.require_durable` decides at start, and a worker serves the providers it has).
async fn ready(State(ctx): State<Ctx>) -> (StatusCode, String) {
    let (code, status) = ready_status(&ctx).await;
    let durability = match ctx.queue.get().and_then(Queue::durability_known) {
        Some(d) => d.to_string(),
        None => "not detected yet".to_string(),
    };
    let mut body = format!("{status}\ndurability: {durability}\n");
    for line in ctx.health.providers() {
        body.push_str(&line);
        body.push('\n');
    }
    (code, body)
}

async fn ready_status(ctx: &Ctx) -> (StatusCode, &'static str) {
    if !ctx.health.running() {
        return (StatusCode::SERVICE_UNAVAILABLE, "worker loop not running");
    }
    let Some(queue) = ctx.queue.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "connecting to redis");
    };
    match tokio::time::timeout(Duration::from_secs(2), queue.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "redis unreachable"),
    }
}

/// Queue depth and in-flight per provider, read from Redis every few seconds.
async fn refresh_gauges(cell: QueueCell) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let Some(queue) = cell.get() else { continue };
        if let Ok((ready, parked, leased)) = queue.depth_once().await {
            gauge!("restyle_queue_depth", "queue" => "ready").set(ready as f64);
            gauge!("restyle_queue_depth", "queue" => "parked").set(parked as f64);
            gauge!("restyle_queue_depth", "queue" => "leased").set(leased as f64);
        }
        for p in ProviderName::ALL {
            if let Ok(v) = queue.provider_view(p.as_str()).await {
                gauge!("restyle_in_flight", "provider" => p.as_str()).set(v.in_flight as f64);
            }
        }
    }
}
