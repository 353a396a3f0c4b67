//! Kling's answer envelope `{code, message, data}` and error classification: by business
//! `code` first (429 is overloaded: rate 1302, concurrency 1303, billing 1101/1102), then
//! by HTTP status.

use crate::upstream::{retry_after, ErrorClass, UpstreamError};
use secrecy::SecretString;
use serde_json::Value;

/// Business code of an unknown task on a query. UNCONFIRMED: Kling's error table (known
/// through copies, docs/providers.md "Kling — client") has 404/1203 "The requested
/// resource does not exist, such as the model", and documents no code for an unknown task.
pub(super) const CODE_NOT_FOUND: i64 = 1203;
/// Business code of invalid parameters (400/1201 "Invalid parameters, such as incorrect
/// key or illegal value", same table). UNCONFIRMED that a duplicate `external_task_id` is
/// answered with it: Kling only says the id "must be unique within a single user account".
pub(super) const CODE_INVALID: i64 = 1201;

/// How the runner must treat an error answer: by business `code` first, then by status.
pub(super) fn classify(status: u16, code: Option<i64>, submit: bool) -> ErrorClass {
    match code {
        Some(1000..=1004 | 1100..=1103 | 1304) => return ErrorClass::Account,
        Some(1302 | 1303) => return ErrorClass::RATE_LIMITED,
        Some(1200..=1203 | 1300 | 1301) => return ErrorClass::Job,
        _ => {}
    }
    match status {
        401 | 403 => ErrorClass::Account,
        429 => ErrorClass::RATE_LIMITED,
        503 => ErrorClass::Retryable,
        500..=599 if submit => ErrorClass::Ambiguous,
        500..=599 => ErrorClass::Retryable,
        400..=499 => ErrorClass::Job,
        // An unknown code on a 2xx: the task may exist, and a lookup will tell.
        _ if submit => ErrorClass::Ambiguous,
        _ => ErrorClass::Retryable,
    }
}

/// An answer that is not `code: 0`, classified: a billing 429 (1100–1102) is an account
/// error, a rate 429 (1302/1303) is rate limited, whatever the HTTP status says.
pub(super) fn answer_error(
    status: u16,
    body: &Value,
    raw: &str,
    submit: bool,
    what: &str,
    secrets: &[&SecretString],
) -> UpstreamError {
    let code = body.get("code").and_then(Value::as_i64);
    let class = classify(status, code, submit);
    let msg = match body.get("message").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None => raw.chars().take(300).collect(),
    };
    let code_txt = code.map_or(String::new(), |c| format!(" code {c}"));
    UpstreamError::answer(
        class,
        &format!("kling {what}: HTTP {status}{code_txt}: {msg}"),
        Some(status),
        None,
        secrets,
    )
}

/// A refused call: the classified error and the business code when there was one.
#[derive(Debug)]
pub(super) struct Refused {
    pub(super) code: Option<i64>,
    pub(super) err: UpstreamError,
}

impl From<UpstreamError> for Refused {
    fn from(err: UpstreamError) -> Self {
        Refused { code: None, err }
    }
}

/// A `code: 0` envelope's `data`, or the classified error.
pub(super) async fn read_answer(
    resp: reqwest::Response,
    submit: bool,
    what: &str,
    secrets: &[&SecretString],
) -> Result<Value, Refused> {
    let status = resp.status().as_u16();
    let ra = retry_after(resp.headers());
    let raw = crate::upstream::read_limited(resp, crate::upstream::MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            // The POST may have been accepted: a body we cannot read leaves it unknown.
            let class = if submit && status < 300 {
                ErrorClass::Ambiguous
            } else {
                ErrorClass::Retryable
            };
            UpstreamError::new(class, format!("kling {what}: {e}"))
        })?;
    let raw = String::from_utf8_lossy(&raw);
    let body: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
    let ok = (200..300).contains(&status) && body.get("code").and_then(Value::as_i64) == Some(0);
    if ok {
        return Ok(body.get("data").cloned().unwrap_or(Value::Null));
    }
    if (200..300).contains(&status) && body.get("code").is_none() {
        let class = if submit {
            ErrorClass::Ambiguous
        } else {
            ErrorClass::Retryable
        };
        return Err(UpstreamError::new(
            class,
            format!("kling {what}: HTTP {status} without a business code"),
        )
        .into());
    }
    let mut err = answer_error(status, &body, &raw, submit, what, secrets);
    err.retry_after = ra;
    err.class = err.class.with_retry_after(ra);
    Err(Refused {
        code: body.get("code").and_then(Value::as_i64),
        err,
    })
}
