//! The names of a job record's fields in Redis, in one place.

/// A field of the job hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    State,
    Kind,
    OfBatch,
    Completion,
    Batch,
    Payload,
    Provider,
    Model,
    UpstreamId,
    OutputUrl,
    File,
    Sha256,
    Bytes,
    Error,
    WaitReason,
    EstimatedCost,
    Attempts,
    Claims,
    Polls,
    Redeliveries,
    CreatedAt,
    SubmittedAt,
    FinishedAt,
    /// Unique per submit attempt: fences what a worker that lost its lease may still write.
    SubmitId,
    /// Cancelled while `submitting`: the submitting worker settles the POST's outcome.
    CancelRequested,
    Outcome,
    /// When the job was last polled and seen still running (server clock, ms): the lower
    /// bound of its completion time, recorded for the learned poll schedule.
    LastPollAt,
}

impl Field {
    pub const fn as_str(self) -> &'static str {
        match self {
            Field::State => "state",
            Field::Kind => "kind",
            Field::OfBatch => "of_batch",
            Field::Completion => "completion",
            Field::Batch => "batch",
            Field::Payload => "payload",
            Field::Provider => "provider",
            Field::Model => "model",
            Field::UpstreamId => "upstream_id",
            Field::OutputUrl => "output_url",
            Field::File => "file",
            Field::Sha256 => "sha256",
            Field::Bytes => "bytes",
            Field::Error => "error",
            Field::WaitReason => "wait_reason",
            Field::EstimatedCost => "estimated_cost",
            Field::Attempts => "attempts",
            Field::Claims => "claims",
            Field::Polls => "polls",
            Field::Redeliveries => "redeliveries",
            Field::CreatedAt => "created_at",
            Field::SubmittedAt => "submitted_at",
            Field::FinishedAt => "finished_at",
            Field::SubmitId => "submit_id",
            Field::CancelRequested => "cancel_requested",
            Field::Outcome => "outcome",
            Field::LastPollAt => "last_poll_at",
        }
    }
}
