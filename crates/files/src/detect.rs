//! Deciding what an uploaded file is, from its content.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use serde::de::IgnoredAny;

use crate::archive::open_zip;
use crate::extract::Limits;
use crate::kind::{FileKind, allowed_list};
use crate::office::{CONTENT_TYPES, DOCX_BODY, XLSX_WORKBOOK};

/// Why an upload is not accepted: a sentence saying what the file is and what
/// would be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    reason: String,
}

impl Refusal {
    fn new(reason: impl Into<String>) -> Refusal {
        Refusal {
            reason: reason.into(),
        }
    }

    /// "this is `what`, not one of the allowed types: PDF, DOCX, ...".
    fn not_allowed(what: &str) -> Refusal {
        Refusal::new(format!(
            "this is {what}, not one of the allowed types: {}",
            allowed_list()
        ))
    }

    /// The sentence to show the person who uploaded the file.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n";
const CHUNK: usize = 64 * 1024;

/// What the file at `path` is, decided by its content, never by its name alone.
///
/// PDF, PNG and JPEG are known by their signatures. A zip archive must be an
/// Office Open XML package (`[Content_Types].xml`) with `word/document.xml`
/// (DOCX) or `xl/workbook.xml` (XLSX), and no macros. Anything else must be
/// UTF-8 text throughout, with no NUL and no control byte other than tab, line
/// feed, carriage return and form feed (a byte order mark is fine); then the
/// extension of `name`, or else the `declared` MIME type, chooses among CSV,
/// Markdown, JSON (which must parse) and plain text, and text that parses as a
/// JSON object or array is JSON. Everything else, an empty file included, is
/// refused with a sentence saying what was found.
pub fn detect(path: &Path, name: &str, declared: Option<&str>) -> Result<FileKind, Refusal> {
    let mut file = File::open(path).map_err(unreadable)?;
    let head = read_head(&mut file, 8 * 1024).map_err(unreadable)?;
    if head.is_empty() {
        return Err(empty());
    }
    if head.starts_with(b"%PDF-") {
        return Ok(FileKind::Pdf);
    }
    if head.starts_with(PNG) {
        return Ok(FileKind::Png);
    }
    if head.starts_with(b"\xFF\xD8\xFF") {
        return Ok(FileKind::Jpeg);
    }
    if head.starts_with(b"PK\x03\x04") {
        return office_kind(path);
    }
    let file = File::open(path).map_err(unreadable)?;
    match scan_text(file).map_err(unreadable)? {
        TextScan::Text { content: false } => Err(empty()),
        TextScan::Text { content: true } => text_kind(path, &head, name, declared),
        TextScan::NotText(detail) => Err(match signature(&head) {
            Some(Signature::Refused(what)) => Refusal::not_allowed(what),
            Some(Signature::Utf16) => Refusal::new(
                "this is text in UTF-16, not UTF-8; save it as UTF-8 and upload it again",
            ),
            None => Refusal::not_allowed(&format!("binary data of an unknown type ({detail})")),
        }),
    }
}

fn unreadable(e: io::Error) -> Refusal {
    Refusal::new(format!("the file could not be read: {e}"))
}

fn empty() -> Refusal {
    Refusal::new(format!(
        "the file is empty; upload a file with content, of one of the allowed types: {}",
        allowed_list()
    ))
}

/// Up to `max` bytes from the start of `file`.
fn read_head(file: &mut File, max: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(max);
    file.take(max as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// What a zip archive is: DOCX, XLSX, or a refusal naming it.
fn office_kind(path: &Path) -> Result<FileKind, Refusal> {
    let zip = open_zip(path).map_err(|e| {
        Refusal::new(format!(
            "this looks like a ZIP archive but it could not be read ({e}); upload a DOCX or XLSX saved again, or one of the other allowed types: {}",
            allowed_list()
        ))
    })?;
    let max_entries = Limits::default().max_entries;
    if zip.len() > max_entries {
        return Err(Refusal::new(format!(
            "this ZIP archive has {} entries, more than the {max_entries} a document may have",
            zip.len()
        )));
    }
    let has = |name: &str| zip.index_for_name(name).is_some();
    let office = has(CONTENT_TYPES);
    if office && (has("word/vbaProject.bin") || has("xl/vbaProject.bin")) {
        return Err(Refusal::new(
            "this is a macro-enabled Office document; save it without macros (as .docx or .xlsx) and upload it again",
        ));
    }
    if office && has(DOCX_BODY) {
        return Ok(FileKind::Docx);
    }
    if office && has(XLSX_WORKBOOK) {
        return Ok(FileKind::Xlsx);
    }
    if has("mimetype") && has("content.xml") {
        return Err(Refusal::new(format!(
            "this is an OpenDocument file (ODT or ODS), not one of the allowed types: {}; save it as DOCX or XLSX and upload it again",
            allowed_list()
        )));
    }
    let what = if office && has("ppt/presentation.xml") {
        "a PowerPoint presentation (PPTX)"
    } else if has("META-INF/MANIFEST.MF") {
        "a Java archive (JAR)"
    } else if has("AndroidManifest.xml") {
        "an Android package (APK)"
    } else {
        "a ZIP archive that is not a Word (DOCX) or Excel (XLSX) document"
    };
    Err(Refusal::not_allowed(what))
}

enum TextScan {
    /// Valid text; `content` is false when there is nothing but a BOM.
    Text { content: bool },
    /// Not text, and why.
    NotText(String),
}

/// Reads the whole file in chunks and checks it is UTF-8 text: a character cut
/// by a chunk boundary is carried over to the next chunk.
fn scan_text(file: File) -> io::Result<TextScan> {
    let mut reader = BufReader::with_capacity(CHUNK, file);
    let mut buf = vec![0u8; CHUNK + 4];
    let mut carried = 0usize;
    let mut offset: u64 = 0;
    let mut content = false;
    let mut first = true;
    loop {
        let n = reader.read(&mut buf[carried..carried + CHUNK])?;
        if n == 0 {
            if carried > 0 {
                return Ok(TextScan::NotText(format!(
                    "it is not UTF-8 text: it ends inside a character, at byte {offset}"
                )));
            }
            return Ok(TextScan::Text { content });
        }
        let data = &buf[..carried + n];
        let mut body = data;
        if first {
            first = false;
            // A BOM split by a short first read is checked as text (it is valid
            // UTF-8) and only counts as content: harmless.
            body = data.strip_prefix(BOM).unwrap_or(data);
            offset += (data.len() - body.len()) as u64;
        }
        let valid = match std::str::from_utf8(body) {
            Ok(_) => body.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(e) => {
                return Ok(TextScan::NotText(format!(
                    "it is not UTF-8 text: an invalid byte at {}",
                    offset + e.valid_up_to() as u64
                )));
            }
        };
        if let Some(at) = body[..valid].iter().position(|&b| is_refused_control(b)) {
            let b = body[at];
            let what = if b == 0 {
                "NUL bytes".to_owned()
            } else {
                format!("the control byte 0x{b:02X}")
            };
            return Ok(TextScan::NotText(format!(
                "it contains {what}, at byte {}",
                offset + at as u64
            )));
        }
        content |= valid > 0;
        offset += valid as u64;
        // Move the unfinished character (at most 3 bytes) to the front.
        let start = data.len() - body.len() + valid;
        let rest = data.len() - start;
        buf.copy_within(start..start + rest, 0);
        carried = rest;
    }
}

/// C0 control bytes other than tab, line feed, form feed and carriage return.
fn is_refused_control(b: u8) -> bool {
    b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0C)
}

enum Signature {
    /// A known type that is not allowed.
    Refused(&'static str),
    /// UTF-16 text (a byte order mark).
    Utf16,
}

/// Names a known binary type from its first bytes.
fn signature(head: &[u8]) -> Option<Signature> {
    use Signature::*;
    let starts = |magic: &[u8]| head.starts_with(magic);
    Some(if starts(b"\x7FELF") {
        Refused("a Linux executable (ELF)")
    } else if starts(b"MZ") {
        Refused("a Windows executable (MZ)")
    } else if starts(b"\xFE\xED\xFA\xCE")
        || starts(b"\xFE\xED\xFA\xCF")
        || starts(b"\xCE\xFA\xED\xFE")
        || starts(b"\xCF\xFA\xED\xFE")
    {
        Refused("a macOS executable (Mach-O)")
    } else if starts(b"\xCA\xFE\xBA\xBE") {
        Refused("a macOS universal executable or a Java class file")
    } else if starts(b"\0asm") {
        Refused("a WebAssembly module")
    } else if starts(b"\x1F\x8B") {
        Refused("a gzip-compressed file")
    } else if starts(b"BZh") {
        Refused("a bzip2-compressed file")
    } else if starts(b"\xFD7zXZ\0") {
        Refused("an xz-compressed file")
    } else if starts(b"\x28\xB5\x2F\xFD") {
        Refused("a Zstandard-compressed file")
    } else if starts(b"7z\xBC\xAF\x27\x1C") {
        Refused("a 7-Zip archive")
    } else if starts(b"Rar!\x1A\x07") {
        Refused("a RAR archive")
    } else if starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
        Refused("an empty or split ZIP archive")
    } else if head.get(257..262) == Some(b"ustar") {
        Refused("a tar archive")
    } else if starts(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1") {
        Refused(
            "an OLE compound file (an old .doc or .xls, or a password-protected Office document)",
        )
    } else if starts(b"SQLite format 3\0") {
        Refused("an SQLite database")
    } else if starts(b"GIF8") {
        Refused("a GIF image")
    } else if starts(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
        Refused("a WebP image")
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        Refused("a TIFF image")
    } else if starts(b"BM") {
        Refused("a BMP image")
    } else if head.get(4..8) == Some(b"ftyp") {
        Refused("a video, audio or HEIC image file (ISO media)")
    } else if starts(b"ID3") || starts(b"OggS") || starts(b"fLaC") {
        Refused("an audio file")
    } else if starts(b"\xFF\xFE") || starts(b"\xFE\xFF") {
        Utf16
    } else {
        return None;
    })
}

/// Which text kind a valid text file is.
fn text_kind(
    path: &Path,
    head: &[u8],
    name: &str,
    declared: Option<&str>,
) -> Result<FileKind, Refusal> {
    let chosen = kind_by_extension(name).or_else(|| declared.and_then(kind_by_mime));
    match chosen {
        Some(FileKind::Json) => match parse_json(path) {
            Ok(()) => Ok(FileKind::Json),
            Err(e) => Err(Refusal::new(format!(
                "this is named as JSON but is not valid JSON ({e}); correct it, or upload it as plain text (.txt)"
            ))),
        },
        Some(kind) => Ok(kind),
        None => {
            let body = head.strip_prefix(BOM).unwrap_or(head);
            let opens = body
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|b| matches!(b, b'{' | b'['));
            if opens && parse_json(path).is_ok() {
                Ok(FileKind::Json)
            } else {
                Ok(FileKind::Text)
            }
        }
    }
}

/// The text kind a file name's extension names, if any.
fn kind_by_extension(name: &str) -> Option<FileKind> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let (stem, ext) = last.rsplit_once('.')?;
    if stem.is_empty() && !last.starts_with('.') {
        return None;
    }
    match ext.trim().to_ascii_lowercase().as_str() {
        "csv" | "tsv" => Some(FileKind::Csv),
        "md" | "markdown" | "mdown" | "mkd" => Some(FileKind::Markdown),
        "json" => Some(FileKind::Json),
        "txt" | "text" | "log" => Some(FileKind::Text),
        _ => None,
    }
}

/// The text kind a MIME type names, if any (`text/csv; charset=utf-8` → CSV).
fn kind_by_mime(declared: &str) -> Option<FileKind> {
    let essence = declared
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "text/csv" | "application/csv" | "text/tab-separated-values" => Some(FileKind::Csv),
        "text/markdown" | "text/x-markdown" => Some(FileKind::Markdown),
        "application/json" | "text/json" => Some(FileKind::Json),
        e if e.ends_with("+json") => Some(FileKind::Json),
        "text/plain" => Some(FileKind::Text),
        _ => None,
    }
}

/// Whether the file parses as one JSON document (a leading BOM allowed).
fn parse_json(path: &Path) -> Result<(), String> {
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    let head = read_head(&mut file, BOM.len()).map_err(|e| e.to_string())?;
    let start: &[u8] = if head == BOM { &[] } else { &head };
    serde_json::from_reader::<_, IgnoredAny>(start.chain(BufReader::new(file)))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_and_mime_types_choose_text_kinds() {
        assert_eq!(kind_by_extension("a.CSV"), Some(FileKind::Csv));
        assert_eq!(kind_by_extension("dir/notes.md"), Some(FileKind::Markdown));
        assert_eq!(kind_by_extension("x.json"), Some(FileKind::Json));
        assert_eq!(kind_by_extension("x.pdf"), None);
        assert_eq!(kind_by_extension("README"), None);
        assert_eq!(kind_by_mime("text/csv; charset=utf-8"), Some(FileKind::Csv));
        assert_eq!(kind_by_mime("application/ld+json"), Some(FileKind::Json));
        assert_eq!(kind_by_mime("application/octet-stream"), None);
    }

    #[test]
    fn control_bytes() {
        assert!(is_refused_control(0));
        assert!(is_refused_control(0x1B));
        assert!(!is_refused_control(b'\t'));
        assert!(!is_refused_control(0x0C));
        assert!(!is_refused_control(b' '));
    }
}
