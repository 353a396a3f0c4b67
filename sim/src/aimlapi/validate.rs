//! Submit-body validation as aimlapi does it: the model's JSON schema, with zod-style
//! detail lines for the `Body validation error!` message.
//!
//! Keys: the O1 video-to-video schemas (aimlapi/api-docs `Kling-AI/video-o1-video-to-video-
//! {edit,reference}.json`) set no `additionalProperties: false`, and the official SDK
//! (aimlapi-sdk-python 2.24.0rc1, `videos.generate_with_polling`) sends `negative_prompt`,
//! `seed` and `enhance_prompt` when given. So those, and `cfg_scale`, are accepted with the
//! types aimlapi's other video schemas give them (Kling `negative_prompt` string and
//! `cfg_scale` number 0–1; `seed` integer and `enhance_prompt` boolean as on its Wan
//! schemas), and a wrong type or value is refused. Any other key is ignored, as a zod
//! object that is not `.strict()` strips it (UNCONFIRMED: the docs never show an
//! "Unrecognized key(s)" answer); the `aimlapi_strict_keys` knob refuses them instead.

use serde_json::{Map, Value};

use crate::model::Model;
use crate::state::NewGeneration;

const MAX_PROMPT: usize = 2500;
const COMMON_KEYS: &[&str] = &[
    "model",
    "prompt",
    "video_url",
    "image_list",
    "elements",
    "keep_audio",
    "provider",
];
const REFERENCE_KEYS: &[&str] = &["aspect_ratio", "duration"];
/// Optional generation parameters the SDK or aimlapi's sibling video schemas send.
const EXTRA_KEYS: &[&str] = &["negative_prompt", "seed", "enhance_prompt", "cfg_scale"];
const ASPECT_RATIOS: &[&str] = &["16:9", "9:16", "1:1"];
const PROVIDERS: &[&str] = &["kling", "klingai", "fal", "auto"];

/// Validates a submit body; `strict` refuses keys the schema does not name. `Err` holds
/// one detail line per problem.
pub(super) fn validate(body: &[u8], strict: bool) -> Result<NewGeneration, Vec<String>> {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Err(vec![format!("Malformed JSON body: {e}")]),
    };
    let Value::Object(obj) = value else {
        return Err(vec![format!(
            "Expected object, received {}",
            type_name(&value)
        )]);
    };
    let mut errs = Vec::new();
    let model = match obj.get("model") {
        None => return Err(vec!["model: Required".to_owned()]),
        Some(Value::String(s)) => Model::from_aimlapi_id(s).ok_or_else(|| {
            vec![format!(
                "model: Invalid enum value. Expected '{}' | '{}', received '{s}'",
                Model::Edit.aimlapi_id(),
                Model::Reference.aimlapi_id()
            )]
        })?,
        Some(other) => {
            return Err(vec![format!(
                "model: Expected string, received {}",
                type_name(other)
            )])
        }
    };

    let unknown: Vec<String> = obj
        .keys()
        .filter(|k| {
            let allowed = COMMON_KEYS.contains(&k.as_str())
                || EXTRA_KEYS.contains(&k.as_str())
                || (model == Model::Reference && REFERENCE_KEYS.contains(&k.as_str()));
            !allowed
        })
        .map(|k| format!("'{k}'"))
        .collect();
    if strict && !unknown.is_empty() {
        errs.push(format!(
            "Unrecognized key(s) in object: {}",
            unknown.join(", ")
        ));
    }

    let prompt = match obj.get("prompt") {
        None => {
            errs.push("prompt: Required".to_owned());
            String::new()
        }
        Some(Value::String(s)) => {
            // The gateway is JavaScript: lengths are UTF-16 code units.
            let len = s.encode_utf16().count();
            if len < 1 {
                errs.push("prompt: String must contain at least 1 character(s)".to_owned());
            } else if len > MAX_PROMPT {
                errs.push(format!(
                    "prompt: String must contain at most {MAX_PROMPT} character(s)"
                ));
            }
            s.clone()
        }
        Some(other) => {
            errs.push(format!(
                "prompt: Expected string, received {}",
                type_name(other)
            ));
            String::new()
        }
    };

    match obj.get("video_url") {
        None => errs.push("video_url: Required".to_owned()),
        Some(v) => check_uri(v, "video_url", "video/", &mut errs),
    }

    let max_images = match model {
        Model::Edit => 7,
        Model::Reference => 4,
    };
    let images = check_array(
        &obj,
        "image_list",
        1,
        max_images,
        &mut errs,
        |v, path, errs| check_uri(v, path, "image/", errs),
    );
    let elements = check_array(&obj, "elements", 0, 4, &mut errs, |v, path, errs| {
        check_element(v, path, strict, errs)
    });
    check_extras(&obj, &mut errs);

    if let Some(v) = obj.get("keep_audio") {
        if !v.is_boolean() {
            errs.push(format!(
                "keep_audio: Expected boolean, received {}",
                type_name(v)
            ));
        }
    }
    match obj.get("provider") {
        None => {}
        Some(Value::String(s)) if PROVIDERS.contains(&s.to_ascii_lowercase().as_str()) => {}
        Some(Value::String(s)) => errs.push(format!(
            "provider: Invalid enum value. Expected 'kling' | 'klingai' | 'fal' | 'auto', \
             received '{s}'"
        )),
        Some(other) => errs.push(format!(
            "provider: Expected string, received {}",
            type_name(other)
        )),
    }

    let mut duration = None;
    if model == Model::Reference {
        match obj.get("aspect_ratio") {
            None => {}
            Some(Value::String(s)) if ASPECT_RATIOS.contains(&s.as_str()) => {}
            Some(Value::String(s)) => errs.push(format!(
                "aspect_ratio: Invalid enum value. Expected '16:9' | '9:16' | '1:1', \
                 received '{s}'"
            )),
            Some(other) => errs.push(format!(
                "aspect_ratio: Expected string, received {}",
                type_name(other)
            )),
        }
        match obj.get("duration") {
            None => {}
            Some(Value::Number(n)) => match n.as_f64() {
                Some(f) if f == 5.0 || f == 10.0 => duration = Some(f as u32),
                _ => errs.push(format!(
                    "duration: Invalid enum value. Expected 5 | 10, received {n}"
                )),
            },
            Some(other) => errs.push(format!(
                "duration: Expected number, received {}",
                type_name(other)
            )),
        }
    }

    if errs.is_empty() {
        Ok(NewGeneration {
            model,
            prompt,
            refs: images + elements,
            duration,
            fail: None,
        })
    } else {
        Err(errs)
    }
}

/// The zod name of a JSON value's type.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// An optional array with item bounds; returns how many items it has.
fn check_array(
    obj: &Map<String, Value>,
    key: &str,
    min: usize,
    max: usize,
    errs: &mut Vec<String>,
    item: impl Fn(&Value, &str, &mut Vec<String>),
) -> usize {
    match obj.get(key) {
        None => 0,
        Some(Value::Array(items)) => {
            if items.len() < min {
                errs.push(format!(
                    "{key}: Array must contain at least {min} element(s)"
                ));
            }
            if items.len() > max {
                errs.push(format!(
                    "{key}: Array must contain at most {max} element(s)"
                ));
            }
            for (i, v) in items.iter().enumerate() {
                item(v, &format!("{key}.{i}"), errs);
            }
            items.len()
        }
        Some(other) => {
            errs.push(format!(
                "{key}: Expected array, received {}",
                type_name(other)
            ));
            0
        }
    }
}

/// An `https://` URL, or a `data:<kind>…` URI with a payload.
fn check_uri(v: &Value, path: &str, data_kind: &str, errs: &mut Vec<String>) {
    let Value::String(s) = v else {
        errs.push(format!(
            "{path}: Expected string, received {}",
            type_name(v)
        ));
        return;
    };
    if let Some(rest) = s.strip_prefix("data:") {
        if !rest.starts_with(data_kind) || !rest.contains(',') {
            errs.push(format!(
                "{path}: Invalid data URI, expected data:{data_kind}…;base64,…"
            ));
        }
        return;
    }
    match url::Url::parse(s) {
        Ok(u) if u.scheme() == "https" && u.host_str().is_some_and(|h| !h.is_empty()) => {}
        Ok(_) => errs.push(format!("{path}: Expected an HTTPS URL or a data URI")),
        Err(_) => errs.push(format!("{path}: Invalid url")),
    }
}

/// The optional parameters of [`EXTRA_KEYS`], when present: their types and ranges.
fn check_extras(obj: &Map<String, Value>, errs: &mut Vec<String>) {
    let expected = |key: &str, want: &str, v: &Value| {
        format!("{key}: Expected {want}, received {}", type_name(v))
    };
    if let Some(v) = obj.get("negative_prompt").filter(|v| !v.is_string()) {
        errs.push(expected("negative_prompt", "string", v));
    }
    if let Some(v) = obj.get("enhance_prompt").filter(|v| !v.is_boolean()) {
        errs.push(expected("enhance_prompt", "boolean", v));
    }
    match obj.get("seed") {
        None => {}
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {}
        Some(Value::Number(_)) => errs.push("seed: Expected integer, received float".into()),
        Some(v) => errs.push(expected("seed", "number", v)),
    }
    match obj.get("cfg_scale") {
        None => {}
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f < 0.0 => {
                errs.push("cfg_scale: Number must be greater than or equal to 0".into())
            }
            Some(f) if f > 1.0 => {
                errs.push("cfg_scale: Number must be less than or equal to 1".into())
            }
            _ => {}
        },
        Some(v) => errs.push(expected("cfg_scale", "number", v)),
    }
}

/// One `elements` item: `{frontal_image_url, reference_image_urls: [1..=4]}`; other keys
/// are refused only when `strict`.
fn check_element(v: &Value, path: &str, strict: bool, errs: &mut Vec<String>) {
    let Value::Object(obj) = v else {
        errs.push(format!(
            "{path}: Expected object, received {}",
            type_name(v)
        ));
        return;
    };
    let unknown: Vec<String> = obj
        .keys()
        .filter(|k| *k != "frontal_image_url" && *k != "reference_image_urls")
        .map(|k| format!("'{k}'"))
        .collect();
    if strict && !unknown.is_empty() {
        errs.push(format!(
            "{path}: Unrecognized key(s) in object: {}",
            unknown.join(", ")
        ));
    }
    match obj.get("frontal_image_url") {
        None => errs.push(format!("{path}.frontal_image_url: Required")),
        Some(u) => check_uri(u, &format!("{path}.frontal_image_url"), "image/", errs),
    }
    match obj.get("reference_image_urls") {
        None => errs.push(format!("{path}.reference_image_urls: Required")),
        Some(Value::Array(items)) => {
            let key = format!("{path}.reference_image_urls");
            if items.is_empty() {
                errs.push(format!("{key}: Array must contain at least 1 element(s)"));
            }
            if items.len() > 4 {
                errs.push(format!("{key}: Array must contain at most 4 element(s)"));
            }
            for (i, u) in items.iter().enumerate() {
                check_uri(u, &format!("{key}.{i}"), "image/", errs);
            }
        }
        Some(other) => errs.push(format!(
            "{path}.reference_image_urls: Expected array, received {}",
            type_name(other)
        )),
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use serde_json::json;

    fn run(body: Value, strict: bool) -> Result<NewGeneration, Vec<String>> {
        validate(body.to_string().as_bytes(), strict)
    }

    fn edit(extra: Value) -> Value {
        let mut b = json!({"model": Model::Edit.aimlapi_id(), "prompt": "p",
                           "video_url": "https://example.com/in.mp4"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    }

    #[test]
    fn the_sdks_optional_fields_are_accepted_and_type_checked() {
        let sdk = json!({"negative_prompt": "blur", "seed": 1, "enhance_prompt": true,
                         "cfg_scale": 0.5});
        assert!(run(edit(sdk.clone()), false).is_ok());
        assert!(
            run(edit(sdk), true).is_ok(),
            "named, so accepted when strict too"
        );
        let bad = json!({"negative_prompt": 3, "seed": 1.5, "enhance_prompt": "yes",
                         "cfg_scale": 2});
        let errs = run(edit(bad), false).unwrap_err();
        assert_eq!(
            errs,
            [
                "negative_prompt: Expected string, received number",
                "enhance_prompt: Expected boolean, received string",
                "seed: Expected integer, received float",
                "cfg_scale: Number must be less than or equal to 1",
            ]
        );
    }

    #[test]
    fn unknown_keys_are_ignored_unless_strict() {
        let extra = json!({"aspect_ratio": "16:9", "colour": "teal",
            "elements": [{"frontal_image_url": "https://x/f.png",
                          "reference_image_urls": ["https://x/r.png"], "note": 1}]});
        let ok = run(edit(extra.clone()), false).unwrap();
        assert_eq!(ok.refs, 1);
        let errs = run(edit(extra), true).unwrap_err();
        assert_eq!(
            errs,
            [
                "Unrecognized key(s) in object: 'aspect_ratio', 'colour'",
                "elements.0: Unrecognized key(s) in object: 'note'",
            ]
        );
        // Still refused whatever the knob: wrong types and values of named keys.
        let errs = run(edit(json!({"keep_audio": "no"})), false).unwrap_err();
        assert_eq!(errs, ["keep_audio: Expected boolean, received string"]);
    }
}
