//! The stages submit → poll → finish. Each runs one upstream interaction for one claimed
//! job and ends with exactly one transition that parks the job or finishes it; the
//! record decides which stage runs, so a redelivered job resumes where it was.

use super::Runtime;
use crate::admission::{Admit, Call};
use crate::model::ProviderName;
use crate::model::{BatchShared, GenerationRequest, JobPayload, PAYLOAD_VERSION};
use crate::queue::backend::Claimed;
use crate::queue::{now_ms, After, Budget, Claim, JobRecord, SlotCtx, Transitioned, WaitList};
use crate::sink::{download, ResultLine, SinkError};
use crate::upstream::schedule::{poll_delay, retry_delay};
use crate::upstream::{ErrorClass, Lookup, PollStatus, UpstreamError};
use std::time::Duration;
use tracing::{debug, info, warn};

/// Transitions for one claim, with a fresh nonce per call.
struct Step<'a> {
    rt: &'a Runtime,
    claim: &'a Claim,
    /// The job's provider slot, kept right by every transition once the batch is known.
    slot: Option<SlotCtx>,
}

impl Step<'_> {
    fn rec(&self) -> &JobRecord {
        &self.claim.record
    }

    async fn go(&self, state: &str, after: After, fields: &[(&str, String)]) -> bool {
        let nonce = self.rt.leases.nonce(&self.claim.token);
        let res = self
            .rt
            .queue
            .transition_with(
                &self.claim.job_id,
                &self.claim.token,
                &nonce,
                state,
                after,
                fields,
                self.slot.as_ref(),
            )
            .await;
        match res {
            Ok(Transitioned::Ok { batch_finished }) => {
                if !state.is_empty() && state != self.rec().state() {
                    crate::metrics::transition(state);
                }
                if state != self.rec().state() {
                    info!(job_id = %self.claim.job_id, batch_id = self.rec().get("batch").unwrap_or(""),
                        from = self.rec().state(), to = state, "Job state changed.");
                }
                if batch_finished {
                    info!(
                        batch_id = self.rec().get("batch").unwrap_or(""),
                        "Batch finished."
                    );
                }
                true
            }
            Ok(Transitioned::Lost { state }) => {
                warn!(job_id = %self.claim.job_id, now = %state, "Lease lost; leaving the job to its new owner.");
                false
            }
            Err(e) => {
                warn!(job_id = %self.claim.job_id, error = %e, "Transition failed; the lease will expire and the job be redelivered.");
                false
            }
        }
    }

    fn attempts(&self) -> u32 {
        self.rec().num("attempts") as u32
    }

    /// Parks the job for a retry in `state`, or kills it when attempts are used up.
    async fn retry_or_die(&self, payload: &JobPayload, state: &str, err: &UpstreamError) {
        let attempt = self.attempts() + 1;
        if let Some(slot) = &self.slot {
            crate::metrics::retry(&slot.provider);
        }
        if attempt >= self.rt.settings.retry.max_attempts {
            let reason = format!("retries used up ({attempt}): {}", err.message);
            self.terminal(payload, "dead", &[("error", reason)]).await;
            return;
        }
        let wait = retry_delay(
            &self.rt.settings.retry,
            attempt,
            err.retry_after,
            rand::random(),
        );
        debug!(job_id = %self.claim.job_id, attempt, wait_ms = wait.as_millis() as u64, error = %err, "Retrying later.");
        let at = now_ms() + wait.as_millis() as u64;
        self.go(
            state,
            After::ParkUntil(at),
            &[
                ("attempts", attempt.to_string()),
                ("error", err.message.clone()),
            ],
        )
        .await;
    }

    /// Writes the result line, then the terminal transition (so a crash in between
    /// re-runs into a line that already exists, never a second one).
    async fn terminal(&self, payload: &JobPayload, state: &str, fields: &[(&str, String)]) {
        let mut rec = self.rec().clone();
        for (k, v) in fields {
            rec.fields.insert(k.to_string(), v.clone());
        }
        let line = result_line(&rec, payload, state, now_ms());
        if state == "succeeded" {
            if let (Some(cost), Some(p)) = (
                line.estimated_cost,
                crate::model::ProviderName::parse(&line.provider),
            ) {
                crate::metrics::cost(p, cost);
            }
        }
        let sink = self.rt.jsonl.clone();
        match tokio::task::spawn_blocking(move || sink.append(&line)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                warn!(job_id = %self.claim.job_id, error = %e, "Could not write the result line.")
            }
            Err(e) => warn!(job_id = %self.claim.job_id, error = %e, "Result writer panicked."),
        }
        self.go(state, After::Done, fields).await;
    }
}

/// Builds the result line of a job from its record.
pub fn result_line(rec: &JobRecord, p: &JobPayload, state: &str, now: u64) -> ResultLine {
    let submitted = rec.get("submitted_at").and_then(|v| v.parse::<u64>().ok());
    let s = |k: &str| rec.get(k).filter(|v| !v.is_empty()).map(str::to_string);
    ResultLine {
        job_id: rec.job_id.clone(),
        batch_id: p.batch_id.clone(),
        index: p.index,
        prompt: p.prompt.clone(),
        provider: s("provider").unwrap_or_default(),
        model: s("model").unwrap_or_default(),
        state: state.to_string(),
        upstream_id: s("upstream_id"),
        output_url: s("output_url"),
        file: s("file"),
        sha256: s("sha256"),
        bytes: rec.get("bytes").and_then(|v| v.parse().ok()),
        claims: rec.num("claims"),
        submitted_at: submitted,
        finished_at: now,
        upstream_seconds: submitted.map(|t| now.saturating_sub(t) as f64 / 1000.0),
        estimated_cost: rec.get("estimated_cost").and_then(|v| v.parse().ok()),
        error: s("error"),
    }
}

fn parse_payload(rec: &JobRecord) -> Result<JobPayload, String> {
    let raw = rec.get("payload").ok_or("job record has no payload")?;
    let p: JobPayload =
        serde_json::from_str(raw).map_err(|e| format!("unparseable payload: {e}"))?;
    if p.v != PAYLOAD_VERSION {
        return Err(format!(
            "unknown payload version {} (this worker reads {PAYLOAD_VERSION})",
            p.v
        ));
    }
    Ok(p)
}

/// Runs the stage the job's record calls for. Every log line inside carries the job's
/// `job_id` and `batch_id` (a span), and the stage's duration is measured.
pub async fn run(rt: &Runtime, claimed: Claimed) {
    use tracing::Instrument;
    let rec = &claimed.claim.record;
    let stage = match (rec.get("kind"), rec.state()) {
        (Some("batch_done"), _) => "announce",
        (_, "queued") => "submit",
        (_, "submitting") => "resolve",
        (_, "polling") => "poll",
        (_, "finishing") => "finish",
        _ => "other",
    };
    let batch_id = rec
        .get("batch")
        .or(rec.get("of_batch"))
        .unwrap_or("")
        .to_string();
    let span = tracing::info_span!("job", job_id = %claimed.claim.job_id, batch_id = %batch_id);
    let started = std::time::Instant::now();
    if stage == "announce" {
        super::announce::run(rt, claimed).instrument(span).await;
    } else {
        run_stage(rt, claimed).instrument(span).await;
    }
    crate::metrics::stage(stage, started.elapsed().as_secs_f64());
}

async fn run_stage(rt: &Runtime, claimed: Claimed) {
    let Claimed { claim, mut lease } = claimed;
    let mut step = Step {
        rt,
        claim: &claim,
        slot: None,
    };
    let payload = match parse_payload(&claim.record) {
        Ok(p) => p,
        Err(reason) => {
            warn!(job_id = %claim.job_id, reason = %reason, "Poisoned job sent to the dead set.");
            step.go("dead", After::Done, &[("error", reason)]).await;
            lease.settle();
            return;
        }
    };
    let shared = match rt.batch_shared(&payload.batch_id).await {
        Ok(s) => s,
        Err(reason) => {
            warn!(job_id = %claim.job_id, reason = %reason, "Job's batch unreadable; sent to the dead set.");
            step.go("dead", After::Done, &[("error", reason)]).await;
            lease.settle();
            return;
        }
    };
    step.slot = Some(rt.admission.slot_ctx(shared.provider));
    let req = GenerationRequest::new(&shared, claim.job_id.clone(), payload.prompt.clone());
    match claim.record.state() {
        "queued" => submit(&step, &payload, &req, &shared).await,
        "submitting" => {
            // A worker died or lost its lease mid-POST: the provider may have the job.
            let reason = "submit outcome unknown: the worker stopped during the POST";
            resolve_unknown(&step, &payload, &req, shared.provider, reason).await;
        }
        "polling" => poll(&step, &payload, shared.provider).await,
        "finishing" => finish(&step, &payload).await,
        other => {
            let reason = format!("unknown job state {other:?}");
            step.go("dead", After::Done, &[("error", reason)]).await;
        }
    }
    lease.settle();
}

/// The metrics label of an upstream call's result.
fn outcome<T>(res: &Result<T, UpstreamError>) -> &'static str {
    match res {
        Ok(_) => "ok",
        Err(e) if e.status == Some(429) => "rate_limited",
        Err(e) => match e.class {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Ambiguous => "ambiguous",
            ErrorClass::Job => "job",
            ErrorClass::Account => "account",
        },
    }
}

/// Rule 1: the upstream id is the first thing recorded, in the same step that parks the
/// job until its first poll.
async fn record_submitted(step: &Step<'_>, provider: ProviderName, upstream_id: &str) {
    let now = now_ms();
    let first = step.rt.settings.provider(provider).poll.first_delay;
    let at = now + first.as_millis() as u64;
    let job_id = &step.claim.job_id;
    info!(job_id = %job_id, upstream_id = %upstream_id, "Submitted.");
    let fields = [
        ("upstream_id", upstream_id.to_string()),
        ("submitted_at", now.to_string()),
        ("polls", "0".into()),
        ("attempts", "0".into()),
        ("error", String::new()),
    ];
    if !step.go("polling", After::ParkUntil(at), &fields).await {
        warn!(job_id = %job_id, upstream_id = %upstream_id,
            "Submitted, but the lease was lost before the upstream id was recorded.");
    }
}

/// The POST's outcome is unknown. Where the provider can look the job up by our id,
/// ask it: found → poll that generation; certainly absent → submitting again is safe.
/// Elsewhere the job is `submit_unknown` and never re-POSTed automatically.
async fn resolve_unknown(
    step: &Step<'_>,
    payload: &JobPayload,
    req: &GenerationRequest,
    provider: ProviderName,
    reason: &str,
) {
    let lookup = match step.rt.upstreams.get(&provider) {
        Some(up) => up.lookup(&req.job_id).await,
        None => Ok(Lookup::Unsupported),
    };
    match lookup {
        Ok(Lookup::Found(upstream_id)) => {
            info!(job_id = %req.job_id, upstream_id = %upstream_id, "Ambiguous submit resolved by lookup.");
            record_submitted(step, provider, &upstream_id).await;
        }
        Ok(Lookup::NotFound) => {
            let e = UpstreamError::new(
                ErrorClass::Retryable,
                format!("{reason}; the provider has no such job, submitting again"),
            );
            step.retry_or_die(payload, "queued", &e).await;
        }
        Ok(Lookup::Unsupported) => {
            let reason = format!("{reason}; not re-submitted (restyle reconcile decides)");
            step.terminal(payload, "submit_unknown", &[("error", reason)])
                .await;
        }
        Err(e) => {
            // The lookup itself failed: try it again later from the same state.
            warn!(job_id = %req.job_id, error = %e, "Lookup after an ambiguous submit failed.");
            step.retry_or_die(payload, "submitting", &e).await;
        }
    }
}

/// Parks the job until `d` from now in `state`, using no attempt (admission waits).
async fn park_for(step: &Step<'_>, state: &str, d: Duration, fields: &[(&str, String)]) {
    let at = now_ms() + d.as_millis() as u64;
    step.go(state, After::ParkUntil(at), fields).await;
}

/// A 429: the whole fleet cools down; this job waits it out without using an attempt.
async fn rate_limited(step: &Step<'_>, provider: ProviderName, state: &str, e: &UpstreamError) {
    match step
        .rt
        .admission
        .rate_limited(provider, e.retry_after)
        .await
    {
        Ok(d) => park_for(step, state, d, &[("error", e.message.clone())]).await,
        Err(err) => {
            warn!(job_id = %step.claim.job_id, error = %err, "Could not record the cool-down.")
        }
    }
}

/// Waits for the provider's account pause to be lifted (or to run out).
async fn wait_for_resume(step: &Step<'_>, provider: ProviderName, state: &str, until: u64) {
    let list = WaitList::Pause(provider.to_string());
    step.go(state, After::Wait(list, until), &[]).await;
}

/// The estimated cost of one job of this batch, when a price and the output length are
/// known; never invented.
pub fn estimated_cost(rt: &Runtime, shared: &BatchShared) -> Option<f64> {
    let price = rt
        .settings
        .provider(shared.provider)
        .prices
        .for_model(shared.model)?;
    Some(price * shared.output_seconds()?)
}

async fn submit(
    step: &Step<'_>,
    payload: &JobPayload,
    req: &GenerationRequest,
    shared: &BatchShared,
) {
    let rt = step.rt;
    let provider = shared.provider;
    if let Some(until) = rt.paused_until(provider).await {
        wait_for_resume(step, provider, "queued", until).await;
        return;
    }
    let cost = estimated_cost(rt, shared);
    let budget = rt
        .queue
        .reserve_budget(&payload.batch_id, &req.job_id, cost)
        .await;
    let why = match budget {
        Ok(Budget::Go) => None,
        Ok(Budget::Exceeded) => Some(
            "budget: submitting would pass the batch's max_cost (raise it with restyle budget)"
                .to_string(),
        ),
        Ok(Budget::UnknownCost) => Some(format!(
            "budget: the batch has a max_cost but the cost is unknown \
             (set providers.{provider}.price_per_second.{})",
            shared.model
        )),
        Err(e) => {
            warn!(job_id = %req.job_id, error = %e, "Budget check failed; the job will be redelivered.");
            return;
        }
    };
    if let Some(why) = why {
        let list = WaitList::Budget(payload.batch_id.clone());
        let safety = now_ms() + 300_000;
        let fields = [("wait_reason", "budget".to_string()), ("error", why)];
        step.go("queued", After::Wait(list, safety), &fields).await;
        return;
    }
    let Some(up) = rt.upstreams.get(&provider) else {
        let reason = format!("provider {provider} is not configured in this worker");
        step.terminal(payload, "failed", &[("error", reason)]).await;
        return;
    };
    match rt.admission.slot(provider, &req.job_id).await {
        Ok(true) => {}
        Ok(false) => {
            // At the in-flight cap: wait on the provider's list, woken when a slot frees.
            let safety = now_ms() + 30_000;
            let list = WaitList::Slot(provider.to_string());
            step.go("queued", After::Wait(list, safety), &[]).await;
            return;
        }
        Err(e) => {
            warn!(job_id = %req.job_id, error = %e, "Slot check failed; the job will be redelivered.");
            return;
        }
    }
    match rt.admission.request(provider, Call::Submit).await {
        Ok(Admit::Go) => {}
        Ok(Admit::Later(d)) => {
            park_for(step, "queued", d, &[]).await;
            return;
        }
        Err(e) => {
            warn!(job_id = %req.job_id, error = %e, "Admission failed; the job will be redelivered.");
            return;
        }
    }
    let marks = [
        ("provider", provider.to_string()),
        ("model", req.model.to_string()),
        (
            "estimated_cost",
            cost.map(|c| format!("{c:.4}")).unwrap_or_default(),
        ),
        ("wait_reason", String::new()),
    ];
    if !step.go("submitting", After::Keep, &marks).await {
        return;
    }
    let t = std::time::Instant::now();
    let res = up.submit(req).await;
    crate::metrics::upstream(provider, "submit", outcome(&res), t.elapsed().as_secs_f64());
    match res {
        Ok(upstream_id) => record_submitted(step, provider, &upstream_id).await,
        Err(e) if e.status == Some(429) && e.class == ErrorClass::Retryable => {
            rate_limited(step, provider, "queued", &e).await
        }
        Err(e) => match e.class {
            ErrorClass::Retryable => step.retry_or_die(payload, "queued", &e).await,
            ErrorClass::Ambiguous => {
                let reason = format!("submit outcome unknown: {}", e.message);
                resolve_unknown(step, payload, req, provider, &reason).await;
            }
            ErrorClass::Job => {
                step.terminal(payload, "failed", &[("error", e.message.clone())])
                    .await;
            }
            ErrorClass::Account => {
                let until = rt.pause_provider(provider, &e.message).await;
                let list = WaitList::Pause(provider.to_string());
                step.go(
                    "queued",
                    After::Wait(list, until),
                    &[("error", e.message.clone())],
                )
                .await;
            }
        },
    }
}

async fn poll(step: &Step<'_>, payload: &JobPayload, provider: ProviderName) {
    let rt = step.rt;
    let rec = step.rec();
    let Some(upstream_id) = rec.get("upstream_id").map(str::to_string) else {
        let reason = "polling without an upstream id".to_string();
        step.terminal(payload, "dead", &[("error", reason)]).await;
        return;
    };
    let sched = rt.settings.provider(provider).poll;
    let submitted_at = rec.num("submitted_at");
    let deadline_at = submitted_at + sched.deadline.as_millis() as u64;
    if now_ms() >= deadline_at {
        if let Some(up) = rt.upstreams.get(&provider) {
            if let Err(e) = up.cancel(&upstream_id).await {
                warn!(job_id = %rec.job_id, error = %e, "Upstream cancel after deadline failed.");
            }
        }
        let reason = format!(
            "no result within the {}s deadline",
            sched.deadline.as_secs()
        );
        step.terminal(payload, "timed_out", &[("error", reason)])
            .await;
        return;
    }
    let Some(up) = rt.upstreams.get(&provider) else {
        let reason = format!("provider {provider} is not configured in this worker");
        step.terminal(payload, "failed", &[("error", reason)]).await;
        return;
    };
    if let Some(until) = rt.paused_until(provider).await {
        wait_for_resume(step, provider, "polling", until.min(deadline_at)).await;
        return;
    }
    match rt.admission.request(provider, Call::Poll).await {
        Ok(Admit::Go) => {}
        Ok(Admit::Later(d)) => {
            let at = (now_ms() + d.as_millis() as u64).min(deadline_at);
            step.go("polling", After::ParkUntil(at), &[]).await;
            return;
        }
        Err(e) => {
            warn!(job_id = %rec.job_id, error = %e, "Admission failed; the job will be redelivered.");
            return;
        }
    }
    let t = std::time::Instant::now();
    let res = up.poll(&upstream_id).await;
    crate::metrics::upstream(provider, "poll", outcome(&res), t.elapsed().as_secs_f64());
    match res {
        Ok(PollStatus::Pending { status }) => {
            let polls = rec.num("polls") as u32 + 1;
            let wait = poll_delay(&sched, polls, rand::random());
            let at = (now_ms() + wait.as_millis() as u64).min(deadline_at);
            debug!(job_id = %rec.job_id, upstream_status = %status, next_in_ms = wait.as_millis() as u64, "Still running.");
            step.go(
                "polling",
                After::ParkUntil(at),
                &[("polls", polls.to_string()), ("attempts", "0".into())],
            )
            .await;
        }
        Ok(PollStatus::Succeeded { url }) => {
            let fields = [("output_url", url.clone()), ("attempts", "0".into())];
            if step.go("finishing", After::Keep, &fields).await {
                let mut rec2 = rec.clone();
                rec2.fields.insert("output_url".into(), url);
                rec2.fields.insert("state".into(), "finishing".into());
                rec2.fields.insert("attempts".into(), "0".into());
                let claim2 = Claim {
                    job_id: step.claim.job_id.clone(),
                    token: step.claim.token.clone(),
                    record: rec2,
                };
                let next = Step {
                    rt,
                    claim: &claim2,
                    slot: step.slot.clone(),
                };
                finish(&next, payload).await;
            }
        }
        Ok(PollStatus::Failed { reason }) => {
            step.terminal(payload, "failed", &[("error", reason)]).await;
        }
        Err(e) if e.status == Some(429) && e.class == ErrorClass::Retryable => {
            rate_limited(step, provider, "polling", &e).await
        }
        Err(e) => match e.class {
            ErrorClass::Account => {
                let until = rt.pause_provider(provider, &e.message).await;
                let list = WaitList::Pause(provider.to_string());
                let fields = [("error", e.message.clone())];
                step.go(
                    "polling",
                    After::Wait(list, until.min(deadline_at)),
                    &fields,
                )
                .await;
            }
            ErrorClass::Job => {
                step.terminal(payload, "failed", &[("error", e.message.clone())])
                    .await;
            }
            _ => step.retry_or_die(payload, "polling", &e).await,
        },
    }
}

async fn finish(step: &Step<'_>, payload: &JobPayload) {
    let rt = step.rt;
    let rec = step.rec();
    let Some(url) = rec.get("output_url").map(str::to_string) else {
        step.go("polling", After::ParkUntil(now_ms()), &[]).await;
        return;
    };
    match download::download(
        &rt.http,
        &rt.settings.output,
        &url,
        &payload.batch_id,
        &rec.job_id,
    )
    .await
    {
        Ok(d) => {
            let fields = [
                ("file", d.relative),
                ("sha256", d.sha256),
                ("bytes", d.bytes.to_string()),
                ("error", String::new()),
            ];
            step.terminal(payload, "succeeded", &fields).await;
        }
        Err(SinkError::Expired(code)) => {
            // The link expired before we got it: poll again for a fresh one.
            let err = UpstreamError {
                class: ErrorClass::Retryable,
                message: format!("output URL answered HTTP {code}; polling for a fresh link"),
                status: Some(code),
                retry_after: Some(Duration::ZERO),
            };
            step.retry_or_die(payload, "polling", &err).await;
        }
        Err(SinkError::Refused(reason)) => {
            step.terminal(payload, "failed", &[("error", reason)]).await;
        }
        Err(e) => {
            let err = UpstreamError::new(ErrorClass::Retryable, e.to_string());
            step.retry_or_die(payload, "finishing", &err).await;
        }
    }
}
