//! Value parsers of the flags that take numbers or one of a list: a bad value is a clap
//! usage error (exit 2) naming the flag and what it accepts, before any setting is read.
//! The lists come from the provider registry; which of them the batch's own provider and
//! model take is checked with the rest of the batch.

use crate::batch::table;
use crate::model::{ModelKind, ProviderName};
use clap::builder::PossibleValuesParser;

/// `--provider`: a registered provider name.
pub(super) fn provider() -> PossibleValuesParser {
    PossibleValuesParser::new(ProviderName::ALL.iter().map(|p| p.as_str()))
}

/// `--model`: a short name or a full model id.
pub(super) fn model() -> PossibleValuesParser {
    let kinds = [ModelKind::Edit, ModelKind::Reference];
    let names = kinds.iter().map(|m| m.as_str());
    PossibleValuesParser::new(names.chain(kinds.iter().map(|m| m.aimlapi_id())))
}

/// `--aspect-ratio`: one some provider's model accepts.
pub(super) fn aspect_ratio() -> PossibleValuesParser {
    PossibleValuesParser::new(table::all_aspect_ratios())
}

/// `--duration`: whole seconds that some provider's model accepts.
pub(super) fn duration(s: &str) -> Result<u32, String> {
    let (all, per_provider) = table::all_durations();
    match s.parse::<u32>() {
        Ok(secs) if all.contains(&secs) => Ok(secs),
        _ => {
            let (lo, hi) = (all.first().unwrap_or(&0), all.last().unwrap_or(&0));
            Err(format!(
                "must be whole seconds from {lo} to {hi}, as the reference model takes them \
                 ({per_provider})"
            ))
        }
    }
}

/// `--concurrency`: a whole number ≥ 1.
pub(super) fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("must be a whole number ≥ 1".to_owned()),
    }
}

/// `--max-cost`: USD, a finite number ≥ 0.
pub(super) fn usd(s: &str) -> Result<f64, String> {
    non_negative(s, "USD, e.g. 25 or 12.5")
}

/// `--clip-seconds`: seconds, a finite number ≥ 0.
pub(super) fn seconds(s: &str) -> Result<f64, String> {
    non_negative(s, "seconds, e.g. 8.5")
}

fn non_negative(s: &str, unit: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("must be a number ≥ 0 ({unit})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_outside_the_accepted_are_refused_with_what_is_accepted() {
        assert_eq!(duration("5"), Ok(5));
        for bad in ["-1", "abc", "7.5", "0", "11", ""] {
            let e = duration(bad).unwrap_err();
            assert!(
                e.contains("from 3 to 10") && e.contains("aimlapi 5, 10"),
                "{e}"
            );
        }
        assert_eq!(usd("12.5"), Ok(12.5));
        assert_eq!(seconds("0"), Ok(0.0));
        for bad in ["-5", "NaN", "inf", "x"] {
            assert!(usd(bad).unwrap_err().contains("≥ 0 (USD"), "{bad}");
        }
    }
}
