//! The one definition of a job's states: wire names, which are terminal, which count as
//! failures, which hold a provider slot. The Lua scripts' state tables are generated
//! from here ([`JobState::lua_prelude`]), so Rust and Redis never disagree.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Every state a job can be in.
///
/// ```text
/// queued ─► submitting ─► polling ─► finishing ─► succeeded
///   │           └─► submit_unknown        │
///   └─► cancelled      failed · timed_out · dead
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting to be submitted (also while waiting for a slot, budget or a resume).
    Queued,
    /// The POST may be in flight: never POSTed again blindly.
    Submitting,
    /// The provider has the generation; parked between polls.
    Polling,
    /// The output is ready upstream and being downloaded.
    Finishing,
    Succeeded,
    Failed,
    TimedOut,
    /// Retries used up, or a poisoned record.
    Dead,
    Cancelled,
    /// The POST's outcome is unknown and the provider cannot be asked: an operator decides.
    SubmitUnknown,
}

impl JobState {
    /// Every state, in the order `status` prints them.
    pub const ALL: [JobState; 10] = [
        JobState::Queued,
        JobState::Submitting,
        JobState::Polling,
        JobState::Finishing,
        JobState::Succeeded,
        JobState::Failed,
        JobState::TimedOut,
        JobState::Dead,
        JobState::Cancelled,
        JobState::SubmitUnknown,
    ];

    /// States `restyle retry` sends back to the queue (succeeded jobs are never redone).
    pub const RETRYABLE: [JobState; 4] = [
        JobState::Failed,
        JobState::Dead,
        JobState::TimedOut,
        JobState::Cancelled,
    ];

    /// What `restyle retry` takes when no `--state` is given.
    pub const RETRY_DEFAULT: [JobState; 3] = [JobState::Failed, JobState::Dead, JobState::TimedOut];

    /// The name stored in Redis, printed by `status` and taken by `--state`.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Submitting => "submitting",
            JobState::Polling => "polling",
            JobState::Finishing => "finishing",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::TimedOut => "timed_out",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
            JobState::SubmitUnknown => "submit_unknown",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<JobState> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A job never leaves these states on its own (`submit_unknown` waits for an operator).
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded
                | JobState::Failed
                | JobState::TimedOut
                | JobState::Dead
                | JobState::Cancelled
                | JobState::SubmitUnknown
        )
    }

    /// Ended without an output, and not by anyone's choice (cancelled is not a failure).
    /// One definition for `status`, `watch`, the contact sheet, exports and exit codes.
    pub const fn is_failure(self) -> bool {
        matches!(
            self,
            JobState::Failed | JobState::TimedOut | JobState::Dead | JobState::SubmitUnknown
        )
    }

    /// A generation counts against its provider's in-flight cap from submit until it
    /// completes upstream; the download after that (finishing) no longer does.
    pub const fn holds_slot(self) -> bool {
        matches!(self, JobState::Submitting | JobState::Polling)
    }

    /// Entering this state gives the job's budget reservation back (it will not be billed).
    pub const fn releases_budget(self) -> bool {
        matches!(
            self,
            JobState::Queued | JobState::Failed | JobState::Cancelled
        )
    }

    /// Lua that defines `S` (state names: `S.queued`…), `TERMINAL`, `HOLD` and
    /// `RELEASE` (see [`JobState::releases_budget`]) for the scripts.
    pub fn lua_prelude() -> String {
        let table = |name: &str, pick: fn(JobState) -> bool| {
            let items: Vec<String> = Self::ALL
                .into_iter()
                .filter(|s| pick(*s))
                .map(|s| format!("{}=true", s.as_str()))
                .collect();
            format!("local {name} = {{{}}}\n", items.join(", "))
        };
        let names: Vec<String> = Self::ALL
            .into_iter()
            .map(|s| format!("{0}='{0}'", s.as_str()))
            .collect();
        let mut out = format!("local S = {{{}}}\n", names.join(", "));
        out += &table("TERMINAL", JobState::is_terminal);
        out += &table("HOLD", JobState::holds_slot);
        out += &table("RELEASE", JobState::releases_budget);
        out
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with a wire name (handy in tests and scripts reading result lines).
impl PartialEq<&str> for JobState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::parse(s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown job state {s:?} (one of {})", names.join(", "))
        })
    }
}

impl clap::ValueEnum for JobState {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }
    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// A `--state` flag that takes only the given states.
pub fn state_parser(
    allowed: &'static [JobState],
) -> impl clap::builder::TypedValueParser<Value = JobState> {
    use clap::builder::TypedValueParser;
    let names: Vec<&'static str> = allowed.iter().map(|s| s.as_str()).collect();
    clap::builder::PossibleValuesParser::new(names)
        .map(|s| JobState::parse(&s).expect("a possible value is a state"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert_eq!(JobState::parse("submitted"), None);
    }

    #[test]
    fn failures_are_terminal_and_slots_are_not() {
        for s in JobState::ALL {
            if s.is_failure() {
                assert!(s.is_terminal(), "{s}");
            }
            if s.holds_slot() {
                assert!(!s.is_terminal(), "{s}");
            }
        }
        assert!(!JobState::Cancelled.is_failure());
        for s in JobState::RETRYABLE {
            assert!(s.is_terminal() && s != JobState::Succeeded);
        }
    }

    #[test]
    fn lua_prelude_lists_the_tables() {
        let lua = JobState::lua_prelude();
        assert!(
            lua.contains("local HOLD = {submitting=true, polling=true}"),
            "{lua}"
        );
        assert!(lua.contains("submit_unknown='submit_unknown'"), "{lua}");
        assert!(lua.contains("RELEASE = {queued=true, failed=true, cancelled=true}"));
        let terminal = lua
            .lines()
            .find(|l| l.starts_with("local TERMINAL"))
            .unwrap();
        for s in JobState::ALL {
            assert_eq!(
                terminal.contains(&format!("{s}=true")),
                s.is_terminal(),
                "{s}"
            );
        }
    }
}
