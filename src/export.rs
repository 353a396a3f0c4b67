//! `restyle results`: a batch's results as JSONL or CSV, read from the job records in
//! Redis (the durable truth), not from `results.jsonl`.
//!
//! Every line is a [`ResultLine`] built by the sink's own [`ResultLine::from_record`], so
//! an export line has exactly the fields of a `results.jsonl` line; CSV has one column per
//! field, in the same order, under a header row. A job that is not terminal yet is
//! exported with its current state, `finished_at` 0 and no `upstream_seconds`. A record
//! that cannot be read is exported as `dead` (what a worker makes of it) with the reason.

use crate::job::{JobRecord, JobState, Loaded};
use crate::queue::{Queue, QueueError};
use crate::sink::ResultLine;
use std::io::{ErrorKind, Write};

/// Job records read per round trip.
const CHUNK: usize = 500;

/// Output format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

/// Writes the batch's results (only jobs in `states`, all when empty) to `out`, in job
/// index order. Returns how many jobs were written. A reader that goes away (a closed
/// pipe, as with `| head`) ends the export quietly.
pub async fn write(
    queue: &Queue,
    batch_id: &str,
    format: Format,
    states: &[JobState],
    out: &mut (dyn Write + Send),
) -> Result<usize, QueueError> {
    let info = queue
        .batch(batch_id)
        .await?
        .ok_or_else(|| QueueError::NoBatch(batch_id.to_string()))?;
    let Some(mut lines) = Lines::open(format, states, out)? else {
        return Ok(0);
    };
    for chunk in crate::ops::job_id_chunks(&info, CHUNK) {
        for rec in &queue.jobs(&chunk).await? {
            if !lines.put(&loaded_line(rec, batch_id))? {
                return Ok(lines.n);
            }
        }
    }
    lines.finish()
}

/// Writes result lines read elsewhere (the object store's result objects) to `out`, as
/// [`write`] does: only those in `states` (all when empty). Returns how many.
pub fn write_lines(
    lines: &[ResultLine],
    format: Format,
    states: &[JobState],
    out: &mut (dyn Write + Send),
) -> Result<usize, QueueError> {
    let Some(mut out) = Lines::open(format, states, out)? else {
        return Ok(0);
    };
    for line in lines {
        if !out.put(line)? {
            return Ok(out.n);
        }
    }
    out.finish()
}

/// An export under way: lines in `states` (all when empty) go to the sink, counted. A
/// reader that went away (a closed pipe) ends it quietly.
struct Lines<'a, 's> {
    sink: Sink<'a>,
    states: &'s [JobState],
    n: usize,
}

impl<'a, 's> Lines<'a, 's> {
    /// Writes the header where the format has one; `None` when the reader is gone.
    fn open(
        format: Format,
        states: &'s [JobState],
        out: &'a mut (dyn Write + Send),
    ) -> Result<Option<Self>, QueueError> {
        let sink = match format {
            Format::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(out);
                match w.write_record(&csv_header()) {
                    Ok(()) => Sink::Csv(Box::new(w)),
                    Err(e) if gone(&e) => return Ok(None),
                    Err(e) => return Err(write_error(e)),
                }
            }
            Format::Jsonl => Sink::Jsonl(out),
        };
        Ok(Some(Lines { sink, states, n: 0 }))
    }

    /// Writes `line` unless its state is filtered out; false when the reader is gone.
    fn put(&mut self, line: &ResultLine) -> Result<bool, QueueError> {
        if !self.states.is_empty() && !self.states.contains(&line.state) {
            return Ok(true);
        }
        match self.sink.line(line) {
            Ok(()) => {
                self.n += 1;
                Ok(true)
            }
            Err(e) if gone(&e) => Ok(false),
            Err(e) => Err(write_error(e)),
        }
    }

    /// Flushes; returns how many lines were written.
    fn finish(mut self) -> Result<usize, QueueError> {
        match self.sink.flush() {
            Err(e) if !gone(&e) => Err(write_error(e)),
            _ => Ok(self.n),
        }
    }
}

/// Where lines go, in their format.
enum Sink<'a> {
    Jsonl(&'a mut (dyn Write + Send)),
    Csv(Box<csv::Writer<&'a mut (dyn Write + Send)>>),
}

impl Sink<'_> {
    fn line(&mut self, line: &ResultLine) -> Result<(), csv::Error> {
        match self {
            Sink::Csv(w) => w.serialize(line),
            Sink::Jsonl(out) => {
                let mut v = serde_json::to_vec(line).map_err(std::io::Error::from)?;
                v.push(b'\n');
                Ok(out.write_all(&v)?)
            }
        }
    }

    fn flush(&mut self) -> Result<(), csv::Error> {
        match self {
            Sink::Csv(w) => Ok(w.flush()?),
            Sink::Jsonl(out) => Ok(out.flush()?),
        }
    }
}

/// The export line of a record as read, readable or not (its index, when the payload
/// cannot say, from its id).
fn loaded_line(rec: &Loaded, batch_id: &str) -> ResultLine {
    let id = match rec {
        Ok(r) => &r.job_id,
        Err(bad) => &bad.job_id,
    };
    let fallback_index = match crate::job::parse_job_id(id) {
        Ok(crate::job::JobIdParts::Variant { index, .. }) => index,
        _ => 0,
    };
    match rec {
        Ok(rec) => export_line(rec, batch_id, fallback_index),
        Err(bad) => {
            let placeholder = JobRecord {
                batch: Some(batch_id.to_string()),
                error: Some(bad.to_string()),
                ..JobRecord::new(&bad.job_id, JobState::Dead)
            };
            export_line(&placeholder, batch_id, fallback_index)
        }
    }
}

/// A job's result line from its record, as the worker writes it (see the module doc for
/// jobs not terminal yet). `fallback_index` stands in when the payload is unreadable.
pub fn export_line(rec: &JobRecord, batch_id: &str, fallback_index: u32) -> ResultLine {
    ResultLine::from_stored(rec, batch_id, fallback_index)
}

/// The CSV header: the serialized field names of [`ResultLine`], in order.
fn csv_header() -> csv::StringRecord {
    let sample = ResultLine {
        job_id: String::new(),
        batch_id: String::new(),
        index: 0,
        prompt: String::new(),
        provider: String::new(),
        model: String::new(),
        state: JobState::Queued,
        outcome: 0,
        upstream_id: None,
        output_url: None,
        file: None,
        sha256: None,
        bytes: None,
        claims: 0,
        submitted_at: None,
        finished_at: 0,
        upstream_seconds: None,
        estimated_cost: None,
        error: None,
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(&sample).expect("a result line serializes");
    let bytes = w.into_inner().expect("writing to memory");
    let mut r = csv::Reader::from_reader(bytes.as_slice());
    r.headers().expect("the header just written").clone()
}

fn gone(e: &csv::Error) -> bool {
    matches!(e.kind(), csv::ErrorKind::Io(io) if io.kind() == ErrorKind::BrokenPipe)
}

fn write_error(e: csv::Error) -> QueueError {
    QueueError::Io(format!("writing results: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(fields: &[(&str, &str)]) -> JobRecord {
        JobRecord::from_pairs(
            "b.00003",
            fields
                .iter()
                .flat_map(|(k, v)| [k.to_string(), v.to_string()])
                .collect(),
        )
        .expect("a readable record")
    }

    #[test]
    fn header_follows_the_result_line_fields() {
        let h = csv_header();
        assert_eq!(h.get(0), Some("job_id"));
        assert_eq!(h.get(h.len() - 1), Some("error"));
        assert!(h.iter().any(|c| c == "estimated_cost"));
        assert_eq!(h.len(), 19);
    }

    #[test]
    fn terminal_jobs_keep_their_times_running_ones_have_none() {
        let p = r#"{"v":1,"batch_id":"b","index":3,"prompt":"hi"}"#;
        let done = export_line(
            &rec(&[
                ("state", JobState::Succeeded.as_str()),
                ("payload", p),
                ("submitted_at", "1000"),
                ("finished_at", "3500"),
                ("estimated_cost", "0.25"),
            ]),
            "b",
            9,
        );
        assert_eq!((done.index, done.prompt.as_str()), (3, "hi"));
        assert_eq!(done.finished_at, 3500);
        assert_eq!(done.upstream_seconds, Some(2.5));
        assert_eq!(done.estimated_cost, crate::money::Usd::parse("0.25"));
        let running = export_line(
            &rec(&[
                ("state", JobState::Polling.as_str()),
                ("payload", p),
                ("submitted_at", "1000"),
            ]),
            "b",
            9,
        );
        assert_eq!(running.state, JobState::Polling);
        assert_eq!((running.finished_at, running.upstream_seconds), (0, None));
        let poisoned = export_line(
            &rec(&[("state", JobState::Dead.as_str()), ("payload", "{x")]),
            "b",
            9,
        );
        assert_eq!((poisoned.index, poisoned.batch_id.as_str()), (9, "b"));
    }
}
