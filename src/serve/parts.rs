//! Reading the new-batch form's `multipart/form-data` body part by part: the CSRF token
//! first (a file part before it is refused before any of its bytes are read), text
//! fields each bounded, the clip and images streamed to the uploads directory by
//! [`upload::store`] (never whole in memory), and the prompts CSV read up to
//! [`MAX_CSV_BYTES`] and parsed by [`csv_prompts`]. At most [`MAX_PARTS`] parts.

use super::compose::NewBatch;
use super::error::ApiError;
use super::session::Session;
use super::upload::{self, Want};
use super::AppState;
use axum::extract::multipart::{Field, Multipart};

/// Largest prompts CSV.
pub const MAX_CSV_BYTES: u64 = 1024 * 1024;
/// Most rows a prompts CSV may have (the most prompts a batch may have).
pub const MAX_CSV_ROWS: usize = crate::batch::MAX_VARIANTS;
/// Most reference images the form takes.
pub const MAX_IMAGES: usize = 4;
/// Most parts a form may have.
pub const MAX_PARTS: usize = 32;
/// Largest text field other than `prompts`.
const MAX_FIELD_BYTES: u64 = 4096;
/// Largest `prompts` text.
const MAX_PROMPTS_BYTES: u64 = super::MAX_BODY_BYTES as u64;

/// Why reading the form stopped.
#[derive(Debug)]
pub enum Stop {
    /// No CSRF token, or a wrong one, before the first file or at the end.
    Csrf,
    /// A field's value broke a rule (the form is shown again with it).
    Field(ApiError),
}

impl From<ApiError> for Stop {
    fn from(e: ApiError) -> Self {
        Stop::Field(e)
    }
}

fn bad_body(e: impl std::fmt::Display) -> Stop {
    Stop::Field(ApiError::invalid(
        "body",
        format!("not a readable multipart/form-data body: {e}"),
    ))
}

/// A part's bytes, at most `cap` (else an error naming `field` and the cap).
async fn bounded(field: &mut Field<'_>, name: &str, cap: u64) -> Result<Vec<u8>, Stop> {
    let mut out = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(bad_body)? {
        if (out.len() + chunk.len()) as u64 > cap {
            return Err(Stop::Field(ApiError::TooLarge {
                field: name.to_owned(),
                message: format!("at most {cap} bytes"),
            }));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn text(field: &mut Field<'_>, name: &str, cap: u64) -> Result<String, Stop> {
    let bytes = bounded(field, name, cap).await?;
    String::from_utf8(bytes).map_err(|_| Stop::Field(ApiError::invalid(name, "must be UTF-8 text")))
}

/// Whether a file part is the empty one a browser sends for a file input left empty.
fn no_file(field: &Field<'_>) -> bool {
    field.file_name().is_some_and(str::is_empty)
}

/// Reads the whole form into `f` (text fields, references of the stored uploads, the
/// CSV's prompts). After the first field that breaks a rule, the rest is still read for
/// its text fields (so the form comes back with every value), its files read and dropped
/// (at most [`MAX_DRAIN_BYTES`] in all); the first error is returned.
pub async fn read(
    st: &AppState,
    s: &Session,
    form: &mut Multipart,
    f: &mut NewBatch,
) -> Result<(), Stop> {
    let mut csrf_ok = false;
    let mut parts = 0usize;
    let mut refused: Option<ApiError> = None;
    let mut dropped = 0u64;
    while let Some(mut field) = form.next_field().await.map_err(bad_body)? {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(Stop::Field(refused.unwrap_or_else(|| {
                ApiError::invalid("body", format!("at most {MAX_PARTS} form fields"))
            })));
        }
        let name = field.name().unwrap_or("").to_owned();
        let is_file = matches!(name.as_str(), "video_file" | "prompts_csv" | "images");
        if is_file && !csrf_ok {
            return Err(Stop::Csrf);
        }
        if is_file && refused.is_some() {
            while let Some(chunk) = field.chunk().await.map_err(bad_body)? {
                dropped += chunk.len() as u64;
                if dropped > MAX_DRAIN_BYTES {
                    let first = refused.take();
                    return Err(Stop::Field(first.unwrap_or(ApiError::Unavailable)));
                }
            }
            continue;
        }
        match one(st, s, &name, &mut field, f).await {
            Ok(()) => csrf_ok |= name == "csrf",
            Err(Stop::Field(e)) => {
                refused.get_or_insert(e);
            }
            Err(stop) => return Err(stop),
        }
    }
    if !csrf_ok {
        return Err(Stop::Csrf);
    }
    if let Some(e) = refused {
        return Err(Stop::Field(e));
    }
    if f.images.len() > MAX_IMAGES {
        return Err(Stop::Field(ApiError::invalid(
            "images",
            format!("at most {MAX_IMAGES} reference images"),
        )));
    }
    Ok(())
}

/// Reads one part into `f`.
async fn one(
    st: &AppState,
    s: &Session,
    name: &str,
    field: &mut Field<'_>,
    f: &mut NewBatch,
) -> Result<(), Stop> {
    match name {
        "csrf" => {
            let sent = text(field, "csrf", 256).await?;
            if !s.csrf_ok(sent.trim()) {
                return Err(Stop::Csrf);
            }
        }
        "video_file" | "images" if no_file(field) => {}
        "video_file" => {
            let mime = upload::media_type(field.content_type(), field.file_name());
            let stored = upload::store(st, "video_file", &mime, Want::Video, field).await?;
            f.video_file = Some(stored.reference);
        }
        "images" => {
            if f.images.len() >= MAX_IMAGES {
                return Err(Stop::Field(ApiError::invalid(
                    "images",
                    format!("at most {MAX_IMAGES} reference images"),
                )));
            }
            let mime = upload::media_type(field.content_type(), field.file_name());
            let stored = upload::store(st, "images", &mime, Want::Image, field).await?;
            f.images.push(stored.reference);
        }
        "prompts_csv" => {
            let bytes = bounded(field, "prompts_csv", MAX_CSV_BYTES).await?;
            if !bytes.is_empty() {
                f.csv_name = field.file_name().map(str::to_owned);
                f.csv_prompts = csv_prompts(&bytes)?;
            }
        }
        "prompts" => f.prompts = text(field, "prompts", MAX_PROMPTS_BYTES).await?,
        "skip_probe" => {
            text(field, "skip_probe", MAX_FIELD_BYTES).await?;
            f.skip_probe = Some("on".into());
        }
        "image_refs" => {
            let value = text(field, name, MAX_FIELD_BYTES).await?;
            let kept = value.split_whitespace().map(str::to_owned);
            f.images.extend(kept.take(MAX_IMAGES));
        }
        other => {
            let slot = match other {
                "video" => &mut f.video,
                "provider" => &mut f.provider,
                "model" => &mut f.model,
                "duration" => &mut f.duration,
                "aspect_ratio" => &mut f.aspect_ratio,
                "max_cost" => &mut f.max_cost,
                "batch_id" => &mut f.batch_id,
                _ => {
                    let shown: String = other.chars().take(64).collect();
                    return Err(Stop::Field(ApiError::invalid(
                        "body",
                        format!("unknown form field {shown:?}"),
                    )));
                }
            };
            *slot = text(field, other, MAX_FIELD_BYTES).await?;
        }
    }
    Ok(())
}

/// Most bytes [`drain`] reads and drops.
const MAX_DRAIN_BYTES: u64 = 64 * 1024 * 1024;

/// Reads and drops what is left of a refused form (at most [`MAX_DRAIN_BYTES`]), so the
/// browser, still sending, gets the page that says why rather than a reset connection.
pub async fn drain(form: &mut Multipart) {
    let mut n = 0u64;
    while let Ok(Some(mut field)) = form.next_field().await {
        while let Ok(Some(chunk)) = field.chunk().await {
            n += chunk.len() as u64;
            if n > MAX_DRAIN_BYTES {
                return;
            }
        }
    }
}

/// The prompts of a CSV: the `prompt` column when the first row names one (any case),
/// else one prompt per row (each row then a single field). Empty cells are skipped; at
/// most [`MAX_CSV_ROWS`] rows. Each prompt is then held to the limits of every prompt at
/// enqueue.
pub fn csv_prompts(bytes: &[u8]) -> Result<Vec<String>, ApiError> {
    let field = "prompts_csv";
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut column: Option<usize> = None;
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.map_err(|e| ApiError::invalid(field, format!("row {}: {e}", i + 1)))?;
        if i == 0 {
            column = row
                .iter()
                .position(|h| h.trim().eq_ignore_ascii_case("prompt"));
            if column.is_some() {
                continue;
            }
        }
        if i > MAX_CSV_ROWS {
            return Err(ApiError::invalid(
                field,
                format!("at most {MAX_CSV_ROWS} rows"),
            ));
        }
        let cell = match column {
            Some(c) => row.get(c).unwrap_or(""),
            None if row.len() > 1 => {
                return Err(ApiError::invalid(
                    field,
                    format!(
                        "row {}: {} columns; without a `prompt` header each row is one prompt \
                         (quote a prompt that holds commas)",
                        i + 1,
                        row.len()
                    ),
                ))
            }
            None => row.get(0).unwrap_or(""),
        };
        let cell = cell.trim();
        if !cell.is_empty() {
            out.push(cell.to_owned());
        }
    }
    if out.is_empty() {
        return Err(ApiError::invalid(field, "holds no prompts"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_column_or_one_prompt_per_row() {
        let with_header = b"id,prompt,notes\n1,neon night,x\n2,\"autumn, warm\",y\n3,,z\n";
        assert_eq!(
            csv_prompts(with_header).unwrap(),
            vec!["neon night", "autumn, warm"]
        );
        let plain = b"\xef\xbb\xbfneon night\n\n\"snow, soft\"\n";
        assert_eq!(
            csv_prompts(plain).unwrap(),
            vec!["neon night", "snow, soft"]
        );
        let e = csv_prompts(b"a,b\nc,d\n").unwrap_err();
        assert!(
            e.to_string().contains("prompts_csv: row 1: 2 columns"),
            "{e}"
        );
        assert!(csv_prompts(b"prompt\n").is_err());
    }
}
