//! The web console, server-rendered with maud (no JavaScript needed): sign in with an API
//! token (a cookie session, see `session`), the batch list, and the batch page's cancel
//! and retry actions for operators (the page itself is `sheet`). Every form carries
//! the session's CSRF token; pages are sent with a strict Content-Security-Policy and
//! may not be framed. Only `/console/signin` is open.

use super::session::{self, Session};
use super::AppState;
use crate::config::Role;
use crate::job::JobState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;
use std::sync::Arc;

type Shared = State<Arc<AppState>>;

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d1d1f}\
header{background:#1d1d1f;color:#fff;padding:.6em 1.2em;display:flex;gap:1em;align-items:center}\
header a{color:#fff}main{padding:1.2em;max-width:70em}table{border-collapse:collapse}\
td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}\
.err{color:#b00020}form.inline{display:inline}button{margin-right:.5em}";

/// A page with the console's frame, headers that forbid scripts and framing.
pub(super) fn page(
    status: StatusCode,
    title: &str,
    who: Option<&Session>,
    body: Markup,
) -> Response {
    page_with(status, title, who, body, None)
}

/// [`page`], with an inline script allowed by a fresh nonce.
pub(super) fn page_with(
    status: StatusCode,
    title: &str,
    who: Option<&Session>,
    body: Markup,
    script: Option<&str>,
) -> Response {
    page_full(status, title, who, body, script, None, None)
}

/// [`page_with`], with media also allowed from `media_origin` (the results store's, whose
/// presigned links the batch page's videos are redirected to) and extra styles.
pub(super) fn page_full(
    status: StatusCode,
    title: &str,
    who: Option<&Session>,
    body: Markup,
    script: Option<&str>,
    media_origin: Option<&str>,
    style: Option<&str>,
) -> Response {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · restyle" }
                style { (PreEscaped(STYLE)) @if let Some(extra) = style { (PreEscaped(extra)) } }
            }
            body {
                header {
                    strong { "restyle" }
                    @if let Some(s) = who {
                        a href="/console/batches" { "Batches" }
                        @if s.role == Role::Operator { a href="/console/new" { "New batch" } }
                        a href="/console/operator" { "Operations" }
                        span { "signed in as " (s.name) " (" (role_name(s.role)) ")" }
                        form class="inline" method="post" action="/console/signout" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
                @if let Some(js) = script {
                    script nonce=(nonce) { (PreEscaped(js)) }
                }
            }
        }
    };
    let mut res = (status, axum::response::Html(markup.into_string())).into_response();
    let h = res.headers_mut();
    let media = match media_origin {
        Some(o) => format!("'self' {o}"),
        None => "'self'".to_owned(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; media-src {media}; \
         connect-src 'self'; script-src 'nonce-{nonce}'; form-action 'self'; \
         frame-ancestors 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Read => "read",
        Role::Operator => "operator",
    }
}

/// The request's session, or `None`; Redis trouble as the answer to send (503).
async fn lookup(
    st: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Session>, super::error::ApiError> {
    Ok(session::get(&st.queue, &st.tokens, headers).await?)
}

/// The session, or the redirect to the sign-in page (or the error Redis gave).
pub(super) async fn signed_in(
    st: &AppState,
    headers: &HeaderMap,
) -> Result<Session, Box<Response>> {
    match lookup(st, headers).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(Box::new(Redirect::to("/console/signin").into_response())),
        Err(e) => Err(Box::new(e.into_response())),
    }
}

/// The session, or 401 (for what a page fetches: media, archives, events).
pub(super) async fn session_or_401(
    st: &AppState,
    headers: &HeaderMap,
) -> Result<Session, super::error::ApiError> {
    lookup(st, headers)
        .await?
        .ok_or(super::error::ApiError::Unauthorized)
}

/// An operator's session: signed in with an operator token; else the answer to send.
pub(super) async fn operator_session(
    st: &AppState,
    headers: &HeaderMap,
) -> Result<Session, Box<Response>> {
    let s = signed_in(st, headers).await?;
    operator_only(s)
}

fn operator_only(s: Session) -> Result<Session, Box<Response>> {
    if s.role != Role::Operator {
        return Err(Box::new(problem(
            Some(&s),
            StatusCode::FORBIDDEN,
            "This needs an operator token.",
        )));
    }
    Ok(s)
}

/// The session behind an operator's form post: [`operator_session`] with the form's
/// CSRF token right; else the answer to send instead.
pub(super) async fn operator_form(
    st: &AppState,
    headers: &HeaderMap,
    f: &CsrfForm,
) -> Result<Session, Box<Response>> {
    let s = signed_in(st, headers).await?;
    if !s.csrf_ok(&f.csrf) {
        return Err(Box::new(problem(
            Some(&s),
            StatusCode::FORBIDDEN,
            "The form's CSRF token is missing or wrong.",
        )));
    }
    operator_only(s)
}

pub(super) fn problem(who: Option<&Session>, status: StatusCode, message: &str) -> Response {
    page(status, "Error", who, html! { p class="err" { (message) } })
}

pub async fn index() -> Redirect {
    Redirect::to("/console/batches")
}

pub async fn signin_form() -> Response {
    page(StatusCode::OK, "Sign in", None, signin_body(None))
}

fn signin_body(error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error { p class="err" { (e) } }
        form #signin method="post" action="/console/signin" {
            label { "API token " input type="password" name="token" autocomplete="off" required; }
            " "
            button type="submit" { "Sign in" }
        }
        p { "An API token from the settings' [[serve.tokens]], or the one restyle serve printed at start." }
    }
}

#[derive(Debug, Deserialize)]
pub struct SignIn {
    pub token: String,
}

/// A sign-in refused for too many failed ones from this address (429, `Retry-After`).
fn throttled(wait: std::time::Duration) -> Response {
    let secs = super::throttle::retry_after_secs(wait);
    let message = format!("Too many failed sign-ins from this address; try again in {secs} s.");
    let mut res = page(
        StatusCode::TOO_MANY_REQUESTS,
        "Sign in",
        None,
        signin_body(Some(&message)),
    );
    res.headers_mut().insert(header::RETRY_AFTER, secs.into());
    res
}

/// Signing in: failures count against the client address (`throttle`); a locked-out
/// address is refused before its token is looked at.
pub async fn signin(
    State(st): Shared,
    super::throttle::ClientIp(ip): super::throttle::ClientIp,
    headers: HeaderMap,
    Form(f): Form<SignIn>,
) -> Response {
    if let Some(wait) = st.throttle.locked_out(ip) {
        return throttled(wait);
    }
    let Some(t) = super::auth::find(&st.tokens, f.token.trim()) else {
        if let Some(wait) = st.throttle.failed(ip) {
            tracing::warn!(%ip, "Too many failed console sign-ins from one address; locked out.");
            return throttled(wait);
        }
        return page(
            StatusCode::UNAUTHORIZED,
            "Sign in",
            None,
            signin_body(Some("That token is not valid.")),
        );
    };
    let id = match session::create(&st.queue, &t.name).await {
        Ok(id) => id,
        Err(e) => return super::error::ApiError::from(e).into_response(),
    };
    tracing::info!(token = %t.name, "Console sign-in.");
    let mut res = Redirect::to("/console/batches").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(&id, session::behind_tls(&headers))) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

pub async fn signout(State(st): Shared, headers: HeaderMap, Form(f): Form<CsrfForm>) -> Response {
    let s = match signed_in(&st, &headers).await {
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
    if let Err(e) = session::remove(&st.queue, &headers).await {
        return super::error::ApiError::from(e).into_response();
    }
    let mut res = Redirect::to("/console/signin").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(session::behind_tls(&headers))) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

pub async fn batches(State(st): Shared, headers: HeaderMap) -> Response {
    let s = match signed_in(&st, &headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let listed = match st.queue.list_batches(0, 100).await {
        Ok(l) => l,
        Err(e) => return problem(Some(&s), StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let mut rows = Vec::new();
    for (id, _) in listed {
        if let Ok(Some(info)) = st.queue.batch(&id).await {
            rows.push(info);
        }
    }
    let body = html! {
        @if rows.is_empty() { p { "No batches yet." } }
        @else {
            table {
                tr { th { "Batch" } th { "Done" } th { "Total" } th { "State" } }
                @for info in &rows {
                    tr {
                        td { a href={ "/console/batches/" (info.batch_id) } { (info.batch_id) } }
                        td { (info.done) } td { (info.total) }
                        td { @if info.is_finished() { "finished" } @else { "running" } }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, "Batches", Some(&s), body)
}

/// Cancel or retry from the batch page: operator sessions with the form's CSRF token.
pub async fn act(
    State(st): Shared,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let s = match operator_form(&st, &headers, &f).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let info = match super::api::info(&st, &id).await {
        Ok(i) => i,
        Err(e) => return problem(Some(&s), StatusCode::NOT_FOUND, &e.to_string()),
    };
    let done = match action.as_str() {
        "cancel" => crate::ops::cancel(&st.queue, &st.upstreams, &info)
            .await
            .map(|_| ()),
        "retry" => crate::ops::retry(&st.queue, &info, &JobState::RETRY_DEFAULT)
            .await
            .map(|_| ()),
        _ => return problem(Some(&s), StatusCode::NOT_FOUND, "No such action."),
    };
    if action == "cancel" {
        crate::cli::store::schedule_retention(&st.queue, &st.settings, &id).await;
    }
    match done {
        Ok(()) => {
            tracing::info!(token = %s.name, batch_id = %id, action = %action, "Console action.");
            Redirect::to(&format!("/console/batches/{id}")).into_response()
        }
        Err(e) => problem(Some(&s), StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}
