//! The oxen protocol in the simulator (being written).

use super::SimState;
use axum::Router;

/// Per-protocol state kept inside the simulator's one lock.
#[derive(Debug, Default)]
pub(crate) struct OxenState {}

/// The oxen routes.
pub(crate) fn routes() -> Router<SimState> {
    Router::new()
}
