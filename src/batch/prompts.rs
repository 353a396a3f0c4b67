//! Prompts: gathers inline prompts and a prompts file (CSV with a `prompt` column, or
//! plain text with one prompt per line) and applies the per-prompt and count rules.
//!
//! A prompts file is read like any local file (`local`: regular, capped by
//! `limits.max_prompt_file_bytes`, inside the batch file's directory when a batch file
//! names it) and must be UTF-8. A CSV is checked for unbalanced quotes before the `csv`
//! crate reads it (which ends an unclosed quoted field at the end of the file instead of
//! failing, merging rows into one prompt). A prompt may hold tab and line breaks, no other
//! control character and no bidi control ([`text`](super::text)).

use super::local::{self, Cap};
use super::text::{self, Allow};
use super::{BatchError, BatchLimits, Origin, MAX_VARIANTS};
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
    limits: &BatchLimits,
) -> Result<Vec<String>, BatchError> {
    let mut entries: Vec<Entry> = inline
        .into_iter()
        .map(|text| Entry { text, place: None })
        .collect();
    if let Some(file) = prompts_file {
        entries.extend(read_file(file, origin, limits)?);
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

/// Checks the prompt's characters, trims it and checks its length in characters.
fn check_prompt(text: &str) -> Result<String, String> {
    if let Some(bad) = text::first_refused(text, Allow::TabAndLineBreaks) {
        return Err(format!(
            "contains {bad}; a prompt may hold tabs and line breaks but no other control \
             character and no bidi control"
        ));
    }
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
fn read_file(file: &Path, origin: &Origin, limits: &BatchLimits) -> Result<Vec<Entry>, BatchError> {
    let path = origin.resolve(file);
    let cap = Cap {
        bytes: limits.max_prompt_file_bytes,
        setting: "limits.max_prompt_file_bytes",
    };
    let bytes = local::read(&path, &origin.place, cap)
        .map_err(|e| origin.err("prompts_file", e.to_string()))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.display().to_string());
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        origin.err(
            "prompts_file",
            format!("{name} line {line}: not UTF-8 text"),
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
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
    check_quotes(text).map_err(|m| format!("{name} {m}"))?;
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

/// Reads the quoting of CSV text as RFC 4180 (and the `csv` crate) define it: a quote
/// that starts a field opens it, `""` inside is a quote, the next lone quote closes it,
/// and a comma or line end must follow. The error names the line at fault.
fn check_quotes(text: &str) -> Result<(), String> {
    let mut line = 1;
    let mut field_start = true;
    // The line where the open quoted field began; after its closing quote, still set
    // (and `closed` true) until the comma or line end that must follow.
    let mut opened: Option<usize> = None;
    let mut closed = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (opened, closed, c) {
            (Some(_), false, '"') if chars.peek() == Some(&'"') => {
                chars.next();
            }
            (Some(_), false, '"') => closed = true,
            (Some(_), false, '\n') => line += 1,
            (Some(_), false, _) => {}
            (Some(from), true, _) => {
                if !matches!(c, ',' | '\n' | '\r') {
                    return Err(format!(
                        "line {line}: unbalanced quote: text follows the quote that closes \
                         the field opened on line {from}"
                    ));
                }
                (opened, closed, field_start) = (None, false, true);
                line += usize::from(c == '\n');
            }
            (None, _, '"') if field_start => opened = Some(line),
            (None, _, ',' | '\r') => field_start = true,
            (None, _, '\n') => (line, field_start) = (line + 1, true),
            (None, _, _) => field_start = false,
        }
    }
    match (opened, closed) {
        (Some(from), false) => Err(format!(
            "line {from}: unbalanced quote: the quoted field opened on this line never closes"
        )),
        _ => Ok(()),
    }
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
