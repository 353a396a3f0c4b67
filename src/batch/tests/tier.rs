//! The `tier` option: chosen where the provider sells two, refused elsewhere, and part of
//! the derived batch id.

use super::*;

fn spec(provider: &str, tier: &str) -> String {
    format!(
        "provider = \"{provider}\"\nvideo = \"{VIDEO}\"\ntier = \"{tier}\"\n[[variants]]\nprompt = \"p\"\n"
    )
}

#[test]
fn a_tier_is_chosen_where_the_provider_sells_two() {
    let b = load(&spec("fal", "standard")).unwrap();
    assert_eq!(b.shared.tier, Some(crate::model::Tier::Standard));
    let k = load(&spec("kling", "pro")).unwrap();
    assert_eq!(k.shared.tier, Some(crate::model::Tier::Pro));
    let plain = load(&format!(
        "provider = \"fal\"\nvideo = \"{VIDEO}\"\n[[variants]]\nprompt = \"p\"\n"
    ))
    .unwrap();
    assert_eq!(plain.shared.tier, None);
    assert_ne!(
        plain.shared.batch_id, b.shared.batch_id,
        "the tier is part of the id"
    );
}

#[test]
fn a_tier_is_refused_naming_what_is_accepted() {
    let e = load_err(&spec("fal", "cheap"));
    assert_eq!(e.field, "tier");
    assert!(
        e.message
            .contains("must be \"standard\" or \"pro\", got \"cheap\""),
        "{e}"
    );
    let e = load_err(&spec("oxen", "standard"));
    assert_eq!(e.field, "tier");
    assert!(
        e.message
            .contains("oxen sells one tier of this model; tiers are offered by fal, kling"),
        "{e}"
    );
}
