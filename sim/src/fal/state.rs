//! fal's own bookkeeping: every request and its owner, and fal's queue in front of the
//! shared core. A request over its key's `max_in_flight` is held there `IN_QUEUE` (never
//! refused) and reaches the core, so the counters, only when its key has a free slot.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::Fal;
use crate::gate::Protocol;
use crate::state::{Inner, NewGeneration, View};

/// Per-protocol state kept inside the simulator's one lock.
#[derive(Debug, Default)]
pub(crate) struct FalState {
    pub(super) requests: HashMap<String, FalRequest>,
    /// Held requests (over their key's `max_in_flight`), oldest first.
    pub(super) waiting: VecDeque<String>,
    /// Uploaded files (fal's storage API).
    pub(super) storage: super::storage::Storage,
}

/// One request fal has accepted, by its request id.
#[derive(Debug)]
pub(super) struct FalRequest {
    pub(super) key: String,
    /// While held in fal's queue: the generation to create and its dedupe key.
    pub(super) held: Option<(NewGeneration, String)>,
    /// Cancelled while held: it never reached a runner.
    pub(super) removed: bool,
}

/// Where a request stands, as the status endpoint reports it.
#[derive(Debug)]
pub(super) enum Phase {
    /// `IN_QUEUE` at this position (0 once it reached a runner's queue).
    Queued(usize),
    /// `IN_PROGRESS`.
    Running,
    /// `COMPLETED`: the core's final view, `None` for a request cancelled while held.
    Done(Option<View>),
}

/// Accepts a valid submit for `key` under a fresh request id: held in fal's queue when the
/// key is at its `max_in_flight` (or already has requests held, which go first), else
/// created in the core at once. Returns the id and its queue position (0 if not held).
pub(super) fn accept(
    inner: &mut Inner,
    key: &str,
    new: NewGeneration,
    dedupe: String,
    now: Instant,
) -> (String, usize) {
    promote(inner, now);
    let id = inner.new_uuid().to_string();
    let cap = inner.knobs.max_in_flight.map(u64::from);
    let key_waits = inner
        .fal
        .waiting
        .iter()
        .any(|w| inner.fal.requests.get(w).is_some_and(|r| r.key == key));
    let hold = key_waits || cap.is_some_and(|cap| inner.limits.in_flight(key, now) >= cap);
    let held = if hold {
        inner.fal.waiting.push_back(id.clone());
        Some((new, dedupe))
    } else {
        inner.create_as(Fal::NAME, id.clone(), &new, Some(key), Some(&dedupe), now);
        None
    };
    inner.fal.requests.insert(
        id.clone(),
        FalRequest {
            key: key.to_owned(),
            held,
            removed: false,
        },
    );
    let position = if hold { position(&inner.fal, &id) } else { 0 };
    tracing::debug!(request_id = %id, held = hold, "sim: fal request accepted");
    (id, position)
}

/// Hands held requests to runners, oldest first, while their key is under `max_in_flight`.
fn promote(inner: &mut Inner, now: Instant) {
    let cap = inner.knobs.max_in_flight.map(u64::from);
    let mut rest = VecDeque::new();
    for id in std::mem::take(&mut inner.fal.waiting) {
        let Some(req) = inner.fal.requests.get(&id) else {
            continue;
        };
        let key = req.key.clone();
        if cap.is_some_and(|cap| inner.limits.in_flight(&key, now) >= cap) {
            rest.push_back(id);
            continue;
        }
        let held = inner.fal.requests.get_mut(&id).and_then(|r| r.held.take());
        if let Some((new, dedupe)) = held {
            inner.create_as(Fal::NAME, id, &new, Some(&key), Some(&dedupe), now);
        }
    }
    inner.fal.waiting = rest;
}

/// The request's phase as of `now`, or `None` for an unknown id.
pub(super) fn phase(inner: &mut Inner, id: &str, now: Instant) -> Option<Phase> {
    promote(inner, now);
    let req = inner.fal.requests.get(id)?;
    if req.removed {
        return Some(Phase::Done(None));
    }
    if req.held.is_some() {
        return Some(Phase::Queued(position(&inner.fal, id)));
    }
    Some(match inner.view(id, now)? {
        View::Queued => Phase::Queued(0),
        View::Generating => Phase::Running,
        done => Phase::Done(Some(done)),
    })
}

/// A held request's place in its key's line (1 = next to run).
fn position(fal: &FalState, id: &str) -> usize {
    let key = fal.requests.get(id).map(|r| r.key.as_str());
    let ahead = fal
        .waiting
        .iter()
        .take_while(|w| w.as_str() != id)
        .filter(|w| fal.requests.get(*w).map(|r| r.key.as_str()) == key)
        .count();
    ahead + 1
}

/// Whether `id` is held in fal's queue (accepted, not yet handed to a runner).
pub(super) fn is_held(fal: &FalState, id: &str) -> bool {
    fal.requests.get(id).is_some_and(|r| r.held.is_some())
}

/// Takes a held request out of fal's queue: it never reaches a runner.
pub(super) fn withdraw(fal: &mut FalState, id: &str) {
    fal.waiting.retain(|w| w != id);
    if let Some(r) = fal.requests.get_mut(id) {
        r.held = None;
        r.removed = true;
    }
}
