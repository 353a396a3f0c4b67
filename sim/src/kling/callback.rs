//! Kling's callback: when a create carried `callback_url`, Kling "actively notifies" it
//! "when the task status changes" with the task object (`task_id`, `task_status`,
//! `task_status_msg`, `task_info`, `task_result`, `final_unit_deduction`, times in ms:
//! the Callback Protocol page, known through copies; docs/providers.md "Push — Kling").
//! No signature is documented, so none is sent. The simulator posts on the move to
//! `processing` and on the terminal status, each through the push knobs (`crate::push`).

use std::time::{Duration, Instant};

use super::routes::task_data;
use crate::push::{deliver, next_look, Push};
use crate::state::SimState;

/// Follows a task on the simulator's clock and posts each status change to `url`.
pub(super) async fn watch(state: SimState, task_id: String, url: String, host: String) {
    let give_up = Instant::now() + Duration::from_secs(3600);
    let mut last = String::from("submitted");
    loop {
        let now = Instant::now();
        let (data, end) = {
            let mut inner = state.lock();
            let end = inner.end_of(&task_id);
            (task_data(&mut inner, &task_id, &host), end)
        };
        let Some(data) = data else { return };
        let status = data["task_status"].as_str().unwrap_or_default().to_owned();
        if status != last {
            let terminal = matches!(status.as_str(), "succeed" | "failed");
            let push = Push {
                url: url.clone(),
                body: data,
                fal_request_id: None,
            };
            tokio::spawn(deliver(state.clone(), push));
            if terminal {
                return;
            }
            last = status;
        }
        if now > give_up {
            return;
        }
        tokio::time::sleep(next_look(end, now)).await;
    }
}
