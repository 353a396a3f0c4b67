//! fal's input schemas, checked at submit the way fal's pydantic models check them
//! (`OmniV2VEditInput`, `OmniV2VReferenceInput`: unknown keys ignored, every problem one
//! `{loc, msg, type}` issue of a 422), and the shared core's failure bodies rewritten in
//! fal's `detail` shape.

use serde_json::{json, Value};

use crate::model::Model;
use crate::state::NewGeneration;

const DURATIONS: &[&str] = &["3", "4", "5", "6", "7", "8", "9", "10"];
const ASPECT_RATIOS: &[&str] = &["auto", "16:9", "9:16", "1:1"];

fn issue(loc: &[Value], msg: &str, kind: &str) -> Value {
    let mut full = vec![json!("body")];
    full.extend_from_slice(loc);
    json!({"loc": full, "msg": msg, "type": kind})
}

/// Checks a submit body against `OmniV2VEditInput` / `OmniV2VReferenceInput` (pydantic
/// style: unknown keys ignored). Returns the generation and its `video_url`.
pub(super) fn check(body: &[u8], model: Model) -> Result<(NewGeneration, String), Vec<Value>> {
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => obj,
        Ok(_) => {
            return Err(vec![issue(
                &[],
                "Input should be a valid dictionary",
                "dict_type",
            )])
        }
        Err(_) => return Err(vec![issue(&[], "JSON decode error", "json_invalid")]),
    };
    let mut errs = Vec::new();
    let string = |field: &str, errs: &mut Vec<Value>| match obj.get(field) {
        Some(Value::String(s)) => s.clone(),
        None => {
            errs.push(issue(&[json!(field)], "Field required", "missing"));
            String::new()
        }
        Some(_) => {
            errs.push(issue(
                &[json!(field)],
                "Input should be a valid string",
                "string_type",
            ));
            String::new()
        }
    };
    let prompt = string("prompt", &mut errs);
    let video = string("video_url", &mut errs);
    let images = strings(obj.get("image_urls"), &[json!("image_urls")], &mut errs);
    let elements = match obj.get("elements") {
        None => 0,
        Some(Value::Array(items)) => {
            for (i, el) in items.iter().enumerate() {
                check_element(el, i, &mut errs);
            }
            items.len()
        }
        Some(_) => {
            errs.push(issue(
                &[json!("elements")],
                "Input should be a valid list",
                "list_type",
            ));
            0
        }
    };
    if obj.get("keep_audio").is_some_and(|v| !v.is_boolean()) {
        let msg = "Input should be a valid boolean";
        errs.push(issue(&[json!("keep_audio")], msg, "bool_type"));
    }
    let mut duration = None;
    if model == Model::Reference {
        let mut literal = |field: &str, allowed: &[&str]| {
            let v = obj.get(field)?;
            match v.as_str().filter(|s| allowed.contains(s)) {
                Some(s) => Some(s.to_owned()),
                None => {
                    let quoted: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
                    let (last, head) = quoted.split_last().expect("non-empty");
                    let msg = format!("Input should be {} or {last}", head.join(", "));
                    errs.push(issue(&[json!(field)], &msg, "literal_error"));
                    None
                }
            }
        };
        literal("aspect_ratio", ASPECT_RATIOS);
        duration = literal("duration", DURATIONS).and_then(|d| d.parse().ok());
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let refs = images + elements;
    Ok((
        NewGeneration {
            model,
            prompt,
            refs,
            duration,
            fail: None,
        },
        video,
    ))
}

/// An optional list of strings; returns its length.
fn strings(v: Option<&Value>, loc: &[Value], errs: &mut Vec<Value>) -> usize {
    match v {
        None => 0,
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.is_string() {
                    let mut at = loc.to_vec();
                    at.push(json!(i));
                    errs.push(issue(&at, "Input should be a valid string", "string_type"));
                }
            }
            items.len()
        }
        Some(_) => {
            errs.push(issue(loc, "Input should be a valid list", "list_type"));
            0
        }
    }
}

/// One `OmniVideoElementInput`: a frontal image and 1–3 reference images.
fn check_element(el: &Value, i: usize, errs: &mut Vec<Value>) {
    let at = |field: &str| vec![json!("elements"), json!(i), json!(field)];
    let Some(obj) = el.as_object() else {
        let msg = "Input should be a valid dictionary or instance of OmniVideoElementInput";
        errs.push(issue(&[json!("elements"), json!(i)], msg, "model_type"));
        return;
    };
    match obj.get("frontal_image_url") {
        Some(Value::String(_)) => {}
        None => errs.push(issue(&at("frontal_image_url"), "Field required", "missing")),
        Some(_) => {
            let msg = "Input should be a valid string";
            errs.push(issue(&at("frontal_image_url"), msg, "string_type"));
        }
    }
    let refs_at = at("reference_image_urls");
    let refs = obj.get("reference_image_urls");
    let n = strings(refs, &refs_at, errs);
    if refs.is_none() {
        errs.push(issue(&refs_at, "Field required", "missing"));
    } else if refs.is_some_and(|r| r.is_array()) && n == 0 {
        let msg = "List should have at least 1 item after validation, not 0";
        errs.push(issue(&refs_at, msg, "too_short"));
    } else if n > 3 {
        let msg = format!("List should have at most 3 items after validation, not {n}");
        errs.push(issue(&refs_at, &msg, "too_long"));
    }
}

/// The core's failure body in fal's `detail` list shape, with fal's field names.
pub(super) fn fal_detail(body: &Value) -> Value {
    if let Some(items) = body.get("detail").and_then(Value::as_array) {
        let mut items = items.clone();
        for loc in items.iter_mut().filter_map(|i| i.get_mut("loc")) {
            if let Some(arr) = loc.as_array_mut() {
                for part in arr.iter_mut().filter(|p| *p == "image_list") {
                    *part = json!("image_urls");
                }
            }
        }
        return Value::Array(items);
    }
    let msg = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("Generation failed");
    json!([{"loc": ["body", "prompt"], "msg": msg, "type": "content_policy_violation"}])
}

#[cfg(test)]
mod unit {
    use super::*;

    fn bytes(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn schema_is_checked_pydantic_style() {
        let ok = bytes(json!({"prompt": "p", "video_url": "u", "duration": "5",
            "aspect_ratio": "auto", "image_urls": ["a"], "keep_audio": true,
            "elements": [{"frontal_image_url": "f", "reference_image_urls": ["r"]}]}));
        let (new, video) = check(&ok, Model::Reference).unwrap();
        assert_eq!((new.duration, new.refs, video.as_str()), (Some(5), 2, "u"));
        let bad = bytes(json!({"video_url": 1, "duration": 5, "keep_audio": "no",
            "elements": [{"frontal_image_url": "f", "reference_image_urls": ["1", "2", "3", "4"]}]}));
        let errs = check(&bad, Model::Reference).unwrap_err();
        let kinds: Vec<&str> = errs.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(
            kinds,
            [
                "missing",
                "string_type",
                "too_long",
                "bool_type",
                "literal_error"
            ]
        );
        assert_eq!(errs[4]["loc"], json!(["body", "duration"]));
        // Reference-only fields are unknown keys to the edit model: ignored.
        let edit = bytes(json!({"prompt": "p", "video_url": "u", "duration": 5}));
        assert_eq!(check(&edit, Model::Edit).unwrap().0.duration, None);
    }

    #[test]
    fn core_failures_become_fal_detail_lists() {
        let msg = json!({"name": "ContentPolicyViolation", "message": "rejected"});
        assert_eq!(fal_detail(&msg)[0]["msg"], "rejected");
        let list = json!({"detail": [{"loc": ["body", "image_list"], "msg": "too many"}]});
        assert_eq!(fal_detail(&list)[0]["loc"], json!(["body", "image_urls"]));
    }
}
