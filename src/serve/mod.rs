//! `restyle serve`: the HTTP API (JSON under `/api/v1`, its OpenAPI document at
//! `/api/v1/openapi.json`) and the web console (`/console`: `console`, `compose`, `operator`,
//! `sheet` the batch's contact sheet with `progress` and `live`, `outputs` its media,
//! `marks` the review marks, `kept` the download of the kept ones, and `session`)
//! over the same functions the CLI calls. `api` holds the
//! handlers, `auth` the bearer tokens and roles, `error` the JSON errors, `openapi` the
//! document, `upload` the streamed uploads a batch can name (and their expiry),
//! `parts` the new-batch form's multipart body, `throttle` the limit on failed tokens per
//! client address. `/healthz` is open; everything under `/api/v1` needs a token. Requests are
//! bounded: body size ([`MAX_BODY_BYTES`]; the new-batch form: [`form_body_limit`]),
//! connections and time per request (the push receiver's server loop, `push::serve`).

mod api;
pub mod auth;
mod compose;
mod console;
mod live;
pub mod session;
mod error;
mod kept;
mod marks;
mod openapi;
mod operator;
mod outputs;
mod parts;
mod progress;
mod sheet;
pub mod throttle;
pub mod upload;

pub use error::ApiError;

use crate::config::{ApiToken, Settings};
use crate::queue::Queue;
use crate::sink::store::ObjectSink;
use crate::upstream::Upstreams;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use std::sync::Arc;

/// Largest request body accepted (a batch of many long prompts fits).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;
/// A request (headers and body) taking longer is cut off.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// What every handler shares.
pub struct AppState {
    pub settings: Settings,
    pub queue: Queue,
    pub upstreams: Upstreams,
    pub store: Option<Arc<ObjectSink>>,
    /// Accepted tokens: `[serve] tokens`, or the one made at start.
    pub tokens: Vec<ApiToken>,
    /// Failed sign-ins and bad bearer tokens per client address.
    pub throttle: throttle::Throttle,
}

impl AppState {
    /// The state of a `serve` with these parts (its console sessions are in Redis).
    pub fn new(
        settings: Settings,
        queue: Queue,
        upstreams: Upstreams,
        store: Option<Arc<ObjectSink>>,
        tokens: Vec<ApiToken>,
    ) -> Self {
        let throttle = throttle::Throttle::new(settings.serve.auth_failures_per_minute);
        AppState {
            settings,
            queue,
            upstreams,
            store,
            tokens,
            throttle,
        }
    }
}

/// The largest new-batch form body: a clip, the images, a prompts CSV and the text
/// fields each at their own cap (each part is also held to its cap as it is read).
pub fn form_body_limit(settings: &Settings) -> usize {
    let video = settings.limits.max_video_bytes;
    let images = parts::MAX_IMAGES as u64 * video.min(upload::MAX_IMAGE_BYTES);
    let total = video + images + parts::MAX_CSV_BYTES + 2 * MAX_BODY_BYTES as u64;
    usize::try_from(total).unwrap_or(usize::MAX)
}

/// The client address of a request (the TCP peer; unspecified when the server was not
/// started with connection info).
pub(crate) fn peer(extensions: &axum::http::Extensions) -> std::net::IpAddr {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

/// The whole app: `/healthz` and the authenticated `/api/v1`.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .route("/batches", get(api::list).post(api::create))
        .route("/batches/{batch_id}", get(api::status))
        .route("/batches/{batch_id}/results", get(api::results))
        .route("/batches/{batch_id}/cancel", post(api::cancel))
        .route("/batches/{batch_id}/retry", post(api::retry))
        .route("/batches/{batch_id}/budget", post(api::budget))
        .route("/batches/{batch_id}/marks", get(marks::list))
        .route("/batches/{batch_id}/marks/{job_id}", put(marks::put))
        .route("/batches/{batch_id}/kept.zip", get(kept::api))
        .route("/uploads", post(upload::upload))
        .route("/providers", get(api::providers))
        .route("/providers/{provider}/resume", post(api::resume))
        .route("/dead", get(api::dead))
        .fallback(|| async { ApiError::NotFound("route".into()) })
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .with_state(state.clone());
    let console = Router::new()
        .route("/", get(console::index))
        .route("/signin", get(console::signin_form).post(console::signin))
        .route("/signout", post(console::signout))
        .route(
            "/new",
            get(compose::show)
                .post(compose::submit)
                .layer(DefaultBodyLimit::max(form_body_limit(&state.settings))),
        )
        .route("/operator", get(operator::show))
        .route("/providers/{provider}/resume", post(operator::resume))
        .route("/batches", get(console::batches))
        .route("/batches/{batch_id}", get(sheet::show))
        .route("/batches/{batch_id}/events", get(live::events))
        .route("/batches/{batch_id}/source", get(outputs::source))
        .route("/batches/{batch_id}/kept.zip", get(kept::console))
        .route(
            "/batches/{batch_id}/jobs/{job_id}/output",
            get(outputs::output),
        )
        .route("/batches/{batch_id}/marks/{job_id}", post(marks::post_form))
        .route("/batches/{batch_id}/{action}", post(console::act))
        .with_state(state.clone());
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/console/batches") }),
        )
        .nest("/api/v1", api)
        .nest("/console", console)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// The tokens `serve` accepts: `[serve] tokens`, or else one operator token made now,
/// returned so the caller can show it once (never logged).
pub fn tokens_or_generate(settings: &Settings) -> (Vec<ApiToken>, Option<String>) {
    if !settings.serve.tokens.is_empty() {
        return (settings.serve.tokens.clone(), None);
    }
    let token = auth::generate_token();
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(auth::hash_token(&token), &mut sha256).expect("64 hex digits");
    let entry = ApiToken {
        name: "generated".into(),
        role: crate::config::Role::Operator,
        sha256,
    };
    (vec![entry], Some(token))
}
