//! The shared core of every protocol: generations, each with a fate decided when it is
//! created (complete, fail, or stay stuck), and a status derived lazily from the clock.

use serde_json::{json, Value};
use std::cmp::Reverse;
use std::time::Instant;

use super::Inner;
use crate::model::Model;

/// What a generation will do when its time is up.
#[derive(Debug, Clone)]
pub(super) enum Fate {
    /// `clip`: which sample clip its output is (see `media::clip_for`).
    Complete {
        credits: u64,
        clip: usize,
    },
    Fail(Value),
}

/// One generation of the shared core, whatever protocol created it.
#[derive(Debug, Clone)]
pub(super) struct Generation {
    /// End of the `queued` phase.
    started: Instant,
    /// Set when the client cancelled it.
    cancelled: bool,
    /// The API key it counts against.
    key: Option<String>,
    /// When it turns terminal; `None` means stuck in `generating`.
    end: Option<Instant>,
    fate: Fate,
    /// The protocol that created it (its counters' name).
    provider: String,
    /// `time_scale` when it was created: its delays are reported in simulated seconds.
    scale: f64,
    /// Polls of it up to and including the first that saw it terminal.
    polls: u32,
    /// When a poll first saw it terminal (completed or failed).
    seen_done: Option<Instant>,
    /// Created before the counters were last reset: left out of the economy.
    before_reset: bool,
}

/// One generation's economy, once a poll has seen it terminal: how many polls it took and
/// how long after it ended the first one that saw it came, in simulated seconds.
#[derive(Debug, Clone)]
pub(super) struct Economy {
    pub provider: String,
    pub polls: u32,
    pub delay_s: f64,
}

/// A generation's state as of now.
#[derive(Debug, Clone)]
pub(crate) enum View {
    Queued,
    Generating,
    /// Cancelled by the client before it finished.
    Cancelled,
    Completed {
        at: Instant,
        credits: u64,
        /// Which sample clip the output is (chosen by the prompt).
        clip: usize,
    },
    Failed(Value),
}

/// What the submit handler learned about a valid body, enough to decide a fate.
#[derive(Debug, Clone)]
pub(crate) struct NewGeneration {
    pub model: Model,
    pub prompt: String,
    /// `image_list` items plus `elements` items.
    pub refs: usize,
    pub duration: Option<u32>,
    /// A failure the protocol already decided (a fal request error, an input it could not
    /// fetch): the generation runs its course, then fails with this body.
    pub fail: Option<Value>,
}

impl Inner {
    /// Moves every generation whose end has passed into the terminal counters.
    pub(super) fn settle(&mut self, now: Instant) {
        while let Some(Reverse((end, fails))) = self.pending.peek().copied() {
            if end > now {
                break;
            }
            self.pending.pop();
            if fails {
                self.stats.generations_failed += 1;
            } else {
                self.stats.generations_completed += 1;
            }
        }
    }

    fn failure_body(&mut self, prompt: &str) -> Value {
        const MSG: &str = "Content rejected by upstream safety system";
        self.failures_assigned += 1;
        if self.failures_assigned % 2 == 1 {
            json!({"name": "ContentPolicyViolation", "message": MSG})
        } else {
            json!({"detail": [{
                "loc": ["body", "prompt"],
                "msg": MSG,
                "type": "content_policy_violation",
                "input": prompt,
            }]})
        }
    }

    fn decide_fate(&mut self, g: &NewGeneration) -> (bool, Fate) {
        let contains = |needle: &Option<String>| {
            needle
                .as_deref()
                .is_some_and(|n| !n.is_empty() && g.prompt.contains(n))
        };
        let stuck_by_prompt = contains(&self.knobs.stuck_prompts_containing);
        let fail_by_prompt = contains(&self.knobs.fail_prompts_containing);
        let stuck = stuck_by_prompt || self.chance(self.knobs.stuck_rate);
        let fail = fail_by_prompt || self.chance(self.knobs.error_rate);
        let fate = if let Some(body) = &g.fail {
            Fate::Fail(body.clone())
        } else if g.refs > 4 {
            Fate::Fail(json!({"detail": [{
                "loc": ["body", "image_list"],
                "msg": "The total number of images and elements must not exceed 4 \
                        when a video is provided",
                "type": "value_error",
                "input": g.refs,
            }]}))
        } else if fail {
            Fate::Fail(self.failure_body(&g.prompt))
        } else {
            let seconds = match g.model {
                Model::Reference => u64::from(g.duration.unwrap_or(5)),
                Model::Edit => 5,
            };
            Fate::Complete {
                credits: seconds * 21_000,
                clip: crate::media::clip_for(&g.prompt),
            }
        };
        (stuck, fate)
    }

    /// Creates a generation and returns its id (`<uuid>:<model id>`). With an API `key`
    /// it counts towards that key's in-flight generations.
    pub fn create(
        &mut self,
        g: &NewGeneration,
        key: Option<&str>,
        client_id: Option<&str>,
        now: Instant,
    ) -> String {
        let id = format!("{}:{}", self.new_uuid(), g.model.aimlapi_id());
        self.create_as("aimlapi", id, g, key, client_id, now)
    }

    /// Creates a generation under a caller-chosen id for `provider`'s protocol. `dedupe`
    /// is the client key that makes a second creation a duplicate submission.
    pub fn create_as(
        &mut self,
        provider: &str,
        id: String,
        g: &NewGeneration,
        key: Option<&str>,
        dedupe: Option<&str>,
        now: Instant,
    ) -> String {
        self.settle(now);
        let latency = self.latency();
        let (stuck, fate) = self.decide_fate(g);
        let end = if stuck {
            self.stuck += 1;
            None
        } else {
            let end = now + latency;
            self.pending
                .push(Reverse((end, matches!(fate, Fate::Fail(_)))));
            Some(end)
        };
        let started = now + latency / 10;
        self.generations.insert(
            id.clone(),
            Generation {
                started,
                end,
                fate,
                cancelled: false,
                key: key.map(str::to_string),
                provider: provider.to_string(),
                scale: self.knobs.time_scale,
                polls: 0,
                seen_done: None,
                before_reset: false,
            },
        );

        self.stats.submissions_total += 1;
        self.counters(provider).submissions_total += 1;
        if let Some(cid) = dedupe {
            let n = self
                .client_ids
                .entry(format!("{provider}\u{0}{cid}"))
                .or_insert(0);
            *n += 1;
            let n = *n;
            if n > 1 {
                self.stats.duplicate_submissions += 1;
                self.counters(provider).duplicate_submissions += 1;
            }
            self.stats.submissions_by_client_id_max =
                self.stats.submissions_by_client_id_max.max(n);
        }
        let in_flight = self.pending.len() as u64 + self.stuck;
        self.stats.peak_in_flight = self.stats.peak_in_flight.max(in_flight);
        if let Some(key) = key {
            let by_key = self.limits.track(key, end, now);
            self.stats.peak_in_flight_by_key_max = self.stats.peak_in_flight_by_key_max.max(by_key);
        }
        id
    }

    /// Cancels a generation that has not finished. `running_too`: also one that already
    /// left the queue (Oxen); otherwise only a queued one is cancelled (fal's best effort).
    /// Returns the view after the attempt, `None` for an unknown id.
    pub fn cancel(&mut self, id: &str, running_too: bool, now: Instant) -> Option<View> {
        let view = self.view(id, now)?;
        let cancellable = match view {
            View::Queued => true,
            View::Generating => running_too,
            _ => false,
        };
        if cancellable {
            let g = self.generations.get_mut(id)?;
            g.cancelled = true;
            let (key, end) = (g.key.clone(), g.end);
            if let Some(key) = key {
                self.limits.untrack(&key, end);
            }
            let g = self.generations.get_mut(id)?;
            if g.end.is_none() {
                self.stuck = self.stuck.saturating_sub(1);
            } else if let Some(end) = g.end {
                // Leaves the in-flight heap: rebuild without this end time (rare path).
                let fails = matches!(g.fate, Fate::Fail(_));
                let mut rest: Vec<_> = std::mem::take(&mut self.pending).into_vec();
                if let Some(pos) = rest.iter().position(|Reverse(e)| *e == (end, fails)) {
                    rest.swap_remove(pos);
                }
                self.pending = rest.into_iter().collect();
            }
            return Some(View::Cancelled);
        }
        Some(view)
    }

    /// Counts a client's status poll of the generation (call after the protocol's own
    /// handling): up to and including the first that sees it terminal, which is its
    /// detection. Push deliveries (Oxen's SSE) are not polls and detect nothing.
    pub fn note_poll(&mut self, id: &str, now: Instant) {
        let done = matches!(
            self.view(id, now),
            Some(View::Completed { .. } | View::Failed(_))
        );
        let Some(g) = self.generations.get_mut(id) else {
            return;
        };
        if g.seen_done.is_some() {
            return;
        }
        g.polls = g.polls.saturating_add(1);
        if done {
            g.seen_done = Some(now);
        }
    }

    /// Every detected generation's economy.
    pub(super) fn economy(&self) -> Vec<Economy> {
        let of = |g: &Generation| {
            if g.before_reset {
                return None;
            }
            let (seen, end) = (g.seen_done?, g.end?);
            let real = seen.saturating_duration_since(end).as_secs_f64();
            let scale = if g.scale.is_finite() && g.scale > 0.0 {
                g.scale
            } else {
                1.0
            };
            Some(Economy {
                provider: g.provider.clone(),
                polls: g.polls,
                delay_s: real / scale,
            })
        };
        self.generations.values().filter_map(of).collect()
    }

    /// Leaves every generation created so far out of the economy (a counters reset).
    pub(super) fn forget_economy(&mut self) {
        for g in self.generations.values_mut() {
            g.before_reset = true;
        }
    }

    /// When the generation turned (or turns) terminal; `None` for an unknown or stuck one.
    pub fn end_of(&self, id: &str) -> Option<Instant> {
        self.generations.get(id)?.end
    }

    /// When the generation left (or leaves) the queue; `None` for an unknown one.
    pub fn start_of(&self, id: &str) -> Option<Instant> {
        Some(self.generations.get(id)?.started)
    }

    /// The generation's state as of `now`, or `None` when the id is unknown.
    pub fn view(&mut self, id: &str, now: Instant) -> Option<View> {
        self.settle(now);
        let g = self.generations.get(id)?;
        Some(match g.end {
            _ if g.cancelled => View::Cancelled,
            _ if now < g.started => View::Queued,
            None => View::Generating,
            Some(end) if now < end => View::Generating,
            Some(end) => match &g.fate {
                Fate::Complete { credits, clip } => View::Completed {
                    at: end,
                    credits: *credits,
                    clip: *clip,
                },
                Fate::Fail(body) => View::Failed(body.clone()),
            },
        })
    }
}
