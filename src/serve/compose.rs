//! The console's form to start a batch: the source clip's https URL (or an upload
//! reference), prompts one per line, provider, model, duration, aspect ratio, budget.
//! It goes through exactly the API's create path (`api::enqueue`), so the same rules
//! and limits apply; an invalid batch re-renders the form, values kept, naming the
//! field and the limit, with nothing enqueued. Operator sessions only, CSRF checked.

use super::console::{page, problem, signed_in};
use super::error::ApiError;
use super::session::Session;
use super::AppState;
use crate::config::Role;
use crate::model::ProviderName;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;
use std::sync::Arc;

/// The form as posted (every field text; empty = not given).
#[derive(Debug, Default, Deserialize)]
pub struct NewBatch {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub video: String,
    #[serde(default)]
    pub prompts: String,
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub duration: String,
    #[serde(default)]
    pub aspect_ratio: String,
    #[serde(default)]
    pub max_cost: String,
    #[serde(default)]
    pub batch_id: String,
    pub skip_probe: Option<String>,
}

fn given(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

fn form(s: &Session, f: &NewBatch, error: Option<&ApiError>) -> Markup {
    let provider = given(&f.provider).unwrap_or_else(|| "aimlapi".into());
    let model = given(&f.model).unwrap_or_else(|| "edit".into());
    html! {
        @if let Some(e) = error { p class="err" { (e.to_string()) } }
        form method="post" action="/console/new" {
            input type="hidden" name="csrf" value=(s.csrf);
            p { label { "Source clip (https URL or upload:<sha256>.mp4) " br;
                input type="text" name="video" size="80" value=(f.video) required; } }
            p { label { "Prompts, one per line " br;
                textarea name="prompts" rows="8" cols="80" required { (f.prompts) } } }
            p {
                label { "Provider " select name="provider" {
                    @for p in ProviderName::ALL {
                        option value=(p.as_str()) selected[p.as_str() == provider] { (p.as_str()) }
                    }
                } }
                " "
                label { "Model " select name="model" {
                    @for m in ["edit", "reference"] {
                        option value=(m) selected[m == model] { (m) }
                    }
                } }
            }
            p {
                label { "Duration (s, reference model) " input type="text" name="duration" size="4" value=(f.duration); }
                " "
                label { "Aspect ratio " input type="text" name="aspect_ratio" size="6" value=(f.aspect_ratio); }
                " "
                label { "Budget (USD) " input type="text" name="max_cost" size="8" value=(f.max_cost); }
                " "
                label { "Batch id " input type="text" name="batch_id" size="24" value=(f.batch_id); }
            }
            p { label { input type="checkbox" name="skip_probe" checked[f.skip_probe.is_some()];
                " Skip the probe of the clip against the provider's limits" } }
            button type="submit" { "Start batch" }
        }
    }
}

fn operator(st: &AppState, headers: &HeaderMap) -> Result<Session, Box<Response>> {
    let s = signed_in(st, headers).map_err(|r| Box::new(r.into_response()))?;
    if s.role != Role::Operator {
        return Err(Box::new(problem(
            Some(&s),
            StatusCode::FORBIDDEN,
            "This needs an operator token.",
        )));
    }
    Ok(s)
}

pub async fn show(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match operator(&st, &headers) {
        Ok(s) => page(
            StatusCode::OK,
            "New batch",
            Some(&s),
            form(&s, &NewBatch::default(), None),
        ),
        Err(r) => *r,
    }
}

/// The form's fields as the API's request; a number that does not parse names its field.
fn request(f: &NewBatch) -> Result<super::api::CreateBatch, ApiError> {
    let duration = given(&f.duration)
        .map(|d| {
            d.parse::<u32>()
                .map_err(|_| ApiError::invalid("duration", "must be whole seconds"))
        })
        .transpose()?;
    let max_cost = given(&f.max_cost)
        .map(|c| {
            c.parse::<f64>()
                .map_err(|_| ApiError::invalid("max_cost", "must be a USD amount, e.g. 40"))
        })
        .transpose()?;
    Ok(super::api::CreateBatch {
        video: given(&f.video),
        prompts: f
            .prompts
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        provider: given(&f.provider),
        model: given(&f.model),
        duration,
        aspect_ratio: given(&f.aspect_ratio),
        max_cost,
        batch_id: given(&f.batch_id),
        skip_probe: f.skip_probe.is_some(),
        ..Default::default()
    })
}

pub async fn submit(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Form(f): Form<NewBatch>,
) -> Response {
    let s = match operator(&st, &headers) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if !s.csrf_ok(&f.csrf) {
        return problem(
            Some(&s),
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or wrong.",
        );
    }
    let done = match request(&f) {
        Ok(req) => super::api::enqueue(&st, req).await,
        Err(e) => Err(e),
    };
    match done {
        Ok((done, _)) => {
            tracing::info!(token = %s.name, batch_id = %done.batch_id, "Console batch started.");
            Redirect::to(&format!("/console/batches/{}", done.batch_id)).into_response()
        }
        Err(e) => {
            let status = e.status();
            page(status, "New batch", Some(&s), form(&s, &f, Some(&e)))
        }
    }
}
