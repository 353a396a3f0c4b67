//! The TOML front end: reads a batch file into a raw spec, checking value types and
//! rejecting unknown keys by name. No batch rules are applied here.

use super::{BatchError, Origin, RawElement, RawSpec};
use std::path::PathBuf;
use toml::{Table, Value};

/// Top-level keys of a batch file.
const TOP_KEYS: &[&str] = &[
    "batch_id",
    "provider",
    "model",
    "video",
    "images",
    "keep_audio",
    "aspect_ratio",
    "duration",
    "prompts_file",
    "variants",
    "elements",
    "max_cost",
    "clip_seconds",
    "on_done",
    "tier",
];

const ELEMENT_KEYS: &[&str] = &["frontal_image", "reference_images"];

/// Keys of one `[[variants]]` entry. `name` is a label for people; it is not sent.
const VARIANT_KEYS: &[&str] = &["prompt", "name"];

/// Parses batch file text into a raw spec.
pub(super) fn parse(text: &str, origin: &Origin) -> Result<RawSpec, BatchError> {
    let mut table: Table = text.parse().map_err(|e: toml::de::Error| {
        let place = e
            .span()
            .map(|span| {
                let (line, column) = line_and_column(text, span.start);
                format!("line {line}, column {column}: ")
            })
            .unwrap_or_default();
        origin.err(
            "",
            format!("invalid TOML: {place}{}", e.message().trim_end()),
        )
    })?;

    if let Some(key) = unknown_key(&table, TOP_KEYS) {
        return Err(origin.err(
            key,
            format!("unknown key; expected one of {}", TOP_KEYS.join(", ")),
        ));
    }

    let field_err = |key: &'static str| move |message: String| origin.err(key, message);
    let on_done = take_on_done(&mut table, origin)?;
    Ok(RawSpec {
        batch_id: take_string(&mut table, "batch_id").map_err(field_err("batch_id"))?,
        provider: take_string(&mut table, "provider").map_err(field_err("provider"))?,
        model: take_string(&mut table, "model").map_err(field_err("model"))?,
        video: take_string(&mut table, "video").map_err(field_err("video"))?,
        images: take_string_list(&mut table, "images").map_err(field_err("images"))?,
        keep_audio: take_bool(&mut table, "keep_audio").map_err(field_err("keep_audio"))?,
        aspect_ratio: take_string(&mut table, "aspect_ratio").map_err(field_err("aspect_ratio"))?,
        duration: take_integer(&mut table, "duration").map_err(field_err("duration"))?,
        prompts_file: take_string(&mut table, "prompts_file")
            .map_err(field_err("prompts_file"))?
            .map(PathBuf::from),
        prompts: take_variants(&mut table, origin)?,
        elements: take_elements(&mut table, origin)?,
        max_cost: take_number(&mut table, "max_cost").map_err(field_err("max_cost"))?,
        clip_seconds: take_number(&mut table, "clip_seconds").map_err(field_err("clip_seconds"))?,
        on_done,
        tier: take_string(&mut table, "tier").map_err(field_err("tier"))?,
    })
}

/// Inline prompts from `[[variants]]`, in file order.
fn take_variants(table: &mut Table, origin: &Origin) -> Result<Vec<String>, BatchError> {
    let Some(value) = table.remove("variants") else {
        return Ok(Vec::new());
    };
    let Value::Array(entries) = value else {
        return Err(origin.err(
            "variants",
            format!(
                "must be an array of tables ([[variants]]), got {}",
                value.type_str()
            ),
        ));
    };
    let mut prompts = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let n = i + 1;
        let Value::Table(mut entry) = entry else {
            return Err(origin.variant_err(
                n,
                "variants",
                format!("must be a table with a prompt, got {}", entry.type_str()),
            ));
        };
        if let Some(key) = unknown_key(&entry, VARIANT_KEYS) {
            return Err(origin.variant_err(
                n,
                key,
                format!("unknown key; expected one of {}", VARIANT_KEYS.join(", ")),
            ));
        }
        take_string(&mut entry, "name").map_err(|m| origin.variant_err(n, "name", m))?;
        let prompt = take_string(&mut entry, "prompt")
            .map_err(|m| origin.variant_err(n, "prompt", m))?
            .ok_or_else(|| origin.variant_err(n, "prompt", "required"))?;
        prompts.push(prompt);
    }
    Ok(prompts)
}

/// The first key of `table` (in the table's own order) that is not in `known`.
fn take_number(table: &mut Table, key: &str) -> Result<Option<f64>, String> {
    match table.remove(key) {
        None => Ok(None),
        Some(Value::Float(f)) => Ok(Some(f)),
        Some(Value::Integer(i)) => Ok(Some(i as f64)),
        Some(other) => Err(type_mismatch("a number", &other)),
    }
}

/// `on_done = "<hook>"`: a name only. The table form that gave a command or webhook is
/// refused: hooks are defined in the workers' settings, never by a batch file.
fn take_on_done(table: &mut Table, origin: &Origin) -> Result<Option<String>, BatchError> {
    match table.remove("on_done") {
        None => Ok(None),
        Some(Value::String(name)) => Ok(Some(name)),
        Some(Value::Table(_)) => Err(origin.err(
            "on_done",
            "must name a hook (on_done = \"notify\"), not give a command or webhook: \
             hooks are defined in the workers' settings ([hooks.<name>]), never by a batch file",
        )),
        Some(other) => Err(origin.err(
            "on_done",
            format!(
                "must be the name of a hook defined in the workers' settings, got {}",
                other.type_str()
            ),
        )),
    }
}

fn take_elements(table: &mut Table, origin: &Origin) -> Result<Vec<RawElement>, BatchError> {
    let Some(value) = table.remove("elements") else {
        return Ok(Vec::new());
    };
    let Value::Array(entries) = value else {
        return Err(origin.err(
            "elements",
            format!(
                "must be an array of tables ([[elements]]), got {}",
                value.type_str()
            ),
        ));
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let n = i + 1;
        let err = |m: String| origin.err("elements", format!("element {n}: {m}"));
        let Value::Table(mut entry) = entry else {
            return Err(err(format!("must be a table, got {}", entry.type_str())));
        };
        if let Some(key) = unknown_key(&entry, ELEMENT_KEYS) {
            return Err(err(format!(
                "unknown key {key}; expected one of {}",
                ELEMENT_KEYS.join(", ")
            )));
        }
        let frontal_image = take_string(&mut entry, "frontal_image")
            .map_err(&err)?
            .ok_or_else(|| err("frontal_image is required".into()))?;
        let reference_images = take_string_list(&mut entry, "reference_images").map_err(&err)?;
        out.push(RawElement {
            frontal_image,
            reference_images,
        });
    }
    Ok(out)
}

fn unknown_key<'t>(table: &'t Table, known: &[&str]) -> Option<&'t str> {
    table
        .keys()
        .map(String::as_str)
        .find(|k| !known.contains(k))
}

fn take_string(table: &mut Table, key: &str) -> Result<Option<String>, String> {
    match table.remove(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(type_mismatch("a string", &other)),
    }
}

fn take_bool(table: &mut Table, key: &str) -> Result<Option<bool>, String> {
    match table.remove(key) {
        None => Ok(None),
        Some(Value::Boolean(b)) => Ok(Some(b)),
        Some(other) => Err(type_mismatch("true or false", &other)),
    }
}

fn take_integer(table: &mut Table, key: &str) -> Result<Option<i64>, String> {
    match table.remove(key) {
        None => Ok(None),
        Some(Value::Integer(n)) => Ok(Some(n)),
        Some(other) => Err(type_mismatch("an integer", &other)),
    }
}

fn take_string_list(table: &mut Table, key: &str) -> Result<Vec<String>, String> {
    match table.remove(key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s),
                other => Err(format!(
                    "item {}: {}",
                    i + 1,
                    type_mismatch("a string", &other)
                )),
            })
            .collect(),
        Some(other) => Err(type_mismatch("an array of strings", &other)),
    }
}

fn type_mismatch(expected: &str, got: &Value) -> String {
    format!("must be {expected}, got {}", got.type_str())
}

/// 1-based line and column (in characters) of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
