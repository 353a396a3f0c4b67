//! The console's operator page: every provider's admission state (in flight against its
//! cap, rate, cool-down, account pause with a *Resume* button), the queue's depth, and
//! the newest dead jobs with their reasons. The same data as `restyle status`'s provider
//! table, `restyle dead` and the depth gauges; resume is `restyle resume`.

use super::console::{operator_form, page, problem, signed_in, CsrfForm};
use super::AppState;
use crate::config::Role;
use crate::model::ProviderName;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use std::sync::Arc;

/// Dead jobs shown.
const DEAD_SHOWN: usize = 50;

pub async fn show(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let s = match signed_in(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let gathered = async {
        let (_, providers) = crate::status::provider_statuses(&st.queue, &st.settings).await?;
        let depth = st.queue.depth().await?;
        let dead = crate::ops::dead(&st.queue, DEAD_SHOWN).await?;
        Ok::<_, crate::queue::QueueError>((providers, depth, dead))
    };
    let (providers, (ready, parked, leased), dead) = match gathered.await {
        Ok(x) => x,
        Err(e) => return problem(Some(&s), StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let body = html! {
        h2 { "Queue" }
        table #queue {
            tr { th { "Ready" } th { "Waiting (parked)" } th { "Running (leased)" } }
            tr { td { (ready) } td { (parked) } td { (leased) } }
        }
        h2 { "Providers" }
        table #providers {
            tr { th { "Provider" } th { "In flight" } th { "Cap" } th { "Rate (last s)" }
                 th { "Limit /s" } th { "Cool-down ms" } th { "Paused" } th {} }
            @for (name, p) in &providers {
                tr {
                    td { (name) } td { (p.in_flight) }
                    td { @if p.max_in_flight == 0 { "none" } @else { (p.max_in_flight) } }
                    td { (p.rate_last_second) } td { (p.rate_limit) } td { (p.cooldown_ms) }
                    td class="err" { (p.paused.clone().unwrap_or_default()) }
                    td {
                        @if p.paused.is_some() && s.role == Role::Operator {
                            form class="inline" method="post" action={ "/console/providers/" (name) "/resume" } {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button type="submit" { "Resume" }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Dead jobs" }
        @if dead.is_empty() { p #dead { "None." } }
        @else {
            table #dead {
                tr { th { "Job" } th { "Reason" } }
                @for d in &dead { tr { td { (d.job_id) } td class="err" { (d.reason) } } }
            }
        }
    };
    page(StatusCode::OK, "Operations", Some(&s), body)
}

pub async fn resume(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(provider): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = match operator_form(&st, &headers, &f).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Some(p) = ProviderName::parse(&provider) else {
        return problem(Some(&s), StatusCode::NOT_FOUND, "No such provider.");
    };
    match st.queue.resume_provider(p.as_str()).await {
        Ok(n) => {
            tracing::info!(token = %s.name, provider = %p, requeued = n, "Console resumed a provider.");
            Redirect::to("/console/operator").into_response()
        }
        Err(e) => problem(Some(&s), StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}
