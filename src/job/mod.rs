//! The job as a type: its states ([`JobState`]), its record ([`JobRecord`], parsed once
//! at the queue boundary), its id ([`job_id`]) and a state change as a value
//! ([`Transition`]). Nothing here knows Redis commands or HTTP.

pub mod field;
pub mod record;
pub mod state;

pub use field::Field;
pub use record::{BadRecord, JobKind, JobRecord, Loaded};
pub use state::{state_parser, JobState};

/// Job ids derive from the batch id and the variant index, so enqueueing a batch twice
/// creates nothing new. The id is also a valid `X-Client-Request-Id` (`[A-Za-z0-9._:-]`).
/// The Lua `PURGE` script builds the same ids with [`JOB_ID_LUA_FORMAT`].
pub fn job_id(batch_id: &str, index: u32) -> String {
    format!("{batch_id}.{index:05}")
}

/// The client id of one submit attempt: the job id and the first characters of the
/// attempt's `submit_id` (recorded before the POST), so a retried job never collides
/// with, or re-attaches to, the task of an earlier attempt. Records written before
/// attempts had ids use the job id alone. Stays within `[A-Za-z0-9._:-]`.
pub fn client_id(job_id: &str, submit_id: Option<&str>) -> String {
    match submit_id {
        Some(s) if !s.is_empty() => format!("{job_id}:{}", &s[..s.len().min(8)]),
        _ => job_id.to_string(),
    }
}

/// `string.format` pattern of [`job_id`] for the scripts.
pub const JOB_ID_LUA_FORMAT: &str = "%s.%05d";

/// Lists a job can wait on until woken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitList {
    /// Waiting for an in-flight slot of a provider; woken when one frees.
    Slot(String),
    /// Waiting for a provider's account pause to end; woken by `resume`.
    Pause(String),
    /// Waiting for budget in a batch; woken by `restyle budget` or a released reservation.
    Budget(String),
}

/// How a transition leaves the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    /// Keep the lease (the stage goes on) and extend it.
    Keep,
    /// Park until the given time (ms); any worker picks it up then.
    ParkUntil(u64),
    /// Back to the ready list now (e.g. shutdown), without a state change.
    Release,
    /// Terminal.
    Done,
    /// Onto a wait list until woken (a freed slot, a resumed provider), with a safety-net
    /// park until the given time (ms).
    Wait(WaitList, u64),
}

/// One state change: where the job goes, what follows, and the fields to set (an empty
/// value deletes the field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// `None` keeps the current state.
    pub to: Option<JobState>,
    pub after: After,
    pub fields: Vec<(Field, String)>,
    /// Rule 7, durable before paid: see [`Transition::durable`].
    pub durable: bool,
}

impl Transition {
    pub fn to(state: JobState, after: After) -> Self {
        Transition {
            to: Some(state),
            after,
            fields: Vec::new(),
            durable: false,
        }
    }

    /// Leaves the state as it is (e.g. a release on shutdown).
    pub fn stay(after: After) -> Self {
        Transition {
            to: None,
            after,
            fields: Vec::new(),
            durable: false,
        }
    }

    /// Sets a field (an empty value deletes it).
    pub fn set(mut self, f: Field, v: impl Into<String>) -> Self {
        self.fields.push((f, v.into()));
        self
    }

    /// Rule 7, durable before paid: `Queue::apply` returns only once this transition is
    /// as durable as the deployment's guarantee makes it (`WAITAOF` / `WAIT` on the
    /// transition's own connection; nothing more under `appendfsync always`). Only the
    /// two writes a payment depends on carry it: the `submitting` mark before the POST
    /// and the recorded upstream id. A durable transition that keeps the lease (the
    /// stage is about to make the paid call) and cannot be confirmed in time is
    /// withdrawn: the job goes back to `queued`, parked for a retry, and `apply` answers
    /// `QueueError::NotDurable`, so the call is not made.
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self
    }

    /// Sets several fields.
    pub fn set_all(mut self, fields: &[(Field, String)]) -> Self {
        self.fields.extend_from_slice(fields);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_stable_and_client_id_safe() {
        let id = job_id("spring-2026_a", 7);
        assert_eq!(id, "spring-2026_a.00007");
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c)));
    }
}
