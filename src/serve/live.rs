//! The batch page's live updates: `GET /console/batches/<id>/events`, server-sent events
//! with the batch's progress (`done`, `total`, `finished`, counts per state) every
//! [`EVERY`], ending once the batch is finished or after [`MAX_STREAM`] (the browser
//! reconnects). The page's small inline script (allowed by its CSP nonce) applies them;
//! no build step.

use super::AppState;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Between two progress events.
pub const EVERY: Duration = Duration::from_millis(500);
/// Longest one event stream runs.
pub const MAX_STREAM: Duration = Duration::from_secs(3600);

/// The script of the batch page: follows the events and updates the figures in place.
pub const SCRIPT: &str = r#"(function(){
var es=new EventSource(location.pathname+"/events");
es.addEventListener("progress",function(e){var d=JSON.parse(e.data);
document.getElementById("done").textContent=d.done;
document.getElementById("total").textContent=d.total;
for(var k in d.counts){var c=document.getElementById("count-"+k);if(c)c.textContent=d.counts[k];}
if(d.finished){document.getElementById("finished").textContent=" · finished";es.close();}});
})();"#;

struct Follow {
    st: Arc<AppState>,
    id: String,
    started: Instant,
    first: bool,
    over: bool,
}

async fn progress(f: Follow) -> Option<(Result<Event, Infallible>, Follow)> {
    let mut f = f;
    if f.over || f.started.elapsed() > MAX_STREAM {
        return None;
    }
    if !f.first {
        tokio::time::sleep(EVERY).await;
    }
    f.first = false;
    let event = match f.st.queue.batch(&f.id).await {
        Ok(Some(info)) => {
            f.over = info.is_finished();
            Event::default().event("progress").data(
                json!({
                    "done": info.done,
                    "total": info.total,
                    "finished": info.is_finished(),
                    "counts": info.counts,
                })
                .to_string(),
            )
        }
        Ok(None) => {
            f.over = true;
            Event::default().event("gone").data("{}")
        }
        // Redis is away: say so and try again next time.
        Err(_) => Event::default().event("unavailable").data("{}"),
    };
    Some((Ok(event), f))
}

pub async fn events(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if st.sessions.get(&headers).is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if crate::batch::validate_batch_id(&id).is_err() {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let follow = Follow {
        st,
        id,
        started: Instant::now(),
        first: true,
        over: false,
    };
    let s: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(stream::unfold(follow, progress));
    Sse::new(s).keep_alive(KeepAlive::default()).into_response()
}
