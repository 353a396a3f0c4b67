//! The batch's main view, `/console/batches/<id>`: its contact sheet. The live progress
//! (`#progress`: counts per state, ETA, cost, provider pauses; `#batch-state`), the
//! source clip (`#source`) beside the variants, each a `figure.variant` with its output
//! video, prompt, state, cost or failure reason and, for operators, keep/reject buttons;
//! filters by state (`?state=`), the download of the kept ones, cancel and retry. The
//! element names are the console's page contract (a browser test selects by them).
//! The page's script (under the CSP nonce) follows the live events (`live`) and marks
//! without a reload; without it every control is a plain form or link.

use super::console::{page_full, problem, signed_in};
use super::outputs::SourceView;
use super::progress::{self, Progress, Variant};
use super::session::Session;
use super::AppState;
use crate::config::Role;
use crate::job::JobState;
use crate::queue::Mark;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use std::sync::Arc;

/// The sheet's own styles (the console's frame has the rest).
pub const SHEET_STYLE: &str =
    ".sheet{display:grid;grid-template-columns:repeat(auto-fill,minmax(16em,1fr));gap:1em}\
figure{margin:0;border:1px solid #ddd;border-radius:6px;padding:.5em;background:#fafafa}\
figure video{width:100%;background:#000;border-radius:4px}figure .none{height:8em;display:flex;\
align-items:center;justify-content:center;background:#eee;color:#666}\
figure[data-mark=keep]{border:3px solid #1a7f37}figure[data-mark=reject]{opacity:.55}\
a.filter{margin-right:.6em}a.filter.on{font-weight:bold}#source video{max-width:28em;width:100%}\
.state{font-size:.85em;color:#555}";

#[derive(Debug, Deserialize)]
pub struct SheetQuery {
    #[serde(default)]
    pub state: Option<String>,
}

pub async fn show(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<SheetQuery>,
) -> Response {
    let s = match signed_in(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let info = match super::api::info(&st, &id).await {
        Ok(i) => i,
        Err(e) => return problem(Some(&s), e.status(), &e.to_string()),
    };
    let filter = match q.state.as_deref() {
        None | Some("") | Some("all") => None,
        Some(x) => match JobState::parse(x) {
            Some(state) => Some(state),
            None => {
                return problem(
                    Some(&s),
                    StatusCode::BAD_REQUEST,
                    "state: not a job state (all, queued, succeeded, failed, …)",
                )
            }
        },
    };
    let source = super::outputs::source_view(&st, &info);
    let p = match progress::gather(&st, info).await {
        Ok(p) => p,
        Err(e) => return problem(Some(&s), StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let media = super::outputs::store_origin(&st).await;
    let body = render(&p, &s, filter, &source);
    page_full(
        StatusCode::OK,
        &id,
        Some(&s),
        body,
        Some(super::live::SCRIPT),
        media.as_deref(),
        Some(SHEET_STYLE),
    )
}

fn render(p: &Progress, s: &Session, filter: Option<JobState>, source: &SourceView) -> Markup {
    let id = &p.info.batch_id;
    let operator = s.role == Role::Operator;
    let kept = p
        .variants
        .iter()
        .filter(|v| v.mark == Some(Mark::Keep))
        .count();
    let shown: Vec<&Variant> = p
        .variants
        .iter()
        .filter(|v| filter.is_none_or(|f| v.state == f))
        .collect();
    let filter_name = filter.map(JobState::as_str).unwrap_or("all");
    html! {
        section id="progress" {
            p id="batch-state" data-finished=(p.finished()) {
                span id="done" { (p.info.done) } " of " span id="total" { (p.info.total) } " done"
                span id="finished" { @if p.finished() { " · finished" } }
            }
            table class="counts" {
                tr { @for state in JobState::ALL { th { (state.as_str()) } } }
                tr { @for state in JobState::ALL {
                    td id={ "count-" (state.as_str()) } { (p.info.count(state)) }
                } }
            }
            p { "ETA " span id="eta" { (p.eta_text()) } " · cost " span id="cost" { (p.cost_text()) } }
            ul id="pauses" {
                @for line in p.provider_lines() { li { (line) } }
            }
        }
        @if operator {
            p {
                form class="inline" method="post" action={ "/console/batches/" (id) "/cancel" } {
                    input type="hidden" name="csrf" value=(s.csrf);
                    button id="cancel" type="submit" { "Cancel batch" }
                }
                form class="inline" method="post" action={ "/console/batches/" (id) "/retry" } {
                    input type="hidden" name="csrf" value=(s.csrf);
                    button id="retry" type="submit" { "Retry failed" }
                }
            }
        }
        p class="filters" {
            "Show: "
            a class=(if filter.is_none() { "filter on" } else { "filter" }) data-state="all"
                href={ "/console/batches/" (id) } { "all (" span id="fcount-all" { (p.info.total) } ")" }
            @for state in JobState::ALL {
                a class=(if filter == Some(state) { "filter on" } else { "filter" }) data-state=(state.as_str())
                    href={ "/console/batches/" (id) "?state=" (state.as_str()) } {
                    (state.as_str()) " (" span id={ "fcount-" (state.as_str()) } { (p.info.count(state)) } ")"
                }
            }
        }
        p {
            a id="download-kept" href={ "/console/batches/" (id) "/kept.zip" }
                download={ (id) "-kept.zip" } { "Download the kept variants" }
            " (" span id="kept-count" { (kept) } " kept)"
        }
        section id="source" {
            h2 { "Source clip" }
            @match source {
                SourceView::Served => {
                    video controls preload="metadata" src={ "/console/batches/" (id) "/source" } {}
                }
                SourceView::Link(url) => { a href=(url) rel="noreferrer" { "The source clip (elsewhere)" } }
                SourceView::None => { p { "The source clip cannot be shown here." } }
            }
        }
        h2 { "Variants" }
        div class="sheet" id="variants" data-filter=(filter_name) {
            @for v in &shown { (figure(id, v, s, operator, filter_name)) }
        }
    }
}

fn figure(id: &str, v: &Variant, s: &Session, operator: bool, filter: &str) -> Markup {
    html! {
        figure class="variant" id={ "v-" (v.job_id) } data-job=(v.job_id)
            data-state=(v.state.as_str()) data-mark=[v.mark.map(Mark::as_str)] {
            @if let Some(url) = v.output_url(id) {
                video controls preload="metadata" src=(url) {}
            } @else {
                div class="none" { (v.state.as_str()) }
            }
            figcaption {
                p class="prompt" { (v.prompt) }
                p class="state" {
                    "#" (v.index) " · " span class="state-name" { (v.state.as_str()) }
                    @if let Some(c) = v.cost { " · " span class="cost" { (c.display()) } }
                }
                p class="err" { (v.error.as_deref().unwrap_or("")) }
                @if operator {
                    form class="mark" method="post" action={ "/console/batches/" (id) "/marks/" (v.job_id) } {
                        input type="hidden" name="csrf" value=(s.csrf);
                        input type="hidden" name="state" value=(filter);
                        button type="submit" name="mark" value="keep" { "Keep" }
                        button type="submit" name="mark" value="reject" { "Reject" }
                    }
                }
            }
        }
    }
}
