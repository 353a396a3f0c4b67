//! The receiver's HTTP/1 server, with the bounds axum's `serve` does not set: at most
//! `push.max_concurrency` connections at once (the rest wait in the listen backlog), one
//! request per connection (no keep-alive: providers send one push at a time), a 16 KiB
//! header buffer and 32 headers, headers within the request timeout, and the whole
//! connection cut at twice the request timeout.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Header bytes a request may carry (hyper's smallest buffer is 8 KiB).
const MAX_HEADER_BUF: usize = 16 * 1024;
/// Headers a request may carry.
const MAX_HEADERS: usize = 32;

/// Serves `app` on `listener` until `stop`; connections under way are cut off by their
/// own timeout.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    max_connections: usize,
    request_timeout: Duration,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.cancelled() => return,
        };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "Push receiver: accept failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        // The peer's address, as `ConnectInfo` (what `serve`'s per-address limits key on).
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                req
            },
        ));
        tokio::spawn(async move {
            let _permit = permit;
            let mut b = hyper::server::conn::http1::Builder::new();
            b.keep_alive(false)
                .max_buf_size(MAX_HEADER_BUF)
                .max_headers(MAX_HEADERS)
                .timer(TokioTimer::new())
                .header_read_timeout(request_timeout);
            let conn = b.serve_connection(TokioIo::new(stream), service);
            if tokio::time::timeout(request_timeout * 2, conn)
                .await
                .is_err()
            {
                tracing::debug!("Push receiver: connection cut at its time limit.");
            }
        });
    }
}
