//! One claimed job's transitions: [`Step`] carries the typed record and the lease, makes
//! each state change as a [`Transition`] value with a fresh nonce, and holds the moves
//! every stage shares (retry or die, the terminal step with its result line, waits).

use crate::job::{After, Field, JobRecord, JobState, Transition, WaitList};
use crate::model::{JobPayload, ProviderName};
use crate::queue::{Owner, SlotCtx, Transitioned};
use crate::sink::ResultLine;
use crate::upstream::schedule::retry_delay;
use crate::upstream::{ErrorClass, UpstreamError};
use crate::worker::Runtime;
use std::time::Duration;
use tracing::{debug, info, warn};

/// How a transition went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Went {
    /// Applied (`rerouted`: to `polling` instead of `submit_unknown`, see the script).
    Applied { rerouted: bool },
    /// Not applied: the lease was lost or Redis refused.
    NotApplied,
}

/// Transitions for one claim.
pub(super) struct Step<'a> {
    pub rt: &'a Runtime,
    pub job_id: &'a str,
    pub token: &'a str,
    /// The record as this stage knows it (after the transitions it made).
    pub rec: JobRecord,
    /// The job's provider slot, kept right by every transition once the batch is known.
    pub slot: Option<SlotCtx>,
}

impl Step<'_> {
    fn owner(&self) -> Owner<'_> {
        Owner {
            job_id: self.job_id,
            token: self.token,
        }
    }

    /// Applies a transition; false when it did not apply (lease lost, Redis failed).
    pub async fn go(&self, tx: Transition) -> bool {
        matches!(self.apply(tx).await, Went::Applied { .. })
    }

    /// Applies a transition and says how it went.
    pub async fn apply(&self, tx: Transition) -> Went {
        let nonce = self.rt.leases.nonce(self.token);
        let res = self
            .rt
            .queue
            .apply(self.owner(), &nonce, &tx, self.slot.as_ref())
            .await;
        let from = self.rec.state;
        let batch_id = self.rec.batch_id().unwrap_or("");
        match res {
            Ok(Transitioned::Ok {
                batch_finished,
                rerouted,
            }) => {
                if rerouted {
                    info!(job_id = %self.job_id, batch_id,
                        "Generation id known: polled instead of held as submit_unknown.");
                    return Went::Applied { rerouted };
                }
                if let Some(to) = tx.to.filter(|to| *to != from) {
                    crate::metrics::transition(to);
                    info!(job_id = %self.job_id, batch_id, from = %from, to = %to, "Job state changed.");
                }
                if batch_finished {
                    info!(batch_id, "Batch finished.");
                }
                Went::Applied { rerouted }
            }
            Ok(Transitioned::Lost { state }) => {
                let now = state.map_or("unreadable", JobState::as_str);
                warn!(job_id = %self.job_id, now, "Lease lost; leaving the job to its new owner.");
                Went::NotApplied
            }
            Err(e) => {
                warn!(job_id = %self.job_id, error = %e, "Transition failed; the lease will expire and the job be redelivered.");
                Went::NotApplied
            }
        }
    }

    /// Makes a transition that keeps the lease and carries on in the same stage run with
    /// the record as it now is (poll → finish). `None` when the transition did not apply.
    pub async fn advance(&self, tx: Transition) -> Option<Step<'_>> {
        let rec = self.rec.with(tx.to, &tx.fields);
        debug_assert_eq!(tx.after, After::Keep);
        self.go(tx).await.then(|| Step {
            rt: self.rt,
            job_id: self.job_id,
            token: self.token,
            rec,
            slot: self.slot.clone(),
        })
    }

    /// Parks the job for a retry in `state`, or kills it when attempts are used up.
    pub async fn retry_or_die(&self, payload: &JobPayload, state: JobState, err: &UpstreamError) {
        let attempt = self.rec.attempts + 1;
        if let Some(slot) = &self.slot {
            crate::metrics::retry(&slot.provider);
        }
        if attempt >= self.rt.settings.retry.max_attempts {
            let reason = format!("retries used up ({attempt}): {}", err.message);
            self.terminal(payload, JobState::Dead, &[(Field::Error, reason)])
                .await;
            return;
        }
        let wait = retry_delay(
            &self.rt.settings.retry,
            attempt,
            err.retry_after,
            rand::random(),
        );
        debug!(job_id = %self.job_id, attempt, wait_ms = wait.as_millis() as u64, error = %err, "Retrying later.");
        let at = self.rt.queue.now_ms() + wait.as_millis() as u64;
        let tx = Transition::to(state, After::ParkUntil(at))
            .set(Field::Attempts, attempt.to_string())
            .set(Field::Error, err.message.clone());
        self.go(tx).await;
    }

    /// Writes the result line, then the terminal transition (so a crash in between
    /// re-runs into a line that already exists, never a second one).
    pub async fn terminal(
        &self,
        payload: &JobPayload,
        state: JobState,
        fields: &[(Field, String)],
    ) {
        let rec = self.rec.with(Some(state), fields);
        let line = ResultLine::from_record(&rec, payload, self.rt.queue.now_ms());
        if state == JobState::Succeeded {
            if let (Some(cost), Some(p)) = (rec.estimated_cost, rec.provider) {
                crate::metrics::cost(p, cost);
            }
        }
        let sink = self.rt.jsonl.clone();
        match tokio::task::spawn_blocking(move || sink.append(&line)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                warn!(job_id = %self.job_id, error = %e, "Could not write the result line.")
            }
            Err(e) => warn!(job_id = %self.job_id, error = %e, "Result writer panicked."),
        }
        self.go(Transition::to(state, After::Done).set_all(fields))
            .await;
    }

    /// Parks the job until `d` from now in `state`, using no attempt (admission waits).
    pub async fn park_for(&self, state: JobState, d: Duration, fields: &[(Field, String)]) {
        let at = self.rt.queue.now_ms() + d.as_millis() as u64;
        self.go(Transition::to(state, After::ParkUntil(at)).set_all(fields))
            .await;
    }

    /// Rate limited: the whole fleet cools down; this job waits it out without using an
    /// attempt.
    pub async fn rate_limited(
        &self,
        provider: ProviderName,
        state: JobState,
        retry_after: Option<Duration>,
        e: &UpstreamError,
    ) {
        match self.rt.admission.rate_limited(provider, retry_after).await {
            Ok(d) => {
                self.park_for(state, d, &[(Field::Error, e.message.clone())])
                    .await
            }
            Err(err) => {
                warn!(job_id = %self.job_id, error = %err, "Could not record the cool-down.")
            }
        }
    }

    /// Waits for the provider's account pause to be lifted (or to run out).
    pub async fn wait_for_resume(&self, provider: ProviderName, state: JobState, until: u64) {
        let list = WaitList::Pause(provider.to_string());
        self.go(Transition::to(state, After::Wait(list, until)))
            .await;
    }

    /// An account error: pause the provider for every worker and wait for the resume.
    pub async fn pause_account(
        &self,
        provider: ProviderName,
        state: JobState,
        e: &UpstreamError,
        cap: u64,
    ) {
        let until = self.rt.pause_provider(provider, &e.message).await;
        let list = WaitList::Pause(provider.to_string());
        let tx = Transition::to(state, After::Wait(list, until.min(cap)))
            .set(Field::Error, e.message.clone());
        self.go(tx).await;
    }
}

/// The metrics label of an upstream call's result.
pub(super) fn outcome<T>(res: &Result<T, UpstreamError>) -> &'static str {
    match res {
        Ok(_) => "ok",
        Err(e) => match e.class {
            ErrorClass::RateLimited { .. } => "rate_limited",
            ErrorClass::Retryable => "retryable",
            ErrorClass::Ambiguous => "ambiguous",
            ErrorClass::Job => "job",
            ErrorClass::Account => "account",
        },
    }
}
