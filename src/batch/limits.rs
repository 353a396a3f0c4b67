//! What the enqueuer's settings allow a batch: what a producer's input may weigh before
//! anything is read into memory or enqueued (`[limits]`), and the hooks it may name
//! (`[hooks.<name>]`).

/// What the enqueuer's settings allow a batch. Every local file is read at most one byte
/// past its cap, whatever its metadata says.
#[derive(Debug, Clone)]
pub struct BatchLimits {
    /// Largest video accepted as a local file (turned into a data URI) or as a given
    /// data URI (decoded size). Images use the smaller of this and 10 MiB.
    pub max_video_bytes: u64,
    /// Largest batch file (TOML) read.
    pub max_batch_file_bytes: u64,
    /// Largest prompts file (CSV or text) read.
    pub max_prompt_file_bytes: u64,
    /// The hooks the settings define (`[hooks.<name>]`): `on_done` must name one of them.
    pub hooks: Vec<String>,
    /// An object store is configured (`output.store`): local files are uploaded to it and
    /// sent as URLs, so URL-only providers (Kling) take them too.
    pub store_uploads: bool,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_video_bytes: 50 * 1024 * 1024,
            max_batch_file_bytes: 1024 * 1024,
            max_prompt_file_bytes: 4 * 1024 * 1024,
            hooks: Vec::new(),
            store_uploads: false,
        }
    }
}
