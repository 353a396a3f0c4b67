//! `restyle serve`: opens Redis, the provider clients and the store, settles the tokens
//! (printing a generated one once, on stderr, never through the logs) and serves
//! [`crate::serve::router`] until SIGTERM/SIGINT.

use super::CliError;
use crate::config::Settings;
use crate::queue::{Queue, RetryMode};
use std::net::SocketAddr;
use std::sync::Arc;

pub async fn run(settings: Settings, listen: SocketAddr) -> Result<(), CliError> {
    serve_on(settings, bind(listen).await?).await
}

/// The listener `serve` answers on.
pub async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener, CliError> {
    tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| CliError::Other(anyhow::anyhow!("API listener on {listen}: {e}")))
}

/// `serve` on a listener already bound (`restyle demo --console` binds first to say where).
pub async fn serve_on(
    settings: Settings,
    listener: tokio::net::TcpListener,
) -> Result<(), CliError> {
    let queue = Queue::connect(&settings.redis, &settings.queue, RetryMode::FailFast).await?;
    let upstreams = crate::upstream::build_all(&settings).map_err(|e| CliError::Other(e.into()))?;
    let store = super::store::open(&settings)?;
    let (tokens, generated) = crate::serve::tokens_or_generate(&settings);
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Other(e.into()))?;
    if let Some(token) = generated {
        // Once, on stderr, outside tracing: no log pipeline ever holds it.
        eprintln!(
            "restyle serve: no [serve] tokens configured; operator token for this run (shown once): {token}"
        );
    }
    tracing::info!(%addr, tokens = tokens.len(), "API listening.");
    let state = Arc::new(crate::serve::AppState::new(
        settings, queue, upstreams, store, tokens,
    ));
    // Removes uploads no batch used within `[serve] upload_ttl`; ends with the process.
    let _sweeper = crate::serve::upload::spawn_sweeper(state.clone());
    let stop = tokio_util::sync::CancellationToken::new();
    let s2 = stop.clone();
    tokio::spawn(async move {
        crate::shutdown::signal().await;
        tracing::info!("Signal received; stopping.");
        s2.cancel();
    });
    crate::push::serve(
        listener,
        crate::serve::router(state),
        crate::serve::MAX_CONNECTIONS,
        crate::serve::REQUEST_TIMEOUT,
        stop,
    )
    .await;
    tracing::info!("API stopped.");
    Ok(())
}
