//! Money in one exact type: [`Usd`], integer nano-dollars. Settings, batch specs, job
//! records, the Lua scripts and every report use it, so a thousand `0.1`s make `$100.00`,
//! not `$99.99999999999`.
//!
//! On the wire (Redis fields, result lines) an amount is a decimal USD string such as
//! `"0.42"`, parsed exactly; settings and batch files may also give a TOML/JSON number.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

const NANOS_PER_USD: i64 = 1_000_000_000;

/// An amount of US dollars, exact to the nano-dollar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(i64);

impl Usd {
    pub const ZERO: Usd = Usd(0);

    pub const fn from_nanos(n: i64) -> Usd {
        Usd(n)
    }

    pub const fn nanos(self) -> i64 {
        self.0
    }

    /// Parses a non-negative decimal such as `"0.42"`, `"3"` or `".5"` exactly. Empty,
    /// negative or non-numeric text is `None`; digits past the ninth decimal are dropped.
    pub fn parse(text: &str) -> Option<Usd> {
        let t = text.trim();
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) || int.len() > 9 {
            return None;
        }
        let whole: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut nanos: i64 = 0;
        for (i, b) in frac.bytes().take(9).enumerate() {
            nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
        }
        Some(Usd(whole * NANOS_PER_USD + nanos))
    }

    /// From a float given in settings or a batch file, rounded to the nano-dollar.
    /// Negative, non-finite or absurd (≥ $1e9) values are `None`.
    pub fn from_f64(x: f64) -> Option<Usd> {
        (x.is_finite() && (0.0..1e9).contains(&x))
            .then(|| Usd((x * NANOS_PER_USD as f64).round() as i64))
    }

    /// For metrics and JSON, which carry floats.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_USD as f64
    }

    /// A per-second price times a duration, rounded to the nano-dollar.
    pub fn times_seconds(self, seconds: f64) -> Usd {
        Usd((self.0 as f64 * seconds).round() as i64)
    }

    pub fn saturating_add(self, other: Usd) -> Usd {
        Usd(self.0.saturating_add(other.0))
    }

    /// The decimal string stored in Redis: exact, shortest (`"0.42"`, `"3"`).
    pub fn to_wire(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        let whole = a / NANOS_PER_USD as u64;
        let frac = a % NANOS_PER_USD as u64;
        if frac == 0 {
            return format!("{sign}{whole}");
        }
        let f = format!("{frac:09}");
        format!("{sign}{whole}.{}", f.trim_end_matches('0'))
    }

    /// `$1.23`: rounded half up to four decimals, at least two shown.
    pub fn display(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let tenth_mils = (i128::from(self.0).abs() + 50_000) / 100_000;
        let whole = tenth_mils / 10_000;
        let mut frac = format!("{:04}", tenth_mils % 10_000);
        while frac.len() > 2 && frac.ends_with('0') {
            frac.pop();
        }
        format!("{sign}${whole}.{frac}")
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

impl std::str::FromStr for Usd {
    type Err = String;
    /// A USD amount given on the command line, e.g. `40` or `12.5`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Usd::parse(s).ok_or_else(|| format!("{s:?} is not a USD amount (e.g. 40 or 12.50)"))
    }
}

/// Written as a JSON/TOML number, so batch specs keep the shape (and digest) they had.
impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.as_f64())
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Float(f64),
            Text(String),
        }
        let bad = |what: String| serde::de::Error::custom(format!("{what} is not a USD amount"));
        match Raw::deserialize(d)? {
            Raw::Int(n) => Usd::from_f64(n as f64).ok_or_else(|| bad(n.to_string())),
            Raw::Float(x) => Usd::from_f64(x).ok_or_else(|| bad(x.to_string())),
            Raw::Text(t) => Usd::parse(&t).ok_or_else(|| bad(format!("{t:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_strings_exactly() {
        assert_eq!(Usd::parse("0.42"), Some(Usd(420_000_000)));
        assert_eq!(Usd::parse("3"), Some(Usd(3 * NANOS_PER_USD)));
        assert_eq!(Usd::parse(".5"), Some(Usd(500_000_000)));
        assert_eq!(Usd::parse(" 1.000000001 "), Some(Usd(NANOS_PER_USD + 1)));
        assert_eq!(Usd::parse("0.0000000019"), Some(Usd(1)));
        for bad in ["", ".", "-1", "abc", "1.2.3", "1e3", "NaN", "12345678901"] {
            assert_eq!(Usd::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn formats_dollars_with_two_to_four_decimals() {
        assert_eq!(Usd(0).display(), "$0.00");
        assert_eq!(Usd(1_500_000_000).display(), "$1.50");
        assert_eq!(Usd(84_000_000).display(), "$0.084");
        assert_eq!(Usd(12_345_678_900).display(), "$12.3457");
        assert_eq!(Usd(99_999_999).display(), "$0.10");
    }

    #[test]
    fn wire_form_is_exact_and_round_trips() {
        for (n, s) in [
            (0, "0"),
            (420_000_000, "0.42"),
            (3 * NANOS_PER_USD, "3"),
            (1, "0.000000001"),
        ] {
            assert_eq!(Usd(n).to_wire(), s);
            assert_eq!(Usd::parse(s), Some(Usd(n)));
        }
        // What the old float-accumulating scripts left behind still reads right.
        assert_eq!(Usd::parse("0.56000000000000005"), Some(Usd(560_000_000)));
    }

    #[test]
    fn serde_takes_numbers_and_strings_and_writes_numbers() {
        let v: Usd = serde_json::from_str("40").unwrap();
        assert_eq!(v, Usd(40 * NANOS_PER_USD));
        let v: Usd = serde_json::from_str("0.112").unwrap();
        assert_eq!(v, Usd(112_000_000));
        let v: Usd = serde_json::from_str("\"0.1\"").unwrap();
        assert_eq!(v, Usd(100_000_000));
        assert!(serde_json::from_str::<Usd>("-1").is_err());
        assert_eq!(
            serde_json::to_string(&Usd(40 * NANOS_PER_USD)).unwrap(),
            "40.0"
        );
        assert_eq!(Usd(112_000_000).times_seconds(5.0), Usd(560_000_000));
    }
}
