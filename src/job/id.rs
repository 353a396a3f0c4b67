//! Job ids: how they are made from a batch id, and the same rule checked on an id read
//! back from Redis, before anything (a path, a key of another batch) is built from it.

/// Job ids derive from the batch id and the variant index, so enqueueing a batch twice
/// creates nothing new. The id is also a valid `X-Client-Request-Id` (`[A-Za-z0-9._:-]`).
/// The Lua `PURGE` script builds the same ids with [`JOB_ID_LUA_FORMAT`].
pub fn job_id(batch_id: &str, index: u32) -> String {
    format!("{batch_id}.{index:05}")
}

/// `string.format` pattern of [`job_id`] for the scripts.
pub const JOB_ID_LUA_FORMAT: &str = "%s.%05d";

/// The id of the job that announces a batch's completion number `n` (the TRANSITION
/// script makes these, `done:<batch>:<n>`).
pub fn announcement_id(batch_id: &str, n: u64) -> String {
    format!("done:{batch_id}:{n}")
}

/// The client id of one submit attempt: the job id and the first characters of the
/// attempt's `submit_id` (recorded before the POST), so a retried job never collides
/// with, or re-attaches to, the task of an earlier attempt. Records written before
/// attempts had ids use the job id alone. Stays within `[A-Za-z0-9._:-]`.
pub fn client_id(job_id: &str, submit_id: Option<&str>) -> String {
    match submit_id {
        Some(s) if !s.is_empty() => format!("{job_id}:{}", &s[..s.len().min(8)]),
        _ => job_id.to_string(),
    }
}

/// What a valid job id says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobIdParts<'a> {
    /// A variant: [`job_id`]`(batch, index)`.
    Variant { batch: &'a str, index: u32 },
    /// An announcement: [`announcement_id`]`(batch, completion)`.
    Announcement { batch: &'a str, completion: u64 },
}

impl JobIdParts<'_> {
    /// The batch the id names.
    pub fn batch(&self) -> &str {
        match self {
            JobIdParts::Variant { batch, .. } | JobIdParts::Announcement { batch, .. } => batch,
        }
    }
}

/// Checks an id read from Redis against the rule ids are made by: exactly what
/// [`job_id`] or [`announcement_id`] makes of a batch id that passes
/// [`crate::batch::validate_batch_id`]. Returns the reason when it is not such an id.
pub fn parse_job_id(id: &str) -> Result<JobIdParts<'_>, String> {
    let bad = |why: String| format!("job id {id:.80?} is not valid: {why}");
    let batch_ok = |b: &str| {
        crate::batch::validate_batch_id(b).map_err(|why| bad(format!("batch id {b:.80?} {why}")))
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if let Some(rest) = id.strip_prefix("done:") {
        let (batch, n) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad("an announcement id is done:<batch>:<n>".into()))?;
        batch_ok(batch)?;
        let completion = n
            .parse()
            .ok()
            .filter(|c| digits(n) && announcement_id(batch, *c) == id)
            .ok_or_else(|| bad(format!("completion {n:.20?} is not a number")))?;
        return Ok(JobIdParts::Announcement { batch, completion });
    }
    let (batch, i) = id
        .rsplit_once('.')
        .ok_or_else(|| bad("a job id is <batch>.<index>".into()))?;
    batch_ok(batch)?;
    let index = i
        .parse()
        .ok()
        .filter(|n| digits(i) && job_id(batch, *n) == id)
        .ok_or_else(|| bad(format!("index {i:.20?} is not a variant index")))?;
    Ok(JobIdParts::Variant { batch, index })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_stable_and_client_id_safe() {
        let id = job_id("spring-2026_a", 7);
        assert_eq!(id, "spring-2026_a.00007");
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c)));
    }

    #[test]
    fn ids_made_by_the_rule_parse_back() {
        assert_eq!(
            parse_job_id(&job_id("b-1", 7)),
            Ok(JobIdParts::Variant {
                batch: "b-1",
                index: 7
            })
        );
        assert_eq!(
            parse_job_id(&job_id("b", 123_456)).map(|p| p.batch().to_string()),
            Ok("b".to_string())
        );
        assert_eq!(
            parse_job_id(&announcement_id("b", 2)),
            Ok(JobIdParts::Announcement {
                batch: "b",
                completion: 2
            })
        );
    }

    #[test]
    fn ids_that_could_build_a_path_or_another_key_are_refused() {
        for bad in [
            "../../x0",
            "../../evil.00000",
            "a/b.00001",
            "done:../../evil:1",
            "b.1",
            "b.0000x",
            "b.+0001",
            "b",
            "",
            ".00001",
            "b.00001\n",
            "done:b:x",
            "done:b",
        ] {
            let why = parse_job_id(bad).expect_err(bad);
            assert!(why.contains("job id"), "{why}");
        }
        let why = parse_job_id("../../evil.00000").unwrap_err();
        assert!(why.contains("batch id"), "{why}");
    }
}
