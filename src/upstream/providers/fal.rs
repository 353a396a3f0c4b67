//! fal.ai wire mapping (being written).

use crate::config::ProviderSettings;
use crate::model::{GenerationRequest, ProviderName};
use crate::upstream::{ErrorClass, PollStatus, Upstream, UpstreamError};

/// Client for one fal.ai account.
#[derive(Debug)]
pub struct Fal {
    _base: url::Url,
}

impl Fal {
    pub fn new(p: &ProviderSettings) -> Result<Self, UpstreamError> {
        Ok(Fal {
            _base: p.base_url.clone(),
        })
    }
}

fn unavailable() -> UpstreamError {
    UpstreamError::new(
        ErrorClass::Job,
        "fal: provider not available in this build yet",
    )
}

#[async_trait::async_trait]
impl Upstream for Fal {
    fn name(&self) -> ProviderName {
        ProviderName::Fal
    }

    async fn submit(&self, _req: &GenerationRequest) -> Result<String, UpstreamError> {
        Err(unavailable())
    }

    async fn poll(&self, _upstream_id: &str) -> Result<PollStatus, UpstreamError> {
        Err(unavailable())
    }
}
