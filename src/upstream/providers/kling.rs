//! Kling wire mapping (being written).

use crate::config::ProviderSettings;
use crate::model::{GenerationRequest, ProviderName};
use crate::upstream::{ErrorClass, PollStatus, Upstream, UpstreamError};

/// Client for one Kling account.
#[derive(Debug)]
pub struct Kling {
    _base: url::Url,
}

impl Kling {
    pub fn new(p: &ProviderSettings) -> Result<Self, UpstreamError> {
        Ok(Kling {
            _base: p.base_url.clone(),
        })
    }
}

fn unavailable() -> UpstreamError {
    UpstreamError::new(
        ErrorClass::Job,
        "kling: provider not available in this build yet",
    )
}

#[async_trait::async_trait]
impl Upstream for Kling {
    fn name(&self) -> ProviderName {
        ProviderName::Kling
    }

    async fn submit(&self, _req: &GenerationRequest) -> Result<String, UpstreamError> {
        Err(unavailable())
    }

    async fn poll(&self, _upstream_id: &str) -> Result<PollStatus, UpstreamError> {
        Err(unavailable())
    }
}
