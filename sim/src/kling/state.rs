//! Kling's own bookkeeping, beside the shared core's generation of the same id: every
//! task's owner, `external_task_id`, creation time and billed seconds, and the
//! `external_task_id` index (unique per access key).

use std::collections::HashMap;
use std::time::Instant;

/// One task as Kling knows it.
#[derive(Debug)]
pub(super) struct Task {
    /// The access key (JWT issuer) it belongs to.
    pub(super) key: String,
    pub(super) external_task_id: Option<String>,
    /// Creation, Unix milliseconds and on the monotonic clock.
    pub(super) created_ms: u64,
    pub(super) created: Instant,
    /// Seconds of output.
    pub(super) seconds: u32,
    /// Units billed, as `final_unit_deduction` reports them (seconds x the mode's rate).
    pub(super) units: String,
}

/// Per-protocol state kept inside the simulator's one lock.
#[derive(Debug, Default)]
pub(crate) struct KlingState {
    tasks: HashMap<String, Task>,
    /// `(access key, external_task_id)` → task id.
    by_external: HashMap<(String, String), String>,
}

impl KlingState {
    /// Whether `key` already created a task with this `external_task_id`.
    pub(super) fn has_external(&self, key: &str, external_task_id: &str) -> bool {
        self.by_external
            .contains_key(&(key.to_owned(), external_task_id.to_owned()))
    }

    /// Whether a task has this id, whoever owns it.
    pub(super) fn contains(&self, task_id: &str) -> bool {
        self.tasks.contains_key(task_id)
    }

    /// Records a created task (and its `external_task_id`, if any).
    pub(super) fn insert(&mut self, task_id: String, task: Task) {
        if let Some(ext) = &task.external_task_id {
            let pair = (task.key.clone(), ext.clone());
            self.by_external.insert(pair, task_id.clone());
        }
        self.tasks.insert(task_id, task);
    }

    /// The id of `key`'s task named by `id`, a task id or an `external_task_id`.
    pub(super) fn resolve(&self, key: &str, id: &str) -> Option<String> {
        match self.tasks.get(id) {
            Some(t) if t.key == key => Some(id.to_owned()),
            _ => self
                .by_external
                .get(&(key.to_owned(), id.to_owned()))
                .cloned(),
        }
    }

    /// The task with this id.
    pub(super) fn task(&self, task_id: &str) -> Option<&Task> {
        self.tasks.get(task_id)
    }
}
