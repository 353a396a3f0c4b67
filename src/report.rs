//! The contact sheet: `<out>/<batch>/index.html`, one card per variant of the batch.
//!
//! A succeeded variant shows its video (a path relative to the page, so the folder can be
//! moved or zipped as a whole); a failed, timed-out, dead, unknown or cancelled one shows
//! its reason; a pending or running one its state. The header has the counts per state
//! (which double as filters) and the cost known so far. Everything is inline — CSS, no
//! script, nothing fetched — so the page opens from disk.
//!
//! The markup is a `maud` template: every value spliced into it (prompts, provider
//! messages, ids, reasons) is HTML-escaped by the template engine. The only pre-escaped
//! pieces are the stylesheet constant and its filter rules, which are built from the fixed
//! state keys alone. Video links are percent-encoded by the `percent-encoding` crate.
//!
//! Writing the page also brings `results.jsonl` up to date with the same records (an
//! outcome no stage wrote, such as an operator's cancel, gets its line), so the page, the
//! file and `restyle results` say the same.
//!
//! The filters are plain links to `#only-<state>`: the CSS `:target` rule hides the other
//! cards, so a filtered view can be bookmarked or shared as a URL.

use crate::config::Settings;
use crate::cost::CostTally;
use crate::job::{JobRecord, JobState, Loaded};
use crate::queue::{now_ms, BatchInfo, Queue, QueueError};
use crate::sink::{jsonl::JsonlSink, ResultLine};
use maud::{html, Markup, PreEscaped};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

/// Writes the batch's contact sheet (temp file + rename) and returns its path. The batch
/// id names a folder: one that the batch-id rule refuses (`../`, `/`) is refused before
/// any path is built.
pub async fn write(
    queue: &Queue,
    settings: &Settings,
    batch_id: &str,
) -> Result<PathBuf, QueueError> {
    crate::batch::validate_batch_id(batch_id)
        .map_err(|why| QueueError::BadId(format!("batch id {batch_id:.80?} {why}")))?;
    let info = queue
        .batch(batch_id)
        .await?
        .ok_or_else(|| QueueError::NoBatch(batch_id.to_string()))?;
    let records = queue.jobs(&crate::ops::job_ids(&info)).await?;
    let html = render(&info, &records, now_ms());
    let dir = settings.output.dir.join(batch_id);
    let page =
        tokio::task::spawn_blocking(move || write_atomically(&dir, "index.html", html.as_bytes()))
            .await
            .map_err(|e| QueueError::Io(format!("writing the contact sheet: {e}")))?
            .map_err(|e| QueueError::Io(format!("writing the contact sheet: {e}")))?;
    write_missing_lines(settings, batch_id, &records)
        .await
        .map_err(|e| {
            QueueError::Io(format!(
                "contact sheet written to {}, but results.jsonl is not up to date: {e}",
                page.display()
            ))
        })?;
    Ok(page)
}

/// Brings the batch's `results.jsonl` up to date with its records, as this page is: a
/// terminal outcome without its line (an operator's cancel or `reconcile --fail`; stages
/// write their own before finishing a job) gets it now. Idempotent per (job, outcome).
async fn write_missing_lines(
    settings: &Settings,
    batch_id: &str,
    records: &[Loaded],
) -> Result<usize, String> {
    let lines: Vec<ResultLine> = records
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(|r| r.state.is_terminal())
        .map(|r| {
            let index = r.job_id.rsplit_once('.').and_then(|(_, i)| i.parse().ok());
            ResultLine::from_stored(r, batch_id, index.unwrap_or(0))
        })
        .collect();
    if lines.is_empty() {
        return Ok(0);
    }
    let sink = Arc::new(JsonlSink::new(settings.output.dir.clone()));
    let batch_id = batch_id.to_string();
    tokio::task::spawn_blocking(move || sink.lock(&batch_id)?.append(&lines))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Writes `name` in `dir` through a temp file in the same directory and a rename, so a
/// reader never sees half a page.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let at = |e: std::io::Error, p: &Path| {
        std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| at(e, dir))?;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let res = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(at(e, &path));
    }
    Ok(path)
}

/// Bytes a video link keeps as they are: `A-Za-z0-9-._~` (RFC 3986's unreserved set).
/// Everything else — `/`, `:`, `?`, `#`, `%`, quotes, spaces, non-ASCII — is
/// percent-encoded, so no file name can turn into a scheme, a parent folder, a query or
/// a fragment.
const LINK_KEEPS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A file name as a relative URL: `./` then the name percent-encoded ([`LINK_KEEPS`]).
fn relative_url(name: &str) -> String {
    format!("./{}", utf8_percent_encode(name, LINK_KEEPS))
}

/// The CSS key of a card: its state's name, `missing` (no record) or `other` (a record
/// that cannot be read).
fn state_key(rec: Option<&Loaded>) -> &'static str {
    match rec {
        None => "missing",
        Some(Err(_)) => "other",
        Some(Ok(r)) => r.state.as_str(),
    }
}

/// The colour family of a state key.
fn kind(key: &str) -> &'static str {
    match JobState::parse(key) {
        Some(JobState::Succeeded) => "ok",
        Some(s) if s.is_failure() => "bad",
        Some(JobState::Cancelled) => "stop",
        Some(JobState::Queued) => "wait",
        Some(_) => "run",
        None => "bad",
    }
}

/// What a card without a video says about a pending or running job.
fn in_progress(key: &str) -> &'static str {
    match JobState::parse(key) {
        Some(JobState::Queued) => "waiting to be submitted",
        Some(JobState::Submitting) => "being submitted",
        Some(JobState::Polling) => "generating upstream",
        Some(JobState::Finishing) => "downloading the output",
        _ => "in progress",
    }
}

fn label(key: &str) -> String {
    key.replace('_', " ")
}

fn when(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC")
}

/// One variant: its index, id and record (absent when the record is gone).
struct Card<'a> {
    index: usize,
    job_id: &'a str,
    /// The readable record (absent when gone or unreadable).
    rec: Option<&'a JobRecord>,
    /// Why the record could not be read.
    unreadable: Option<String>,
    key: &'static str,
    /// A link to the video that replaces the relative one (a presigned store URL).
    link: Option<&'a str>,
}

impl Card<'_> {
    fn prompt(&self) -> String {
        self.rec
            .and_then(|r| r.payload.as_deref())
            .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
            .and_then(|v| v.get("prompt")?.as_str().map(str::to_string))
            .unwrap_or_else(|| "(prompt unreadable)".to_string())
    }

    fn seconds(&self) -> Option<f64> {
        let r = self.rec?;
        Some(r.finished_at?.saturating_sub(r.submitted_at?) as f64 / 1000.0)
    }

    fn error(&self) -> Option<&str> {
        self.unreadable
            .as_deref()
            .or(self.rec.and_then(|r| r.error.as_deref()))
    }
}

/// Renders the page for a batch from its job records (in any order; missing ones get a
/// card saying so).
pub fn render(info: &BatchInfo, records: &[Loaded], generated_at: u64) -> String {
    render_with(info, records, generated_at, &HashMap::new())
}

/// [`render`], with the video link of each job in `links` (by job id) in place of the
/// relative one.
pub fn render_with(
    info: &BatchInfo,
    records: &[Loaded],
    generated_at: u64,
    links: &HashMap<String, String>,
) -> String {
    let by_id: HashMap<&str, &Loaded> = records
        .iter()
        .map(|l| match l {
            Ok(r) => (r.job_id.as_str(), l),
            Err(bad) => (bad.job_id.as_str(), l),
        })
        .collect();
    let ids = crate::ops::job_ids(info);
    let cards: Vec<Card<'_>> = ids
        .iter()
        .enumerate()
        .map(|(index, id)| {
            let loaded = by_id.get(id.as_str()).copied();
            Card {
                index,
                job_id: id,
                rec: loaded.and_then(|l| l.as_ref().ok()),
                unreadable: loaded.and_then(|l| l.as_ref().err()).map(|b| b.to_string()),
                key: state_key(loaded),
                link: links.get(id.as_str()).map(String::as_str),
            }
        })
        .collect();
    page(info, &cards, generated_at).into_string()
}

/// The states present on the page, each with its number of cards, in [`JobState::ALL`]
/// order then `missing` and `other`.
fn counts(cards: &[Card<'_>]) -> Vec<(&'static str, usize)> {
    let states = JobState::ALL.iter().map(|s| s.as_str());
    states
        .chain(["missing", "other"])
        .map(|key| (key, cards.iter().filter(|c| c.key == key).count()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The stylesheet: the constant rules, then two filter rules per state key present. The
/// keys are fixed names (never record text), so this is the one pre-escaped piece.
fn stylesheet(counts: &[(&'static str, usize)]) -> PreEscaped<String> {
    let mut css = String::from(CSS);
    for (key, _) in counts {
        let _ = writeln!(
            css,
            "#only-{key}:target~main .card:not(.s-{key}){{display:none}}\
             #only-{key}:target~nav a[href=\"#only-{key}\"]{{background:var(--ink);color:var(--bg)}}"
        );
    }
    PreEscaped(css)
}

fn page(info: &BatchInfo, cards: &[Card<'_>], now: u64) -> Markup {
    let counts = counts(cards);
    let mut cost = CostTally::default();
    for c in cards
        .iter()
        .filter(|c| c.key == JobState::Succeeded.as_str())
    {
        cost.add(c.rec.and_then(|r| r.estimated_cost));
    }
    html! {
        (PreEscaped("<!doctype html>\n"))
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (info.batch_id) " · restyle" }
                "\n"
                style { (stylesheet(&counts)) }
            }
            "\n"
            body {
                "\n"
                @for (key, _) in &counts {
                    i class="anchor" id={ "only-" (key) } {}
                    "\n"
                }
                header {
                    h1 { (info.batch_id) }
                    p class="sub" {
                        (cards.len()) " variants"
                        @if info.created_at > 0 {
                            " · enqueued " (when(info.created_at))
                        }
                        @match info.finished_at {
                            Some(t) => { " · finished " (when(t)) }
                            None => { " · " (info.done) " of " (info.total) " done so far" }
                        }
                        " · page written " (when(now)) " · "
                        a href="results.jsonl" { "results.jsonl" }
                    }
                    @if let Some(why) = &info.damaged {
                        p class="damaged" { "Batch record damaged: " (why) }
                    }
                    @if let Some(src) = crate::status::source_of(info) {
                        p class="source" { "Source clip: " (src.summary()) }
                    }
                    p class="cost" {
                        "Cost so far: " b { (cost) } " "
                        span class="muted" { "(succeeded jobs)" }
                    }
                }
                "\n"
                nav {
                    a class="all" href="#all" { "all " b { (cards.len()) } }
                    @for (key, n) in &counts {
                        a class={ "k-" (kind(key)) } href={ "#only-" (key) } {
                            i {} (label(key)) " " b { (n) }
                        }
                    }
                }
                "\n"
                main class="grid" {
                    "\n"
                    @for c in cards {
                        (card(info, c))
                    }
                }
                "\n"
            }
        }
        "\n"
    }
}

fn card(info: &BatchInfo, c: &Card<'_>) -> Markup {
    let succeeded = c.key == JobState::Succeeded.as_str();
    let file = c.rec.and_then(|r| r.file.as_deref()).map(|f| {
        let prefix = format!("{}/", info.batch_id);
        let name = f
            .strip_prefix(&prefix)
            .unwrap_or_else(|| f.rsplit('/').next().unwrap_or(f));
        c.link.map_or_else(|| relative_url(name), str::to_owned)
    });
    let video = file.as_deref().filter(|_| succeeded);
    let error = c.error();
    let note = match kind(c.key) {
        "ok" => "no file recorded",
        "bad" | "stop" => error.unwrap_or("no reason recorded"),
        _ => in_progress(c.key),
    };
    let seconds = c.seconds().map_or("—".to_string(), |s| format!("{s:.1} s"));
    let cost = c
        .rec
        .and_then(|r| r.estimated_cost)
        .map_or("unknown".to_string(), |c| c.display());
    let provider = c.rec.and_then(|r| r.provider);
    let upstream_id = c.rec.and_then(|r| r.upstream_id.as_deref());
    html! {
        article class={ "card s-" (c.key) " k-" (kind(c.key)) } id={ "job-" (c.job_id) } {
            div class="media" {
                @if let Some(src) = video {
                    video controls muted loop playsinline preload="metadata" src=(src) {}
                } @else {
                    div class="placeholder" {
                        span class="big" { (label(c.key)) }
                        span class="reason" { (note) }
                    }
                }
            }
            div class="body" {
                div class="top" {
                    span { "#" (c.index + 1) }
                    span class="badge" { (label(c.key)) }
                }
                p class="prompt" { (c.prompt()) }
                @if matches!(kind(c.key), "wait" | "run") {
                    @if let Some(e) = error {
                        p class="retry" { "last error: " (e) }
                    }
                }
                dl class="meta" {
                    dt { "upstream" } dd { (seconds) }
                    dt { "cost" } dd { (cost) }
                    dt { "provider" }
                    dd {
                        @match provider {
                            Some(p) => { (p.as_str()) }
                            None => { "—" }
                        }
                    }
                    dt { "upstream id" }
                    dd {
                        @match upstream_id {
                            Some(u) => { code { (u) } }
                            None => { "—" }
                        }
                    }
                    dt { "job" } dd { code { (c.job_id) } }
                }
                @if let Some(src) = video {
                    a class="file" href=(src) download { "download" }
                }
            }
        }
        "\n"
    }
}

const CSS: &str = r#"
:root{--bg:#f5f4f1;--card:#fff;--ink:#1c1c1f;--muted:#6c6c73;--line:#e3e1dc;--ok:#1e8a4c;--bad:#c23a2b;--run:#b7791f;--wait:#56677d;--stop:#7b5ba6;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#141416;--card:#1e1e22;--ink:#ececef;--muted:#9a9aa3;--line:#2f2f35}}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:var(--bg);color:var(--ink)}
a{color:inherit}
.anchor{position:absolute;top:0}
header{padding:26px 28px 6px}
h1{margin:0 0 4px;font-size:22px;font-weight:650;overflow-wrap:anywhere}
.sub{margin:0;color:var(--muted);font-size:13px}
.cost{margin:10px 0 0}
.damaged{margin:10px 0 0;color:var(--bad)}
.muted{color:var(--muted);font-size:13px}
nav{display:flex;flex-wrap:wrap;gap:8px;padding:12px 28px 2px}
nav a{display:inline-flex;align-items:center;gap:6px;padding:5px 12px;border:1px solid var(--line);border-radius:999px;background:var(--card);text-decoration:none;font-size:13px}
nav a i{width:8px;height:8px;border-radius:50%;background:var(--wait)}
body:not(:has(.anchor:target)) nav a.all,#all:target~nav a.all{background:var(--ink);color:var(--bg)}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:18px;padding:16px 28px 40px}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;overflow:hidden;display:flex;flex-direction:column;box-shadow:0 1px 2px rgba(0,0,0,.05)}
.media{aspect-ratio:16/9;background:#101013;display:flex;align-items:center;justify-content:center;overflow:auto}
.media video{width:100%;height:100%;object-fit:contain;background:#000;display:block}
.placeholder{color:#d9d9de;text-align:center;padding:14px 18px;font-size:13px;max-height:100%}
.placeholder .big{display:block;font-size:18px;font-weight:650;margin-bottom:6px;text-transform:capitalize}
.placeholder .reason{display:block;overflow-wrap:anywhere;white-space:pre-wrap}
.k-bad .placeholder .big{color:#ff8a7a}
.body{padding:12px 14px 14px;display:flex;flex-direction:column;gap:8px;flex:1}
.top{display:flex;justify-content:space-between;align-items:center;font-size:13px;color:var(--muted)}
.badge{font-size:12px;font-weight:600;padding:2px 9px;border-radius:999px;color:#fff;background:var(--wait)}
.k-ok .badge,.k-ok i{background:var(--ok)!important}
.k-bad .badge,.k-bad i{background:var(--bad)!important}
.k-run .badge,.k-run i{background:var(--run)!important}
.k-stop .badge,.k-stop i{background:var(--stop)!important}
.prompt{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
.retry{margin:0;font-size:12.5px;color:var(--run);overflow-wrap:anywhere}
dl.meta{display:grid;grid-template-columns:auto 1fr;gap:2px 12px;margin:auto 0 0;font-size:12.5px;color:var(--muted)}
dl.meta dd{margin:0;color:var(--ink);overflow-wrap:anywhere}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.file{font-size:12.5px;align-self:flex-start}
"#;

#[cfg(test)]
mod tests;
