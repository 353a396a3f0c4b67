//! The job as a type: its states ([`JobState`]), its record ([`JobRecord`], parsed once
//! at the queue boundary), its id ([`job_id`]) and a state change as a value
//! ([`Transition`]). Nothing here knows Redis commands or HTTP.

pub mod field;
pub mod id;
pub mod record;
pub mod state;

pub use field::Field;
pub use id::{announcement_id, client_id, job_id, parse_job_id, JobIdParts, JOB_ID_LUA_FORMAT};
pub use record::{BadRecord, JobKind, JobRecord, Loaded};
pub use state::{state_parser, JobState};

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
