//! Oxen's model parameters, checked as the job would check them when it runs rather than
//! at enqueue: a generation with a bad parameter is enqueued, then ends `failed` with
//! this check's message as its `error_message`.

use serde_json::{Map, Value};

/// Model parameters as the job would check them when it runs: the number of image +
/// element references, and the `error_message` the generation will fail with, if any.
/// ASSUMPTION: the message follows the sync endpoint's documented form.
pub(super) fn late_check(obj: &Map<String, Value>) -> (usize, Option<String>) {
    let mut errs = Vec::new();
    let is_url = |v: &Value, media: &str| {
        v.as_str().is_some_and(|s| {
            s.starts_with("https://")
                || s.starts_with("http://")
                || s.starts_with(&format!("data:{media}/"))
        })
    };
    match obj.get("prompt").and_then(Value::as_str) {
        Some(p) if !p.trim().is_empty() => {}
        _ => errs.push("prompt: field required".to_owned()),
    }
    match obj.get("input_video") {
        None | Some(Value::Null) => errs.push("input_video: field required".to_owned()),
        Some(v) if !is_url(v, "video") => errs.push("input_video: invalid video URL".to_owned()),
        // A data URI the job can read is held to Oxen's source limits when it runs.
        Some(v) => {
            let clip = v
                .as_str()
                .and_then(crate::probe::data_uri)
                .and_then(|b| crate::probe::read(&b));
            if let Some(msg) = clip.as_ref().and_then(crate::probe::oxen_refusal) {
                errs.push(msg);
            }
        }
    }
    let list = |k: &str| obj.get(k).and_then(Value::as_array).map_or(0, Vec::len);
    if let Some(v) = obj.get("input_image") {
        match v.as_array() {
            Some(items) if items.iter().all(|i| is_url(i, "image")) => {}
            _ => errs.push("input_image: must be a list of image URLs".to_owned()),
        }
    }
    if let Some(v) = obj.get("elements") {
        match v.as_array() {
            Some(items) => {
                for (i, e) in items.iter().enumerate() {
                    if !e
                        .get("frontal_image_url")
                        .is_some_and(|u| is_url(u, "image"))
                    {
                        errs.push(format!("elements.{i}.frontal_image_url: field required"));
                    }
                    let refs = e.get("reference_image_urls");
                    let ok = match refs {
                        None | Some(Value::Null) => true,
                        Some(Value::Array(r)) => {
                            r.len() <= 3 && r.iter().all(|u| is_url(u, "image"))
                        }
                        Some(_) => false,
                    };
                    if !ok {
                        errs.push(format!(
                            "elements.{i}.reference_image_urls: at most 3 image URLs"
                        ));
                    }
                }
            }
            None => errs.push("elements: must be a list".to_owned()),
        }
    }
    let refs = list("input_image") + list("elements");
    if refs > 4 {
        errs.push(
            "The total number of images and elements must not exceed 4 when a video is \
             provided"
                .to_owned(),
        );
    }
    if obj.get("keep_audio").is_some_and(|v| !v.is_boolean()) {
        errs.push("keep_audio: value is not a valid boolean".to_owned());
    }
    if let Some(f) = obj.get("response_format") {
        if !matches!(f.as_str(), Some("url" | "b64_json")) {
            errs.push("response_format: must be 'url' or 'b64_json'".to_owned());
        }
    }
    let msg = (!errs.is_empty()).then(|| {
        format!(
            "Getting model response error: 422 - Value error, {}",
            errs.join("; ")
        )
    });
    (refs, msg)
}
