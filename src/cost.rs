//! Cost, in one place: the estimate of one job (configured price × output seconds, never
//! invented) and the tally of many, with what is unknown said plainly. Amounts are
//! [`Usd`], exact, so a thousand `0.1`s make `$100.00`.

use crate::config::Settings;
use crate::job::{JobRecord, JobState};
use crate::model::BatchShared;
use crate::money::Usd;
use std::fmt;

/// The estimated cost of one job of this batch, when a price and the output length are
/// known.
pub fn estimate(settings: &Settings, shared: &BatchShared) -> Option<Usd> {
    let p = settings.provider(shared.provider);
    // Without a tier of its own a batch runs on the provider's default: Kling's
    // configured mode, fal's pro endpoints.
    let tier = shared.tier.or(match p.mode {
        Some(crate::config::KlingMode::Std) => Some(crate::model::Tier::Standard),
        _ => None,
    });
    let price = p.prices.for_tier(shared.model, tier)?;
    Some(price.times_seconds(shared.output_seconds()?))
}

/// The cost of a set of jobs: the sum of the known estimates, and how many are unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CostTally {
    pub known: Usd,
    pub known_jobs: u64,
    pub unknown_jobs: u64,
}

impl CostTally {
    /// Counts one job's estimate (`None` is unknown).
    pub fn add(&mut self, estimated_cost: Option<Usd>) {
        match estimated_cost {
            Some(n) => {
                self.known = self.known.saturating_add(n);
                self.known_jobs += 1;
            }
            None => self.unknown_jobs += 1,
        }
    }

    /// Counts an estimate as stored (text that is no amount is unknown).
    pub fn add_text(&mut self, estimated_cost: Option<&str>) {
        self.add(estimated_cost.and_then(Usd::parse));
    }

    /// Counts a job's record when it succeeded (what is billed); others are skipped.
    pub fn add_if_succeeded(&mut self, rec: &JobRecord) {
        if rec.state == JobState::Succeeded {
            self.add(rec.estimated_cost);
        }
    }
}

impl fmt::Display for CostTally {
    /// `$1.23`, `$1.23 + 2 jobs of unknown cost`, or `unknown (5 jobs of unknown cost)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unknown = match self.unknown_jobs {
            1 => "1 job of unknown cost".to_string(),
            n => format!("{n} jobs of unknown cost"),
        };
        match (self.known_jobs, self.unknown_jobs) {
            (_, 0) => f.write_str(&self.known.display()),
            (0, _) => write!(f, "unknown ({unknown})"),
            _ => write!(f, "{} + {unknown}", self.known.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tier_and_the_probed_duration_set_the_estimate() {
        use crate::model::{ModelKind, ProviderName, Tier};
        let mut s = Settings::builtin();
        let p = s.providers.get_mut(&ProviderName::Fal).unwrap();
        p.prices.edit = Usd::parse("0.2");
        p.prices.standard_edit = Usd::parse("0.1");
        let mut b = BatchShared::new("b", ProviderName::Fal, ModelKind::Edit, "https://x/v");
        b.clip_seconds = Some(10.0);
        assert_eq!(estimate(&s, &b), Usd::parse("2"));
        b.tier = Some(Tier::Standard);
        assert_eq!(estimate(&s, &b), Usd::parse("1"));
        // The probed length wins over the producer's clip_seconds.
        b.source = Some(crate::batch::SourceProbe {
            container: "mp4".into(),
            duration_secs: 4.0,
            width: 1280,
            height: 720,
            fps: 30.0,
            codec: "h264".into(),
            audio: false,
            bytes: None,
        });
        assert_eq!(estimate(&s, &b), Usd::parse("0.4"));
    }

    #[test]
    fn sums_exactly_and_says_what_is_unknown() {
        let mut t = CostTally::default();
        for _ in 0..1000 {
            t.add_text(Some("0.1"));
        }
        assert_eq!(t.to_string(), "$100.00");
        t.add(None);
        assert_eq!(t.to_string(), "$100.00 + 1 job of unknown cost");
        t.add_text(Some("garbage"));
        assert_eq!(t.to_string(), "$100.00 + 2 jobs of unknown cost");
        let mut u = CostTally::default();
        u.add(None);
        u.add(None);
        assert_eq!(u.to_string(), "unknown (2 jobs of unknown cost)");
    }
}
