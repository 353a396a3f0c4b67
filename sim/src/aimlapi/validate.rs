//! Submit-body validation as aimlapi does it: the model's JSON schema, checked strictly,
//! with zod-style detail lines for the `Body validation error!` message.

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
const ASPECT_RATIOS: &[&str] = &["16:9", "9:16", "1:1"];
const PROVIDERS: &[&str] = &["kling", "klingai", "fal", "auto"];

/// Validates a submit body. `Err` holds one detail line per problem.
pub(super) fn validate(body: &[u8]) -> Result<NewGeneration, Vec<String>> {
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
                || (model == Model::Reference && REFERENCE_KEYS.contains(&k.as_str()));
            !allowed
        })
        .map(|k| format!("'{k}'"))
        .collect();
    if !unknown.is_empty() {
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
    let elements = check_array(&obj, "elements", 0, 4, &mut errs, check_element);

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

/// One `elements` item: `{frontal_image_url, reference_image_urls: [1..=4]}`, strict.
fn check_element(v: &Value, path: &str, errs: &mut Vec<String>) {
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
    if !unknown.is_empty() {
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
