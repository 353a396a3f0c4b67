//! The commands' side of the results store: `results` and `report` read from and write to
//! the object store when `output.store` names one, and `status` on a batch whose records
//! expired (`output.retention`) says so and where its results are; operators' commands
//! that finish a batch schedule its expiry.

use super::CliError;
use crate::config::Settings;
use crate::export::Format;
use crate::job::JobState;
use crate::queue::Queue;
use crate::sink::store::ObjectSink;
use crate::sink::{sheet, SinkError};
use std::sync::Arc;

/// The object store the settings name, built (nothing sent yet); `None` for files.
pub fn open(settings: &Settings) -> Result<Option<Arc<ObjectSink>>, CliError> {
    ObjectSink::from_settings(&settings.output).map_err(|e| CliError::Usage(e.to_string()))
}

fn sink_error(e: SinkError) -> CliError {
    CliError::Other(anyhow::anyhow!("{e}"))
}

/// `restyle results` from the store: every result object of the batch, each job's newest
/// outcome, in index order. Returns how many were written.
pub async fn results(
    store: &ObjectSink,
    batch_id: &str,
    format: Format,
    states: &[JobState],
) -> Result<usize, CliError> {
    crate::batch::validate_batch_id(batch_id)
        .map_err(|why| CliError::Usage(format!("batch id {batch_id:.80?} {why}")))?;
    let lines = sheet::read_results(store, batch_id)
        .await
        .map_err(sink_error)?;
    if lines.is_empty() {
        return Err(CliError::NotFound(format!(
            "no results of batch {batch_id} in {}",
            store.url()
        )));
    }
    let mut out = std::io::stdout();
    Ok(crate::export::write_lines(
        &lines, format, states, &mut out,
    )?)
}

/// `restyle report` with a store: the batch's `index.html` and `results.jsonl` written
/// to it from the records; returns the page's store URL.
pub async fn report(
    queue: &Queue,
    settings: &Settings,
    store: &ObjectSink,
    batch_id: &str,
) -> Result<String, CliError> {
    crate::batch::validate_batch_id(batch_id)
        .map_err(|why| CliError::Usage(format!("batch id {batch_id:.80?} {why}")))?;
    let wrote = sheet::publish(queue, store, settings.output.link_ttl, batch_id)
        .await
        .map_err(sink_error)?;
    if !wrote {
        if queue.batch(batch_id).await?.is_none() {
            gone(queue, batch_id).await?;
        }
        // It finished meanwhile: this run's view is the final one.
        sheet::publish(queue, store, settings.output.link_ttl, batch_id)
            .await
            .map_err(sink_error)?;
    }
    Ok(store.url_of(&format!("{batch_id}/index.html")))
}

/// A batch Redis has no records of: what its tombstone says (an error all the same,
/// `NotFound`, naming where the results are), or that there is no such batch.
pub async fn gone(queue: &Queue, batch_id: &str) -> Result<(), CliError> {
    match queue.tombstone(batch_id).await? {
        Some(t) => {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(t.expired_at);
            let when = humantime::format_rfc3339_seconds(at);
            Err(CliError::NotFound(format!(
                "batch {batch_id} expired from Redis at {when} (output.retention after it \
                 finished: {}); its {} results are in {}",
                if t.counts.is_empty() {
                    "no jobs"
                } else {
                    &t.counts
                },
                t.total,
                if t.sink.is_empty() {
                    "its results store"
                } else {
                    &t.sink
                },
            )))
        }
        None => Err(CliError::NotFound(format!("no batch {batch_id}"))),
    }
}

/// After an operator's command that may have finished the batch (`cancel`, `reconcile
/// --fail`: no stage's transition reported it), schedules its records to expire; nothing
/// when it is not finished. A failure only warns: `restyle purge` stays.
pub async fn schedule_retention(queue: &Queue, settings: &Settings, batch_id: &str) {
    let out = &settings.output;
    let sink = match &out.store {
        crate::config::StoreLocation::Object(u) => {
            format!("{}/{batch_id}/", u.as_str().trim_end_matches('/'))
        }
        crate::config::StoreLocation::Local => out.dir.join(batch_id).display().to_string(),
    };
    if let Err(e) = queue
        .schedule_retention(batch_id, out.retention, &sink)
        .await
    {
        tracing::warn!(batch_id, error = %e, "Could not schedule the batch's records to expire.");
    }
}
