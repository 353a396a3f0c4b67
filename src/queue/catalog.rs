//! The batches of a namespace, newest first, read from the `batches` index the enqueue
//! script keeps (batch id scored by its enqueue time). For listings (`restyle serve`);
//! reads are bounded by the caller's limit.

use super::{Queue, QueueError};
use redis::AsyncCommands;

/// Most batch ids one listing reads.
pub const MAX_LISTED: usize = 1000;

impl Queue {
    /// The newest `limit` batch ids (at most [`MAX_LISTED`]) after skipping `offset`,
    /// each with its enqueue time (ms). An id that is not UTF-8 is skipped.
    pub async fn list_batches(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, QueueError> {
        let limit = limit.clamp(1, MAX_LISTED);
        let key = self.keys().batches();
        let start = offset.min(isize::MAX as usize - MAX_LISTED) as isize;
        let stop = start + limit as isize - 1;
        let raw: Vec<(Vec<u8>, f64)> = self
            .retry(|mut c| {
                let key = key.clone();
                async move { c.zrevrange_withscores(key, start, stop).await }
            })
            .await?;
        Ok(raw
            .into_iter()
            .filter_map(|(id, at)| Some((String::from_utf8(id).ok()?, at.max(0.0) as u64)))
            .collect())
    }
}
