//! The provider simulator: a real HTTP peer speaking each provider's protocol (aimlapi,
//! Oxen, fal, Kling), with failure knobs and counters, for restyle's demo, tests and
//! benchmarks. It shares no code with the clients it talks to: its model names, its
//! validation and its Kling JWT check are its own, from the providers' documentation.
//!
//! This file: the public API, the router, the `/sim/*` control endpoints, spawning and
//! serving. Each protocol has its module (its routes, wire formats and own state); every
//! API request passes the one `gate` (credential, rate, injected fault, validation);
//! the shared core of generations, the knobs and the counters live in `state`.

mod aimlapi;
mod bodies;
mod fal;
mod gate;
mod kling;
mod limits;
mod media;
mod model;
mod oxen;
mod probe;
mod push;
mod state;

#[cfg(test)]
mod limit_tests;
#[cfg(test)]
mod push_tests;
#[cfg(test)]
mod economy_tests;
#[cfg(test)]
mod tests;

pub use limits::{RequestKind, RequestLogEntry};
pub use media::{clip_for, output_bytes};
pub use push::PushStats;
pub use state::{Knobs, LatencyDist, ProviderCounters, SimState, SimStats, Spread};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::net::SocketAddr;
use tokio::sync::oneshot;

/// All routes: each protocol's (with the body sizes its provider documents, see
/// `bodies`), output files, and the `/sim/*` control endpoints.
pub fn router(state: SimState) -> Router {
    let limit = DefaultBodyLimit::max;
    let counted = |routes: Router<SimState>, provider: &'static str| {
        let state = state.clone();
        routes.layer(axum::middleware::from_fn(move |req, next| {
            count_body(state.clone(), provider, req, next)
        }))
    };
    Router::new()
        .merge(counted(
            aimlapi::routes().layer(limit(bodies::SUBMIT_MAX)),
            "aimlapi",
        ))
        .merge(counted(oxen::routes(), "oxen"))
        .merge(counted(
            fal::routes().layer(limit(bodies::SUBMIT_MAX)),
            "fal",
        ))
        .merge(counted(
            fal::storage_routes().layer(limit(bodies::UPLOAD_MAX)),
            "fal",
        ))
        .merge(counted(
            kling::routes().layer(limit(bodies::KLING_MAX)),
            "kling",
        ))
        .merge(push::routes())
        .route("/sim/files/{file}", get(media::download))
        .route("/sim/stats", get(get_stats).delete(reset_stats))
        .route("/sim/knobs", get(get_knobs).put(put_knobs))
        .route("/sim/requests", get(get_requests))
        .fallback(not_found)
        .with_state(state)
}

/// Counts a request's body bytes under `provider` as they arrive
/// (`request_bytes_total`), then hands the request on.
async fn count_body(
    state: SimState,
    provider: &'static str,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use futures::TryStreamExt;
    let (parts, body) = req.into_parts();
    let stream = body.into_data_stream().inspect_ok(move |chunk| {
        state.lock().counters(provider).request_bytes_total += chunk.len() as u64;
    });
    let body = axum::body::Body::from_stream(stream);
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

async fn get_stats(State(state): State<SimState>) -> Json<SimStats> {
    Json(state.stats())
}

/// `DELETE /sim/stats`: the counters start afresh (see [`SimState::reset_stats`]).
async fn reset_stats(State(state): State<SimState>) -> StatusCode {
    state.reset_stats();
    StatusCode::NO_CONTENT
}

/// `GET /sim/requests`: every authorized API request still in the log, oldest first.
async fn get_requests(State(state): State<SimState>) -> Json<Vec<RequestLogEntry>> {
    Json(state.requests())
}

async fn get_knobs(State(state): State<SimState>) -> Json<Knobs> {
    Json(state.knobs())
}

/// `PUT /sim/knobs`: replaces every knob (absent fields take their defaults).
async fn put_knobs(State(state): State<SimState>, body: Bytes) -> Response {
    let knobs: Knobs = match serde_json::from_slice(&body) {
        Ok(k) => k,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid knobs: {e}")).into_response(),
    };
    if let Err(e) = knobs.check() {
        return (StatusCode::BAD_REQUEST, format!("invalid knobs: {e}")).into_response();
    }
    state.set_knobs(knobs);
    Json(state.knobs()).into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    aimlapi::envelope(StatusCode::NOT_FOUND, "Not Found", uri.path())
}

/// A running simulator. Dropping it does not stop the server; call [`SimHandle::shutdown`].
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    state: SimState,
    shutdown: oneshot::Sender<()>,
}

impl SimHandle {
    /// The bound address (the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (or whichever host it is bound to).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        self.state.stats()
    }

    /// Starts the counters afresh (`DELETE /sim/stats`).
    pub fn reset_stats(&self) {
        self.state.reset_stats();
    }

    /// Every authorized API request (submit or poll) still in the log, oldest first.
    pub fn requests(&self) -> Vec<RequestLogEntry> {
        self.state.requests()
    }

    /// What the webhooks and callbacks did (`GET /sim/push`).
    pub fn push_stats(&self) -> PushStats {
        self.state.lock().push.stats.clone()
    }

    /// Replaces the knobs; existing generations keep their schedule and fate.
    pub fn set_knobs(&self, knobs: Knobs) {
        self.state.set_knobs(knobs);
    }

    /// The current knobs.
    pub fn knobs(&self) -> Knobs {
        self.state.knobs()
    }

    /// The exact bytes `/sim/files` serves as the output of a completed generation (its
    /// prompt's sample clip and its id, see [`output_bytes`]); `None` for an id that is not
    /// a completed generation.
    pub fn output_of(&self, generation_id: &str) -> Option<Vec<u8>> {
        let view = self
            .state
            .lock()
            .view(generation_id, std::time::Instant::now());
        match view {
            Some(state::View::Completed { clip, .. }) => Some(output_bytes(clip, generation_id)),
            _ => None,
        }
    }

    /// Stops accepting connections and lets open requests finish.
    pub fn shutdown(self) {
        let _ = self.shutdown.send(());
    }
}

/// Binds `listen` (port 0 picks a free port) and serves in a background tokio task.
pub async fn spawn(listen: SocketAddr, knobs: Knobs) -> std::io::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let state = SimState::new(knobs);
    state.set_bound(addr);
    let (tx, rx) = oneshot::channel::<()>();
    let app = router(state.clone());
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "simulator stopped with an error");
        }
    });
    Ok(SimHandle {
        addr,
        state,
        shutdown: tx,
    })
}

/// Serves on `listen` until ctrl-c or SIGTERM (`restyle sim --listen`).
pub async fn serve(listen: SocketAddr, knobs: Knobs) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let state = SimState::new(knobs);
    state.set_bound(addr);
    tracing::info!(%addr, base_url = %format!("http://{addr}"), "simulator listening");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("simulator stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
