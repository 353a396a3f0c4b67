//! Kling's create body, validated as Kling does at create (400, code 1201): the fields
//! this simulator reads are typed by serde (a number where Kling wants a string is an
//! error), then the enums, the prompt's `<<<kind_N>>>` references, and what a
//! video-to-video create allows (one video; an edit takes no aspect ratio or frames).
//!
//! Media: an `image_url` is a URL or the raw Base64 of the image. Kling: "do not add any
//! prefixes to the Base64-encoded string, such as data:image/png;base64" (General
//! Information / image fields, DOC-VIA-COPY), so a `data:` URI is refused (400, 1201;
//! Kling's exact message for it is not documented). A `video_url` is "obtained via URL"
//! only. `mode` is `std` or `pro` (default `pro`); `std` is the "cost-effective" mode,
//! billed here at 3/4 of `pro` (ASSUMPTION: Kling gives no O1 unit rates; resellers'
//! O1 prices put std at about 0.74 of pro).

use serde::Deserialize;

use crate::model::{Model, KLING_MODEL_NAME};
use crate::state::NewGeneration;

const MAX_PROMPT: usize = 2500;
const RATIOS: &[&str] = &["16:9", "9:16", "1:1"];

/// A valid create body: the generation and its video URL.
#[derive(Debug)]
pub(super) struct Valid {
    pub(super) generation: NewGeneration,
    pub(super) video: String,
    /// Units billed per second of output: 1 in `pro` mode (the default), 0.75 in `std`.
    pub(super) units_per_second: f64,
    /// The create's `callback_url`, when an http(s) URL.
    pub(super) callback_url: Option<String>,
}

/// The create body's fields this simulator reads; types are checked by serde.
#[derive(Debug, Deserialize)]
struct Create {
    model_name: Option<String>,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    image_list: Vec<Image>,
    #[serde(default)]
    element_list: Vec<ElementRef>,
    #[serde(default)]
    video_list: Vec<Video>,
    sound: Option<String>,
    mode: Option<String>,
    aspect_ratio: Option<String>,
    /// A string "3"…"10" (a number is a type error).
    duration: Option<String>,
    external_task_id: Option<String>,
    /// Where Kling posts the task on each status change.
    callback_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Image {
    image_url: String,
    #[serde(rename = "type")]
    frame: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ElementRef {
    #[allow(dead_code)] // only its type is checked: a registered element id
    element_id: u64,
}

#[derive(Debug, Deserialize)]
struct Video {
    video_url: String,
    refer_type: Option<String>,
    keep_original_sound: Option<String>,
}

/// Validates a create body as Kling does, at create: the valid body and its
/// `external_task_id`, or (code, message).
pub(super) fn validate(body: &[u8]) -> Result<(Valid, Option<String>), (i64, String)> {
    let c: Create =
        serde_json::from_slice(body).map_err(|e| (1201, format!("invalid params: {e}")))?;
    let mut errs: Vec<String> = Vec::new();
    let video = c.video_list.first();
    let enums: [(&str, Option<&String>, &[&str]); 5] = [
        ("model_name", c.model_name.as_ref(), &[KLING_MODEL_NAME]),
        ("mode", c.mode.as_ref(), &["std", "pro"]),
        ("sound", c.sound.as_ref(), &["off"]), // "on" is refused with a video
        (
            "refer_type",
            video.and_then(|v| v.refer_type.as_ref()),
            &["base", "feature"],
        ),
        (
            "keep_original_sound",
            video.and_then(|v| v.keep_original_sound.as_ref()),
            &["yes", "no"],
        ),
    ];
    for (field, value, allowed) in enums {
        if value.is_some_and(|v| !allowed.contains(&v.as_str())) {
            errs.push(format!("{field}: one of {allowed:?}, got {value:?}"));
        }
    }
    let chars = c.prompt.chars().count();
    if !(1..=MAX_PROMPT).contains(&chars) {
        errs.push(format!("prompt: 1–{MAX_PROMPT} characters, got {chars}"));
    }
    let [video] = &c.video_list[..] else {
        let n = c.video_list.len();
        errs.push(format!(
            "video_list: one video (this simulator models video-to-video), got {n}"
        ));
        return Err((1201, errs.join("; ")));
    };
    let model = Model::from_kling_refer_type(video.refer_type.as_deref());
    if !is_url(&video.video_url) {
        errs.push("video_list[0].video_url: a URL (Kling takes videos by URL only)".into());
    }
    for (i, image) in c.image_list.iter().enumerate() {
        if let Some(problem) = image_problem(&image.image_url) {
            errs.push(format!("image_list[{i}].image_url: {problem}"));
        }
    }
    if model == Model::Edit && c.image_list.iter().any(|i| i.frame.is_some()) {
        errs.push("image_list.type: first/end frames cannot be set with a base video".into());
    }
    let refs = c.image_list.len() + c.element_list.len();
    if refs > 4 {
        errs.push(format!(
            "image_list + element_list: at most 4 with a video, got {refs}"
        ));
    }
    let counts = [
        ("image", c.image_list.len()),
        ("element", c.element_list.len()),
        ("video", 1),
    ];
    check_references(&c.prompt, counts, &mut errs);
    let duration = match (model, &c.aspect_ratio) {
        (Model::Edit, Some(_)) => {
            errs.push("aspect_ratio: not supported when editing a video (refer_type base)".into());
            None
        }
        // The output follows the input clip; `duration` is ignored.
        (Model::Edit, None) => None,
        (Model::Reference, ar) => {
            if !ar.as_deref().is_some_and(|ar| RATIOS.contains(&ar)) {
                errs.push(format!(
                    "aspect_ratio: one of {RATIOS:?} with a feature video, got {ar:?}"
                ));
            }
            let d = c.duration.as_deref().unwrap_or("5");
            let d = d.parse::<u32>().ok().filter(|d| (3..=10).contains(d));
            if d.is_none() {
                errs.push(format!("duration: \"3\"…\"10\", got {:?}", c.duration));
            }
            d
        }
    };
    if c.external_task_id.as_deref() == Some("") {
        errs.push("external_task_id: must not be empty".into());
    }
    if !errs.is_empty() {
        return Err((1201, errs.join("; ")));
    }
    let generation = NewGeneration {
        model,
        prompt: c.prompt,
        refs,
        duration,
        fail: None,
    };
    let video = video.video_url.clone();
    let units_per_second = if c.mode.as_deref() == Some("std") {
        0.75
    } else {
        1.0
    };
    let valid = Valid {
        generation,
        video,
        units_per_second,
        callback_url: c.callback_url.filter(|u| crate::push::usable(u)),
    };
    Ok((valid, c.external_task_id))
}

/// An `http(s)://` URL with a host.
fn is_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    })
}

/// What is wrong with an `image_url`: neither a URL nor raw Base64.
fn image_problem(s: &str) -> Option<&'static str> {
    use base64::Engine;
    if s.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("data:")) {
        return Some(
            "Base64 must be sent without a prefix such as data:image/png;base64, \
             (the Base64 string itself)",
        );
    }
    if is_url(s) {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(s.trim());
    match raw {
        Ok(bytes) if !bytes.is_empty() => None,
        _ => Some("neither an image URL nor Base64"),
    }
}

/// Every `<<<kind_N>>>` in the prompt must name an item that exists (N from 1).
fn check_references(prompt: &str, counts: [(&str, usize); 3], errs: &mut Vec<String>) {
    for chunk in prompt.split("<<<").skip(1) {
        let Some((inner, _)) = chunk.split_once(">>>") else {
            continue;
        };
        let Some((kind, n)) = inner.rsplit_once('_') else {
            errs.push(format!("prompt: unknown reference <<<{inner}>>>"));
            continue;
        };
        let have = counts.iter().find(|(k, _)| *k == kind).map(|(_, c)| *c);
        match (have, n.parse::<usize>()) {
            (Some(have), Ok(n)) if (1..=have).contains(&n) => {}
            _ => errs.push(format!(
                "prompt: <<<{inner}>>> refers to no {kind} in the request"
            )),
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use serde_json::{json, Value};

    fn body(refer: &str, extra: Value) -> Vec<u8> {
        let mut b = json!({
            "model_name": "kling-video-o1", "prompt": "like <<<image_1>>>",
            "image_list": [{"image_url": "https://x/i.png"}],
            "video_list": [{"video_url": "https://x/v.mp4", "refer_type": refer,
                            "keep_original_sound": "no"}],
            "external_task_id": "b.00000",
        });
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b.to_string().into_bytes()
    }

    #[test]
    fn create_bodies_are_validated_as_kling_does() {
        let (ok, ext) = validate(&body("base", json!({"duration": "7"}))).unwrap();
        assert_eq!(ext.as_deref(), Some("b.00000"));
        assert_eq!(
            (ok.generation.model, ok.generation.duration),
            (Model::Edit, None)
        );
        let feature = json!({"aspect_ratio": "9:16", "duration": "10"});
        let (ok, _) = validate(&body("feature", feature)).unwrap();
        assert_eq!(ok.generation.duration, Some(10));
        let err = |b: Vec<u8>| validate(&b).unwrap_err();
        let number = err(body(
            "feature",
            json!({"aspect_ratio": "1:1", "duration": 5}),
        ));
        assert_eq!(number.0, 1201);
        assert!(number.1.contains("expected a string"), "{}", number.1);
        assert!(err(body("base", json!({"aspect_ratio": "1:1"})))
            .1
            .contains("aspect_ratio"));
        assert!(err(body("feature", json!({}))).1.contains("aspect_ratio"));
        let dangling = err(body(
            "base",
            json!({"prompt": "<<<image_2>>> and <<<element_1>>>"}),
        ));
        assert!(dangling.1.contains("<<<image_2>>>") && dangling.1.contains("<<<element_1>>>"));
        let five = json!({"element_list": [{"element_id": 1}, {"element_id": 2},
                                           {"element_id": 3}, {"element_id": 4}]});
        assert!(err(body("base", five)).1.contains("at most 4"));
        assert!(err(body("base", json!({"sound": "on"})))
            .1
            .contains("sound"));
        assert!(err(body("base", json!({"prompt": "x".repeat(2501)})))
            .1
            .contains("prompt"));
        assert_eq!(validate(b"{nope").unwrap_err().0, 1201);
    }

    #[test]
    fn images_are_urls_or_raw_base64_and_mode_sets_the_billing() {
        let image = |url: &str| json!({"image_list": [{"image_url": url}]});
        let (ok, _) = validate(&body("base", image("iVBORw0KGgo="))).unwrap();
        assert_eq!(ok.units_per_second, 1.0, "pro by default");
        let prefixed = err_of(body("base", image("data:image/png;base64,iVBORw0KGgo=")));
        assert_eq!(prefixed.0, 1201);
        assert!(
            prefixed.1.contains("image_list[0].image_url"),
            "{}",
            prefixed.1
        );
        assert!(
            prefixed.1.contains("data:image/png;base64"),
            "{}",
            prefixed.1
        );
        assert!(err_of(body("base", image("not base64!")))
            .1
            .contains("image_url"));
        let mut video = json!({"mode": "std"});
        video["video_list"] = json!([{"video_url": "data:video/mp4;base64,AAAA"}]);
        let e = err_of(body("base", video));
        assert!(e.1.contains("video_url"), "{}", e.1);
        let (std, _) = validate(&body("base", json!({"mode": "std"}))).unwrap();
        assert_eq!(std.units_per_second, 0.75);
        assert!(err_of(body("base", json!({"mode": "max"})))
            .1
            .contains("mode"));
    }

    fn err_of(b: Vec<u8>) -> (i64, String) {
        validate(&b).unwrap_err()
    }
}
