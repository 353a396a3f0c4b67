//! The terminal step with an object store, and what follows a batch's finish.
//!
//! With `output.store` an object store, a job ends as it does with files (see
//! [`crate::sink`]) but for the line: a transition under the lease takes the next outcome
//! number (the fence), the job's result object is written (one per job, never replaced by
//! an older outcome), then the terminal transition. No file lock is needed: each job has
//! its own object, and the batch's `results.jsonl` and `index.html` are regenerated from
//! the records ([`crate::sink::sheet::publish`]) at most every [`SHEET_EVERY`] per batch
//! and process while it runs, and always by the stage that finishes the batch.
//!
//! When a transition reports the batch finished, the batch is scheduled to leave Redis
//! after `output.retention` ([`crate::queue::retention`]).

use super::step::{Step, Went};
use crate::job::{After, Field, JobState, Transition};
use crate::model::JobPayload;
use crate::sink::{sheet, ResultLine};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// How often one process regenerates a running batch's sheet in the store at most.
pub const SHEET_EVERY: Duration = Duration::from_secs(5);

/// When this process last regenerated each batch's sheet (bounded: finished batches and
/// the oldest entries leave).
#[derive(Debug, Default)]
pub struct SheetClock(Mutex<HashMap<String, Instant>>);

/// Batches whose last regeneration one process remembers.
const MAX_CLOCKED: usize = 1024;

impl SheetClock {
    /// Whether the batch's sheet is due now (and, if so, marks it done now).
    fn due(&self, batch_id: &str) -> bool {
        let mut m = self.0.lock().expect("sheet clock");
        let now = Instant::now();
        if m.get(batch_id)
            .is_some_and(|t| now.duration_since(*t) < SHEET_EVERY)
        {
            return false;
        }
        if m.len() >= MAX_CLOCKED {
            m.retain(|_, t| now.duration_since(*t) < SHEET_EVERY);
        }
        m.insert(batch_id.to_string(), now);
        true
    }

    fn forget(&self, batch_id: &str) {
        self.0.lock().expect("sheet clock").remove(batch_id);
    }
}

impl Step<'_> {
    /// [`Step::terminal`] with an object store (see the module doc).
    pub(super) async fn terminal_in_store(
        &self,
        payload: &JobPayload,
        state: JobState,
        fields: &[(Field, String)],
    ) {
        let Some(store) = self.rt.store.clone() else {
            return;
        };
        let outcome = (self.rec.outcome + 1).to_string();
        let fence = Transition::stay(After::Keep).set(Field::Outcome, outcome.clone());
        if !self.go(fence).await {
            return self.line_of_new_owner(payload).await;
        }
        let now = self.rt.queue.now_ms();
        let mut fields = fields.to_vec();
        fields.push((Field::Outcome, outcome));
        fields.push((Field::FinishedAt, now.to_string()));
        let rec = self.rec.with(Some(state), &fields);
        let line = ResultLine::from_record(&rec, payload, now);
        if let Err(e) = sheet::put_result(&store, &line).await {
            return self.line_later(&e.to_string()).await;
        }
        let done = Transition::to(state, After::Done).set_all(&fields);
        let Went::Applied { finished, .. } = self.apply(done).await else {
            return self.line_of_new_owner(payload).await;
        };
        if state == JobState::Succeeded {
            if let (Some(cost), Some(p)) = (rec.estimated_cost, rec.provider) {
                crate::metrics::cost(p, cost);
            }
        }
        if finished {
            self.batch_finished(&payload.batch_id).await;
        } else if self.rt.sheets.due(&payload.batch_id) {
            // Off this stage: the next claim need not wait for the page.
            let (queue, ttl) = (self.rt.queue.clone(), self.rt.settings.output.link_ttl);
            let batch_id = payload.batch_id.clone();
            tokio::spawn(async move {
                if let Err(e) = sheet::publish(&queue, &store, ttl, &batch_id).await {
                    debug!(batch_id, error = %e, "Could not regenerate the batch's sheet in the store.");
                }
            });
        }
    }

    /// The batch finished with this stage's transition: its sheet regenerated in the store
    /// (with one), and its records scheduled to expire after `output.retention`.
    pub(super) async fn batch_finished(&self, batch_id: &str) {
        let out = &self.rt.settings.output;
        let sink = match &self.rt.store {
            Some(store) => {
                self.rt.sheets.forget(batch_id);
                if let Err(e) = sheet::publish(&self.rt.queue, store, out.link_ttl, batch_id).await
                {
                    warn!(batch_id, error = %e, "Could not write the batch's sheet to the store; restyle report writes it.");
                }
                store.url_of(&format!("{batch_id}/"))
            }
            None => out.dir.join(batch_id).display().to_string(),
        };
        if let Err(e) = self
            .rt
            .queue
            .schedule_retention(batch_id, out.retention, &sink)
            .await
        {
            warn!(batch_id, error = %e, "Could not schedule the batch's records to expire.");
        }
    }
}
