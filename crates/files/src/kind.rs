//! The kinds of file Waymark accepts.

use serde::{Deserialize, Serialize};

/// What an uploaded file is, decided from its content by [`crate::detect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A PDF document.
    Pdf,
    /// A Word document (Office Open XML, `.docx`).
    Docx,
    /// An Excel workbook (Office Open XML, `.xlsx`).
    Xlsx,
    /// Comma- (or semicolon-, or tab-) separated values, UTF-8.
    Csv,
    /// Plain UTF-8 text.
    Text,
    /// Markdown, UTF-8.
    Markdown,
    /// A JSON document, UTF-8.
    Json,
    /// A PNG image: stored, not read.
    Png,
    /// A JPEG image: stored, not read.
    Jpeg,
}

impl FileKind {
    /// Every kind, in the order the allowed types are listed to people.
    pub const ALL: [FileKind; 9] = [
        FileKind::Pdf,
        FileKind::Docx,
        FileKind::Xlsx,
        FileKind::Csv,
        FileKind::Text,
        FileKind::Markdown,
        FileKind::Json,
        FileKind::Png,
        FileKind::Jpeg,
    ];

    /// The stable name stored and shown in the API: `pdf`, `docx`, ..., `jpeg`.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Pdf => "pdf",
            FileKind::Docx => "docx",
            FileKind::Xlsx => "xlsx",
            FileKind::Csv => "csv",
            FileKind::Text => "text",
            FileKind::Markdown => "markdown",
            FileKind::Json => "json",
            FileKind::Png => "png",
            FileKind::Jpeg => "jpeg",
        }
    }

    /// The kind named by [`FileKind::as_str`], if `s` is one of those names.
    pub fn parse(s: &str) -> Option<FileKind> {
        FileKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The MIME type a download of this kind is served with.
    pub fn mime(self) -> &'static str {
        match self {
            FileKind::Pdf => "application/pdf",
            FileKind::Docx => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
            FileKind::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            FileKind::Csv => "text/csv",
            FileKind::Text => "text/plain",
            FileKind::Markdown => "text/markdown",
            FileKind::Json => "application/json",
            FileKind::Png => "image/png",
            FileKind::Jpeg => "image/jpeg",
        }
    }

    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            FileKind::Pdf => "pdf",
            FileKind::Docx => "docx",
            FileKind::Xlsx => "xlsx",
            FileKind::Csv => "csv",
            FileKind::Text => "txt",
            FileKind::Markdown => "md",
            FileKind::Json => "json",
            FileKind::Png => "png",
            FileKind::Jpeg => "jpg",
        }
    }

    /// The name a person knows the kind by: "PDF", "plain text", ...
    pub fn label(self) -> &'static str {
        match self {
            FileKind::Pdf => "PDF",
            FileKind::Docx => "DOCX",
            FileKind::Xlsx => "XLSX",
            FileKind::Csv => "CSV",
            FileKind::Text => "plain text",
            FileKind::Markdown => "Markdown",
            FileKind::Json => "JSON",
            FileKind::Png => "PNG",
            FileKind::Jpeg => "JPEG",
        }
    }

    /// Whether [`crate::extract`] reads text out of this kind (images: no).
    pub fn extractable(self) -> bool {
        !matches!(self, FileKind::Png | FileKind::Jpeg)
    }

    /// Whether the kind is a text format (CSV, plain text, Markdown, JSON).
    pub fn is_text(self) -> bool {
        matches!(
            self,
            FileKind::Csv | FileKind::Text | FileKind::Markdown | FileKind::Json
        )
    }
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// "PDF, DOCX, XLSX, CSV, plain text, Markdown, JSON, PNG, JPEG".
pub(crate) fn allowed_list() -> String {
    FileKind::ALL
        .iter()
        .map(|k| k.label())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_serialize_as_snake_case() {
        for kind in FileKind::ALL {
            assert_eq!(FileKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::String(kind.as_str().to_owned())
            );
        }
        assert_eq!(FileKind::parse("exe"), None);
        assert_eq!(FileKind::parse("PDF"), None);
    }

    #[test]
    fn images_are_not_extractable() {
        let not: Vec<_> = FileKind::ALL
            .into_iter()
            .filter(|k| !k.extractable())
            .collect();
        assert_eq!(not, [FileKind::Png, FileKind::Jpeg]);
        assert_eq!(
            allowed_list(),
            "PDF, DOCX, XLSX, CSV, plain text, Markdown, JSON, PNG, JPEG"
        );
    }
}
