//! What each provider's Kling O1 video-to-video models accept: which models exist where,
//! aspect ratios, durations, images and elements. Each provider declares its own limits in
//! its [registry](crate::upstream::registry) entry; pre-flight validation reads them here.

use crate::model::{ModelKind, ProviderName};

pub use crate::upstream::registry::ModelLimits;

/// The limits of `model` on `provider`, or why that provider does not offer it.
pub fn limits(provider: ProviderName, model: ModelKind) -> Result<ModelLimits, String> {
    crate::upstream::registry::model_limits(provider, model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_offers_edit_and_oxen_lacks_reference() {
        for p in ProviderName::ALL {
            assert!(limits(*p, ModelKind::Edit).is_ok(), "{p}");
        }
        assert!(limits(ProviderName::Oxen, ModelKind::Reference)
            .unwrap_err()
            .contains("no Kling O1 video-to-video reference"));
    }

    #[test]
    fn durations_differ_per_provider() {
        let a = limits(ProviderName::Aimlapi, ModelKind::Reference).unwrap();
        let f = limits(ProviderName::Fal, ModelKind::Reference).unwrap();
        assert_eq!(a.durations, &[5, 10]);
        assert!(f.durations.contains(&3));
        assert!(limits(ProviderName::Kling, ModelKind::Edit)
            .unwrap()
            .durations
            .is_empty());
    }
}
