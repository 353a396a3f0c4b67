//! fal's webhook: once a request submitted with `?fal_webhook=<url>` is COMPLETED, fal
//! POSTs `{request_id, gateway_request_id, status: "OK", payload: <the result>}` or, when
//! it failed, `{…, status: "ERROR", error: "Invalid status code: <n>", payload: <the error
//! body>}` to that URL (fal docs, "Webhooks"), signed (`crate::push`). A request cancelled
//! before it ran gets none (ASSUMPTION: not documented). A watcher follows each request
//! on the simulator's clock and gives up on one stuck longer than the result retention.

use serde_json::{json, Value};
use std::time::{Duration, Instant};

use super::errors::failure_response;
use super::state::{phase, Phase};
use crate::media::{output_bytes, output_url};
use crate::push::{deliver, next_look, Push};
use crate::state::{SimState, View};

/// The `fal_webhook` of a submit's query string, if it is an http(s) URL.
pub(super) fn requested(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "fal_webhook")
        .map(|(_, v)| v.into_owned())
        .filter(|u| crate::push::usable(u))
}

/// Waits for the request to complete, then sends its webhook.
pub(super) async fn watch(state: SimState, id: String, url: String, base: String) {
    let give_up = {
        let k = state.lock().knobs.clone();
        Instant::now() + k.fal_result_retention.mul_f64(k.time_scale) + Duration::from_secs(60)
    };
    let body = loop {
        let now = Instant::now();
        let (done, end) = {
            let mut inner = state.lock();
            let end = inner.end_of(&id);
            match phase(&mut inner, &id, now) {
                None => return,
                Some(Phase::Done(view)) => (Some(view), end),
                Some(_) => (None, end),
            }
        };
        if let Some(view) = done {
            match body(&id, &base, view) {
                Some(b) => break b,
                None => return,
            }
        }
        if now > give_up {
            return;
        }
        tokio::time::sleep(next_look(end, now)).await;
    };
    let push = Push {
        url,
        body,
        fal_request_id: Some(id),
    };
    deliver(state, push).await;
}

fn body(id: &str, base: &str, view: Option<View>) -> Option<Value> {
    let mut b = json!({"request_id": id, "gateway_request_id": id});
    match view? {
        View::Completed { clip, .. } => {
            b["status"] = json!("OK");
            b["payload"] = json!({"video": {
                "url": output_url(base, id),
                "content_type": "video/mp4",
                "file_name": "output.mp4",
                "file_size": output_bytes(clip, id).len(),
            }});
        }
        View::Failed(failure) => {
            let status = failure_response(&failure).status().as_u16();
            b["status"] = json!("ERROR");
            b["error"] = json!(format!("Invalid status code: {status}"));
            b["payload"] = failure;
        }
        _ => return None,
    }
    Some(b)
}
