//! The contact sheet: `out/<batch>/index.html`, one card per variant (being written).

use crate::config::Settings;
use crate::queue::{Queue, QueueError};
use std::path::PathBuf;

/// Writes the batch's contact sheet and returns its path.
pub async fn write(
    _queue: &Queue,
    settings: &Settings,
    batch_id: &str,
) -> Result<PathBuf, QueueError> {
    Ok(settings.output.dir.join(batch_id).join("index.html"))
}
