//! The kling protocol in the simulator (being written).

use super::SimState;
use axum::Router;

/// Per-protocol state kept inside the simulator's one lock.
#[derive(Debug, Default)]
pub(crate) struct KlingState {}

/// The kling routes.
pub(crate) fn routes() -> Router<SimState> {
    Router::new()
}
