//! The one table of what each provider's Kling O1 video-to-video models accept: which
//! models exist where, aspect ratios, durations, images and elements. Pre-flight
//! validation reads it; nothing else hard-codes a provider limit.

use crate::model::{ModelKind, ProviderName};

/// What one provider's model accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLimits {
    /// Characters in a prompt.
    pub prompt_max_chars: usize,
    /// Images plus elements together with a video.
    pub max_refs: usize,
    /// Reference images per element (each also has a frontal image).
    pub max_element_refs: usize,
    /// Whether elements can be given inline (frontal + reference URLs).
    pub inline_elements: bool,
    /// Accepted aspect ratios; empty = the field is not accepted.
    pub aspect_ratios: &'static [&'static str],
    /// Accepted durations in seconds; empty = the field is not accepted.
    pub durations: &'static [u32],
}

const RATIOS: &[&str] = &["16:9", "9:16", "1:1"];
const FAL_RATIOS: &[&str] = &["16:9", "9:16", "1:1", "auto"];
const FIVE_TEN: &[u32] = &[5, 10];
const THREE_TO_TEN: &[u32] = &[3, 4, 5, 6, 7, 8, 9, 10];

/// The limits of `model` on `provider`, or why that provider does not offer it.
pub fn limits(provider: ProviderName, model: ModelKind) -> Result<ModelLimits, String> {
    use ModelKind::{Edit, Reference};
    use ProviderName::{Aimlapi, Fal, Kling, Oxen};
    let edit = ModelLimits {
        prompt_max_chars: 2500,
        max_refs: 4,
        max_element_refs: 4,
        inline_elements: true,
        aspect_ratios: &[],
        durations: &[],
    };
    Ok(match (provider, model) {
        (Aimlapi, Edit) => edit,
        (Aimlapi, Reference) => ModelLimits {
            aspect_ratios: RATIOS,
            durations: FIVE_TEN,
            ..edit
        },
        (Oxen, Edit) => ModelLimits {
            max_element_refs: 3,
            ..edit
        },
        (Oxen, Reference) => {
            return Err("Oxen offers no Kling O1 video-to-video reference model \
                        (only kling-video-o1-video-to-video-edit); use another provider"
                .to_string())
        }
        (Fal, Edit) => ModelLimits {
            max_element_refs: 3,
            ..edit
        },
        (Fal, Reference) => ModelLimits {
            max_element_refs: 3,
            aspect_ratios: FAL_RATIOS,
            durations: THREE_TO_TEN,
            ..edit
        },
        (Kling, Edit) => ModelLimits {
            inline_elements: false,
            ..edit
        },
        (Kling, Reference) => ModelLimits {
            inline_elements: false,
            aspect_ratios: RATIOS,
            durations: THREE_TO_TEN,
            ..edit
        },
    })
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
