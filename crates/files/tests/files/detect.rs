use waymark_files::{FileKind, detect, fixtures};

use crate::file;

fn kind(bytes: &[u8], name: &str, declared: Option<&str>) -> Result<FileKind, String> {
    let f = file(bytes);
    detect(f.path(), name, declared).map_err(|r| r.reason().to_owned())
}

fn refusal(bytes: &[u8], name: &str) -> String {
    match kind(bytes, name, None) {
        Ok(kind) => panic!("{name} was accepted as {kind}"),
        Err(reason) => reason,
    }
}

const ALLOWED: &str = "PDF, DOCX, XLSX, CSV, plain text, Markdown, JSON, PNG, JPEG";

#[test]
fn binary_kinds_are_known_by_their_signatures() {
    assert_eq!(
        kind(&fixtures::pdf(&["hello"]), "a.pdf", None),
        Ok(FileKind::Pdf)
    );
    assert_eq!(
        kind(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "picture", None),
        Ok(FileKind::Png)
    );
    assert_eq!(
        kind(b"\xFF\xD8\xFF\xE0\0\x10JFIF\0", "photo.bin", None),
        Ok(FileKind::Jpeg)
    );
    assert_eq!(
        kind(&fixtures::docx(&["hi"]), "a.docx", None),
        Ok(FileKind::Docx)
    );
    assert_eq!(
        kind(&fixtures::xlsx(&[vec!["a", "b"]]), "a.xlsx", None),
        Ok(FileKind::Xlsx)
    );
    // The name does not matter to binary kinds.
    assert_eq!(
        kind(&fixtures::docx(&["hi"]), "report.pdf", None),
        Ok(FileKind::Docx)
    );
}

#[test]
fn text_kinds_are_chosen_by_extension_then_declared_type_then_content() {
    assert_eq!(kind(b"a,b\n1,2\n", "data.csv", None), Ok(FileKind::Csv));
    assert_eq!(
        kind(b"a,b\n1,2\n", "data", Some("text/csv; charset=utf-8")),
        Ok(FileKind::Csv)
    );
    assert_eq!(
        kind(b"# Title\n\ntext", "notes.md", None),
        Ok(FileKind::Markdown)
    );
    assert_eq!(
        kind(b"# Title", "notes", Some("text/markdown")),
        Ok(FileKind::Markdown)
    );
    assert_eq!(
        kind(br#"{"a": [1, 2]}"#, "data.json", None),
        Ok(FileKind::Json)
    );
    assert_eq!(kind(br#"[1, 2, 3]"#, "upload", None), Ok(FileKind::Json));
    assert_eq!(
        kind(b"\xEF\xBB\xBF{\"a\":1}", "x", None),
        Ok(FileKind::Json)
    );
    assert_eq!(kind(br#"{"a": 1"#, "upload", None), Ok(FileKind::Text));
    assert_eq!(kind(br#"{"a": 1}"#, "notes.txt", None), Ok(FileKind::Text));
    assert_eq!(
        kind(b"just words\r\n\tand\x0cmore", "x", None),
        Ok(FileKind::Text)
    );
    assert_eq!(
        kind(b"\xEF\xBB\xBFwith a BOM", "x.txt", None),
        Ok(FileKind::Text)
    );
    assert_eq!(
        kind("naïve café ☕".as_bytes(), "x", None),
        Ok(FileKind::Text)
    );
    // Text named as something else is still text.
    assert_eq!(kind(b"hello", "report.pdf", None), Ok(FileKind::Text));
}

#[test]
fn characters_split_between_chunks_are_fine() {
    // 1-, 2-, 3- and 4-byte characters: the 64 KiB chunk boundaries fall inside
    // some of them.
    let text = "a é € 😀 ".repeat(40_000);
    assert!(text.len() > 3 * 64 * 1024);
    for skew in 0..4 {
        let skewed = format!("{}{text}", "x".repeat(skew));
        assert_eq!(kind(skewed.as_bytes(), "x.txt", None), Ok(FileKind::Text));
    }
    let mut cut = text.into_bytes();
    while cut.last().is_some_and(|b| b.is_ascii()) {
        cut.pop();
    }
    cut.pop(); // now the file ends inside 😀 or €
    assert!(refusal(&cut, "x.txt").contains("not UTF-8"));
}

#[test]
fn executables_are_refused_whatever_their_name() {
    let elf = b"\x7FELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3E\0";
    let reason = refusal(elf, "tool");
    assert_eq!(
        reason,
        format!("this is a Linux executable (ELF), not one of the allowed types: {ALLOWED}")
    );
    let mz = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xFF\xFF\0\0\xB8\0\0\0\0\0\0\0@\0";
    assert_eq!(
        refusal(mz, "invoice.pdf"),
        format!("this is a Windows executable (MZ), not one of the allowed types: {ALLOWED}")
    );
    assert!(refusal(mz, "data.json").contains("Windows executable"));
}

#[test]
fn other_binaries_are_refused_with_what_they_are() {
    assert!(refusal(b"\x1F\x8B\x08\0\0\0\0\0", "a.csv").contains("gzip"));
    assert!(refusal(b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1\0\0", "old.doc").contains("OLE"));
    assert!(refusal(b"\xFF\xFEh\0i\0", "utf16.txt").contains("UTF-16"));
    assert!(refusal(b"GIF89a\x01\0\x01\0\0\0", "a.gif").contains("GIF image"));
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let reason = refusal(&garbage, "data.bin");
    assert!(
        reason.contains("binary data of an unknown type"),
        "{reason}"
    );
    assert!(reason.ends_with(ALLOWED), "{reason}");
    assert!(refusal(b"text then \x1B[31m escape", "a.txt").contains("control byte 0x1B"));
    assert!(refusal(b"text then \0 NUL", "a.txt").contains("NUL"));
}

#[test]
fn zips_must_be_word_or_excel_documents() {
    let plain_zip = fixtures::zip_of(&[("notes.txt", b"hello".as_slice())]);
    assert_eq!(
        refusal(&plain_zip, "notes.docx"),
        format!(
            "this is a ZIP archive that is not a Word (DOCX) or Excel (XLSX) document, not one of the allowed types: {ALLOWED}"
        )
    );
    let no_content_types = fixtures::zip_of(&[("word/document.xml", b"<w:document/>".as_slice())]);
    assert!(refusal(&no_content_types, "a.docx").contains("ZIP archive"));
    let pptx = fixtures::zip_of(&[
        ("[Content_Types].xml", b"<Types/>".as_slice()),
        ("ppt/presentation.xml", b"<p/>".as_slice()),
    ]);
    assert!(refusal(&pptx, "deck.pptx").contains("PowerPoint"));
    let macros = fixtures::zip_of(&[
        ("[Content_Types].xml", b"<Types/>".as_slice()),
        ("word/document.xml", b"<w:document/>".as_slice()),
        ("word/vbaProject.bin", b"\0\0".as_slice()),
    ]);
    assert!(refusal(&macros, "a.docx").contains("macro-enabled"));
    assert!(refusal(b"PK\x03\x04 not really a zip", "a.docx").contains("could not be read"));
}

#[test]
fn empty_files_and_bad_json_are_refused() {
    assert!(refusal(b"", "a.txt").starts_with("the file is empty"));
    assert!(refusal(b"\xEF\xBB\xBF", "a.txt").starts_with("the file is empty"));
    let reason = refusal(br#"{"a": }"#, "data.json");
    assert!(reason.contains("not valid JSON"), "{reason}");
    assert!(kind(b"not json", "x", Some("application/json")).is_err());
}
