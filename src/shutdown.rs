//! Shutdown signals: SIGTERM (orchestrators) and SIGINT (Ctrl-C) both mean "stop taking
//! work, finish or hand back what is running, exit 0".
//!
//! A stopping `restyle worker` ([`crate::worker::run_with`]) stops claiming, gives the
//! running stages `worker.shutdown_grace` to end, then spends at most [`HANDBACK`] handing
//! back to Redis whatever the grace cut off, and exits with status 0 — also when Redis is
//! unreachable and nothing could be handed back: those jobs' leases expire on their own
//! and another worker's sweep returns them to the queue (state unchanged, so nothing is
//! paid twice). An orchestrator's termination grace period should therefore be at least
//! `worker.shutdown_grace` + [`HANDBACK`].

use std::time::Duration;

/// After the grace period, the longest a stopping worker keeps trying to hand its work
/// back (stop the fetcher and the lease timer, release the stages cut off): a few round
/// trips when Redis answers, a bound when it does not.
pub const HANDBACK: Duration = Duration::from_secs(3);

/// Resolves on the first SIGTERM or SIGINT.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
