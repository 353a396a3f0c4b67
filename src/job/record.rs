//! A job record as stored in Redis (a hash), parsed once at the queue boundary into
//! [`JobRecord`]. A record that does not parse is a [`BadRecord`] with the reason: the
//! worker sends it to the dead set alone, readers show it as unreadable — never a panic,
//! never a silent skip.

use super::field::Field;
use super::JobState;
use crate::model::{ModelKind, ProviderName};
use crate::money::Usd;
use serde::Serialize;
use std::collections::BTreeMap;

/// What kind of work a record stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobKind {
    /// One variant of a batch: a generation upstream.
    Variant,
    /// The durable announcement of a batch's completion number `completion`.
    BatchDone { of_batch: String, completion: u64 },
}

/// A job record, typed. Fields the pipeline does not read (lease token, wait-list
/// bookkeeping) stay in Redis and are not carried here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRecord {
    pub job_id: String,
    pub state: JobState,
    pub kind: JobKind,
    /// The batch a variant belongs to (absent on announcements).
    pub batch: Option<String>,
    /// The variant payload (JSON), parsed by the stage that needs it: a poisoned payload
    /// is the stage's to report, with the record still readable.
    pub payload: Option<String>,
    pub provider: Option<ProviderName>,
    pub model: Option<ModelKind>,
    pub upstream_id: Option<String>,
    pub output_url: Option<String>,
    pub file: Option<String>,
    pub sha256: Option<String>,
    pub bytes: Option<u64>,
    pub error: Option<String>,
    pub wait_reason: Option<String>,
    pub estimated_cost: Option<Usd>,
    pub attempts: u32,
    pub claims: u64,
    pub polls: u32,
    pub redeliveries: u64,
    pub created_at: Option<u64>,
    pub submitted_at: Option<u64>,
    pub finished_at: Option<u64>,
    /// The id of the submit attempt that last marked the job `submitting`.
    pub submit_id: Option<String>,
    /// Cancelled while its POST was out; the submitting worker settles the outcome.
    pub cancel_requested: bool,
    /// The number of the job's newest terminal outcome (taken by a stage before it writes
    /// the result line, or by an operator's move): 0 before the first, higher after each
    /// retry. Result lines carry it; readers take each job's highest.
    pub outcome: u64,
    /// The last poll that saw the generation still running (advisory: a value that is not
    /// a number is ignored, never a reason to dead-letter the record).
    pub last_poll_at: Option<u64>,
}

/// A record that could not be read as a job, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadRecord {
    pub job_id: String,
    /// The stored state text, when there was one.
    pub state_text: Option<String>,
    pub reason: String,
    /// Whether the record's batch counts it: it has no `batch` field, or the one its id
    /// names. False when a `batch` field names another batch or the id breaks the id
    /// rules: sending it to the dead set then leaves that batch's counters alone.
    pub counted: bool,
}

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unreadable job record {}: {}", self.job_id, self.reason)
    }
}

/// How a record read from Redis came out.
pub type Loaded = Result<JobRecord, BadRecord>;

impl JobRecord {
    /// A variant's record in `state` with nothing else known.
    pub fn new(job_id: &str, state: JobState) -> JobRecord {
        JobRecord {
            job_id: job_id.to_string(),
            state,
            kind: JobKind::Variant,
            batch: None,
            payload: None,
            provider: None,
            model: None,
            upstream_id: None,
            output_url: None,
            file: None,
            sha256: None,
            bytes: None,
            error: None,
            wait_reason: None,
            estimated_cost: None,
            attempts: 0,
            claims: 0,
            polls: 0,
            redeliveries: 0,
            created_at: None,
            submitted_at: None,
            finished_at: None,
            submit_id: None,
            cancel_requested: false,
            outcome: 0,
            last_poll_at: None,
        }
    }

    /// Parses the flat `[field, value, …]` list `HGETALL` returns.
    pub fn from_pairs(job_id: &str, pairs: Vec<String>) -> Loaded {
        let mut map = BTreeMap::new();
        let mut it = pairs.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            map.insert(k, v);
        }
        Self::parse(job_id, &map)
    }

    /// Parses a record as Redis holds it (raw bytes), at the queue boundary. Before the
    /// fields are read as a record: the id must be one [`super::parse_job_id`] accepts,
    /// every field name and value must be UTF-8; after: the batch the record names must
    /// be the one its id names (so it passes the batch-id rule too). A record that fails
    /// any of these is a [`BadRecord`] saying which.
    pub fn from_redis(job_id: &str, pairs: Vec<Vec<u8>>) -> Loaded {
        let state_text = pairs
            .chunks(2)
            .find(|kv| kv[0] == Field::State.as_str().as_bytes())
            .and_then(|kv| kv.get(1))
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let batch_field = pairs
            .chunks(2)
            .find(|kv| kv[0] == Field::Batch.as_str().as_bytes())
            .and_then(|kv| kv.get(1));
        let counted = match (super::parse_job_id(job_id), batch_field) {
            (_, None) => true,
            (Ok(super::JobIdParts::Variant { batch, .. }), Some(b)) => b == batch.as_bytes(),
            _ => false,
        };
        let bad = |reason: String| BadRecord {
            job_id: job_id.to_string(),
            state_text: state_text.clone(),
            reason,
            counted,
        };
        let parts = super::parse_job_id(job_id).map_err(bad)?;
        let mut map = BTreeMap::new();
        let mut it = pairs.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let k = String::from_utf8(k).map_err(|e| {
                let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
                bad(format!("a field name is not UTF-8: {lossy:.40?}"))
            })?;
            let v = String::from_utf8(v).map_err(|_| bad(format!("field {k:.40} is not UTF-8")))?;
            map.insert(k, v);
        }
        let rec = Self::parse(job_id, &map).map_err(|e| BadRecord { counted, ..e })?;
        let named = match (&rec.kind, parts) {
            (JobKind::Variant, super::JobIdParts::Variant { batch, .. }) => {
                match rec.batch.as_deref() {
                    None => return Err(bad("record has no batch".into())),
                    Some(b) => (b == batch).then_some(()).ok_or(b),
                }
            }
            (
                JobKind::BatchDone {
                    of_batch,
                    completion,
                },
                super::JobIdParts::Announcement {
                    batch,
                    completion: c,
                },
            ) if *completion == c => (of_batch == batch).then_some(()).ok_or(of_batch.as_str()),
            _ => {
                return Err(bad(format!(
                    "job id {job_id:.80?} does not name a record of this kind"
                )))
            }
        };
        match named {
            Ok(()) => Ok(rec),
            Err(b) => Err(bad(format!(
                "the record's batch id {b:.80?} is not the one its job id names"
            ))),
        }
    }

    /// Parses a record's fields; empty values count as absent.
    pub fn parse(job_id: &str, map: &BTreeMap<String, String>) -> Loaded {
        let text = |f: Field| map.get(f.as_str()).filter(|v| !v.is_empty()).cloned();
        let bad = |reason: String| BadRecord {
            job_id: job_id.to_string(),
            state_text: text(Field::State),
            reason,
            counted: true,
        };
        fn num<T: std::str::FromStr>(f: Field, v: Option<String>) -> Result<Option<T>, String> {
            v.map(|v| {
                v.trim()
                    .parse::<T>()
                    .map_err(|_| format!("field {} is not a number: {v:.40?}", f.as_str()))
            })
            .transpose()
        }
        let parsed = (|| -> Result<JobRecord, String> {
            let state_text = text(Field::State).ok_or("record has no state")?;
            let state = JobState::parse(&state_text)
                .ok_or_else(|| format!("unknown job state {state_text:.40?}"))?;
            let kind = match text(Field::Kind).as_deref() {
                None => JobKind::Variant,
                Some("batch_done") => JobKind::BatchDone {
                    of_batch: text(Field::OfBatch).ok_or("announcement without of_batch")?,
                    completion: num(Field::Completion, text(Field::Completion))?.unwrap_or(0),
                },
                Some(other) => return Err(format!("unknown record kind {other:.40?}")),
            };
            let provider = match text(Field::Provider) {
                None => None,
                Some(p) => Some(
                    ProviderName::parse(&p).ok_or_else(|| format!("unknown provider {p:.40?}"))?,
                ),
            };
            let model = match text(Field::Model) {
                None => None,
                Some(m) => {
                    Some(ModelKind::parse(&m).ok_or_else(|| format!("unknown model {m:.60?}"))?)
                }
            };
            let estimated_cost = match text(Field::EstimatedCost) {
                None => None,
                Some(c) => Some(
                    Usd::parse(&c)
                        .ok_or_else(|| format!("field estimated_cost is no amount: {c:.40?}"))?,
                ),
            };
            Ok(JobRecord {
                job_id: job_id.to_string(),
                state,
                kind,
                batch: text(Field::Batch),
                payload: text(Field::Payload),
                provider,
                model,
                upstream_id: text(Field::UpstreamId),
                output_url: text(Field::OutputUrl),
                file: text(Field::File),
                sha256: text(Field::Sha256),
                bytes: num(Field::Bytes, text(Field::Bytes))?,
                // Whoever wrote Redis may have planted escapes: shown text is cleaned here.
                error: text(Field::Error).map(|e| crate::upstream::sanitize(&e, &[])),
                wait_reason: text(Field::WaitReason).map(|e| crate::upstream::sanitize(&e, &[])),
                estimated_cost,
                attempts: num(Field::Attempts, text(Field::Attempts))?.unwrap_or(0),
                claims: num(Field::Claims, text(Field::Claims))?.unwrap_or(0),
                polls: num(Field::Polls, text(Field::Polls))?.unwrap_or(0),
                redeliveries: num(Field::Redeliveries, text(Field::Redeliveries))?.unwrap_or(0),
                created_at: num(Field::CreatedAt, text(Field::CreatedAt))?,
                submitted_at: num(Field::SubmittedAt, text(Field::SubmittedAt))?,
                finished_at: num(Field::FinishedAt, text(Field::FinishedAt))?,
                submit_id: text(Field::SubmitId),
                cancel_requested: text(Field::CancelRequested).is_some(),
                outcome: num(Field::Outcome, text(Field::Outcome))?.unwrap_or(0),
                last_poll_at: text(Field::LastPollAt).and_then(|v| v.parse().ok()),
            })
        })();
        parsed.map_err(bad)
    }

    /// The batch this record counts toward (a variant's batch, or the announced one).
    pub fn batch_id(&self) -> Option<&str> {
        match &self.kind {
            JobKind::BatchDone { of_batch, .. } => Some(of_batch),
            JobKind::Variant => self.batch.as_deref(),
        }
    }

    /// This record with a transition's fields applied, as Redis will hold it after the
    /// transition (used to build a result line before the terminal step).
    pub fn with(&self, to: Option<JobState>, fields: &[(Field, String)]) -> JobRecord {
        let mut r = self.clone();
        if let Some(s) = to {
            r.state = s;
        }
        for (f, v) in fields {
            let v = (!v.is_empty()).then(|| v.clone());
            match f {
                Field::UpstreamId => r.upstream_id = v,
                Field::OutputUrl => r.output_url = v,
                Field::File => r.file = v,
                Field::Sha256 => r.sha256 = v,
                Field::Bytes => r.bytes = v.and_then(|v| v.parse().ok()),
                Field::Error => r.error = v,
                Field::WaitReason => r.wait_reason = v,
                Field::EstimatedCost => r.estimated_cost = v.and_then(|v| Usd::parse(&v)),
                Field::Attempts => r.attempts = v.and_then(|v| v.parse().ok()).unwrap_or(0),
                Field::Polls => r.polls = v.and_then(|v| v.parse().ok()).unwrap_or(0),
                Field::SubmittedAt => r.submitted_at = v.and_then(|v| v.parse().ok()),
                Field::FinishedAt => r.finished_at = v.and_then(|v| v.parse().ok()),
                Field::Outcome => r.outcome = v.and_then(|v| v.parse().ok()).unwrap_or(0),
                Field::Provider => r.provider = v.and_then(|v| ProviderName::parse(&v)),
                Field::Model => r.model = v.and_then(|v| ModelKind::parse(&v)),
                Field::SubmitId => r.submit_id = v,
                Field::LastPollAt => r.last_poll_at = v.and_then(|v| v.parse().ok()),
                _ => {}
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(kv: &[(&str, &str)]) -> Vec<String> {
        kv.iter()
            .flat_map(|(k, v)| [k.to_string(), v.to_string()])
            .collect()
    }

    #[test]
    fn a_record_written_by_the_previous_version_parses() {
        let r = JobRecord::from_pairs(
            "b.00001",
            pairs(&[
                ("state", JobState::Polling.as_str()),
                (
                    "payload",
                    r#"{"v":1,"batch_id":"b","index":1,"prompt":"p"}"#,
                ),
                ("batch", "b"),
                ("attempts", "0"),
                ("created_at", "1700000000000"),
                ("claims", "2"),
                ("token", "w#2"),
                ("provider", "aimlapi"),
                ("model", "edit"),
                ("estimated_cost", "0.5600"),
                ("upstream_id", "gen-1"),
                ("submitted_at", "1700000001000"),
                ("polls", "3"),
                ("error", ""),
            ]),
        )
        .unwrap();
        assert_eq!(r.state, JobState::Polling);
        assert_eq!(r.kind, JobKind::Variant);
        assert_eq!(r.provider, Some(ProviderName::Aimlapi));
        assert_eq!(r.estimated_cost, Usd::parse("0.56"));
        assert_eq!((r.claims, r.polls), (2, 3));
        assert_eq!(r.error, None);
    }

    #[test]
    fn planted_escapes_in_reasons_never_reach_a_terminal() {
        let r = JobRecord::from_pairs(
            "x",
            pairs(&[
                ("state", JobState::Dead.as_str()),
                ("error", "boom\u{1b}[2J\u{1b}]0;owned\u{7}\u{0} done"),
                ("wait_reason", "slot\u{1b}[31m red"),
            ]),
        )
        .unwrap();
        let e = r.error.unwrap();
        assert!(!e.chars().any(char::is_control), "{e:?}");
        assert!(e.starts_with("boom") && e.ends_with("done"), "{e:?}");
        let w = r.wait_reason.unwrap();
        assert_eq!(w, "slot red");
    }

    #[test]
    fn bad_records_say_why() {
        let e = JobRecord::from_pairs("x", pairs(&[("state", "bogus")])).unwrap_err();
        assert!(e.reason.contains("unknown job state"), "{e}");
        assert_eq!(e.state_text.as_deref(), Some("bogus"));
        let e = JobRecord::from_pairs(
            "x",
            pairs(&[("state", JobState::Queued.as_str()), ("attempts", "many")]),
        )
        .unwrap_err();
        assert!(e.reason.contains("attempts"), "{e}");
        assert!(JobRecord::from_pairs("x", vec![]).is_err());
    }

    fn raw(kv: &[(&[u8], &[u8])]) -> Vec<Vec<u8>> {
        kv.iter()
            .flat_map(|(k, v)| [k.to_vec(), v.to_vec()])
            .collect()
    }

    #[test]
    fn records_from_redis_are_checked_at_the_boundary() {
        let queued = JobState::Queued.as_str().as_bytes();
        let ok = raw(&[(b"state", queued), (b"batch", b"b")]);
        assert!(JobRecord::from_redis("b.00001", ok.clone()).is_ok());
        let cases: [(&str, Vec<Vec<u8>>, &str); 8] = [
            ("../../x0", ok.clone(), "job id"),
            ("a/b.00001", ok.clone(), "batch id"),
            ("c.00001", ok.clone(), "batch id"),
            ("b.00001", raw(&[(b"state", queued)]), "no batch"),
            (
                "b.00001",
                raw(&[(b"state", queued), (b"batch", b"b"), (b"payload", b"\xff")]),
                "payload is not UTF-8",
            ),
            (
                "b.00001",
                raw(&[(b"state", queued), (b"batch", b"b"), (b"n\xc3\x28", b"1")]),
                "field name is not UTF-8",
            ),
            (
                "done:b:1",
                raw(&[
                    (b"state", queued),
                    (b"kind", b"batch_done"),
                    (b"of_batch", b"../b"),
                    (b"completion", b"1"),
                ]),
                "batch id",
            ),
            (
                "b.00001",
                raw(&[
                    (b"state", queued),
                    (b"kind", b"batch_done"),
                    (b"of_batch", b"b"),
                ]),
                "does not name",
            ),
        ];
        for (id, pairs, why) in cases {
            let e = JobRecord::from_redis(id, pairs).unwrap_err();
            assert!(e.reason.contains(why), "{id}: {e}");
            assert_eq!(e.job_id, id);
            // Only a record whose batch field is the one its id names counts in it.
            let forged = ["../../x0", "a/b.00001", "c.00001"].contains(&id);
            assert_eq!(e.counted, !forged, "{id}");
        }
        let e = JobRecord::from_redis("b.00001", raw(&[(b"state", b"bogus\xff")])).unwrap_err();
        assert_eq!(
            e.state_text.as_deref(),
            Some("bogus\u{fffd}"),
            "shown as far as it reads"
        );
    }

    #[test]
    fn announcements_are_their_own_kind() {
        let r = JobRecord::from_pairs(
            "done:b:1",
            pairs(&[
                ("state", JobState::Queued.as_str()),
                ("kind", "batch_done"),
                ("of_batch", "b"),
                ("completion", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(r.batch_id(), Some("b"));
        assert!(matches!(r.kind, JobKind::BatchDone { completion: 1, .. }));
    }
}
