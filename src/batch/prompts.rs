//! Prompts: gathers inline prompts and a prompts file (CSV with a `prompt` column, or
//! plain text with one prompt per line) and applies the per-prompt and count rules.

use super::{BatchError, Origin, MAX_VARIANTS};
use std::path::Path;

/// Longest prompt upstream accepts, in characters.
pub const MAX_PROMPT_CHARS: usize = 2500;

/// One prompt and, for prompts from a file, where in the file it was.
#[derive(Debug)]
struct Entry {
    text: String,
    place: Option<String>,
}

/// Inline prompts first, then the prompts file's, each trimmed and checked.
pub(super) fn collect(
    inline: Vec<String>,
    prompts_file: Option<&Path>,
    origin: &Origin,
) -> Result<Vec<String>, BatchError> {
    let mut entries: Vec<Entry> = inline
        .into_iter()
        .map(|text| Entry { text, place: None })
        .collect();
    if let Some(file) = prompts_file {
        entries.extend(read_file(file, origin)?);
    }

    if entries.is_empty() {
        return Err(origin.err(
            "variants",
            "no prompts: give at least one [[variants]] prompt (or --prompt) or a prompts_file",
        ));
    }
    if entries.len() > MAX_VARIANTS {
        return Err(origin.err(
            "variants",
            format!(
                "at most {MAX_VARIANTS} prompts per batch, got {}",
                entries.len()
            ),
        ));
    }

    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            check_prompt(&entry.text).map_err(|m| {
                let m = match &entry.place {
                    Some(place) => format!("{m} ({place})"),
                    None => m,
                };
                origin.variant_err(i + 1, "prompt", m)
            })
        })
        .collect()
}

/// Trims the prompt and checks its length in characters.
fn check_prompt(text: &str) -> Result<String, String> {
    let text = text.trim();
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_PROMPT_CHARS {
        return Err(format!(
            "must be 1–{MAX_PROMPT_CHARS} characters, got {chars}"
        ));
    }
    Ok(text.to_owned())
}

/// Reads a prompts file: `.csv` by its `prompt` column, anything else as text lines.
fn read_file(file: &Path, origin: &Origin) -> Result<Vec<Entry>, BatchError> {
    let path = origin.resolve(file);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        origin.err(
            "prompts_file",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.display().to_string());
    let is_csv = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        read_csv(text, &name).map_err(|m| origin.err("prompts_file", m))
    } else {
        Ok(read_lines(text, &name))
    }
}

/// One prompt per CSV record, from the column headed `prompt` (other columns, such as
/// `name`, are for people). Empty prompt cells are kept so that they are reported.
fn read_csv(text: &str, name: &str) -> Result<Vec<Entry>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| format!("{name}: cannot read the CSV header: {e}"))?
        .clone();
    let column = headers
        .iter()
        .position(|h| h.trim().eq_ignore_ascii_case("prompt"))
        .ok_or_else(|| {
            let found: Vec<&str> = headers.iter().collect();
            format!(
                "{name}: no `prompt` column in the CSV header (found: {})",
                found.join(", ")
            )
        })?;
    let mut entries = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("{name}: invalid CSV: {e}"))?;
        let line = record.position().map_or(0, csv::Position::line);
        let text = record.get(column).unwrap_or_default().to_owned();
        entries.push(Entry {
            text,
            place: Some(format!("{name} line {line}")),
        });
    }
    Ok(entries)
}

/// One prompt per line; blank lines and lines starting with `#` are skipped.
fn read_lines(text: &str, name: &str) -> Vec<Entry> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim();
            !line.is_empty() && !line.starts_with('#')
        })
        .map(|(i, line)| Entry {
            text: line.to_owned(),
            place: Some(format!("{name} line {}", i + 1)),
        })
        .collect()
}
