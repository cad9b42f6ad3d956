//! The PDF report of an export, typeset by typst (`typst-as-lib`) from
//! `report.typ`. The data arrives as JSON bytes in `sys.inputs.data` and the
//! template reads it with `json(...)`: text a person wrote is a string value
//! placed as content, never spliced into markup, so it cannot be read as
//! Typst.
//!
//! The fonts are typst-assets' (Libertinus Serif for text, DejaVu Sans Mono
//! for hashes), compiled into the binary: no system fonts are looked at and no
//! package is downloaded, so a report comes out the same on every machine.
//! Typesetting is CPU work: call [`render`] off the async workers
//! (`spawn_blocking`).

use std::sync::OnceLock;

use serde::Serialize;
use typst::foundations::{Bytes, Datetime, Dict, IntoValue, Smart};
use typst_as_lib::TypstEngine;
use typst_as_lib::TypstTemplateMainFile;
use typst_layout::PagedDocument;

use super::document::Block;

const TEMPLATE: &str = include_str!("report.typ");

/// What the report shows.
#[derive(Debug, Clone, Serialize)]
pub struct ReportData {
    pub title: String,
    pub client: String,
    pub engagement: String,
    pub pack: String,
    /// `2026-05-01`.
    pub date: String,
    pub generated_by: String,
    pub export_id: String,
    pub manifest_sha256: String,
    pub waymark_version: String,
    pub artifacts: Vec<ReportArtifact>,
    pub approvals: Vec<ReportApproval>,
    pub files: Vec<ReportFile>,
}

/// One artifact, rendered.
#[derive(Debug, Clone, Serialize)]
pub struct ReportArtifact {
    pub title: String,
    #[serde(rename = "type")]
    pub artifact_type: String,
    pub type_title: String,
    pub version: i64,
    pub status: String,
    pub content_hash: String,
    /// `2026-05-01 14:03 UTC by Ana Lima`, or `—`.
    pub approved: String,
    pub blocks: Vec<Block>,
}

/// One line of the approval record.
#[derive(Debug, Clone, Serialize)]
pub struct ReportApproval {
    pub artifact: String,
    pub version: i64,
    pub by: String,
    pub kind: String,
    pub at: String,
}

/// One attached file.
#[derive(Debug, Clone, Serialize)]
pub struct ReportFile {
    pub name: String,
    pub size: String,
    pub sha256: String,
}

/// Why the report could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the PDF report could not be typeset: {0}")]
pub struct ReportError(String);

/// The typst engine with the template and the fonts, made once.
fn engine() -> &'static TypstEngine<TypstTemplateMainFile> {
    static ENGINE: OnceLock<TypstEngine<TypstTemplateMainFile>> = OnceLock::new();
    ENGINE.get_or_init(|| {
        TypstEngine::builder()
            .main_file(TEMPLATE)
            .fonts(typst_assets::fonts())
            .build()
    })
}

/// The report as PDF bytes, dated `at` (UTC).
pub fn render(data: &ReportData, at: time::OffsetDateTime) -> Result<Vec<u8>, ReportError> {
    let json = serde_json::to_vec(data).map_err(|e| ReportError(e.to_string()))?;
    let mut inputs = Dict::new();
    inputs.insert("data".into(), Bytes::new(json).into_value());
    let compiled = engine().compile_with_input::<_, PagedDocument>(inputs);
    let doc = compiled.output.map_err(|e| ReportError(format!("{e}")))?;
    let utc = at.to_offset(time::UtcOffset::UTC);
    let timestamp = Datetime::from_ymd_hms(
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second(),
    )
    .map(typst_pdf::Timestamp::new_utc);
    let options = typst_pdf::PdfOptions {
        ident: Smart::Custom(data.export_id.clone()),
        timestamp,
        ..Default::default()
    };
    typst_pdf::pdf(&doc, &options).map_err(|errors| {
        ReportError(
            errors
                .iter()
                .map(|e| e.message.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(title: &str) -> ReportData {
        ReportData {
            title: format!("Delivery report — {title}"),
            client: "Northwind #Ledger".into(),
            engagement: title.into(),
            pack: "marketing-engagement".into(),
            date: "2026-05-01".into(),
            generated_by: "Ana Lima".into(),
            export_id: "exp_0190".into(),
            manifest_sha256: "ab".repeat(32),
            waymark_version: "0.1.0".into(),
            artifacts: vec![ReportArtifact {
                title: "Strategy $x^2$ #pagebreak() [*bold*]".into(),
                artifact_type: "strategy".into(),
                type_title: "Strategy".into(),
                version: 3,
                status: "approved".into(),
                content_hash: "cd".repeat(32),
                approved: "2026-05-01 10:00 UTC by Bo".into(),
                blocks: super::super::document::blocks(&json!({
                    "summary": "Line one\nline two #set text(red) \\ ] } ) \" ",
                    "channels": [{"name": "LinkedIn", "budget": 1}],
                    "tags": ["a", "b"],
                })),
            }],
            approvals: vec![ReportApproval {
                artifact: "Strategy".into(),
                version: 3,
                by: "Bo".into(),
                kind: "client contact".into(),
                at: "2026-05-01 10:00".into(),
            }],
            files: vec![ReportFile {
                name: "brief.pdf".into(),
                size: "12 KB".into(),
                sha256: "ef".repeat(32),
            }],
        }
    }

    #[test]
    fn markup_in_the_data_is_text_and_the_report_is_a_pdf() {
        let pdf = render(
            &data("Launch = #strong[x]"),
            time::OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        // To look at it: WAYMARK_REPORT_OUT=/tmp/report.pdf cargo test -p waymark-engine report
        if let Ok(out) = std::env::var("WAYMARK_REPORT_OUT") {
            std::fs::write(out, &pdf).unwrap();
        }
        assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
        assert!(pdf.len() > 5_000, "{} bytes", pdf.len());
    }
}
