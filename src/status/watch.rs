//! `restyle watch`: follows a batch until every job is terminal.
//!
//! On a terminal: live bars on stderr — the batch overall (done/total, jobs/s, ETA, cost
//! so far), one bar per non-empty state, one line per busy provider (in flight, waiters,
//! request rate, 429 cool-down, account pause). Elsewhere: one plain line on stdout every
//! `plain_every`. Both end with one line of final counts on stdout.
//!
//! Each refresh reads the batch hash and the providers' admission state (a few round
//! trips). The cost so far needs the job records: only the jobs not yet seen terminal
//! are read, and only when the done count moved (at most every two seconds).
//!
//! This file owns the loop, the snapshots and the text of every line; `watch/view.rs`
//! draws them (indicatif bars or plain lines).

use super::{counts_line, provider_statuses, CostTally, ProviderStatus};
use crate::config::Settings;
use crate::job::JobState;
use crate::queue::{BatchInfo, Queue, QueueError};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};
use view::{Bars, View};

mod view;

/// Time between two refreshes.
const REFRESH: Duration = Duration::from_millis(500);
/// The jobs/s rate is measured over this much recent history.
const RATE_WINDOW: Duration = Duration::from_secs(30);
/// The cost so far is re-read at most this often.
const COST_EVERY: Duration = Duration::from_secs(2);
/// Consecutive refreshes with Redis unreachable before `watch` gives up (~30 s).
const GIVE_UP_AFTER: u32 = 60;

/// How `watch` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEnd {
    /// Every job terminal, none failed (or failures allowed).
    Finished,
    /// Every job terminal, some failed, timed out, died or are unknown.
    FinishedWithFailures,
}

/// Options of `restyle watch`.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Plain lines every this often when stderr is not a terminal.
    pub plain_every: Duration,
    /// Draw bars (a terminal) or print plain lines.
    pub tty: bool,
}

/// Follows a batch until every job is terminal; see the module doc for what it shows.
pub async fn watch(
    queue: &Queue,
    settings: &Settings,
    batch_id: &str,
    opts: &WatchOptions,
) -> Result<WatchEnd, QueueError> {
    let mut tracker = Tracker::default();
    let mut view = if opts.tty {
        View::Bars(Bars::new(batch_id))
    } else {
        View::Plain {
            next: Instant::now(),
            every: opts.plain_every,
        }
    };
    // The source clip as probed at enqueue, once, above the progress.
    if let Ok(Some(info)) = queue.batch(batch_id).await {
        if let Some(p) = super::source_of(&info) {
            eprintln!("batch {batch_id}: source clip {}", p.summary());
        }
    }
    let mut unreachable = 0u32;
    loop {
        let snap = match tracker.refresh(queue, settings, batch_id).await {
            Ok(s) => {
                unreachable = 0;
                s
            }
            Err(e @ QueueError::Unavailable { .. }) if unreachable < GIVE_UP_AFTER => {
                unreachable += 1;
                if unreachable == 1 {
                    tracing::warn!(error = %e, "Redis unreachable; still watching.");
                }
                tokio::time::sleep(REFRESH).await;
                continue;
            }
            Err(e) => {
                view.abandon();
                return Err(e);
            }
        };
        if snap.info.is_finished() {
            view.finish(&snap);
            println!("{}", final_line(&snap));
            let bad: u64 = JobState::ALL
                .iter()
                .filter(|s| s.is_failure())
                .map(|s| snap.info.count(*s))
                .sum();
            if bad == 0 {
                return Ok(WatchEnd::Finished);
            }
            eprintln!(
                "{bad} jobs did not succeed: `restyle status {batch_id}` lists the reasons, \
                 `restyle retry {batch_id}` requeues them"
            );
            return Ok(WatchEnd::FinishedWithFailures);
        }
        view.update(&snap);
        tokio::time::sleep(REFRESH).await;
    }
}

/// What one refresh saw.
#[derive(Debug)]
struct Snapshot {
    info: BatchInfo,
    /// Jobs turning terminal per second, once measurable.
    rate: Option<f64>,
    cost: CostTally,
    /// The batch's provider and every provider with something going on.
    providers: BTreeMap<String, ProviderStatus>,
}

impl Snapshot {
    fn eta(&self) -> Option<Duration> {
        let rate = self.rate.filter(|r| *r > 0.0)?;
        let left = self.info.total.saturating_sub(self.info.done) as f64;
        Some(Duration::from_secs_f64(left / rate))
    }

    /// `1.3 jobs/s · eta 6s · cost $1.23`.
    fn pace(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = self.rate {
            parts.push(format!("{r:.1} jobs/s"));
        }
        if let Some(eta) = self.eta() {
            parts.push(format!("eta {}", short_duration(eta)));
        }
        parts.push(format!("cost {}", self.cost));
        parts.join(" · ")
    }
}

/// State kept across refreshes: recent done counts (for the rate) and the cost tally.
#[derive(Debug, Default)]
struct Tracker {
    samples: VecDeque<(Instant, u64)>,
    counted: HashSet<String>,
    cost: CostTally,
    cost_done: Option<u64>,
    cost_at: Option<Instant>,
    provider: Option<String>,
}

impl Tracker {
    async fn refresh(
        &mut self,
        queue: &Queue,
        settings: &Settings,
        batch_id: &str,
    ) -> Result<Snapshot, QueueError> {
        let info = queue
            .batch(batch_id)
            .await?
            .ok_or_else(|| QueueError::NoBatch(batch_id.to_string()))?;
        if self.provider.is_none() {
            self.provider = serde_json::from_str::<serde_json::Value>(&info.spec_json)
                .ok()
                .and_then(|v| v.get("provider")?.as_str().map(str::to_string));
        }
        let rate = self.sample(info.done);
        self.update_cost(queue, &info).await?;
        let (_, all) = provider_statuses(queue, settings).await?;
        let providers = all
            .into_iter()
            .filter(|(name, p)| Some(name) == self.provider.as_ref() || busy(p))
            .collect();
        Ok(Snapshot {
            info,
            rate,
            cost: self.cost,
            providers,
        })
    }

    /// Records the done count; returns jobs/s over the recent window once it spans 1 s.
    fn sample(&mut self, done: u64) -> Option<f64> {
        let now = Instant::now();
        if self.samples.back().is_some_and(|(_, d)| *d > done) {
            self.samples.clear(); // jobs were requeued: start measuring again
        }
        self.samples.push_back((now, done));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let (t0, d0) = *self.samples.front()?;
        let span = now.duration_since(t0).as_secs_f64();
        (span >= 1.0).then(|| (done - d0) as f64 / span)
    }

    /// Adds the cost of jobs that turned terminal since the last look.
    async fn update_cost(&mut self, queue: &Queue, info: &BatchInfo) -> Result<(), QueueError> {
        let finished = info.is_finished();
        if self.cost_done == Some(info.done) && !finished {
            return Ok(());
        }
        if !finished && self.cost_at.is_some_and(|t| t.elapsed() < COST_EVERY) {
            return Ok(());
        }
        if self.cost_done.is_some_and(|d| d > info.done) {
            // Jobs were requeued (retry): their old cost no longer stands.
            self.counted.clear();
            self.cost = CostTally::default();
        }
        let pending: Vec<String> = crate::ops::job_ids(info)
            .into_iter()
            .filter(|id| !self.counted.contains(id))
            .collect();
        for chunk in pending.chunks(1000) {
            for rec in queue.jobs(chunk).await? {
                match rec {
                    Ok(rec) if rec.state.is_terminal() => {
                        self.cost.add_if_succeeded(&rec);
                        self.counted.insert(rec.job_id);
                    }
                    Ok(_) => {}
                    // An unreadable record's cost is unknown; it is counted once as such.
                    Err(bad) => {
                        self.cost.add(None);
                        self.counted.insert(bad.job_id);
                    }
                }
            }
        }
        self.cost_done = Some(info.done);
        self.cost_at = Some(Instant::now());
        Ok(())
    }
}

fn busy(p: &ProviderStatus) -> bool {
    p.in_flight > 0
        || p.waiting_for_slot > 0
        || p.waiting_for_resume > 0
        || p.cooldown_ms > 0
        || p.paused.is_some()
}

/// `6s`, `2m05s`, `1h02m`.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// A provider's line: `aimlapi: 8/50 in flight · 3 waiting for a slot · 4/10 req/s`.
fn provider_line(name: &str, p: &ProviderStatus) -> String {
    let cap = match p.max_in_flight {
        0 => String::new(),
        c => format!("/{c}"),
    };
    let mut parts = vec![format!("{name}: {}{cap} in flight", p.in_flight)];
    if p.waiting_for_slot > 0 {
        parts.push(format!("{} waiting for a slot", p.waiting_for_slot));
    }
    parts.push(if p.rate_limit > 0.0 {
        format!("{}/{} req/s", p.rate_last_second, p.rate_limit)
    } else {
        format!("{} req/s", p.rate_last_second)
    });
    parts.extend(provider_trouble(name, p));
    parts.join(" · ")
}

/// Cool-down and pause notes, the part of a provider's line plain output repeats.
fn provider_trouble(name: &str, p: &ProviderStatus) -> Vec<String> {
    let mut out = Vec::new();
    if p.cooldown_ms > 0 {
        out.push(format!(
            "{name} cooling down after 429 ({:.1}s left)",
            p.cooldown_ms as f64 / 1000.0
        ));
    }
    if let Some(msg) = &p.paused {
        out.push(format!(
            "{name} PAUSED ({} jobs waiting): {msg} — fix the account, then `restyle resume {name}`",
            p.waiting_for_resume
        ));
    }
    out
}

/// `batch x: 12/20 done · succeeded 10 · … · 1.3 jobs/s · eta 6s · cost $1.23`.
fn plain_line(s: &Snapshot) -> String {
    let mut parts = vec![format!(
        "batch {}: {}/{} done",
        s.info.batch_id, s.info.done, s.info.total
    )];
    let counts = counts_line(&s.info.counts);
    if !counts.is_empty() {
        parts.push(counts);
    }
    parts.push(s.pace());
    for (name, p) in &s.providers {
        parts.extend(provider_trouble(name, p));
    }
    parts.join(" · ")
}

/// `batch x finished in 1m12s: 20/20 done · succeeded 18 · failed 2 · cost $1.23`.
fn final_line(s: &Snapshot) -> String {
    let took = match s.info.finished_at {
        Some(end) if end >= s.info.created_at && s.info.created_at > 0 => format!(
            " in {}",
            short_duration(Duration::from_millis(end - s.info.created_at))
        ),
        _ => String::new(),
    };
    format!(
        "batch {} finished{took}: {}/{} done · {} · cost {}",
        s.info.batch_id,
        s.info.done,
        s.info.total,
        counts_line(&s.info.counts),
        s.cost
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(done: u64, counts: &[(JobState, u64)]) -> Snapshot {
        let mut info = BatchInfo::from_pairs(
            "b1",
            vec!["total".into(), "20".into(), "done".into(), done.to_string()],
        );
        for (s, n) in counts {
            info.counts.insert(*s, *n);
        }
        Snapshot {
            info,
            rate: Some(1.25),
            cost: CostTally {
                known: crate::money::Usd::from_nanos(1_230_000_000),
                known_jobs: 10,
                unknown_jobs: 0,
            },
            providers: BTreeMap::new(),
        }
    }

    #[test]
    fn plain_line_has_counts_rate_eta_and_cost() {
        let s = snapshot(
            12,
            &[
                (JobState::Succeeded, 10),
                (JobState::Failed, 2),
                (JobState::Polling, 8),
            ],
        );
        assert_eq!(
            plain_line(&s),
            "batch b1: 12/20 done · polling 8 · succeeded 10 · failed 2 · 1.2 jobs/s · eta 6s · cost $1.23"
        );
    }

    #[test]
    fn provider_trouble_is_spelled_out() {
        let mut s = snapshot(0, &[(JobState::Queued, 20)]);
        s.providers.insert(
            "aimlapi".into(),
            ProviderStatus {
                in_flight: 3,
                max_in_flight: 8,
                waiting_for_slot: 2,
                waiting_for_resume: 5,
                rate_last_second: 4,
                rate_limit: 10.0,
                cooldown_ms: 2500,
                paused: Some("out of credits".into()),
            },
        );
        let line = plain_line(&s);
        assert!(
            line.contains("aimlapi cooling down after 429 (2.5s left)"),
            "{line}"
        );
        assert!(
            line.contains("aimlapi PAUSED (5 jobs waiting): out of credits"),
            "{line}"
        );
        let p = provider_line("aimlapi", &s.providers["aimlapi"]);
        assert!(
            p.starts_with("aimlapi: 3/8 in flight · 2 waiting for a slot · 4/10 req/s"),
            "{p}"
        );
    }

    #[test]
    fn durations_read_shortly() {
        assert_eq!(short_duration(Duration::from_secs(6)), "6s");
        assert_eq!(short_duration(Duration::from_secs(125)), "2m05s");
        assert_eq!(short_duration(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn rate_needs_a_second_and_restarts_after_a_requeue() {
        let mut t = Tracker::default();
        assert_eq!(t.sample(0), None);
        let past = Instant::now() - Duration::from_secs(2);
        t.samples[0].0 = past;
        let r = t.sample(4).expect("measurable after 2 s");
        assert!((1.5..=2.0).contains(&r), "{r}");
        assert_eq!(t.sample(1), None, "done went down: measure again");
    }
}
