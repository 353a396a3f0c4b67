//! The console's form to start a batch (`/console/new`, `multipart/form-data`): the source
//! clip uploaded (`video_file`) or named by https URL or upload reference (`video`),
//! prompts one per line or a CSV upload, up to four reference images, provider, model,
//! duration, aspect ratio, budget. `parts` reads the body (CSRF first, files streamed to
//! the uploads directory); then it goes through exactly the API's create path
//! (`api::enqueue`), so the same rules and limits apply. An invalid batch re-renders the
//! form (422), values kept (an uploaded clip and images as their upload references),
//! naming the field and the limit, with nothing enqueued. Operator sessions only.

use super::console::{page, problem};
use super::error::ApiError;
use super::parts::{self, Stop};
use super::session::Session;
use super::AppState;
use crate::model::ProviderName;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use std::sync::Arc;

/// The form as posted (every text field as sent; empty = not given).
#[derive(Debug, Default)]
pub struct NewBatch {
    pub video: String,
    /// The reference of the uploaded clip, when one was uploaded.
    pub video_file: Option<String>,
    pub prompts: String,
    /// The prompts of the uploaded CSV, and its file name.
    pub csv_prompts: Vec<String>,
    pub csv_name: Option<String>,
    /// References of the uploaded (or kept) images.
    pub images: Vec<String>,
    pub provider: String,
    pub model: String,
    pub duration: String,
    pub aspect_ratio: String,
    pub max_cost: String,
    pub batch_id: String,
    pub skip_probe: Option<String>,
}

/// The aspect ratios offered (the provider and model decide which are accepted).
const ASPECT_RATIOS: &[&str] = &["16:9", "9:16", "1:1", "auto"];

fn given(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

fn form(s: &Session, f: &NewBatch, error: Option<&ApiError>) -> Markup {
    let provider = given(&f.provider).unwrap_or_else(|| "aimlapi".into());
    let model = given(&f.model).unwrap_or_else(|| "edit".into());
    // A clip uploaded with a form that was refused is offered again by reference.
    let video = f.video_file.clone().unwrap_or_else(|| f.video.clone());
    let field = error.map(error_field);
    html! {
        @if let Some(e) = error {
            p class="err" data-field=[field.as_deref()] { (e.to_string()) }
        }
        form id="new-batch" method="post" action="/console/new" enctype="multipart/form-data" {
            // First, so the server checks it before it accepts any file's bytes.
            input type="hidden" name="csrf" value=(s.csrf);
            fieldset {
                legend { "Source clip" }
                p { label { "Upload a clip (mp4, mov, webm) "
                    input type="file" name="video_file" accept="video/mp4,video/quicktime,video/webm,.mp4,.mov,.webm"; } }
                p { label { "or its https URL (or upload:<sha256>.mp4) " br;
                    input type="text" name="video" size="80" value=(video); } }
            }
            fieldset {
                legend { "Prompts" }
                p { label { "One per line " br;
                    textarea name="prompts" rows="8" cols="80" { (f.prompts) } } }
                p { label { "or a CSV (a prompt column, or one prompt per row) "
                    input type="file" name="prompts_csv" accept=".csv,text/csv"; } }
                @if let Some(name) = &f.csv_name {
                    p { "Re-attach " (name) " (" (f.csv_prompts.len()) " prompts) if you still want it." }
                }
            }
            p { label { "Reference images (at most " (parts::MAX_IMAGES) ") "
                input type="file" name="images" multiple accept="image/png,image/jpeg,image/webp,image/gif"; } }
            @if !f.images.is_empty() {
                p { "Kept images: " (f.images.join(" "))
                    input type="hidden" name="image_refs" value=(f.images.join(" ")); }
            }
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
                label { "Aspect ratio " select name="aspect_ratio" {
                    option value="" selected[f.aspect_ratio.is_empty()] { "as the model defaults" }
                    @for a in ASPECT_RATIOS {
                        option value=(a) selected[*a == f.aspect_ratio] { (a) }
                    }
                } }
                " "
                label { "Budget (USD) " input type="text" name="max_cost" size="8" value=(f.max_cost); }
                " "
                label { "Batch id " input type="text" name="batch_id" size="24" value=(f.batch_id); }
            }
            p { label { input type="checkbox" name="skip_probe" checked[f.skip_probe.is_some()];
                " Skip the probe of the clip against the provider's limits" } }
            button id="start" type="submit" { "Start batch" }
        }
    }
}

/// The field an error names (shown as the `.err` element's `data-field`).
fn error_field(e: &ApiError) -> String {
    match e {
        ApiError::Invalid { field, .. }
        | ApiError::TooLarge { field, .. }
        | ApiError::Full { field, .. } => field.clone(),
        _ => String::new(),
    }
}

pub async fn show(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match super::console::operator_session(&st, &headers).await {
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
    let video = match (&f.video_file, given(&f.video)) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "video_file",
                "upload a clip or give its URL in video, not both",
            ))
        }
        (Some(up), None) => Some(up.clone()),
        (None, v) => v,
    };
    if video.is_none() {
        return Err(ApiError::invalid(
            "video_file",
            "upload a clip, or give its https URL in video",
        ));
    }
    let mut prompts: Vec<String> = f
        .prompts
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    prompts.extend(f.csv_prompts.iter().cloned());
    if prompts.is_empty() {
        return Err(ApiError::invalid(
            "prompts",
            "give at least one prompt (one per line) or a prompts_csv",
        ));
    }
    Ok(super::api::CreateBatch {
        video,
        prompts,
        images: f.images.clone(),
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

/// How a refused form is answered: the form again, 422 for what the user can fix, 507
/// when the uploads directory is full.
fn refused(s: &Session, f: &NewBatch, e: &ApiError) -> Response {
    let status = match e {
        ApiError::Full { .. } => StatusCode::INSUFFICIENT_STORAGE,
        ApiError::Invalid { .. } | ApiError::TooLarge { .. } | ApiError::Conflict(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        other => other.status(),
    };
    page(status, "New batch", Some(s), form(s, f, Some(e)))
}

pub async fn submit(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let s = match super::console::operator_session(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let csrf_refused = || {
        problem(
            Some(&s),
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or wrong.",
        )
    };
    let mut f = NewBatch::default();
    let Ok(mut body) = body else {
        let e = ApiError::invalid("body", "the form must be sent as multipart/form-data");
        return refused(&s, &f, &e);
    };
    let read = parts::read(&st, &s, &mut body, &mut f).await;
    if read.is_err() {
        parts::drain(&mut body).await;
    }
    match read {
        Ok(()) => {}
        Err(Stop::Csrf) => return csrf_refused(),
        Err(Stop::Field(e)) => return refused(&s, &f, &e),
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
        Err(e) => refused(&s, &f, &e),
    }
}
