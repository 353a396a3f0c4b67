//! The finish stage: download the output (into `output.dir`, or streamed into the object
//! store under a name of this delivery's own), checksum it, and write the result — or poll
//! again for a fresh link when the old one expired. Each failed download is an attempt
//! (the poll that hands out a fresh link keeps the count), so a link that never works
//! ends the job `dead` after `retry.max_attempts`; an egress refusal fails it at once.

use super::step::Step;
use crate::job::{Field, JobState};
use crate::model::{JobPayload, ProviderName};
use crate::sink::{download, SinkError};
use crate::upstream::{ErrorClass, UpstreamError};
use std::time::Duration;

pub(super) async fn finish(step: &Step<'_>, payload: &JobPayload, provider: ProviderName) {
    let rt = step.rt;
    let Some(url) = step.rec.output_url.clone() else {
        step.park_for(JobState::Polling, Duration::ZERO, &[]).await;
        return;
    };
    // The provider's key, for an output on its own origin only.
    let auth = rt.upstreams.get(&provider).and_then(|up| {
        let parsed = url::Url::parse(&url).ok()?;
        up.download_auth(&parsed)
    });
    let got = match &rt.store {
        Some(store) => {
            let rel = download::store_name(&payload.batch_id, step.job_id, step.rec.claims);
            let res = download::download_to_store(
                &rt.egress,
                &rt.settings.output,
                store,
                &url,
                auth,
                &rel,
            )
            .await;
            res.map(|(sha256, bytes)| download::Downloaded {
                path: rel.clone().into(),
                relative: rel,
                sha256,
                bytes,
            })
        }
        None => {
            download::download(
                &rt.egress,
                &rt.settings.output,
                &url,
                auth,
                &payload.batch_id,
                step.job_id,
            )
            .await
        }
    };
    match got {
        Ok(d) => {
            let fields = [
                (Field::File, d.relative),
                (Field::Sha256, d.sha256),
                (Field::Bytes, d.bytes.to_string()),
                (Field::Error, String::new()),
            ];
            step.terminal(payload, JobState::Succeeded, &fields).await;
        }
        Err(SinkError::Expired(code)) => {
            // The link expired before we got it: poll again for a fresh one, at once the
            // first time, then on the retry schedule.
            let err = UpstreamError {
                class: ErrorClass::Retryable,
                message: format!("output URL answered HTTP {code}; polling for a fresh link"),
                status: Some(code),
                retry_after: (step.rec.attempts == 0).then_some(Duration::ZERO),
            };
            step.retry_or_die(payload, JobState::Polling, &err).await;
        }
        Err(SinkError::Refused(reason)) => {
            step.terminal(payload, JobState::Failed, &[(Field::Error, reason)])
                .await;
        }
        Err(e) => {
            let err = UpstreamError::new(ErrorClass::Retryable, e.to_string());
            step.retry_or_die(payload, JobState::Finishing, &err).await;
        }
    }
}
