//! The provider registry: the one list of providers this build speaks. Each provider
//! module ends with its entry ([`Provider`]): its name, where its credentials come from,
//! what its models accept (pre-flight limits), and how its client is built. Settings
//! loading and validation, the model-limits lookup and [`super::build_all`] iterate
//! [`PROVIDERS`]; nothing else lists the providers by hand.
//!
//! Adding a provider: a `ProviderName` variant (with its `as_str` arm), a module under
//! `upstream/providers/` ending in its `PROVIDER` entry, one line in [`PROVIDERS`], and
//! its `[providers.<name>]` defaults in `config/default.toml`.

mod source;

pub use source::{ImageLimits, SourceLimits};

use super::{providers, Upstream, UpstreamError};
use crate::config::ProviderSettings;
use crate::model::{ModelKind, ProviderName};
use std::sync::Arc;

/// Every provider, in order of priority (this order is [`ProviderName::ALL`]).
pub const PROVIDERS: &[&Provider] = &[
    &providers::aimlapi::PROVIDER,
    &providers::oxen::PROVIDER,
    &providers::fal::PROVIDER,
    &providers::kling::PROVIDER,
];

/// The names of [`PROVIDERS`], in the same order.
pub const NAMES: [ProviderName; PROVIDERS.len()] = names();

const fn names() -> [ProviderName; PROVIDERS.len()] {
    let mut out = [PROVIDERS[0].name; PROVIDERS.len()];
    let mut i = 0;
    while i < PROVIDERS.len() {
        out[i] = PROVIDERS[i].name;
        i += 1;
    }
    out
}

/// One provider's registry entry.
#[derive(Debug)]
pub struct Provider {
    pub name: ProviderName,
    pub credentials: Credentials,
    /// What each model accepts on this provider, or why the provider lacks it.
    pub models: Models,
    /// Where the provider's storage takes uploads of local media, by default; `None`: it
    /// has none (local media go inside each request body, or are refused).
    pub storage: Option<StorageDefaults>,
    /// Builds the client for one account.
    pub build: fn(&ProviderSettings) -> Result<Arc<dyn Upstream>, UpstreamError>,
}

impl Provider {
    /// Why a worker with these settings cannot talk to this provider: the credentials it
    /// lacks and the variables that give them (names only, never a value). `None` when
    /// every credential is set.
    pub fn missing_credentials(&self, p: &ProviderSettings) -> Option<String> {
        let missing: Vec<String> = self
            .credentials
            .env_vars()
            .into_iter()
            .filter(|(field, _)| credential(p, field).is_none())
            .map(|(field, var)| {
                let ours = format!("RESTYLE__PROVIDERS__{}__{}", self.name, field).to_uppercase();
                let what = field.replace("api_", "API ").replace('_', " ");
                format!("no {what} (set {ours} or {var})")
            })
            .collect();
        (!missing.is_empty()).then(|| missing.join("; "))
    }

    /// The limits of `model` on this provider, or why it does not offer it.
    pub fn model_limits(&self, model: ModelKind) -> Result<ModelLimits, String> {
        let offer = match model {
            ModelKind::Edit => &self.models.edit,
            ModelKind::Reference => &self.models.reference,
        };
        offer.clone().map_err(str::to_string)
    }
}

/// A credential field of a provider's settings, when set.
fn credential<'a>(p: &'a ProviderSettings, field: &str) -> Option<&'a secrecy::SecretString> {
    match field {
        "api_key" => p.api_key.as_ref(),
        "access_key" => p.access_key.as_ref(),
        "secret_key" => p.secret_key.as_ref(),
        _ => None,
    }
}

/// A provider storage's documented hosts (`[providers.<name>.storage]` overrides them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageDefaults {
    /// Where upload tokens are asked for (`rest_url`).
    pub rest_url: &'static str,
    /// Where files are uploaded (`cdn_url`).
    pub cdn_url: &'static str,
}

/// How a provider authenticates, and the conventional environment variables that hold its
/// credentials (each read when the `RESTYLE__PROVIDERS__<NAME>__<FIELD>` one is unset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// `api_key`, sent as `Authorization: Bearer <key>`.
    Bearer { env: &'static str },
    /// `api_key`, sent as `Authorization: Key <key>`.
    KeyHeader { env: &'static str },
    /// `access_key` and `secret_key`, from which each request's HS256 JWT is minted.
    AccessSecretJwt {
        access_env: &'static str,
        secret_env: &'static str,
    },
}

impl Credentials {
    /// `(settings field, environment variable)` for each credential.
    pub fn env_vars(self) -> Vec<(&'static str, &'static str)> {
        match self {
            Credentials::Bearer { env } | Credentials::KeyHeader { env } => {
                vec![("api_key", env)]
            }
            Credentials::AccessSecretJwt {
                access_env,
                secret_env,
            } => vec![("access_key", access_env), ("secret_key", secret_env)],
        }
    }
}

/// A provider's offer for each model: its limits, or why it has no such model.
#[derive(Debug, Clone)]
pub struct Models {
    pub edit: Result<ModelLimits, &'static str>,
    pub reference: Result<ModelLimits, &'static str>,
}

/// What one provider's model accepts; pre-flight validation of a batch reads it.
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
    /// Whether the video may be a local file or data URI (sent inline or uploaded);
    /// `false`: an https URL only, refused at enqueue otherwise.
    pub inline_video: bool,
    /// The price tiers a batch may choose (`tier`); empty = the provider has one.
    pub tiers: &'static [crate::model::Tier],
    /// What the source clip and reference images must be (the enqueue-time probe).
    pub source: SourceLimits,
}

impl ModelLimits {
    /// What the Kling O1 edit model accepts where a provider adds no limit of its own;
    /// entries start from this and change what differs.
    pub const BASE: ModelLimits = ModelLimits {
        prompt_max_chars: 2500,
        max_refs: 4,
        max_element_refs: 4,
        inline_elements: true,
        aspect_ratios: &[],
        durations: &[],
        inline_video: true,
        tiers: &[],
        source: source::UNDOCUMENTED,
    };

    /// Standard and pro, where a provider sells both.
    pub const TWO_TIERS: &'static [crate::model::Tier] =
        &[crate::model::Tier::Standard, crate::model::Tier::Pro];
}

/// The per-provider source tables, for the providers' entries.
pub mod source_limits {
    pub use super::source::{FAL, KLING, OXEN, UNDOCUMENTED};
}

/// The entry of a provider.
pub fn get(name: ProviderName) -> Option<&'static Provider> {
    PROVIDERS.iter().copied().find(|p| p.name == name)
}

/// The entry of a provider by its settings name (`aimlapi`, …).
pub fn find(name: &str) -> Option<&'static Provider> {
    PROVIDERS.iter().copied().find(|p| p.name.as_str() == name)
}

/// The registered names, comma-separated, for error messages.
pub fn known() -> String {
    let names: Vec<&str> = NAMES.iter().map(|n| n.as_str()).collect();
    names.join(", ")
}

/// The limits of `model` on `provider`, or why that provider does not offer it.
pub fn model_limits(provider: ProviderName, model: ModelKind) -> Result<ModelLimits, String> {
    match get(provider) {
        Some(p) => p.model_limits(model),
        None => Err(format!("provider {provider} is not registered")),
    }
}

/// A provider's constructor result as a registry client.
pub fn boxed<U: Upstream + 'static>(
    client: Result<U, UpstreamError>,
) -> Result<Arc<dyn Upstream>, UpstreamError> {
    Ok(Arc::new(client?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_parse_back() {
        for (i, n) in NAMES.iter().enumerate() {
            assert_eq!(ProviderName::parse(n.as_str()), Some(*n));
            assert!(!NAMES[..i].contains(n), "{n} registered twice");
            assert_eq!(find(n.as_str()).map(|p| p.name), Some(*n));
        }
        assert_eq!(ProviderName::ALL, &NAMES[..]);
        assert_eq!(known(), "aimlapi, oxen, fal, kling");
    }

    #[test]
    fn credential_variables_are_the_documented_ones() {
        let vars: Vec<(ProviderName, &str, &str)> = PROVIDERS
            .iter()
            .flat_map(|p| {
                p.credentials
                    .env_vars()
                    .into_iter()
                    .map(move |(f, v)| (p.name, f, v))
            })
            .collect();
        use ProviderName::*;
        assert_eq!(
            vars,
            [
                (Aimlapi, "api_key", "AIMLAPI_API_KEY"),
                (Oxen, "api_key", "OXEN_API_KEY"),
                (Fal, "api_key", "FAL_KEY"),
                (Kling, "access_key", "KLING_ACCESS_KEY"),
                (Kling, "secret_key", "KLING_SECRET_KEY"),
            ]
        );
    }

    #[test]
    fn missing_credentials_name_the_variables() {
        let s = crate::config::Settings::builtin();
        let fal = get(ProviderName::Fal).unwrap();
        assert_eq!(
            fal.missing_credentials(s.provider(ProviderName::Fal))
                .as_deref(),
            Some("no API key (set RESTYLE__PROVIDERS__FAL__API_KEY or FAL_KEY)")
        );
        let mut k = s.provider(ProviderName::Kling).clone();
        k.access_key = Some("ak".to_string().into());
        let kling = get(ProviderName::Kling).unwrap();
        assert_eq!(
            kling.missing_credentials(&k).as_deref(),
            Some("no secret key (set RESTYLE__PROVIDERS__KLING__SECRET_KEY or KLING_SECRET_KEY)")
        );
        k.secret_key = Some("sk".to_string().into());
        assert_eq!(kling.missing_credentials(&k), None);
    }

    #[test]
    fn model_limits_per_provider() {
        use ModelKind::{Edit, Reference};
        use ProviderName::*;
        let lim = |p, m| model_limits(p, m).unwrap();
        assert_eq!(lim(Aimlapi, Edit), ModelLimits::BASE);
        assert_eq!(lim(Aimlapi, Reference).durations, &[5, 10]);
        assert_eq!(
            lim(Aimlapi, Reference).aspect_ratios,
            &["16:9", "9:16", "1:1"]
        );
        assert_eq!(lim(Oxen, Edit).max_element_refs, 3);
        assert!(model_limits(Oxen, Reference)
            .unwrap_err()
            .contains("no Kling O1 video-to-video reference"));
        assert_eq!(lim(Fal, Edit).max_element_refs, 3);
        assert_eq!(
            lim(Fal, Reference).aspect_ratios,
            &["16:9", "9:16", "1:1", "auto"]
        );
        assert_eq!(lim(Fal, Reference).durations, &[3, 4, 5, 6, 7, 8, 9, 10]);
        assert!(!lim(Kling, Edit).inline_elements);
        assert!(!lim(Kling, Edit).inline_video && !lim(Kling, Reference).inline_video);
        assert!(lim(Fal, Reference).inline_video && lim(Oxen, Edit).inline_video);
        assert_eq!(
            get(Fal).and_then(|p| p.storage).map(|s| s.cdn_url),
            Some("https://v3.fal.media")
        );
        assert!(get(Aimlapi).unwrap().storage.is_none());
        assert_eq!(lim(Kling, Reference).durations, &[3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(
            lim(Kling, Reference).aspect_ratios,
            &["16:9", "9:16", "1:1"]
        );
    }
}
