//! The one place that renders batch state for people (tables, progress bars) and for
//! scripts (JSON). Everything else hands it data.
//!
//! [`watch`] follows a batch live; costs are summed by [`crate::cost`].
#![allow(clippy::print_stdout)]

mod watch;

pub use crate::cost::CostTally;
pub use watch::{short_duration, watch, WatchEnd, WatchOptions};

use crate::config::Settings;
use crate::job::{JobRecord, JobState};
use crate::queue::{BatchInfo, ProviderPause, Queue, QueueError};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::BTreeMap;

/// A failed, timed-out, dead or unknown job and why.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub job_id: String,
    /// `None` when the record itself is unreadable.
    pub state: Option<JobState>,
    pub error: String,
}

/// Everything `restyle status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct BatchStatus {
    pub batch_id: String,
    pub total: u64,
    pub done: u64,
    pub finished: bool,
    /// Why the batch hash is not taken at its word (see [`BatchInfo::damaged`]); `total`
    /// is then the number of job records found.
    pub damaged: Option<String>,
    pub counts: BTreeMap<JobState, u64>,
    pub failures: Vec<Failure>,
    pub paused_providers: BTreeMap<String, ProviderPause>,
    /// Admission state of every provider (shared by all batches of the namespace).
    pub providers: BTreeMap<String, ProviderStatus>,
    /// What the enqueue-time probe read of the source clip, when it was probed.
    pub source: Option<crate::batch::SourceProbe>,
    /// The batch's price tier, when it chose one.
    pub tier: Option<String>,
}

/// The probe's reading of a batch's source clip, from its stored spec (`None` when the
/// clip was not probed, or the spec is unreadable: status never fails on it).
pub fn source_of(info: &BatchInfo) -> Option<crate::batch::SourceProbe> {
    let spec: serde_json::Value = serde_json::from_str(&info.spec_json).ok()?;
    serde_json::from_value(spec.get("source")?.clone()).ok()
}

fn tier_of(info: &BatchInfo) -> Option<String> {
    let spec: serde_json::Value = serde_json::from_str(&info.spec_json).ok()?;
    spec.get("tier")?.as_str().map(str::to_owned)
}

/// One provider's admission state: in flight against its cap, rate, cool-down, pause.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderStatus {
    pub in_flight: u64,
    /// 0 = no cap.
    pub max_in_flight: u32,
    pub waiting_for_slot: u64,
    pub waiting_for_resume: u64,
    pub rate_last_second: u64,
    /// Requests per second allowed (0 = no limit).
    pub rate_limit: f64,
    pub cooldown_ms: u64,
    /// The provider's message when the account is paused.
    pub paused: Option<String>,
}

/// Gathers a batch's status: counters from the batch hash, reasons from the records.
pub async fn gather(
    queue: &Queue,
    settings: &Settings,
    info: BatchInfo,
) -> Result<BatchStatus, QueueError> {
    // Every job that ended without an output, with its reason (cancelled ones too).
    let listed = |s: JobState| s.is_terminal() && s != JobState::Succeeded;
    let mut failures = Vec::new();
    if JobState::ALL
        .iter()
        .any(|s| listed(*s) && info.count(*s) > 0)
    {
        for ids in crate::ops::job_id_chunks(&info, 1000) {
            for rec in queue.jobs(&ids).await? {
                match rec {
                    Ok(rec) if listed(rec.state) => failures.push(failure(&rec)),
                    Ok(_) => {}
                    Err(bad) => failures.push(Failure {
                        job_id: bad.job_id.clone(),
                        state: None,
                        error: bad.to_string(),
                    }),
                }
            }
        }
    }
    let (paused_providers, providers) = provider_statuses(queue, settings).await?;
    Ok(BatchStatus {
        source: source_of(&info),
        tier: tier_of(&info),
        batch_id: info.batch_id.clone(),
        total: info.total,
        done: info.done,
        finished: info.is_finished(),
        damaged: info.damaged.clone(),
        counts: info.counts.clone(),
        failures,
        paused_providers,
        providers,
    })
}

/// Every provider's admission state, and the providers whose account is paused now.
pub async fn provider_statuses(
    queue: &Queue,
    settings: &Settings,
) -> Result<
    (
        BTreeMap<String, ProviderPause>,
        BTreeMap<String, ProviderStatus>,
    ),
    QueueError,
> {
    let mut paused_providers = BTreeMap::new();
    let mut providers = BTreeMap::new();
    for p in crate::model::ProviderName::ALL {
        let pause = queue
            .provider_pause(p.as_str())
            .await?
            .filter(|pause| pause.until > queue.now_ms());
        if let Some(pause) = &pause {
            paused_providers.insert(p.to_string(), pause.clone());
        }
        let v = queue.provider_view(p.as_str()).await?;
        let limits = &settings.provider(*p).limits;
        providers.insert(
            p.to_string(),
            ProviderStatus {
                in_flight: v.in_flight,
                max_in_flight: limits.max_in_flight,
                waiting_for_slot: v.waiting_for_slot,
                waiting_for_resume: v.waiting_for_resume,
                rate_last_second: v.rate_last_second,
                rate_limit: limits.rate_limit,
                cooldown_ms: v.cooldown_ms,
                paused: pause.map(|p| p.message),
            },
        );
    }
    Ok((paused_providers, providers))
}

fn failure(rec: &JobRecord) -> Failure {
    Failure {
        job_id: rec.job_id.clone(),
        state: Some(rec.state),
        error: rec.error.clone().unwrap_or_default(),
    }
}

/// Prints the status as a table for people.
pub fn print_table(s: &BatchStatus) {
    let finished = if s.finished { " (finished)" } else { "" };
    match &s.damaged {
        None => println!(
            "batch {}: {}/{} done{finished}",
            s.batch_id, s.done, s.total
        ),
        Some(why) => {
            println!(
                "batch {}: {} done, {} job records found{finished}",
                s.batch_id, s.done, s.total
            );
            println!("  batch record damaged: {why}");
        }
    }
    match &s.source {
        Some(p) => println!("  source clip: {}", p.summary()),
        None => println!("  source clip: not probed"),
    }
    if let Some(t) = &s.tier {
        println!("  tier: {t}");
    }
    for state in JobState::ALL {
        let n = s.counts.get(&state).copied().unwrap_or(0);
        if n > 0 {
            println!("  {:<15} {n:>7}", state.as_str());
        }
    }
    for (name, p) in &s.providers {
        let cap = if p.max_in_flight == 0 {
            "no cap".to_string()
        } else {
            p.max_in_flight.to_string()
        };
        let rate = if p.rate_limit > 0.0 {
            format!("{}/{} req/s", p.rate_last_second, p.rate_limit)
        } else {
            format!("{} req/s", p.rate_last_second)
        };
        println!(
            "provider {name}: in flight {}/{cap} (waiting {}), {rate}",
            p.in_flight, p.waiting_for_slot
        );
        if p.cooldown_ms > 0 {
            println!("  cooling down after 429: {} ms left", p.cooldown_ms);
        }
        if let Some(msg) = &p.paused {
            println!(
                "  PAUSED (account error, {} jobs waiting): {msg}",
                p.waiting_for_resume
            );
            println!("  fix the account, then: restyle resume {name}");
        }
    }
    if !s.failures.is_empty() {
        println!("failures:");
        for f in s.failures.iter().take(50) {
            let state = f.state.map_or("unreadable", JobState::as_str);
            println!("  {} {state}: {}", f.job_id, f.error);
        }
        if s.failures.len() > 50 {
            println!(
                "  … and {} more (use --json for all)",
                s.failures.len() - 50
            );
        }
    }
}

/// Prints the status as one JSON document.
pub fn print_json(s: &BatchStatus) {
    println!(
        "{}",
        serde_json::to_string_pretty(s).expect("status serializes")
    );
}

/// A progress bar over a batch's terminal jobs.
pub fn progress_bar(total: u64) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    pb
}

/// One-line summary of the non-zero counts, for progress messages.
pub fn counts_line(counts: &BTreeMap<JobState, u64>) -> String {
    JobState::ALL
        .iter()
        .filter_map(|s| {
            let n = counts.get(s).copied().unwrap_or(0);
            (n > 0).then(|| format!("{s} {n}"))
        })
        .collect::<Vec<_>>()
        .join(" · ")
}
