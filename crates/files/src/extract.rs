//! Reading the text out of a file, within limits.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::kind::FileKind;
use crate::name::prefix;
use crate::table::Table;
use crate::{office, pdf, plain, table};

/// How much work [`extract`] may do on one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The most text kept, in bytes; the rest is dropped and
    /// [`Extracted::truncated`] set. Default 8 MiB.
    pub max_text_bytes: usize,
    /// The most bytes a DOCX or XLSX may expand to, all entries together, by
    /// their headers and by what is actually read. Default 256 MiB.
    pub max_uncompressed: u64,
    /// The highest expansion ratio (uncompressed / compressed) allowed for a zip
    /// entry of more than 1 MiB. Default 200.
    pub max_ratio: u64,
    /// The most entries a zip may have. Default 10 000.
    pub max_entries: usize,
    /// The deepest element nesting allowed in an XML part. Default 200.
    pub max_xml_depth: usize,
    /// The most PDF pages read; later pages are left out and
    /// [`Extracted::truncated`] set. Default 5 000.
    pub max_pages: usize,
    /// When to give up with [`ExtractError::TimedOut`]. It is checked between
    /// pages, rows and XML elements, so one slow PDF page can overrun it: run
    /// extraction on a thread the caller can abandon.
    pub deadline: Option<Instant>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_text_bytes: 8 << 20,
            max_uncompressed: 256 << 20,
            max_ratio: 200,
            max_entries: 10_000,
            max_xml_depth: 200,
            max_pages: 5_000,
            deadline: None,
        }
    }
}

impl Limits {
    /// `Err(TimedOut)` once the deadline has passed.
    pub(crate) fn check_deadline(&self) -> Result<(), ExtractError> {
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => Err(ExtractError::TimedOut),
            _ => Ok(()),
        }
    }
}

/// The text of a file and what was learnt reading it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extracted {
    /// The text: PDF pages separated by [`PAGE_BREAK`], DOCX paragraphs as lines,
    /// spreadsheet and CSV rows as tab-separated lines, JSON as `path: value`
    /// lines.
    pub text: String,
    /// Whether text was left out to stay within [`Limits::max_text_bytes`] or
    /// [`Limits::max_pages`].
    pub truncated: bool,
    /// The number of pages, for a PDF.
    pub pages: Option<u32>,
    /// The shape of the data, for a CSV or the first sheet of an XLSX.
    pub table: Option<Table>,
    /// Things a person may want to know: pages that could not be read, ...
    pub warnings: Vec<String>,
}

/// What separates the pages of a PDF in [`Extracted::text`]: a form feed on a
/// line of its own.
pub const PAGE_BREAK: &str = "\n\u{c}\n";

/// Why a file's text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    /// The file needs a password to open.
    #[error("the document is encrypted; upload a copy without a password")]
    Encrypted,
    /// The file is damaged or is not what its kind says.
    #[error("the file is damaged and could not be read ({0}); upload a complete, fresh copy")]
    Corrupt(String),
    /// The archive would expand far beyond its size, or beyond what it declares.
    #[error(
        "the document expands to far more data than its size suggests ({0}), so it was not opened; save it again from the program that made it"
    )]
    ZipBomb(String),
    /// The XML nests elements deeper than the limit (the number).
    #[error(
        "the document nests its content more than {0} levels deep, so it was not read; save it again from the program that made it"
    )]
    TooDeep(usize),
    /// The deadline passed.
    #[error("reading the file took too long and was stopped; try a smaller file or split it")]
    TimedOut,
    /// The file is beyond a size limit.
    #[error("the file is too large to read ({0}); split it into smaller files")]
    TooLarge(String),
    /// The reader panicked on this file.
    #[error(
        "the file could not be read: the reader failed on it ({0}); it may be damaged, so try saving it again"
    )]
    Crashed(String),
    /// The kind has no text (images).
    #[error("{} files have no text to read; the file is kept but its content is not searchable", .0.label())]
    NotExtractable(FileKind),
}

impl ExtractError {
    /// A stable snake_case code: `encrypted`, `corrupt`, `zip_bomb`, `too_deep`,
    /// `timed_out`, `too_large`, `crashed`, `not_extractable`.
    pub fn code(&self) -> &'static str {
        match self {
            ExtractError::Encrypted => "encrypted",
            ExtractError::Corrupt(_) => "corrupt",
            ExtractError::ZipBomb(_) => "zip_bomb",
            ExtractError::TooDeep(_) => "too_deep",
            ExtractError::TimedOut => "timed_out",
            ExtractError::TooLarge(_) => "too_large",
            ExtractError::Crashed(_) => "crashed",
            ExtractError::NotExtractable(_) => "not_extractable",
        }
    }
}

/// Reads the text of the file at `path`, taken to be of `kind` (as
/// [`crate::detect`] decided), within `limits`.
///
/// A file that is not in fact of `kind` gives an error, never a panic from this
/// crate's own code; [`extract_guarded`] also catches a panic in the PDF reader.
pub fn extract(path: &Path, kind: FileKind, limits: &Limits) -> Result<Extracted, ExtractError> {
    limits.check_deadline()?;
    match kind {
        FileKind::Pdf => pdf::extract(path, limits),
        FileKind::Docx => office::extract_docx(path, limits),
        FileKind::Xlsx => office::extract_xlsx(path, limits),
        FileKind::Csv => table::extract_csv(path, limits),
        FileKind::Text | FileKind::Markdown => plain::extract_text(path, limits),
        FileKind::Json => plain::extract_json(path, limits),
        FileKind::Png | FileKind::Jpeg => Err(ExtractError::NotExtractable(kind)),
    }
}

/// [`extract`], with any panic turned into [`ExtractError::Crashed`].
pub fn extract_guarded(
    path: &Path,
    kind: FileKind,
    limits: &Limits,
) -> Result<Extracted, ExtractError> {
    catch_unwind(AssertUnwindSafe(|| extract(path, kind, limits)))
        .unwrap_or_else(|panic| Err(ExtractError::Crashed(panic_message(&*panic))))
}

/// The message of a caught panic, if it had one.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_owned()
    }
}

/// Text being gathered, cut off at a byte limit on a char boundary.
#[derive(Debug)]
pub(crate) struct TextOut {
    text: String,
    max: usize,
    truncated: bool,
}

impl TextOut {
    pub(crate) fn new(max: usize) -> Self {
        TextOut {
            text: String::new(),
            max,
            truncated: false,
        }
    }

    /// Appends as much of `s` as fits.
    pub(crate) fn push_str(&mut self, s: &str) {
        if self.truncated {
            return;
        }
        let room = self.max - self.text.len();
        if s.len() <= room {
            self.text.push_str(s);
        } else {
            self.text.push_str(prefix(s, room));
            self.truncated = true;
        }
    }

    pub(crate) fn push(&mut self, c: char) {
        let mut buf = [0; 4];
        self.push_str(c.encode_utf8(&mut buf));
    }

    /// Whether text has already been dropped: nothing more will be kept.
    pub(crate) fn is_full(&self) -> bool {
        self.truncated
    }

    /// The text so far.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// Drops trailing characters matching `pred` (not counted as truncation).
    pub(crate) fn trim_end_matches(&mut self, pred: impl Fn(char) -> bool) {
        let len = self.text.trim_end_matches(pred).len();
        self.text.truncate(len);
    }

    /// Cuts the text back to `len` bytes, which must be a char boundary (a length
    /// seen earlier). Not counted as truncation.
    pub(crate) fn shrink_to(&mut self, len: usize) {
        if len <= self.text.len() && self.text.is_char_boundary(len) {
            self.text.truncate(len);
        }
    }

    /// Marks the text as cut short for a reason other than its size.
    pub(crate) fn mark_truncated(&mut self) {
        self.truncated = true;
    }

    pub(crate) fn finish(self) -> (String, bool) {
        (self.text, self.truncated)
    }
}

/// Maps an I/O error reading the upload itself.
pub(crate) fn io_error(e: std::io::Error) -> ExtractError {
    ExtractError::Corrupt(format!("the file could not be read: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_out_cuts_on_a_char_boundary() {
        let mut out = TextOut::new(5);
        out.push_str("ab");
        out.push_str("éé");
        assert!(out.is_full());
        out.push_str("more");
        let (text, truncated) = out.finish();
        assert_eq!(text, "abé");
        assert!(truncated);
    }

    #[test]
    fn codes_are_stable_and_messages_say_what_to_do() {
        assert_eq!(ExtractError::Encrypted.code(), "encrypted");
        assert_eq!(
            ExtractError::Encrypted.to_string(),
            "the document is encrypted; upload a copy without a password"
        );
        assert_eq!(ExtractError::ZipBomb("x".into()).code(), "zip_bomb");
        assert_eq!(ExtractError::TooDeep(200).code(), "too_deep");
        assert!(
            ExtractError::TooDeep(200)
                .to_string()
                .contains("200 levels")
        );
        assert_eq!(
            ExtractError::NotExtractable(FileKind::Png).to_string(),
            "PNG files have no text to read; the file is kept but its content is not searchable"
        );
    }

    #[test]
    fn a_past_deadline_times_out_before_any_work() {
        let limits = Limits {
            deadline: Some(Instant::now()),
            ..Limits::default()
        };
        let err = extract(Path::new("/nonexistent"), FileKind::Text, &limits).unwrap_err();
        assert_eq!(err, ExtractError::TimedOut);
    }
}
