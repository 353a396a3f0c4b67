//! The Redis server version the queue needs, read from `INFO server` when a queue first
//! connects ([`super::Queue::connect`], the one place every command — worker, enqueue,
//! serve, receive, check-config — opens the queue). The claim takes a batch of ready jobs
//! with `LMPOP`, which Redis has since 7.0: an older server is refused at startup with the
//! version found and the one required, instead of failing every claim later.
//!
//! Parsing is a pure function of the `INFO` text (untrusted: bounded, and anything that is
//! not a version reads as unknown). A server that does not say its version (an `INFO` the
//! account may not run, a proxy that hides it) is let through with a warning: the claim
//! then fails on its own if the command is missing.

use std::fmt;

/// The oldest Redis the queue runs on: `LMPOP` (the claim) is 7.0's.
pub const REQUIRED: RedisVersion = RedisVersion {
    major: 7,
    minor: 0,
    patch: 0,
};

/// How much of the `INFO` reply is looked at (the `server` section is ~1.5 KiB).
const MAX_INFO: usize = 64 * 1024;
/// The longest version text accepted (`7.0.15`, `255.255.255-rc1`).
const MAX_VERSION: usize = 32;

/// A server version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RedisVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for RedisVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl RedisVersion {
    /// Parses `7.0.15` (a missing patch or minor is 0; a suffix after the patch's digits,
    /// `-rc1`, is ignored). `None` for anything else.
    pub fn parse(text: &str) -> Option<RedisVersion> {
        let text = text.trim();
        if text.is_empty() || text.len() > MAX_VERSION {
            return None;
        }
        let mut parts = text.splitn(3, '.');
        let number = |s: &str| -> Option<u32> {
            let digits = &s[..s.bytes().take_while(u8::is_ascii_digit).count()];
            if digits.is_empty() || digits.len() > 6 {
                return None;
            }
            digits.parse().ok()
        };
        let major_text = parts.next()?;
        // The major must be all digits: `v7` or `x.y` is not a version.
        if !major_text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let major = number(major_text)?;
        let minor = match parts.next() {
            Some(s) => number(s)?,
            None => 0,
        };
        let patch = match parts.next() {
            Some(s) => number(s)?,
            None => 0,
        };
        Some(RedisVersion {
            major,
            minor,
            patch,
        })
    }

    /// The `redis_version` of an `INFO` reply; `None` when it has none that parses.
    pub fn from_info(info: &str) -> Option<RedisVersion> {
        let head = match info.char_indices().nth(MAX_INFO) {
            Some((i, _)) => &info[..i],
            None => info,
        };
        head.lines()
            .find_map(|l| l.trim_start().strip_prefix("redis_version:"))
            .and_then(RedisVersion::parse)
    }

    /// Whether the queue runs on this version.
    pub fn supported(&self) -> bool {
        *self >= REQUIRED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO_7: &str = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n\
        redis_mode:standalone\r\nos:Linux 6.1.0 x86_64\r\n";

    fn v(major: u32, minor: u32, patch: u32) -> RedisVersion {
        RedisVersion {
            major,
            minor,
            patch,
        }
    }

    #[test]
    fn the_version_is_read_from_info_server() {
        assert_eq!(RedisVersion::from_info(INFO_7), Some(v(7, 0, 15)));
        let valkey = "# Server\nredis_version:7.2.4\nserver_name:valkey\nvalkey_version:8.0.1\n";
        assert_eq!(RedisVersion::from_info(valkey), Some(v(7, 2, 4)));
        let old = "# Server\r\nredis_version:6.2.14\r\n";
        assert_eq!(RedisVersion::from_info(old), Some(v(6, 2, 14)));
    }

    #[test]
    fn info_without_a_version_that_parses_is_unknown() {
        assert_eq!(RedisVersion::from_info(""), None);
        assert_eq!(
            RedisVersion::from_info("# Server\r\nredis_mode:standalone\r\n"),
            None
        );
        assert_eq!(RedisVersion::from_info("redis_version:\r\n"), None);
        assert_eq!(RedisVersion::from_info("redis_version:seven\r\n"), None);
        assert_eq!(RedisVersion::from_info("redis_version:v7.0.0\r\n"), None);
        let long = format!("redis_version:7.{}\r\n", "0".repeat(40));
        assert_eq!(RedisVersion::from_info(&long), None);
        // Past the part that is read, a version is not looked for.
        let padded = format!("{}\nredis_version:7.0.0\n", "x".repeat(MAX_INFO));
        assert_eq!(RedisVersion::from_info(&padded), None);
    }

    #[test]
    fn short_and_suffixed_versions_parse() {
        assert_eq!(RedisVersion::parse("7"), Some(v(7, 0, 0)));
        assert_eq!(RedisVersion::parse("7.2"), Some(v(7, 2, 0)));
        assert_eq!(RedisVersion::parse(" 7.4.0-rc1 "), Some(v(7, 4, 0)));
        assert_eq!(RedisVersion::parse("7..1"), None);
        assert_eq!(RedisVersion::parse("9999999.0.0"), None);
    }

    #[test]
    fn seven_and_later_are_supported_and_older_are_not() {
        assert!(v(7, 0, 0).supported());
        assert!(v(7, 0, 15).supported());
        assert!(v(7, 2, 4).supported());
        assert!(v(8, 0, 0).supported());
        assert!(!v(6, 2, 14).supported());
        assert!(!v(6, 9, 99).supported());
        assert!(!v(5, 0, 7).supported());
        // Ordered by number, not as text: 10.0 is newer than 7.0, 7.10 than 7.9.
        assert!(v(10, 0, 0) > v(7, 0, 0));
        assert!(v(7, 10, 0) > v(7, 9, 0));
        assert_eq!(REQUIRED.to_string(), "7.0.0");
    }
}
