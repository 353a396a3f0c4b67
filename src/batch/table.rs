//! What each provider's Kling O1 video-to-video models accept: which models exist where,
//! aspect ratios, durations, images and elements. Each provider declares its own limits in
//! its [registry](crate::upstream::registry) entry; pre-flight validation reads them here.

use crate::model::{ModelKind, ProviderName, Tier};

pub use crate::upstream::registry::ModelLimits;

/// The limits of `model` on `provider`, or why that provider does not offer it.
pub fn limits(provider: ProviderName, model: ModelKind) -> Result<ModelLimits, String> {
    crate::upstream::registry::model_limits(provider, model)
}

/// The tier a batch asks for, when its provider sells it.
pub fn check_tier(
    value: Option<&str>,
    provider: ProviderName,
    table: &ModelLimits,
) -> Result<Option<Tier>, String> {
    let Some(value) = value else { return Ok(None) };
    let tier = Tier::parse(value)
        .ok_or_else(|| format!("must be \"standard\" or \"pro\", got {value:?}"))?;
    if !table.tiers.contains(&tier) {
        let takers: Vec<&str> = ProviderName::ALL
            .iter()
            .filter(|p| {
                [ModelKind::Edit, ModelKind::Reference]
                    .iter()
                    .any(|m| limits(**p, *m).is_ok_and(|l| !l.tiers.is_empty()))
            })
            .map(|p| p.as_str())
            .collect();
        return Err(format!(
            "{provider} sells one tier of this model; tiers are offered by {}",
            takers.join(", ")
        ));
    }
    Ok(Some(tier))
}

/// Every provider's models' limits that exist, in registry order.
fn offered() -> impl Iterator<Item = (ProviderName, ModelLimits)> {
    ProviderName::ALL.iter().flat_map(|p| {
        [ModelKind::Edit, ModelKind::Reference]
            .into_iter()
            .filter_map(move |m| limits(*p, m).ok().map(|l| (*p, l)))
    })
}

/// Every aspect ratio some provider's model accepts, in first-seen order (what a CLI
/// flag may be given; the batch's own provider and model are checked later).
pub fn all_aspect_ratios() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = Vec::new();
    for (_, l) in offered() {
        for r in l.aspect_ratios {
            if !all.contains(r) {
                all.push(r);
            }
        }
    }
    all
}

/// Every duration (seconds) some provider's model accepts, ascending, and each
/// provider's own list as text (`aimlapi 5, 10; fal 3–10`), for messages.
pub fn all_durations() -> (Vec<u32>, String) {
    let mut all: Vec<u32> = Vec::new();
    let mut per = Vec::new();
    for p in ProviderName::ALL {
        let mut own: Vec<u32> = offered()
            .filter(|(q, _)| q == p)
            .flat_map(|(_, l)| l.durations.iter().copied())
            .collect();
        own.sort_unstable();
        own.dedup();
        if !own.is_empty() {
            per.push(format!("{p} {}", runs(&own)));
        }
        all.extend(own);
    }
    all.sort_unstable();
    all.dedup();
    (all, per.join("; "))
}

/// Ascending numbers with consecutive runs of three or more shown as `a–b`.
fn runs(sorted: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        if j >= i + 2 {
            parts.push(format!("{}–{}", sorted[i], sorted[j]));
        } else {
            parts.extend(sorted[i..=j].iter().map(u32::to_string));
        }
        i = j + 1;
    }
    parts.join(", ")
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
    fn flag_values_cover_every_provider() {
        assert_eq!(all_aspect_ratios()[..3], ["16:9", "9:16", "1:1"]);
        let (all, per) = all_durations();
        assert_eq!(all, (3..=10).collect::<Vec<_>>());
        assert!(per.starts_with("aimlapi 5, 10; "), "{per}");
        assert!(per.contains("fal 3–10"), "{per}");
        assert_eq!(runs(&[1, 2, 4, 5, 6, 9]), "1, 2, 4–6, 9");
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
