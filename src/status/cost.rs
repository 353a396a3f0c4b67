//! Money as people read it: estimated costs are decimal USD strings in the job records
//! (absent = unknown, never invented). They are summed exactly in nano-dollars, so a
//! thousand `0.1`s make `$100.00`, not `$99.99999999999`.

use crate::queue::JobRecord;
use std::fmt;

const NANOS_PER_USD: i128 = 1_000_000_000;

/// Parses a USD amount such as `"0.42"`, `"3"` or `".5"` into nano-dollars. Negative,
/// empty or non-numeric text is `None` (unknown); digits past the ninth decimal are dropped.
pub fn parse_usd(text: &str) -> Option<i128> {
    let t = text.trim();
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) || int.len() > 18 {
        return None;
    }
    let whole: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut nanos: i128 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += i128::from(b - b'0') * 10i128.pow(8 - i as u32);
    }
    Some(whole * NANOS_PER_USD + nanos)
}

/// Formats nano-dollars as `$1.23`: rounded to four decimals, at least two shown.
pub fn format_usd(nanos: i128) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    // Round half up to 1e-4 USD (100_000 nano-dollars).
    let tenth_mils = (nanos.abs() + 50_000) / 100_000;
    let whole = tenth_mils / 10_000;
    let mut frac = format!("{:04}", tenth_mils % 10_000);
    while frac.len() > 2 && frac.ends_with('0') {
        frac.pop();
    }
    format!("{sign}${whole}.{frac}")
}

/// The cost of a set of jobs: the sum of the known estimates, and how many are unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CostTally {
    pub known_nanos: i128,
    pub known_jobs: u64,
    pub unknown_jobs: u64,
}

impl CostTally {
    /// Counts one job's estimate (`None`, or text that is no amount, is unknown).
    pub fn add(&mut self, estimated_cost: Option<&str>) {
        match estimated_cost.and_then(parse_usd) {
            Some(n) => {
                self.known_nanos += n;
                self.known_jobs += 1;
            }
            None => self.unknown_jobs += 1,
        }
    }

    /// Counts a job's record when it succeeded (what is billed); others are skipped.
    pub fn add_if_succeeded(&mut self, rec: &JobRecord) {
        if rec.state() == "succeeded" {
            self.add(rec.get("estimated_cost"));
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
            (_, 0) => f.write_str(&format_usd(self.known_nanos)),
            (0, _) => write!(f, "unknown ({unknown})"),
            _ => write!(f, "{} + {unknown}", format_usd(self.known_nanos)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_strings_exactly() {
        assert_eq!(parse_usd("0.42"), Some(420_000_000));
        assert_eq!(parse_usd("3"), Some(3 * NANOS_PER_USD));
        assert_eq!(parse_usd(".5"), Some(500_000_000));
        assert_eq!(parse_usd(" 1.000000001 "), Some(NANOS_PER_USD + 1));
        assert_eq!(parse_usd("0.0000000019"), Some(1));
        for bad in ["", ".", "-1", "abc", "1.2.3", "1e3", "NaN"] {
            assert_eq!(parse_usd(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_dollars_with_two_to_four_decimals() {
        assert_eq!(format_usd(0), "$0.00");
        assert_eq!(format_usd(1_500_000_000), "$1.50");
        assert_eq!(format_usd(84_000_000), "$0.084");
        assert_eq!(format_usd(12_345_678_900), "$12.3457");
        assert_eq!(format_usd(99_999_999), "$0.10");
    }

    #[test]
    fn sums_exactly_and_says_what_is_unknown() {
        let mut t = CostTally::default();
        for _ in 0..1000 {
            t.add(Some("0.1"));
        }
        assert_eq!(t.to_string(), "$100.00");
        t.add(None);
        assert_eq!(t.to_string(), "$100.00 + 1 job of unknown cost");
        t.add(Some("garbage"));
        assert_eq!(t.to_string(), "$100.00 + 2 jobs of unknown cost");
        let mut u = CostTally::default();
        u.add(None);
        u.add(None);
        assert_eq!(u.to_string(), "unknown (2 jobs of unknown cost)");
    }
}
