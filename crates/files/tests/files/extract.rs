use std::time::{Duration, Instant};

use waymark_files::fixtures::{self, RawEntry};
use waymark_files::{
    ColumnType, ExtractError, Extracted, FileKind, Limits, PAGE_BREAK, detect, extract,
    extract_guarded,
};

use crate::file;

fn read(bytes: &[u8], kind: FileKind) -> Result<Extracted, ExtractError> {
    read_with(bytes, kind, &Limits::default())
}

fn read_with(bytes: &[u8], kind: FileKind, limits: &Limits) -> Result<Extracted, ExtractError> {
    let f = file(bytes);
    extract_guarded(f.path(), kind, limits)
}

fn pages(e: &Extracted) -> Vec<&str> {
    e.text.split(PAGE_BREAK).collect()
}

#[test]
fn pdf_text_is_read_page_by_page() {
    let pdf = fixtures::pdf(&[
        "The first page.",
        "The second page.",
        "Quarterly revenue grew by 12 percent.\nThe board approved the plan.",
        "The fourth page.",
        "The fifth page.",
    ]);
    let e = read(&pdf, FileKind::Pdf).unwrap();
    assert_eq!(e.pages, Some(5));
    assert!(!e.truncated);
    assert!(e.warnings.is_empty(), "{:?}", e.warnings);
    let pages = pages(&e);
    assert_eq!(pages.len(), 5, "{:?}", e.text);
    assert!(
        pages[2].contains("Quarterly revenue grew by 12 percent."),
        "{:?}",
        pages[2]
    );
    assert!(
        pages[2].contains("The board approved the plan."),
        "{:?}",
        pages[2]
    );
    let first = pages[2].find("Quarterly").unwrap();
    assert!(first < pages[2].find("board").unwrap());
    assert_eq!(pages[0].trim(), "The first page.");
}

#[test]
fn pdf_strings_are_escaped() {
    let pdf = fixtures::pdf(&["A (parenthesised) aside, a back\\slash and a café."]);
    let e = read(&pdf, FileKind::Pdf).unwrap();
    assert_eq!(
        e.text.trim(),
        "A (parenthesised) aside, a back\\slash and a café."
    );
}

#[test]
fn a_hundred_page_pdf_is_read_whole() {
    let texts: Vec<String> = (1..=100)
        .map(|n| {
            format!(
                "Page {n} opens the section on topic {n}.\nIt has a second sentence about item {n}.\nAnd a third one closes page {n}."
            )
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let e = read(&fixtures::pdf(&refs), FileKind::Pdf).unwrap();
    assert_eq!(e.pages, Some(100));
    let pages = pages(&e);
    assert_eq!(pages.len(), 100);
    for (n, page) in pages.iter().enumerate() {
        let n = n + 1;
        assert!(
            page.contains(&format!("Page {n} opens the section on topic {n}.")),
            "{page:?}"
        );
        assert!(
            page.contains(&format!("And a third one closes page {n}.")),
            "{page:?}"
        );
    }
}

#[test]
fn pdf_pages_beyond_the_limit_are_left_out() {
    let pdf = fixtures::pdf(&["one", "two", "three", "four"]);
    let limits = Limits {
        max_pages: 2,
        ..Limits::default()
    };
    let e = read_with(&pdf, FileKind::Pdf, &limits).unwrap();
    assert_eq!(e.pages, Some(4));
    assert!(e.truncated);
    assert_eq!(pages(&e), ["one", "two"]);
    assert_eq!(e.warnings, ["only the first 2 of 4 pages were read"]);
}

#[test]
fn a_pdf_needing_a_password_is_encrypted() {
    let err = read(&fixtures::encrypted_pdf(), FileKind::Pdf).unwrap_err();
    assert_eq!(err, ExtractError::Encrypted);
    assert_eq!(err.code(), "encrypted");
}

#[test]
fn a_pdf_encrypted_with_an_empty_user_password_is_read() {
    let pdf = fixtures::encrypted_pdf_with_password(&["Printing is not allowed here."], "");
    let e = read(&pdf, FileKind::Pdf).unwrap();
    assert_eq!(e.text.trim(), "Printing is not allowed here.");
}

#[test]
fn a_truncated_pdf_is_corrupt() {
    let pdf = fixtures::pdf(&["one", "two", "three"]);
    for cut in [pdf.len() / 2, pdf.len() - 10, 20, 5] {
        let err = read(&pdf[..cut], FileKind::Pdf).unwrap_err();
        assert_eq!(err.code(), "corrupt", "{cut}: {err}");
    }
}

#[test]
fn docx_paragraphs_become_lines() {
    let docx = fixtures::docx(&[
        "Project charter",
        "Scope:\tthe new billing system",
        "First line\nsecond line",
        "Ampersands & <angle brackets> survive",
    ]);
    let e = read(&docx, FileKind::Docx).unwrap();
    assert_eq!(
        e.text,
        "Project charter\nScope:\tthe new billing system\nFirst line\nsecond line\nAmpersands & <angle brackets> survive\n"
    );
    assert!(!e.truncated);
    assert_eq!(e.pages, None);
}

#[test]
fn xlsx_cells_are_read_with_shared_strings() {
    let xlsx = fixtures::xlsx(&[
        vec!["Name", "Amount", "Paid", "Due"],
        vec!["Ada", "12", "TRUE", "2024-03-01"],
        vec!["Grace", "7.5", "FALSE", ""],
        vec!["Ada", "", "", "2024-04-01"],
    ]);
    let e = read(&xlsx, FileKind::Xlsx).unwrap();
    assert_eq!(
        e.text,
        "# Sheet1\nName\tAmount\tPaid\tDue\nAda\t12\tTRUE\t2024-03-01\nGrace\t7.5\tFALSE\nAda\t\t\t2024-04-01\n"
    );
    let table = e.table.unwrap();
    assert_eq!(table.rows, 3);
    assert_eq!(table.columns, 4);
    assert_eq!(table.headers, ["Name", "Amount", "Paid", "Due"]);
    assert_eq!(
        table.column_types,
        [
            ColumnType::Text,
            ColumnType::Number,
            ColumnType::Boolean,
            ColumnType::Date
        ]
    );
    assert_eq!(table.sample.len(), 3);
}

#[test]
fn xlsx_sheets_come_in_workbook_order() {
    let first = [vec!["a"], vec!["1"]];
    let second = [vec!["b"], vec!["x"], vec!["y"]];
    let xlsx = fixtures::xlsx_sheets(&[("Summary", &first), ("Data & more", &second)]);
    let e = read(&xlsx, FileKind::Xlsx).unwrap();
    assert_eq!(e.text, "# Summary\na\n1\n\n# Data & more\nb\nx\ny\n");
    // The table is the first sheet's.
    assert_eq!(e.table.unwrap().rows, 1);
}

#[test]
fn csv_has_its_table() {
    let mut csv = String::from("id,price,day,name,active\n");
    for i in 0..30 {
        csv.push_str(&format!(
            "{i},{}.5,2024-01-{:02},\"Item, number {i}\",{}\n",
            i * 3,
            i % 28 + 1,
            if i % 2 == 0 { "true" } else { "FALSE" }
        ));
    }
    let e = read(csv.as_bytes(), FileKind::Csv).unwrap();
    let table = e.table.unwrap();
    assert_eq!(table.rows, 30);
    assert_eq!(table.columns, 5);
    assert_eq!(table.headers, ["id", "price", "day", "name", "active"]);
    assert_eq!(
        table.column_types,
        [
            ColumnType::Integer,
            ColumnType::Number,
            ColumnType::Date,
            ColumnType::Text,
            ColumnType::Boolean
        ]
    );
    assert_eq!(table.sample.len(), 20);
    assert_eq!(
        table.sample[1],
        ["1", "3.5", "2024-01-02", "Item, number 1", "FALSE"]
    );
    let lines: Vec<&str> = e.text.lines().collect();
    assert_eq!(lines.len(), 31);
    assert_eq!(lines[0], "id\tprice\tday\tname\tactive");
    assert_eq!(lines[2], "1\t3.5\t2024-01-02\tItem, number 1\tFALSE");
}

#[test]
fn csv_with_three_columns_and_semicolons() {
    let csv =
        "\u{feff}when;count;note\n2024-05-01T10:00:00Z;3;\n2024-05-02;4;ok\n2024-05-03;5.5;\n";
    let e = read(csv.as_bytes(), FileKind::Csv).unwrap();
    let table = e.table.unwrap();
    assert_eq!((table.rows, table.columns), (3, 3));
    assert_eq!(table.headers, ["when", "count", "note"]);
    assert_eq!(
        table.column_types,
        [ColumnType::Date, ColumnType::Number, ColumnType::Text]
    );
    assert!(e.text.starts_with("when\tcount\tnote\n"));
    let empty_column = read(b"a,b\n1,\n2,\n", FileKind::Csv)
        .unwrap()
        .table
        .unwrap();
    assert_eq!(
        empty_column.column_types,
        [ColumnType::Integer, ColumnType::Empty]
    );
}

#[test]
fn text_markdown_and_json() {
    let e = read(
        "\u{feff}# Title\n\nSome *text*.\n".as_bytes(),
        FileKind::Markdown,
    )
    .unwrap();
    assert_eq!(e.text, "# Title\n\nSome *text*.\n");
    let e = read(b"plain words", FileKind::Text).unwrap();
    assert_eq!(e.text, "plain words");
    let e = read(
        br#"{"project": {"name": "Apollo", "budget": 1200000, "tags": ["space", "moon"]}}"#,
        FileKind::Json,
    )
    .unwrap();
    assert_eq!(
        e.text,
        "project.name: Apollo\nproject.budget: 1200000\nproject.tags[0]: space\nproject.tags[1]: moon\n"
    );
    assert_eq!(
        read(b"{oops", FileKind::Json).unwrap_err().code(),
        "corrupt"
    );
}

#[test]
fn images_have_no_text() {
    let err = read(b"\x89PNG\r\n\x1a\n", FileKind::Png).unwrap_err();
    assert_eq!(err, ExtractError::NotExtractable(FileKind::Png));
    assert_eq!(err.code(), "not_extractable");
}

#[test]
fn a_zip_bomb_is_refused_before_it_is_inflated() {
    let bomb = fixtures::zip_bomb_docx();
    let f = file(&bomb);
    assert_eq!(detect(f.path(), "bomb.docx", None), Ok(FileKind::Docx));
    let err = extract(f.path(), FileKind::Docx, &Limits::default()).unwrap_err();
    assert!(matches!(err, ExtractError::ZipBomb(_)), "{err:?}");
    assert_eq!(err.code(), "zip_bomb");
    // The same bomb as an XLSX part.
    let err = read(&bomb, FileKind::Xlsx).unwrap_err();
    assert!(
        matches!(err, ExtractError::ZipBomb(_) | ExtractError::Corrupt(_)),
        "{err:?}"
    );
}

#[test]
fn a_zip_bomb_within_the_total_still_fails_the_ratio() {
    // 8 MiB of zeros deflated by zlib: about 1000 to 1.
    let zeros = vec![0u8; 8 << 20];
    let bomb = fixtures::zip_of(&[
        ("[Content_Types].xml", b"<Types/>".as_slice()),
        ("word/document.xml", zeros.as_slice()),
    ]);
    let err = read(&bomb, FileKind::Docx).unwrap_err();
    assert!(
        matches!(&err, ExtractError::ZipBomb(m) if m.contains("expands")),
        "{err:?}"
    );
}

#[test]
fn a_zip_entry_larger_than_its_header_says_is_a_bomb() {
    let mut lying = RawEntry::zeros("word/document.xml", 4 << 20);
    lying.size = 1000; // the header claims 1000 bytes
    let zip = fixtures::raw_zip(&[RawEntry::stored("[Content_Types].xml", b"<Types/>"), lying]);
    let err = read(&zip, FileKind::Docx).unwrap_err();
    assert!(
        matches!(&err, ExtractError::ZipBomb(m) if m.contains("more than the 1000 bytes")),
        "{err:?}"
    );
}

#[test]
fn too_many_entries_is_a_bomb() {
    let docx = fixtures::docx(&["hello"]);
    let limits = Limits {
        max_entries: 2,
        ..Limits::default()
    };
    let err = read_with(&docx, FileKind::Docx, &limits).unwrap_err();
    assert!(
        matches!(&err, ExtractError::ZipBomb(m) if m.contains("3 entries")),
        "{err:?}"
    );
}

#[test]
fn deep_xml_is_too_deep() {
    let err = read(&fixtures::deep_xml_docx(1_000), FileKind::Docx).unwrap_err();
    assert_eq!(err, ExtractError::TooDeep(200));
    assert_eq!(err.code(), "too_deep");
    assert!(read(&fixtures::deep_xml_docx(150), FileKind::Docx).is_ok());
}

#[test]
fn entity_declarations_are_refused() {
    let err = read(&fixtures::entity_docx(), FileKind::Docx).unwrap_err();
    assert!(
        matches!(&err, ExtractError::Corrupt(m) if m.contains("declares entities")),
        "{err:?}"
    );
}

#[test]
fn a_past_deadline_times_out() {
    let limits = Limits {
        deadline: Some(Instant::now() - Duration::from_millis(1)),
        ..Limits::default()
    };
    let files: [(Vec<u8>, FileKind); 6] = [
        (fixtures::pdf(&["a"]), FileKind::Pdf),
        (fixtures::docx(&["a"]), FileKind::Docx),
        (fixtures::xlsx(&[vec!["a"]]), FileKind::Xlsx),
        (b"a,b\n".to_vec(), FileKind::Csv),
        (b"text".to_vec(), FileKind::Text),
        (b"{}".to_vec(), FileKind::Json),
    ];
    for (bytes, kind) in files {
        assert_eq!(
            read_with(&bytes, kind, &limits),
            Err(ExtractError::TimedOut),
            "{kind}"
        );
    }
}

#[test]
fn a_small_text_limit_truncates() {
    let limits = Limits {
        max_text_bytes: 10,
        ..Limits::default()
    };
    let long = "twenty-one characters";
    let files: [(Vec<u8>, FileKind); 7] = [
        (fixtures::pdf(&[long, long]), FileKind::Pdf),
        (fixtures::docx(&[long, long]), FileKind::Docx),
        (fixtures::xlsx(&[vec![long], vec![long]]), FileKind::Xlsx),
        (format!("{long}\n{long}\n").into_bytes(), FileKind::Csv),
        (long.as_bytes().to_vec(), FileKind::Text),
        (long.as_bytes().to_vec(), FileKind::Markdown),
        (
            format!("{{\"a\": \"{long}\"}}").into_bytes(),
            FileKind::Json,
        ),
    ];
    for (bytes, kind) in files {
        let e = read_with(&bytes, kind, &limits).unwrap();
        assert!(e.truncated, "{kind}");
        assert!(e.text.len() <= 10, "{kind}: {:?}", e.text);
    }
    // A multi-byte character is not cut in half.
    let e = read_with("ééééééé".as_bytes(), FileKind::Text, &limits).unwrap();
    assert_eq!(e.text, "ééééé");
    // Exactly at the limit is not truncated.
    let e = read_with(b"0123456789", FileKind::Text, &limits).unwrap();
    assert!(!e.truncated);
    // The CSV table still counts every row.
    let csv = read_with(
        format!("h\n{}", "row\n".repeat(100)).as_bytes(),
        FileKind::Csv,
        &limits,
    )
    .unwrap();
    assert_eq!(csv.table.unwrap().rows, 100);
}

#[test]
fn files_of_the_wrong_kind_give_errors() {
    let text = b"just some text".to_vec();
    for kind in [
        FileKind::Pdf,
        FileKind::Docx,
        FileKind::Xlsx,
        FileKind::Json,
    ] {
        let err = read(&text, kind).unwrap_err();
        assert_eq!(err.code(), "corrupt", "{kind}: {err}");
    }
    let pdf = fixtures::pdf(&["x"]);
    assert_eq!(read(&pdf, FileKind::Docx).unwrap_err().code(), "corrupt");
    let docx = fixtures::docx(&["x"]);
    assert_eq!(read(&docx, FileKind::Pdf).unwrap_err().code(), "corrupt");
    assert_eq!(read(&docx, FileKind::Xlsx).unwrap_err().code(), "corrupt");
}

#[test]
fn extracted_serializes() {
    let e = read(b"a,b\n1,x\n", FileKind::Csv).unwrap();
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(
        json["table"]["column_types"],
        serde_json::json!(["integer", "text"])
    );
    assert_eq!(json["truncated"], false);
}

#[test]
fn a_damaged_header_or_sheet_costs_only_its_own_text() {
    let body = r#"<w:document xmlns:w="w"><w:body><w:p><w:r><w:t>Body text</w:t></w:r></w:p></w:body></w:document>"#;
    let footer = r#"<w:ftr xmlns:w="w"><w:p><w:r><w:t>Page footer</w:t></w:r></w:p></w:ftr>"#;
    let docx = fixtures::raw_zip(&[
        RawEntry::stored("[Content_Types].xml", b"<Types/>"),
        RawEntry::stored("word/document.xml", body.as_bytes()),
        RawEntry::stored("word/footer1.xml", footer.as_bytes()),
        RawEntry::stored("word/header1.xml", b"<w:hdr><w:p></w:hdr>"),
    ]);
    let e = read(&docx, FileKind::Docx).unwrap();
    assert_eq!(e.text, "Body text\n\nPage footer\n");
    assert_eq!(e.warnings.len(), 1);
    assert!(
        e.warnings[0].starts_with("word/header1.xml could not be read"),
        "{:?}",
        e.warnings
    );

    let good = r#"<worksheet><sheetData><row><c t="inlineStr"><is><t>fine</t></is></c></row></sheetData></worksheet>"#;
    let sheet = |name: &str, data: &str| RawEntry::stored(name, data.as_bytes());
    let xlsx = fixtures::raw_zip(&[
        RawEntry::stored("[Content_Types].xml", b"<Types/>"),
        sheet("xl/workbook.xml", "<workbook/>"),
        sheet(
            "xl/worksheets/sheet1.xml",
            "<worksheet><sheetData><row></worksheet>",
        ),
        sheet("xl/worksheets/sheet2.xml", good),
    ]);
    let e = read(&xlsx, FileKind::Xlsx).unwrap();
    assert_eq!(e.text, "# sheet2\nfine\n");
    assert_eq!(e.table.unwrap().headers, ["fine"]);
    assert!(
        e.warnings[0].starts_with("the sheet \"sheet1\" could not be read"),
        "{:?}",
        e.warnings
    );

    let broken = fixtures::raw_zip(&[
        RawEntry::stored("[Content_Types].xml", b"<Types/>"),
        sheet("xl/workbook.xml", "<workbook/>"),
        sheet(
            "xl/worksheets/sheet1.xml",
            "<worksheet><sheetData><row></worksheet>",
        ),
    ]);
    assert_eq!(read(&broken, FileKind::Xlsx).unwrap_err().code(), "corrupt");
}
