//! The worker: an apalis `Worker` over our Redis backend running the stages, the lease
//! timer, graceful shutdown, and [`step`], a single-step entry for tests.

pub mod announce;
pub mod expiry;
pub mod hook;
pub mod latency;
pub mod media;
pub mod stage;

use crate::config::{Settings, WorkerSettings};
use crate::model::{BatchShared, ProviderName, PAYLOAD_VERSION};
use crate::queue::backend::{self, Claimed, Lease, LeaseTable};
use crate::queue::{Queue, QueueError};
use crate::sink::jsonl::JsonlSink;
use crate::upstream::Upstreams;
use apalis::prelude::*;
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Everything a stage needs, shared by all stages of one worker process.
#[derive(Debug)]
pub struct Runtime {
    pub queue: Queue,
    pub settings: Settings,
    pub upstreams: Upstreams,
    pub jsonl: Arc<JsonlSink>,
    /// The one client for output downloads and webhooks: it enforces the egress policy.
    pub egress: crate::egress::Egress,
    pub leases: Arc<LeaseTable>,
    pub admission: crate::admission::Admission,
    /// `/readyz`: true while the worker loop runs.
    pub health: Arc<crate::metrics::Health>,
    /// Unique per process start: host, pid and a random suffix.
    pub worker_id: String,
    batches: Mutex<HashMap<String, Arc<BatchShared>>>,
    /// The media of the batches this process submits, each read once (see [`media`]).
    pub media: media::MediaCache,
    /// The object store results go to (`output.store`); `None` writes under `output.dir`.
    pub store: Option<Arc<crate::sink::store::ObjectSink>>,
    /// When this process last regenerated each batch's sheet in the store.
    pub sheets: stage::SheetClock,
    /// The completion-time distributions this process has read (the learned schedule).
    pub latency: latency::LatencyCache,
}

impl Runtime {
    pub fn new(queue: Queue, settings: Settings, upstreams: Upstreams) -> Self {
        let host = hostname::get()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "host".into());
        let worker_id = format!(
            "{host}-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let egress = crate::egress::Egress::from_settings(&settings);
        // `restyle worker` checks the store first and says what is wrong; here it holds.
        let store = crate::sink::store::ObjectSink::from_settings(&settings.output)
            .unwrap_or_else(|e| panic!("{e}"));
        Runtime {
            store,
            sheets: Default::default(),
            admission: crate::admission::Admission::new(queue.clone(), &settings),
            health: Arc::new(crate::metrics::Health::default()),
            jsonl: Arc::new(JsonlSink::new(settings.output.dir.clone())),
            queue,
            settings,
            upstreams,
            egress,
            leases: Arc::new(LeaseTable::default()),
            worker_id,
            batches: Mutex::new(HashMap::new()),
            media: media::MediaCache::default(),
            latency: latency::LatencyCache::default(),
        }
    }

    /// The batch's shared options, read once per batch (they never change).
    pub async fn batch_shared(&self, batch_id: &str) -> Result<Arc<BatchShared>, String> {
        if let Some(s) = self.batches.lock().expect("batch cache").get(batch_id) {
            return Ok(s.clone());
        }
        let info = self
            .queue
            .batch(batch_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("batch {batch_id} has no record"))?;
        let shared: BatchShared = serde_json::from_str(&info.spec_json)
            .map_err(|e| format!("unparseable batch spec: {e}"))?;
        if shared.v != PAYLOAD_VERSION {
            return Err(format!("unknown batch spec version {}", shared.v));
        }
        if shared.batch_id != batch_id {
            return Err(format!(
                "the spec of batch {batch_id} names batch {:.80?}",
                shared.batch_id
            ));
        }
        let shared = Arc::new(shared);
        self.batches
            .lock()
            .expect("batch cache")
            .insert(batch_id.to_string(), shared.clone());
        Ok(shared)
    }

    /// Pauses the provider for every worker; returns when jobs should try again.
    pub async fn pause_provider(&self, provider: ProviderName, message: &str) -> u64 {
        let until = self.queue.now_ms() + self.settings.retry.account_pause.as_millis() as u64;
        tracing::error!(provider = %provider, reason = %message,
            "Account error: provider paused for every worker.");
        if let Err(e) = self
            .queue
            .set_provider_pause(provider.as_str(), message, until)
            .await
        {
            tracing::warn!(error = %e, "Could not record the provider pause.");
        }
        until
    }
}

/// What one [`step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stepped {
    /// A stage ran for one job.
    Processed,
    /// Nothing was ready.
    Empty,
}

/// Claims one ready job (promoting due parked ones) and runs its stage to the end.
/// Tests call this until [`Stepped::Empty`] instead of sleeping.
pub async fn step(rt: &Runtime) -> Result<Stepped, QueueError> {
    let mut claims = rt.queue.claim(&rt.worker_id, 1).await?;
    let Some(claim) = claims.pop() else {
        return Ok(Stepped::Empty);
    };
    let lease = Lease::new(&claim, rt.leases.clone(), None);
    stage::run(rt, Claimed { claim, lease }).await;
    Ok(Stepped::Processed)
}

/// A stage handler: what a worker runs for each claimed job. The worker runs
/// [`stage::run`]; tests and benchmarks plug in their own.
#[derive(Clone)]
pub struct Handler(Arc<HandlerFn>);

type HandlerFn = dyn Fn(Claimed) -> BoxFuture<'static, ()> + Send + Sync + 'static;

impl Handler {
    pub fn new(f: impl Fn(Claimed) -> BoxFuture<'static, ()> + Send + Sync + 'static) -> Self {
        Handler(Arc::new(f))
    }

    fn call(&self, job: Claimed) -> BoxFuture<'static, ()> {
        (self.0)(job)
    }
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handler")
    }
}

async fn handle(job: Claimed, h: Data<Handler>) -> Result<(), BoxDynError> {
    use futures::FutureExt;
    // A panicking stage drops its lease unsettled, which hands the job back to the queue.
    let fut = h.call(job);
    if let Err(panic) = std::panic::AssertUnwindSafe(fut).catch_unwind().await {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(panic = %what, "Stage panicked; its job goes back to the queue.");
    }
    Ok(())
}

/// Runs the restyle stages until `stop` is cancelled (see [`run_with`]).
pub async fn run(rt: Arc<Runtime>, stop: CancellationToken) -> Result<(), QueueError> {
    let rt2 = rt.clone();
    let handler = Handler::new(move |job| {
        let rt = rt2.clone();
        Box::pin(async move { stage::run(&rt, job).await })
    });
    rt.health.set_providers(announce_providers(&rt));
    let mut listeners = spawn_event_listeners(&rt, &stop);
    let retention = rt.settings.output.retention;
    listeners.push(tokio::spawn(expiry::run(
        rt.queue.clone(),
        retention,
        stop.clone(),
    )));
    // The fleet's req/s: this worker's counts, added once a second is over (and the rest
    // on `stop`, while the stages drain).
    let (counts, counting) = (rt.clone(), stop.clone());
    listeners.push(tokio::spawn(async move {
        counts.admission.report_rates(counting).await
    }));
    rt.health.set_running(true);
    let res = run_with(
        rt.queue.clone(),
        rt.worker_id.clone(),
        rt.leases.clone(),
        rt.settings.worker.clone(),
        handler,
        stop,
    )
    .await;
    rt.health.set_running(false);
    for l in listeners {
        l.abort();
    }
    res
}

/// Logs which providers this worker can use (a disabled one with the variables that
/// would enable it) and returns the same as `/readyz` lines.
fn announce_providers(rt: &Runtime) -> Vec<String> {
    let mut lines = Vec::new();
    for (name, a) in crate::upstream::availability(&rt.settings) {
        let a = if rt.upstreams.contains_key(&name) {
            Ok(())
        } else {
            a.and(Err("not configured in this worker".to_string()))
        };
        let line = crate::upstream::describe_availability(name, &a);
        match &a {
            Ok(()) => tracing::info!(provider = %name, "{line}"),
            Err(_) => tracing::warn!(provider = %name, "{line}"),
        }
        lines.push(line);
    }
    lines
}

/// For providers that push completion events (Oxen SSE): each event makes the job of
/// that generation due for a poll now. Polling stays the source of truth.
fn spawn_event_listeners(
    rt: &Runtime,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    use futures::StreamExt;
    let mut out = Vec::new();
    for (provider, up) in &rt.upstreams {
        let Some(mut events) = up.events() else {
            continue;
        };
        let (queue, stop, provider) = (rt.queue.clone(), stop.clone(), *provider);
        out.push(tokio::spawn(async move {
            loop {
                let upstream_id = tokio::select! {
                    e = events.next() => match e { Some(e) => e, None => break },
                    _ = stop.cancelled() => break,
                };
                match queue.poke(provider.as_str(), &upstream_id).await {
                    Ok(true) => tracing::debug!(provider = %provider, upstream_id = %upstream_id,
                        "Completion event: poll moved up."),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "Could not act on a completion event."),
                }
            }
        }));
    }
    out
}

/// Runs an apalis worker over the Redis backend until `stop` is cancelled: claims stop,
/// running stages get the grace period, and any stage still running after it is
/// released back to the queue. Returns within `shutdown_grace` + [`HANDBACK`] of `stop`
/// whatever Redis does: what cannot be handed back in time is left to lease expiry.
///
/// [`HANDBACK`]: crate::shutdown::HANDBACK
pub async fn run_with(
    queue: Queue,
    worker_id: String,
    leases: Arc<LeaseTable>,
    ws: WorkerSettings,
    handler: Handler,
    stop: CancellationToken,
) -> Result<(), QueueError> {
    let slots = Arc::new(Semaphore::new(ws.concurrency));
    // Claims stop on `stop`, or when the worker loop ends on its own.
    let no_claims = stop.child_token();
    let (backend, mut fetcher) = backend::start_fetcher(
        queue.clone(),
        worker_id.clone(),
        leases.clone(),
        slots,
        no_claims.clone(),
    );
    let upkeep_stop = CancellationToken::new();
    let mut upkeep = tokio::spawn(backend::maintain_leases(
        queue.clone(),
        leases.clone(),
        upkeep_stop.clone(),
    ));
    tracing::info!(worker_id = %worker_id, concurrency = ws.concurrency, "Worker started.");
    let worker = WorkerBuilder::new(worker_id.clone())
        .backend(backend)
        .data(handler)
        .build(handle);
    // On `stop` the fetcher stops claiming and apalis drains the running stages.
    let signal = stop.clone();
    let mut running = tokio::spawn(async move {
        worker
            .run_until(async move {
                signal.cancelled().await;
                Ok::<(), std::io::Error>(())
            })
            .await
    });
    tokio::select! {
        res = &mut running => {
            if let Ok(Err(e)) = res { tracing::error!(error = %e, "Worker loop failed."); }
        }
        _ = stop.cancelled() => {
            tracing::info!(in_flight = leases.len(), grace_s = ws.shutdown_grace.as_secs_f64(),
                "Shutting down: no new claims; waiting for running stages.");
            if tokio::time::timeout(ws.shutdown_grace, &mut running).await.is_err() {
                tracing::warn!(in_flight = leases.len(), "Grace period over; releasing running stages.");
                running.abort();
                let _ = running.await;
            }
        }
    }
    // From here on nothing waits on Redis past the hand-back deadline: a fetcher stuck
    // in a claim, a lease timer stuck in a call, a release that cannot land are cut off.
    let deadline = tokio::time::Instant::now() + crate::shutdown::HANDBACK;
    no_claims.cancel();
    if tokio::time::timeout_at(deadline, &mut fetcher)
        .await
        .is_err()
    {
        fetcher.abort();
    }
    upkeep_stop.cancel();
    if tokio::time::timeout_at(deadline, &mut upkeep)
        .await
        .is_err()
    {
        upkeep.abort();
    }
    // Stages cut off by the grace period dropped their leases unsettled: hand them back.
    let (released, left) = backend::hand_back(&queue, &leases, deadline).await;
    if left > 0 {
        tracing::warn!(
            released,
            left,
            "Worker stopped; Redis did not answer in time: the jobs left behind go back \
             to the queue when their leases expire."
        );
    } else {
        tracing::info!(released, "Worker stopped.");
    }
    Ok(())
}
