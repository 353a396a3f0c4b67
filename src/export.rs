//! `restyle results`: a batch's results as JSONL or CSV on stdout (being written).

use crate::queue::{Queue, QueueError};

/// Output format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

/// Writes the batch's results (only jobs in `states`, all when empty) to `out`.
pub async fn write(
    _queue: &Queue,
    _batch_id: &str,
    _format: Format,
    _states: &[String],
    _out: &mut (dyn std::io::Write + Send),
) -> Result<usize, QueueError> {
    Ok(0)
}
