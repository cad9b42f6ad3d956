//! PDF documents, read page by page with `pdf_oxide`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use pdf_oxide::PdfDocument;

use crate::extract::{
    ExtractError, Extracted, Limits, PAGE_BREAK, TextOut, io_error, panic_message,
};

/// How far from the end `%%EOF` is looked for (readers look in the last 1 KiB;
/// some writers append a little more after it).
const EOF_WINDOW: usize = 4096;

/// Reads the text of each page, at most [`Limits::max_pages`] of them, pages
/// separated by [`PAGE_BREAK`]. A page that cannot be read is left out with a
/// warning; a PDF none of whose pages can be read is [`ExtractError::Corrupt`].
pub(crate) fn extract(path: &Path, limits: &Limits) -> Result<Extracted, ExtractError> {
    let bytes = std::fs::read(path).map_err(io_error)?;
    let tail = &bytes[bytes.len().saturating_sub(EOF_WINDOW)..];
    if !tail.windows(5).any(|w| w == b"%%EOF") {
        return Err(ExtractError::Corrupt(
            "the PDF ends early (it has no %%EOF end marker), so it was probably cut off"
                .to_owned(),
        ));
    }
    let doc = guarded(|| PdfDocument::from_bytes(bytes))?.map_err(pdf_error)?;
    if guarded(|| doc.is_encrypted() && !doc.is_authenticated())? {
        return Err(ExtractError::Encrypted);
    }
    let count = guarded(|| doc.page_count())?.map_err(pdf_error)?;
    let to_read = count.min(limits.max_pages);

    let mut out = TextOut::new(limits.max_text_bytes);
    let mut warnings = Vec::new();
    let mut failed = 0usize;
    let mut first_failure = None;
    for page in 0..to_read {
        limits.check_deadline()?;
        if out.is_full() {
            break;
        }
        if page > 0 {
            out.push_str(PAGE_BREAK);
        }
        match guarded(|| doc.extract_text(page))? {
            Ok(text) => out.push_str(text.trim_end()),
            Err(pdf_oxide::Error::EncryptedPdf) => return Err(ExtractError::Encrypted),
            Err(e) => {
                failed += 1;
                warnings.push(format!("page {} could not be read: {e}", page + 1));
                first_failure.get_or_insert_with(|| e.to_string());
            }
        }
    }
    if to_read > 0 && failed == to_read {
        return Err(ExtractError::Corrupt(format!(
            "no page could be read: {}",
            first_failure.unwrap_or_default()
        )));
    }
    if to_read < count {
        out.mark_truncated();
        warnings.push(format!(
            "only the first {to_read} of {count} pages were read"
        ));
    }
    let (text, truncated) = out.finish();
    Ok(Extracted {
        text,
        truncated,
        pages: Some(u32::try_from(count).unwrap_or(u32::MAX)),
        table: None,
        warnings,
    })
}

/// Runs a call into `pdf_oxide`, turning a panic into [`ExtractError::Crashed`].
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, ExtractError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| ExtractError::Crashed(panic_message(&*panic)))
}

fn pdf_error(e: pdf_oxide::Error) -> ExtractError {
    match e {
        pdf_oxide::Error::EncryptedPdf => ExtractError::Encrypted,
        other => ExtractError::Corrupt(format!("not a readable PDF: {other}")),
    }
}
