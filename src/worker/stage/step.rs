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
    /// Applied (`rerouted`: to `polling` instead of `submit_unknown`, see the script;
    /// `finished`: this transition finished the batch).
    Applied { rerouted: bool, finished: bool },
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
                    return Went::Applied {
                        rerouted,
                        finished: batch_finished,
                    };
                }
                if let Some(to) = tx.to.filter(|to| *to != from) {
                    crate::metrics::transition(to);
                    info!(job_id = %self.job_id, batch_id, from = %from, to = %to, "Job state changed.");
                }
                if batch_finished {
                    info!(batch_id, "Batch finished.");
                }
                Went::Applied {
                    rerouted,
                    finished: batch_finished,
                }
            }
            Ok(Transitioned::Lost { state }) => {
                let now = state.map_or("unreadable", JobState::as_str);
                warn!(job_id = %self.job_id, now, "Lease lost; leaving the job to its new owner.");
                Went::NotApplied
            }
            Err(crate::queue::QueueError::NotDurable(why)) => {
                // The queue withdrew the mark and parked the job; it retries by itself.
                info!(job_id = %self.job_id, reason = %why, "Not durable yet: the job retries later.");
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

    /// Ends the job in `state` with its result line (the order is the sink's, see
    /// [`crate::sink`]): this process's turn at the results file (its lock, a bounded
    /// wait, shared with the batch's other stages finishing now), a transition under the
    /// lease that takes the job's next outcome number (a stage that lost its lease stops
    /// here, writing nothing), the line, then the terminal transition. The job is never
    /// terminal without its line; a lock not had in time parks it to finish again later.
    pub async fn terminal(
        &self,
        payload: &JobPayload,
        state: JobState,
        fields: &[(Field, String)],
    ) {
        if self.rt.store.is_some() {
            return self.terminal_in_store(payload, state, fields).await;
        }
        // The fence and the append happen in this process's turn at the file, while its
        // writer holds the file's lock (shared with the other stages finishing now).
        let turn = match self.rt.jsonl.turn(&payload.batch_id).await {
            Ok(turn) => turn,
            Err(why) => return self.line_later(&why).await,
        };
        let outcome = (self.rec.outcome + 1).to_string();
        let fence = Transition::stay(After::Keep).set(Field::Outcome, outcome.clone());
        if !self.go(fence).await {
            turn.pass();
            return self.line_of_new_owner(payload).await;
        }
        let now = self.rt.queue.now_ms();
        let mut fields = fields.to_vec();
        fields.push((Field::Outcome, outcome));
        fields.push((Field::FinishedAt, now.to_string()));
        let rec = self.rec.with(Some(state), &fields);
        let line = ResultLine::from_record(&rec, payload, now);
        if let Err(why) = turn.write(line).await {
            return self.line_later(&why).await;
        }
        let done = Transition::to(state, After::Done).set_all(&fields);
        let Went::Applied { finished, .. } = self.apply(done).await else {
            // Our line stands for an outcome Redis did not take; the job's next outcome
            // supersedes it. If an operator already gave it one, its line is written now.
            return self.line_of_new_owner(payload).await;
        };
        if finished {
            self.batch_finished(&payload.batch_id).await;
        }
        if state == JobState::Succeeded {
            if let (Some(cost), Some(p)) = (rec.estimated_cost, rec.provider) {
                crate::metrics::cost(p, cost);
            }
        }
    }

    /// The result line could not be written: park the job, in whatever state its record
    /// holds, to run its stage again later (a redelivery, using no attempt).
    pub(super) async fn line_later(&self, reason: &str) {
        warn!(job_id = %self.job_id, error = %reason, "Could not write the result line; the job will finish again later.");
        let retry = &self.rt.settings.retry;
        let wait = retry_delay(retry, self.rec.attempts + 1, None, rand::random());
        let at = self.rt.queue.now_ms() + wait.as_millis() as u64;
        let why = format!("result line not written ({reason}); finishing again later");
        self.go(Transition::stay(After::ParkUntil(at)).set(Field::Error, why))
            .await;
    }

    /// After a lost lease: when the job's new owner has already finished it (an operator's
    /// cancel), writes that outcome's line from the record. This stage's own is never written.
    pub(super) async fn line_of_new_owner(&self, payload: &JobPayload) {
        let Ok(Some(Ok(rec))) = self.rt.queue.job(self.job_id).await else {
            return;
        };
        let Some(batch_id) = rec.batch.clone().filter(|_| rec.state.is_terminal()) else {
            return;
        };
        let line = ResultLine::from_stored(&rec, &batch_id, payload.index);
        if let Some(store) = &self.rt.store {
            if let Err(e) = crate::sink::sheet::put_result(store, &line).await {
                warn!(job_id = %self.job_id, error = %e, "Could not write the result of the job's new outcome; restyle report writes it.");
            }
            return;
        }
        if let Err(e) = self.rt.jsonl.append_in_turn(line).await {
            warn!(job_id = %self.job_id, error = %e, "Could not write the line of the job's new outcome; restyle report writes it.");
        }
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

    /// This worker has no client for the job's provider (its credentials are not set
    /// here): the job goes back in its state, for any worker, to be claimed again after
    /// `retry.max_delay`, with the reason on its record. It uses no attempt, pauses
    /// nothing for the fleet, and sends nothing: a worker that has the credentials runs
    /// it. (A provider pause here once stopped the provider for every worker.)
    pub async fn wait_for_credentials(&self, provider: ProviderName) {
        let why = crate::upstream::availability(&self.rt.settings)
            .into_iter()
            .find(|(p, _)| *p == provider)
            .and_then(|(_, a)| a.err())
            .unwrap_or_else(|| "not configured in this worker".to_string());
        warn!(job_id = %self.job_id, provider = %provider, reason = %why,
            "Provider disabled on this worker; the job waits for a worker that has its credentials.");
        let reason = format!(
            "waiting for a worker with {provider} credentials (worker {}: {why})",
            self.rt.worker_id
        );
        let wait = self.rt.settings.retry.max_delay;
        self.park_for(self.rec.state, wait, &[(Field::Error, reason)])
            .await;
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
