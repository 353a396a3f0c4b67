//! The simulator's own names for the two Kling O1 video-to-video models, as each provider's
//! protocol spells them. Written from the providers' documentation, not taken from the
//! client, so that a client that names a model wrongly is refused here.

/// A Kling O1 video-to-video model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Model {
    /// Edits (restyles) the input clip; the output follows the clip's shape and length.
    Edit,
    /// Uses the input clip as a reference; takes an aspect ratio and a duration.
    Reference,
}

/// Oxen's name for the edit model, the only Kling O1 video-to-video model Oxen hosts.
pub(crate) const OXEN_EDIT: &str = "kling-video-o1-video-to-video-edit";

/// Kling's `model_name` for both models; the input video's `refer_type` tells them apart.
pub(crate) const KLING_MODEL_NAME: &str = "kling-video-o1";

impl Model {
    /// Both models.
    pub(crate) const ALL: [Model; 2] = [Model::Edit, Model::Reference];

    /// aimlapi's model id: the `model` field of a submit, and the end of a generation id.
    pub(crate) const fn aimlapi_id(self) -> &'static str {
        match self {
            Model::Edit => "klingai/video-o1-video-to-video-edit",
            Model::Reference => "klingai/video-o1-video-to-video-reference",
        }
    }

    /// The model whose aimlapi id is `id`.
    pub(crate) fn from_aimlapi_id(id: &str) -> Option<Model> {
        Model::ALL.into_iter().find(|m| m.aimlapi_id() == id)
    }

    /// The last segment of fal's endpoint,
    /// `fal-ai/kling-video/o1/[standard/]video-to-video/{edit|reference}`.
    pub(crate) const fn fal_endpoint(self) -> &'static str {
        match self {
            Model::Edit => "edit",
            Model::Reference => "reference",
        }
    }

    /// The model a Kling create asks for by its video's `refer_type`: `feature` is the
    /// reference model, anything else (`base`, or none) the edit model.
    pub(crate) fn from_kling_refer_type(refer_type: Option<&str>) -> Model {
        match refer_type {
            Some("feature") => Model::Reference,
            _ => Model::Edit,
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for m in Model::ALL {
            assert_eq!(Model::from_aimlapi_id(m.aimlapi_id()), Some(m));
        }
        assert_eq!(Model::from_aimlapi_id("klingai/x"), None);
        assert_eq!(Model::from_kling_refer_type(Some("base")), Model::Edit);
        assert_eq!(Model::from_kling_refer_type(None), Model::Edit);
        assert_eq!(
            Model::from_kling_refer_type(Some("feature")),
            Model::Reference
        );
    }
}
