//! Oxen's SSE completion events (`GET /api/events`). Generation state is
//! derived lazily from the clock, so each subscriber's stream ticks every 25 ms: it settles
//! the open generations into a shared journal of completions and sends the ones of its
//! own user that happened after it connected. No replay, no event for a cancelled
//! generation, `: keep-alive` every 15 s, and the `drop_events_rate` knob loses events.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::time::{Duration, Instant, SystemTime};

use super::state::failure_message;
use super::{unix_of, unix_secs, Oxen, MODEL};
use crate::gate::{self, Protocol};
use crate::media::{base_url, output_url};
use crate::state::{Inner, SimState, View};

/// How often a subscriber looks for completions.
const TICK: Duration = Duration::from_millis(25);
/// The event type Oxen sends when a generation succeeds or fails.
pub(crate) const COMPLETED_EVENT: &str = "media_generation_completed";

/// Open generations and the completions not yet read by every subscriber.
#[derive(Debug, Default)]
pub(super) struct Journal {
    /// Generations not yet seen terminal.
    open: BTreeSet<String>,
    /// Completions; `base` is the sequence number of the first one kept.
    entries: VecDeque<Completion>,
    base: u64,
    subs: HashMap<u64, Subscriber>,
    next_sub: u64,
}

#[derive(Debug, Clone)]
struct Completion {
    at: Instant,
    /// The user (API key) it belongs to.
    key: String,
    id: String,
    /// `None` = succeeded; otherwise the failure's message.
    error: Option<String>,
}

#[derive(Debug)]
struct Subscriber {
    key: String,
    /// Completions before this are never sent (there is no replay).
    since: Instant,
    /// Sequence number of the next completion to look at.
    cursor: u64,
}

impl Journal {
    /// Tracks a new generation until it turns terminal.
    pub(super) fn open(&mut self, id: &str) {
        self.open.insert(id.to_owned());
    }

    fn end(&self) -> u64 {
        self.base + self.entries.len() as u64
    }

    /// Drops completions every subscriber has read.
    fn trim(&mut self) {
        let min = self.subs.values().map(|s| s.cursor).min();
        let min = min.unwrap_or_else(|| self.end());
        while self.base < min && self.entries.pop_front().is_some() {
            self.base += 1;
        }
    }
}

/// The generation's view as of `now`, recording its timestamps; the first time it is seen
/// terminal it leaves the open set, and a success or failure becomes a completion event.
pub(super) fn observe(
    inner: &mut Inner,
    id: &str,
    now: Instant,
    now_sys: SystemTime,
) -> Option<View> {
    let view = inner.view(id, now)?;
    let Some(g) = inner.oxen.gens.get_mut(id) else {
        return Some(view);
    };
    let ended = match &view {
        View::Queued => None,
        View::Generating => {
            g.started_at.get_or_insert(unix_secs(now_sys));
            None
        }
        View::Completed { at, .. } => Some(*at),
        View::Failed(_) | View::Cancelled => Some(now),
    };
    let Some(at) = ended else {
        return Some(view);
    };
    let done = *g.completed_at.get_or_insert(unix_of(at, now, now_sys));
    if !matches!(view, View::Cancelled) {
        g.started_at.get_or_insert(done);
    }
    let error = match &view {
        View::Failed(body) => Some(failure_message(g, body)),
        _ => None,
    };
    let key = g.key.clone();
    let journal = &mut inner.oxen.events;
    if journal.open.remove(id) && !matches!(view, View::Cancelled) && !journal.subs.is_empty() {
        journal.entries.push_back(Completion {
            at,
            key,
            id: id.to_owned(),
            error,
        });
    }
    Some(view)
}

/// Observes every open generation (a subscriber's tick).
fn sweep(inner: &mut Inner) {
    let (now, now_sys) = (Instant::now(), SystemTime::now());
    let ids: Vec<String> = inner.oxen.events.open.iter().cloned().collect();
    for id in ids {
        observe(inner, &id, now, now_sys);
    }
}

/// One SSE connection; unsubscribes when the stream is dropped (the client went away).
#[derive(Debug)]
struct Subscription {
    state: SimState,
    id: u64,
    /// `http://<Host>` for the event URLs.
    base: String,
}

impl Subscription {
    /// The events due to this subscriber since its last tick, minus the dropped ones.
    fn take(&self) -> Vec<Event> {
        let mut guard = self.state.lock();
        let inner = &mut *guard;
        sweep(inner);
        let journal = &mut inner.oxen.events;
        let end = journal.end();
        let Some(sub) = journal.subs.get_mut(&self.id) else {
            return Vec::new();
        };
        let skip = sub.cursor.saturating_sub(journal.base) as usize;
        let mine: Vec<Completion> = journal
            .entries
            .iter()
            .skip(skip)
            .filter(|c| c.key == sub.key && c.at >= sub.since)
            .cloned()
            .collect();
        sub.cursor = end;
        journal.trim();
        let rate = inner.knobs.drop_events_rate;
        let mut out = Vec::new();
        for c in mine {
            if inner.chance(rate) {
                inner.counters(Oxen::NAME).events_dropped += 1;
                tracing::debug!(generation_id = %c.id, "sim: oxen completion event dropped");
                continue;
            }
            inner.counters(Oxen::NAME).events_sent += 1;
            out.push(self.event(&c));
        }
        out
    }

    fn event(&self, c: &Completion) -> Event {
        let data = match &c.error {
            None => json!({
                "generation_id": c.id,
                "status": "succeeded",
                "media_type": "video",
                "model": MODEL,
                "url": output_url(&self.base, &c.id),
            }),
            Some(error) => json!({
                "generation_id": c.id,
                "status": "failed",
                "media_type": "video",
                "error": error,
            }),
        };
        Event::default()
            .event(COMPLETED_EVENT)
            .data(data.to_string())
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut inner = self.state.lock();
        inner.oxen.events.subs.remove(&self.id);
        inner.oxen.events.trim();
    }
}

/// `GET /api/events`: the caller's completion events from now on.
pub(super) async fn subscribe(State(state): State<SimState>, headers: HeaderMap) -> Response {
    let key = match gate::authenticate::<Oxen>(&state, &headers) {
        Ok(key) => key,
        Err(resp) => return *resp,
    };
    let base = base_url(&state, &headers);
    let id = {
        let mut inner = state.lock();
        let journal = &mut inner.oxen.events;
        let id = journal.next_sub;
        journal.next_sub += 1;
        let cursor = journal.end();
        journal.subs.insert(
            id,
            Subscriber {
                key,
                since: Instant::now(),
                cursor,
            },
        );
        id
    };
    let sub = Subscription { state, id, base };
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures::stream::unfold((sub, ticks), |(sub, mut ticks)| async move {
        loop {
            ticks.tick().await;
            let batch = sub.take();
            if !batch.is_empty() {
                return Some((batch, (sub, ticks)));
            }
        }
    })
    .flat_map(|batch| futures::stream::iter(batch.into_iter().map(Ok::<Event, Infallible>)));
    Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(15))
                .text("keep-alive"),
        )
        .into_response()
}
