//! Key names: every Redis key of a namespace, built in one place.

/// Key names for one namespace. All share the hash tag `{restyle:<ns>}`.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Self {
        Keys {
            prefix: format!("{{restyle:{namespace}}}:"),
        }
    }
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn ready(&self) -> String {
        format!("{}ready", self.prefix)
    }
    pub fn parked(&self) -> String {
        format!("{}parked", self.prefix)
    }
    pub fn leases(&self) -> String {
        format!("{}leases", self.prefix)
    }
    /// Tokens that wake idle workers blocked on it (see `queue::wake`).
    pub fn wake(&self) -> String {
        format!("{}wake", self.prefix)
    }
    /// Idle workers, scored by when each looks again on its own (see `queue::wake`).
    pub fn idle(&self) -> String {
        format!("{}idle", self.prefix)
    }
    pub fn dead(&self) -> String {
        format!("{}dead", self.prefix)
    }
    pub fn orphans(&self) -> String {
        format!("{}orphans", self.prefix)
    }
    pub fn stats(&self) -> String {
        format!("{}stats", self.prefix)
    }
    pub fn batches(&self) -> String {
        format!("{}batches", self.prefix)
    }
    pub fn job(&self, id: &str) -> String {
        format!("{}job:{id}", self.prefix)
    }
    pub fn batch(&self, id: &str) -> String {
        format!("{}batch:{id}", self.prefix)
    }
    pub fn pause(&self, provider: &str) -> String {
        format!("{}pause:{provider}", self.prefix)
    }
    /// One payload of a batch (a string; see `queue::media`). The PURGE script builds the
    /// same name from the batch hash's `media` field.
    pub fn media(&self, batch_id: &str, sha256: &str) -> String {
        format!("{}media:{batch_id}:{sha256}", self.prefix)
    }
    /// The batch hash field holding the URL `provider`'s storage gave a payload.
    pub fn upload_field(provider: &str, sha256: &str) -> String {
        format!("upload:{provider}:{sha256}")
    }
    /// A batch's review marks (`queue::marks`); the PURGE script deletes the same name.
    pub fn marks(&self, batch_id: &str) -> String {
        format!("{}marks:{batch_id}", self.prefix)
    }
    /// Finished batches by the server time their records expire (`queue::retention`).
    pub fn retention(&self) -> String {
        format!("{}retention", self.prefix)
    }
    /// What is left of a batch whose records expired (`queue::retention`).
    pub fn tombstone(&self, batch_id: &str) -> String {
        format!("{}gone:{batch_id}", self.prefix)
    }
    /// A payload being written, renamed to [`Keys::media`] once whole.
    pub fn media_partial(&self, batch_id: &str, sha256: &str, writer: &str) -> String {
        format!("{}media:{batch_id}:{sha256}:partial:{writer}", self.prefix)
    }
}
