//! Kling official API wire mapping (Omni-Video, `kling-video-o1`): a per-request HS256
//! JWT, `POST /v1/videos/omni-video` with `external_task_id` = our job id, `GET
//! /v1/videos/omni-video/{task_id | external_task_id}`, statuses
//! submitted/processing/succeed/failed, output at `data.task_result.videos[0].url`.
//! Errors carry an HTTP status and a business `code`; 429 is overloaded (rate 1302,
//! concurrency 1303, billing 1101/1102), so errors are classified by `code` first.

use crate::config::ProviderSettings;
use crate::model::{GenerationRequest, ModelKind, ProviderName};
use crate::upstream::{retry_after, ErrorClass, Lookup, PollStatus, Upstream, UpstreamError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

const MODEL_NAME: &str = "kling-video-o1";
/// Token lifetime and the `nbf` allowance for clock skew, as Kling's own client mints them.
const TOKEN_TTL_SECS: u64 = 1800;
const TOKEN_SKEW_SECS: u64 = 5;
/// Business code of an unknown task on a query (ASSUMPTION: "resource not found").
const CODE_NOT_FOUND: i64 = 1203;
/// Business code of invalid parameters, also given for a duplicate `external_task_id`.
const CODE_INVALID: i64 = 1201;

/// Client for one Kling account (access key + secret key).
pub struct Kling {
    http: reqwest::Client,
    base: url::Url,
    access_key: Option<SecretString>,
    secret_key: Option<SecretString>,
}

impl std::fmt::Debug for Kling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kling")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// HMAC-SHA256 (RFC 2104 with 64-byte blocks).
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// An HS256 JWT `{"iss": access_key, "exp": now+1800, "nbf": now-5}` signed with the secret.
pub fn mint_jwt(access_key: &str, secret_key: &str, now_secs: u64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({
        "iss": access_key,
        "exp": now_secs + TOKEN_TTL_SECS,
        "nbf": now_secs.saturating_sub(TOKEN_SKEW_SECS),
    });
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let sig = hmac_sha256(secret_key.as_bytes(), signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Rewrites the batch spec's `@Image1`, `@Element2`, `@Video1` (any case) into Kling's
/// `<<<image_1>>>`, `<<<element_2>>>`, `<<<video_1>>>`. Anything else is left as written.
pub fn translate_prompt(prompt: &str) -> String {
    let mut out = String::with_capacity(prompt.len() + 16);
    let mut rest = prompt;
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match reference_at(after) {
            Some((kind, n, used)) => {
                out.push_str(&format!("<<<{kind}_{n}>>>"));
                rest = &after[used..];
            }
            None => {
                out.push('@');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A reference word, its number and the bytes it spans, at the start of `s`.
fn reference_at(s: &str) -> Option<(&'static str, u32, usize)> {
    ["image", "element", "video"].into_iter().find_map(|kind| {
        let word = s.get(..kind.len())?;
        if !word.eq_ignore_ascii_case(kind) {
            return None;
        }
        let digits = s[kind.len()..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let end = kind.len() + digits;
        let n: u32 = s[kind.len()..end].parse().ok()?;
        let glued = s[end..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        (!glued).then_some((kind, n, end))
    })
}

/// The JSON body for one task. Kling's element library takes registered ids only, so a
/// request with inline elements is refused before anything is sent.
pub fn request_body(req: &GenerationRequest) -> Result<Value, UpstreamError> {
    if !req.elements.is_empty() {
        return Err(UpstreamError::new(
            ErrorClass::Job,
            "Kling needs pre-registered element ids; inline elements are not supported",
        ));
    }
    let refer_type = match req.model {
        ModelKind::Edit => "base",
        ModelKind::Reference => "feature",
    };
    let mut body = json!({
        "model_name": MODEL_NAME,
        "prompt": translate_prompt(&req.prompt),
        "video_list": [{
            "video_url": req.video,
            "refer_type": refer_type,
            "keep_original_sound": if req.keep_audio { "yes" } else { "no" },
        }],
        // Generated sound must be off with a video; the clip's own is `keep_original_sound`.
        "sound": "off",
        "external_task_id": req.job_id,
    });
    if !req.image_list.is_empty() {
        let images: Vec<Value> = req
            .image_list
            .iter()
            .map(|u| json!({ "image_url": u }))
            .collect();
        body["image_list"] = json!(images);
    }
    if req.model == ModelKind::Reference {
        // Required for a `feature` video; Kling documents no default (ASSUMPTION: 16:9).
        body["aspect_ratio"] = json!(req.aspect_ratio.as_deref().unwrap_or("16:9"));
        if let Some(d) = req.duration {
            body["duration"] = json!(d.to_string());
        }
    }
    Ok(body)
}

/// How the runner must treat an error answer: by business `code` first, then by status.
fn classify(status: u16, code: Option<i64>, submit: bool) -> ErrorClass {
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
fn answer_error(status: u16, body: &Value, raw: &str, submit: bool, what: &str) -> UpstreamError {
    let code = body.get("code").and_then(Value::as_i64);
    let class = classify(status, code, submit);
    let msg = match body.get("message").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None => raw.chars().take(300).collect(),
    };
    let code_txt = code.map_or(String::new(), |c| format!(" code {c}"));
    UpstreamError {
        class,
        message: format!("kling {what}: HTTP {status}{code_txt}: {msg}"),
        status: Some(status),
        retry_after: None,
    }
}

/// A task's `task_status`, as Kling documents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum TaskStatus {
    Submitted,
    Processing,
    Succeed,
    Failed,
}

/// A refused call: the classified error and the business code when there was one.
#[derive(Debug)]
struct Refused {
    code: Option<i64>,
    err: UpstreamError,
}

impl From<UpstreamError> for Refused {
    fn from(err: UpstreamError) -> Self {
        Refused { code: None, err }
    }
}

/// A `code: 0` envelope's `data`, or the classified error.
async fn read_answer(resp: reqwest::Response, submit: bool, what: &str) -> Result<Value, Refused> {
    let status = resp.status().as_u16();
    let ra = retry_after(resp.headers());
    let raw = resp.text().await.map_err(|e| {
        // The POST may have been accepted: a body we cannot read leaves it unknown.
        let class = if submit && status < 300 {
            ErrorClass::Ambiguous
        } else {
            ErrorClass::Retryable
        };
        let e = e.without_url();
        UpstreamError::new(class, format!("kling {what}: unreadable response: {e}"))
    })?;
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
    let mut err = answer_error(status, &body, &raw, submit, what);
    err.retry_after = ra;
    Err(Refused {
        code: body.get("code").and_then(Value::as_i64),
        err,
    })
}

impl Kling {
    pub fn new(p: &ProviderSettings) -> Result<Self, UpstreamError> {
        let http = crate::upstream::http_client(p, true)?;
        Ok(Kling {
            http,
            base: p.base_url.clone(),
            access_key: p.access_key.clone(),
            secret_key: p.secret_key.clone(),
        })
    }

    /// `…/v1/videos/omni-video`, plus one percent-encoded path segment when given.
    fn url(&self, id: Option<&str>) -> Result<url::Url, UpstreamError> {
        let mut u = self.base.clone();
        {
            let mut segs = u.path_segments_mut().map_err(|()| {
                UpstreamError::new(ErrorClass::Account, "kling: base_url cannot take a path")
            })?;
            segs.pop_if_empty().extend(["v1", "videos", "omni-video"]);
            if let Some(id) = id {
                segs.push(id);
            }
        }
        Ok(u)
    }

    /// Signs a fresh token for this request (cheap, so never cached or stale).
    fn auth(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, UpstreamError> {
        let (Some(ak), Some(sk)) = (&self.access_key, &self.secret_key) else {
            return Err(UpstreamError::new(
                ErrorClass::Account,
                "no access/secret key for kling: set KLING_ACCESS_KEY and KLING_SECRET_KEY \
                 (or RESTYLE__PROVIDERS__KLING__ACCESS_KEY / __SECRET_KEY)",
            ));
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let token = mint_jwt(ak.expose_secret(), sk.expose_secret(), now);
        Ok(rb.bearer_auth(token))
    }

    /// `GET /v1/videos/omni-video/{id}`: the task's `data`.
    async fn query(&self, id: &str, what: &str) -> Result<Value, Refused> {
        let rb = self.http.get(self.url(Some(id))?);
        let resp =
            self.auth(rb)?.send().await.map_err(|e| {
                crate::upstream::transport_error(ProviderName::Kling, e, false, what)
            })?;
        read_answer(resp, false, what).await
    }
}

#[async_trait::async_trait]
impl Upstream for Kling {
    fn name(&self) -> ProviderName {
        ProviderName::Kling
    }

    async fn submit(&self, req: &GenerationRequest) -> Result<String, UpstreamError> {
        let body = request_body(req)?;
        let rb = self.http.post(self.url(None)?).json(&body);
        let resp = self.auth(rb)?.send().await.map_err(|e| {
            crate::upstream::transport_error(ProviderName::Kling, e, true, "submit")
        })?;
        let data = match read_answer(resp, true, "submit").await {
            Ok(data) => data,
            Err(Refused {
                code: Some(CODE_INVALID),
                err: e,
            }) => {
                // Also the answer to a duplicate external_task_id: a task may exist already.
                return match self.lookup(&req.job_id).await {
                    Ok(Lookup::Found(id)) => Ok(id),
                    Ok(_) => Err(e),
                    Err(l) => Err(UpstreamError::new(
                        ErrorClass::Ambiguous,
                        format!("{}; lookup failed: {}", e.message, l.message),
                    )),
                };
            }
            Err(r) => return Err(r.err),
        };
        match data.get("task_id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() => Ok(id.to_string()),
            _ => Err(UpstreamError::new(
                ErrorClass::Ambiguous,
                "kling submit: response has no data.task_id",
            )),
        }
    }

    async fn poll(&self, upstream_id: &str) -> Result<PollStatus, UpstreamError> {
        let data = self.query(upstream_id, "poll").await.map_err(|r| r.err)?;
        let status = data
            .get("task_status")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(match crate::upstream::wire_status::<TaskStatus>(&status) {
            Some(TaskStatus::Succeed) => match data
                .pointer("/task_result/videos/0/url")
                .and_then(Value::as_str)
            {
                Some(url) => PollStatus::Succeeded {
                    url: url.to_string(),
                },
                None => PollStatus::Failed {
                    reason: "kling: task succeeded without task_result.videos[0].url".into(),
                },
            },
            Some(TaskStatus::Failed) => PollStatus::Failed {
                reason: match data.get("task_status_msg").and_then(Value::as_str) {
                    Some(m) if !m.is_empty() => format!("kling: {m}"),
                    _ => "kling: task failed without a reason".to_string(),
                },
            },
            Some(TaskStatus::Submitted | TaskStatus::Processing) => PollStatus::Pending { status },
            None => {
                tracing::warn!(
                    upstream_status = status.as_str(),
                    "Unknown kling task status, still waiting."
                );
                PollStatus::Pending { status }
            }
        })
    }

    async fn lookup(&self, job_id: &str) -> Result<Lookup, UpstreamError> {
        match self.query(job_id, "lookup").await {
            Ok(data) => match data.get("task_id").and_then(Value::as_str) {
                Some(id) if !id.is_empty() => Ok(Lookup::Found(id.to_string())),
                _ => Err(UpstreamError::new(
                    ErrorClass::Retryable,
                    "kling lookup: answer has no data.task_id",
                )),
            },
            Err(Refused {
                code: Some(CODE_NOT_FOUND),
                ..
            }) => Ok(Lookup::NotFound),
            Err(r) => Err(r.err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(model: ModelKind) -> GenerationRequest {
        GenerationRequest {
            job_id: "b.00001".into(),
            model,
            prompt: "the coat from @Image1".into(),
            video: "https://x/v.mp4".into(),
            image_list: vec!["https://x/i.png".into()],
            keep_audio: true,
            aspect_ratio: Some("9:16".into()),
            duration: Some(5),
            elements: vec![],
        }
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        let h = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(h),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let long = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(long),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn jwt_has_the_documented_header_claims_and_signature() {
        let t = mint_jwt("ak", "sk", 1_000_000);
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        let dec = |s: &str| -> Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap()
        };
        assert_eq!(dec(parts[0]), json!({"alg": "HS256", "typ": "JWT"}));
        assert_eq!(
            dec(parts[1]),
            json!({"iss": "ak", "exp": 1_001_800, "nbf": 999_995})
        );
        let sig = hmac_sha256(b"sk", format!("{}.{}", parts[0], parts[1]).as_bytes());
        assert_eq!(parts[2], URL_SAFE_NO_PAD.encode(sig));
    }

    #[test]
    fn prompt_references_are_translated() {
        assert_eq!(
            translate_prompt("@Image1 wears @element2 in @Video1, mail a@b.c @Image @Imagex1"),
            "<<<image_1>>> wears <<<element_2>>> in <<<video_1>>>, mail a@b.c @Image @Imagex1"
        );
        assert_eq!(translate_prompt("@Image12's"), "<<<image_12>>>'s");
        assert_eq!(
            translate_prompt("@Image1st é@Image02"),
            "@Image1st é<<<image_2>>>"
        );
        assert_eq!(translate_prompt("no refs"), "no refs");
        assert_eq!(translate_prompt("trailing @"), "trailing @");
    }

    #[test]
    fn edit_and_reference_bodies() {
        let e = request_body(&req(ModelKind::Edit)).unwrap();
        assert_eq!(e["video_list"][0]["refer_type"], "base");
        assert_eq!(e["video_list"][0]["keep_original_sound"], "yes");
        assert_eq!(e["prompt"], "the coat from <<<image_1>>>");
        assert_eq!(e["image_list"], json!([{"image_url": "https://x/i.png"}]));
        assert_eq!(e["external_task_id"], "b.00001");
        assert!(e.get("duration").is_none() && e.get("aspect_ratio").is_none());
        let r = request_body(&req(ModelKind::Reference)).unwrap();
        assert_eq!(r["video_list"][0]["refer_type"], "feature");
        assert_eq!(r["duration"], json!("5"));
        assert_eq!(r["aspect_ratio"], "9:16");
        let mut inline = req(ModelKind::Edit);
        inline.elements = vec![crate::model::Element {
            frontal_image_url: "https://x/f.png".into(),
            reference_image_urls: vec![],
        }];
        let err = request_body(&inline).unwrap_err();
        assert_eq!(err.class, ErrorClass::Job);
        assert!(err.message.contains("pre-registered element ids"));
    }

    #[test]
    fn errors_are_classified_by_business_code() {
        assert_eq!(classify(401, Some(1004), false), ErrorClass::Account);
        assert_eq!(classify(429, Some(1102), true), ErrorClass::Account);
        assert_eq!(classify(429, Some(1302), true), ErrorClass::RATE_LIMITED);
        assert_eq!(classify(429, Some(1303), true), ErrorClass::RATE_LIMITED);
        assert_eq!(classify(400, Some(1301), true), ErrorClass::Job);
        assert_eq!(classify(500, Some(5000), true), ErrorClass::Ambiguous);
        assert_eq!(classify(504, Some(5002), true), ErrorClass::Ambiguous);
        assert_eq!(classify(503, Some(5001), true), ErrorClass::Retryable);
        assert_eq!(classify(500, Some(5000), false), ErrorClass::Retryable);
        assert_eq!(classify(200, Some(9999), true), ErrorClass::Ambiguous);
        assert_eq!(classify(200, Some(9999), false), ErrorClass::Retryable);
        let billing = answer_error(429, &json!({"code": 1102, "message": "m"}), "", true, "s");
        assert_eq!(
            (billing.class, billing.status),
            (ErrorClass::Account, Some(429))
        );
        assert!(billing.message.contains("code 1102"), "{}", billing.message);
        let rate = answer_error(429, &json!({"code": 1303, "message": "m"}), "", true, "s");
        assert_eq!(
            (rate.class, rate.status),
            (ErrorClass::RATE_LIMITED, Some(429))
        );
    }
}

/// Kling's [registry](crate::upstream::registry) entry: access + secret key (a JWT per
/// request), both models, no inline elements.
#[allow(clippy::items_after_test_module)] // each provider file ends with its entry
pub const PROVIDER: crate::upstream::registry::Provider = crate::upstream::registry::Provider {
    name: ProviderName::Kling,
    credentials: crate::upstream::registry::Credentials::AccessSecretJwt {
        access_env: "KLING_ACCESS_KEY",
        secret_env: "KLING_SECRET_KEY",
    },
    models: crate::upstream::registry::Models {
        edit: Ok(crate::upstream::registry::ModelLimits {
            inline_elements: false,
            ..crate::upstream::registry::ModelLimits::BASE
        }),
        reference: Ok(crate::upstream::registry::ModelLimits {
            inline_elements: false,
            aspect_ratios: &["16:9", "9:16", "1:1"],
            durations: &[3, 4, 5, 6, 7, 8, 9, 10],
            ..crate::upstream::registry::ModelLimits::BASE
        }),
    },
    build: |p| crate::upstream::registry::boxed(Kling::new(p)),
};
