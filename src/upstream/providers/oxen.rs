//! Oxen.ai wire mapping (being written).

use crate::config::ProviderSettings;
use crate::model::{GenerationRequest, ProviderName};
use crate::upstream::{ErrorClass, PollStatus, Upstream, UpstreamError};

/// Client for one Oxen.ai account.
#[derive(Debug)]
pub struct Oxen {
    _base: url::Url,
}

impl Oxen {
    pub fn new(p: &ProviderSettings) -> Result<Self, UpstreamError> {
        Ok(Oxen {
            _base: p.base_url.clone(),
        })
    }
}

fn unavailable() -> UpstreamError {
    UpstreamError::new(
        ErrorClass::Job,
        "oxen: provider not available in this build yet",
    )
}

#[async_trait::async_trait]
impl Upstream for Oxen {
    fn name(&self) -> ProviderName {
        ProviderName::Oxen
    }

    async fn submit(&self, _req: &GenerationRequest) -> Result<String, UpstreamError> {
        Err(unavailable())
    }

    async fn poll(&self, _upstream_id: &str) -> Result<PollStatus, UpstreamError> {
        Err(unavailable())
    }
}
