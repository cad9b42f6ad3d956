//! Files built by hand for tests and benchmarks: PDF, DOCX and XLSX documents,
//! and hostile ones (an encrypted PDF, a zip bomb, deeply nested XML).
//!
//! Everything is deterministic and made in memory; nothing here reads a file.

use std::io::{Cursor, Write};

use zip::CompressionMethod;
use zip::write::{SimpleFileOptions, ZipWriter};

// ---------------------------------------------------------------------------
// PDF
// ---------------------------------------------------------------------------

/// A PDF with one page per entry of `pages`: a catalog, a page tree, one
/// Helvetica font and a content stream per page, each line of the page's text
/// (split at `\n`) drawn with `BT /F1 12 Tf 72 y Td (text) Tj ET`, 14 points
/// below the one before. Characters outside Latin-1 become `?`.
pub fn pdf(pages: &[&str]) -> Vec<u8> {
    PdfBuilder::new(pages).finish(None)
}

/// A one-page PDF encrypted with the standard security handler (RC4, 40-bit,
/// revision 2) whose user password is `secret`: it cannot be read without it.
pub fn encrypted_pdf() -> Vec<u8> {
    encrypted_pdf_with_password(
        &["This text is only for those who know the password."],
        "secret",
    )
}

/// A PDF like [`pdf`], encrypted with the standard security handler (RC4,
/// 40-bit, revision 2), user password `user_password` and owner password
/// `owner`. With an empty user password anyone may open it (the common case of
/// a PDF that only restricts printing or copying).
pub fn encrypted_pdf_with_password(pages: &[&str], user_password: &str) -> Vec<u8> {
    let file_id: [u8; 16] = *b"waymark-fixture!";
    let permissions: i32 = -44;
    let owner = rc4_owner_entry(b"owner", user_password.as_bytes());
    let key = rc4_file_key(user_password.as_bytes(), &owner, permissions, &file_id);
    let user = rc4(&key, &PASSWORD_PAD);

    let mut builder = PdfBuilder::new(pages);
    for (number, object) in builder.objects.iter_mut().enumerate() {
        if let Some(stream) = &mut object.stream {
            let object_key = object_key(&key, number as u32 + 1);
            *stream = rc4(&object_key, stream);
        }
    }
    let encrypt = format!(
        "<< /Filter /Standard /V 1 /R 2 /Length 40 /P {permissions} /O <{}> /U <{}> >>",
        hex(&owner),
        hex(&user)
    );
    let encrypt_number = builder.add(encrypt.into_bytes(), None);
    let trailer = format!(
        "/Encrypt {encrypt_number} 0 R /ID [<{id}> <{id}>]",
        id = hex(&file_id)
    );
    builder.finish(Some(&trailer))
}

struct PdfObject {
    dict: Vec<u8>,
    stream: Option<Vec<u8>>,
}

struct PdfBuilder {
    objects: Vec<PdfObject>,
}

impl PdfBuilder {
    fn new(pages: &[&str]) -> PdfBuilder {
        let mut builder = PdfBuilder {
            objects: Vec::new(),
        };
        let page_count = pages.len();
        // 1: catalog, 2: page tree, 3: font, then a page and its content per page.
        let kids: Vec<String> = (0..page_count)
            .map(|i| format!("{} 0 R", 4 + 2 * i))
            .collect();
        builder.add(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(), None);
        builder.add(
            format!(
                "<< /Type /Pages /Kids [{}] /Count {page_count} >>",
                kids.join(" ")
            )
            .into_bytes(),
            None,
        );
        builder.add(
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
                .to_vec(),
            None,
        );
        for (i, text) in pages.iter().enumerate() {
            let content = 5 + 2 * i;
            builder.add(
                format!(
                    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {content} 0 R >>"
                )
                .into_bytes(),
                None,
            );
            builder.add(Vec::new(), Some(page_content(text)));
        }
        builder
    }

    /// Adds an object and returns its number.
    fn add(&mut self, dict: Vec<u8>, stream: Option<Vec<u8>>) -> usize {
        self.objects.push(PdfObject { dict, stream });
        self.objects.len()
    }

    /// The file, with `trailer_extra` added to the trailer dictionary.
    fn finish(self, trailer_extra: Option<&str>) -> Vec<u8> {
        let mut out = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
        let mut offsets = Vec::with_capacity(self.objects.len());
        for (i, object) in self.objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
            match &object.stream {
                Some(data) => {
                    out.extend_from_slice(
                        format!("<< /Length {} >>\nstream\n", data.len()).as_bytes(),
                    );
                    out.extend_from_slice(data);
                    out.extend_from_slice(b"\nendstream");
                }
                None => out.extend_from_slice(&object.dict),
            }
            out.extend_from_slice(b"\nendobj\n");
        }
        let xref = out.len();
        let size = self.objects.len() + 1;
        out.extend_from_slice(format!("xref\n0 {size}\n0000000000 65535 f \n").as_bytes());
        for offset in offsets {
            out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!(
                "trailer\n<< /Size {size} /Root 1 0 R {} >>\nstartxref\n{xref}\n%%EOF\n",
                trailer_extra.unwrap_or("")
            )
            .as_bytes(),
        );
        out
    }
}

/// The content stream drawing `text`, one `BT ... ET` per line.
fn page_content(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let y = 720 - 14 * i as i64;
        out.extend_from_slice(format!("BT /F1 12 Tf 72 {y} Td (").as_bytes());
        out.extend_from_slice(&pdf_string(line));
        out.extend_from_slice(b") Tj ET\n");
    }
    out
}

/// The bytes of a literal string in WinAnsi: `(`, `)` and `\` escaped, bytes
/// past ASCII in octal.
fn pdf_string(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        let byte = match c {
            '\t' | '\r' => b' ',
            ' '..='~' => c as u8,
            '\u{A0}'..='\u{FF}' => c as u32 as u8,
            _ => b'?',
        };
        match byte {
            b'(' | b')' | b'\\' => out.extend_from_slice(&[b'\\', byte]),
            0x80.. => out.extend_from_slice(format!("\\{byte:03o}").as_bytes()),
            _ => out.push(byte),
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The padding string of the standard security handler (PDF 32000-1, 7.6.3.3).
const PASSWORD_PAD: [u8; 32] = [
    0x28, 0xBF, 0x4E, 0x5E, 0x4E, 0x75, 0x8A, 0x41, 0x64, 0x00, 0x4E, 0x56, 0xFF, 0xFA, 0x01, 0x08,
    0x2E, 0x2E, 0x00, 0xB6, 0xD0, 0x68, 0x3E, 0x80, 0x2F, 0x0C, 0xA9, 0xFE, 0x64, 0x53, 0x69, 0x7A,
];

fn padded(password: &[u8]) -> [u8; 32] {
    let mut out = PASSWORD_PAD;
    let n = password.len().min(32);
    out[..n].copy_from_slice(&password[..n]);
    out[n..].copy_from_slice(&PASSWORD_PAD[..32 - n]);
    out
}

/// Algorithm 3, revision 2: the `/O` entry.
fn rc4_owner_entry(owner: &[u8], user: &[u8]) -> Vec<u8> {
    let digest = md5(&padded(owner));
    rc4(&digest[..5], &padded(user))
}

/// Algorithm 2, revision 2: the 40-bit file key.
fn rc4_file_key(user: &[u8], owner_entry: &[u8], permissions: i32, file_id: &[u8]) -> Vec<u8> {
    let mut input = padded(user).to_vec();
    input.extend_from_slice(owner_entry);
    input.extend_from_slice(&permissions.to_le_bytes());
    input.extend_from_slice(file_id);
    md5(&input)[..5].to_vec()
}

/// Algorithm 1: the key for the strings and streams of object `number` (gen 0).
fn object_key(file_key: &[u8], number: u32) -> Vec<u8> {
    let mut input = file_key.to_vec();
    input.extend_from_slice(&number.to_le_bytes()[..3]);
    input.extend_from_slice(&[0, 0]);
    let n = (file_key.len() + 5).min(16);
    md5(&input)[..n].to_vec()
}

fn rc4(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut s: [u8; 256] = std::array::from_fn(|i| i as u8);
    let mut j: u8 = 0;
    for i in 0..256 {
        j = j.wrapping_add(s[i]).wrapping_add(key[i % key.len()]);
        s.swap(i, j as usize);
    }
    let (mut i, mut j) = (0u8, 0u8);
    data.iter()
        .map(|&b| {
            i = i.wrapping_add(1);
            j = j.wrapping_add(s[i as usize]);
            s.swap(i as usize, j as usize);
            b ^ s[s[i as usize].wrapping_add(s[j as usize]) as usize]
        })
        .collect()
}

/// MD5 (RFC 1321), only for the standard security handler above.
fn md5(message: &[u8]) -> [u8; 16] {
    const SHIFTS: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: [u32; 64] =
        std::array::from_fn(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32);
    let mut state: [u32; 4] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476];
    let mut data = message.to_vec();
    data.push(0x80);
    while data.len() % 64 != 56 {
        data.push(0);
    }
    data.extend_from_slice(&((message.len() as u64).wrapping_mul(8)).to_le_bytes());
    for block in data.chunks_exact(64) {
        let m: [u32; 16] = std::array::from_fn(|i| {
            u32::from_le_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ])
        });
        let [mut a, mut b, mut c, mut d] = state;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(SHIFTS[i]));
        }
        state[0] = state[0].wrapping_add(a);
        state[1] = state[1].wrapping_add(b);
        state[2] = state[2].wrapping_add(c);
        state[3] = state[3].wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, word) in state.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&word.to_le_bytes());
    }
    out
}

// ---------------------------------------------------------------------------
// DOCX and XLSX
// ---------------------------------------------------------------------------

const CONTENT_TYPES_START: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>"#;

const DOCX_CONTENT_TYPES: &str = r#"<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;

const DOCX_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>"#;

const W_NS: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";

/// A Word document with one paragraph per entry of `paragraphs`; a `\t` in a
/// paragraph becomes a `w:tab`, a `\n` a `w:br`.
pub fn docx(paragraphs: &[&str]) -> Vec<u8> {
    let mut body = String::new();
    for paragraph in paragraphs {
        body.push_str("<w:p><w:r>");
        let mut run = String::new();
        for c in paragraph.chars() {
            let mark = match c {
                '\t' => "<w:tab/>",
                '\n' => "<w:br/>",
                _ => {
                    run.push(c);
                    continue;
                }
            };
            push_text_run(&mut body, &mut run);
            body.push_str(mark);
        }
        push_text_run(&mut body, &mut run);
        body.push_str("</w:r></w:p>");
    }
    let document = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="{W_NS}"><w:body>{body}<w:sectPr/></w:body></w:document>"#
    );
    docx_with_document(&document)
}

fn push_text_run(body: &mut String, run: &mut String) {
    if !run.is_empty() {
        body.push_str(r#"<w:t xml:space="preserve">"#);
        body.push_str(&escape(run));
        body.push_str("</w:t>");
        run.clear();
    }
}

/// A Word package around `document` as its `word/document.xml`.
pub fn docx_with_document(document: &str) -> Vec<u8> {
    zip_of(&[
        (
            "[Content_Types].xml",
            format!("{CONTENT_TYPES_START}{DOCX_CONTENT_TYPES}").as_bytes(),
        ),
        ("_rels/.rels", DOCX_RELS.as_bytes()),
        ("word/document.xml", document.as_bytes()),
    ])
}

/// A Word document whose body nests `depth` elements inside one another.
pub fn deep_xml_docx(depth: usize) -> Vec<u8> {
    let mut document = format!(r#"<w:document xmlns:w="{W_NS}"><w:body>"#);
    document.push_str(&"<w:p>".repeat(depth));
    document.push_str(&"</w:p>".repeat(depth));
    document.push_str("</w:body></w:document>");
    docx_with_document(&document)
}

/// A Word document whose `word/document.xml` declares entities that expand to
/// a billion copies of "lol" (the "billion laughs").
pub fn entity_docx() -> Vec<u8> {
    let mut document =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE w:document [\n<!ENTITY lol \"lol\">\n");
    for level in 1..=9 {
        let previous = if level == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", level - 1)
        };
        document.push_str(&format!(
            "<!ENTITY lol{level} \"{}\">\n",
            format!("&{previous};").repeat(10)
        ));
    }
    document.push_str(&format!(
        r#"]><w:document xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>"#
    ));
    docx_with_document(&document)
}

/// An Excel workbook with one sheet, `Sheet1`, holding `rows`: cells that look
/// like numbers are stored as numbers, `TRUE` and `FALSE` as booleans, the
/// rest as shared strings; empty cells are left out.
pub fn xlsx(rows: &[Vec<&str>]) -> Vec<u8> {
    xlsx_sheets(&[("Sheet1", rows)])
}

/// An Excel workbook with the given (name, rows) sheets, in that order.
pub fn xlsx_sheets(sheets: &[(&str, &[Vec<&str>])]) -> Vec<u8> {
    let mut shared: Vec<String> = Vec::new();
    let mut parts: Vec<(String, String)> = Vec::new();
    let mut content_types = String::from(CONTENT_TYPES_START);
    content_types.push_str(r#"<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>"#);
    let mut workbook_sheets = String::new();
    let mut rels = String::new();
    for (i, (name, rows)) in sheets.iter().enumerate() {
        let n = i + 1;
        let mut data = String::new();
        for (r, row) in rows.iter().enumerate() {
            data.push_str(&format!(r#"<row r="{}">"#, r + 1));
            for (c, cell) in row.iter().enumerate() {
                if cell.is_empty() {
                    continue;
                }
                let reference = format!("{}{}", column_name(c), r + 1);
                if crate::table::ColumnType::of(cell) == crate::table::ColumnType::Integer
                    || crate::table::ColumnType::of(cell) == crate::table::ColumnType::Number
                {
                    data.push_str(&format!(r#"<c r="{reference}"><v>{}</v></c>"#, cell.trim()));
                } else if cell.eq_ignore_ascii_case("true") || cell.eq_ignore_ascii_case("false") {
                    let v = u8::from(cell.eq_ignore_ascii_case("true"));
                    data.push_str(&format!(r#"<c r="{reference}" t="b"><v>{v}</v></c>"#));
                } else {
                    let index = shared.iter().position(|s| s == cell).unwrap_or_else(|| {
                        shared.push((*cell).to_owned());
                        shared.len() - 1
                    });
                    data.push_str(&format!(r#"<c r="{reference}" t="s"><v>{index}</v></c>"#));
                }
            }
            data.push_str("</row>");
        }
        parts.push((
            format!("xl/worksheets/sheet{n}.xml"),
            format!(
                r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>{data}</sheetData></worksheet>"#
            ),
        ));
        content_types.push_str(&format!(r#"<Override PartName="/xl/worksheets/sheet{n}.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>"#));
        workbook_sheets.push_str(&format!(
            r#"<sheet name="{}" sheetId="{n}" r:id="rId{n}"/>"#,
            escape(name)
        ));
        rels.push_str(&format!(r#"<Relationship Id="rId{n}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet{n}.xml"/>"#));
    }
    content_types.push_str("</Types>");
    rels.push_str(&format!(r#"<Relationship Id="rId{}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>"#, sheets.len() + 1));
    let workbook = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>{workbook_sheets}</sheets></workbook>"#
    );
    let workbook_rels = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{rels}</Relationships>"#
    );
    let strings: String = shared
        .iter()
        .map(|s| format!(r#"<si><t xml:space="preserve">{}</t></si>"#, escape(s)))
        .collect();
    let shared_strings = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="{0}" uniqueCount="{0}">{strings}</sst>"#,
        shared.len()
    );
    let package_rels = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#;

    let mut entries: Vec<(&str, &[u8])> = vec![
        ("[Content_Types].xml", content_types.as_bytes()),
        ("_rels/.rels", package_rels.as_bytes()),
        ("xl/workbook.xml", workbook.as_bytes()),
        ("xl/_rels/workbook.xml.rels", workbook_rels.as_bytes()),
        ("xl/sharedStrings.xml", shared_strings.as_bytes()),
    ];
    for (name, xml) in &parts {
        entries.push((name, xml.as_bytes()));
    }
    zip_of(&entries)
}

/// `A`, `B`, ..., `Z`, `AA`, ... for a zero-based column.
fn column_name(mut column: usize) -> String {
    let mut name = Vec::new();
    loop {
        name.push(b'A' + (column % 26) as u8);
        if column < 26 {
            break;
        }
        column = column / 26 - 1;
    }
    name.reverse();
    String::from_utf8(name).unwrap_or_default()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A zip archive of `entries`, deflated, written with the `zip` crate.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    for (name, data) in entries {
        zip.start_file(*name, options)
            .expect("a zip entry in memory");
        zip.write_all(data).expect("writing to memory");
    }
    zip.finish()
        .expect("finishing a zip in memory")
        .into_inner()
}

// ---------------------------------------------------------------------------
// Zip bomb
// ---------------------------------------------------------------------------

/// The size of the `word/document.xml` of [`zip_bomb_docx`]: 1 GiB of zeros.
pub const ZIP_BOMB_SIZE: u64 = 1 << 30;

/// A Word package whose `word/document.xml` is 1 GiB of zero bytes, deflated to
/// about 6.5 MiB, with honest headers (sizes and CRC). It is built without
/// compressing anything: a deflate stream of zeros repeats itself, so it is
/// written once and copied.
pub fn zip_bomb_docx() -> Vec<u8> {
    let content_types = format!("{CONTENT_TYPES_START}{DOCX_CONTENT_TYPES}");
    raw_zip(&[
        RawEntry::stored("[Content_Types].xml", content_types.as_bytes()),
        RawEntry::stored("_rels/.rels", DOCX_RELS.as_bytes()),
        RawEntry::zeros("word/document.xml", ZIP_BOMB_SIZE),
    ])
}

/// One entry of a zip written by [`raw_zip`].
#[derive(Debug, Clone)]
pub struct RawEntry {
    /// The entry's name.
    pub name: String,
    /// 0 (stored) or 8 (deflated).
    pub method: u16,
    /// The data as written in the archive.
    pub data: Vec<u8>,
    /// The uncompressed size written in the headers.
    pub size: u32,
    /// The CRC-32 written in the headers.
    pub crc: u32,
}

impl RawEntry {
    /// `data` stored uncompressed, with true headers.
    pub fn stored(name: &str, data: &[u8]) -> RawEntry {
        RawEntry {
            name: name.to_owned(),
            method: 0,
            data: data.to_vec(),
            size: data.len() as u32,
            crc: crc32(data),
        }
    }

    /// `len` zero bytes, deflated, with true headers (`len` below 4 GiB).
    pub fn zeros(name: &str, len: u64) -> RawEntry {
        RawEntry {
            name: name.to_owned(),
            method: 8,
            data: deflated_zeros(len),
            size: len as u32,
            crc: crc32_of_zeros(len),
        }
    }
}

/// A zip archive of `entries` exactly as given: headers are not checked, so
/// they can lie.
pub fn raw_zip(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for entry in entries {
        let offset = out.len() as u32;
        let name = entry.name.as_bytes();
        let fields = |out: &mut Vec<u8>| {
            out.extend_from_slice(&20u16.to_le_bytes()); // version needed
            out.extend_from_slice(&0u16.to_le_bytes()); // flags
            out.extend_from_slice(&entry.method.to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes()); // time
            out.extend_from_slice(&0x21u16.to_le_bytes()); // date: 1980-01-01
            out.extend_from_slice(&entry.crc.to_le_bytes());
            out.extend_from_slice(&(entry.data.len() as u32).to_le_bytes());
            out.extend_from_slice(&entry.size.to_le_bytes());
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes()); // extra field length
        };
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        fields(&mut out);
        out.extend_from_slice(name);
        out.extend_from_slice(&entry.data);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // version made by
        fields(&mut central);
        central.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name);
    }
    let central_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // disk numbers
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    out
}

/// Writes bits least significant first, as deflate does.
struct BitWriter {
    out: Vec<u8>,
    bits: u64,
    count: u32,
}

impl BitWriter {
    fn new() -> BitWriter {
        BitWriter {
            out: Vec::new(),
            bits: 0,
            count: 0,
        }
    }

    fn put(&mut self, value: u32, len: u32) {
        self.bits |= u64::from(value) << self.count;
        self.count += len;
        while self.count >= 8 {
            self.out.push(self.bits as u8);
            self.bits >>= 8;
            self.count -= 8;
        }
    }

    /// A Huffman code: its most significant bit goes first.
    fn code(&mut self, code: u32, len: u32) {
        let reversed = code.reverse_bits() >> (32 - len);
        self.put(reversed, len);
    }

    fn aligned(&self) -> bool {
        self.count == 0
    }

    /// A literal zero byte (fixed code 0x30, 8 bits).
    fn zero(&mut self) {
        self.code(0x30, 8);
    }

    /// Length 258 (code 285: 0xC5, 8 bits), distance 1 (code 0, 5 bits).
    fn repeat(&mut self) {
        self.code(0xC5, 8);
        self.code(0, 5);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.count > 0 {
            self.out.push(self.bits as u8);
        }
        self.out
    }
}

/// A raw deflate stream of `len` zero bytes: one block with fixed codes, a zero
/// and then copies of 258 bytes at distance 1. Eight copies take 13 bytes, so
/// once aligned the same 13 bytes repeat.
fn deflated_zeros(len: u64) -> Vec<u8> {
    let mut w = BitWriter::new();
    w.put(1, 1); // the last block
    w.put(1, 2); // fixed Huffman codes
    if len == 0 {
        w.code(0, 7);
        return w.finish();
    }
    w.zero();
    let mut copies = (len - 1) / 258;
    let literals = (len - 1) % 258;
    while copies > 0 && !w.aligned() {
        w.repeat();
        copies -= 1;
    }
    if copies >= 8 {
        let mut unit = BitWriter::new();
        for _ in 0..8 {
            unit.repeat();
        }
        let unit = unit.finish();
        let groups = copies / 8;
        w.out.reserve(unit.len() * groups as usize);
        for _ in 0..groups {
            w.out.extend_from_slice(&unit);
        }
        copies %= 8;
    }
    for _ in 0..copies {
        w.repeat();
    }
    for _ in 0..literals {
        w.zero();
    }
    w.code(0, 7); // end of block
    w.finish()
}

const CRC_POLY: u32 = 0xEDB8_8320;

/// CRC-32 (as zip uses it), bit by bit: for small data.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ CRC_POLY
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `a * b` modulo the CRC polynomial (reflected).
fn mult_mod_p(a: u32, mut b: u32) -> u32 {
    let mut m = 1u32 << 31;
    let mut p = 0u32;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                break;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 {
            (b >> 1) ^ CRC_POLY
        } else {
            b >> 1
        };
    }
    p
}

/// The CRC-32 of `len` zero bytes, without reading them: the register times
/// x^(8·len) modulo the polynomial.
fn crc32_of_zeros(len: u64) -> u32 {
    // x^(2^k) mod p, starting from x^8 (k = 3).
    let mut power = 1u32 << 30; // x^1
    for _ in 0..3 {
        power = mult_mod_p(power, power);
    }
    let mut product = 1u32 << 31; // x^0
    let mut n = len;
    while n > 0 {
        if n & 1 == 1 {
            product = mult_mod_p(power, product);
        }
        power = mult_mod_p(power, power);
        n >>= 1;
    }
    !mult_mod_p(product, !0u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn md5_matches_rfc_1321() {
        assert_eq!(hex(&md5(b"")), "D41D8CD98F00B204E9800998ECF8427E");
        assert_eq!(hex(&md5(b"abc")), "900150983CD24FB0D6963F7D28E17F72");
        assert_eq!(
            hex(&md5(
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            )),
            "57EDF4A22BE3C955AC49DA2E2107B67A"
        );
    }

    #[test]
    fn rc4_matches_a_known_vector() {
        assert_eq!(hex(&rc4(b"Key", b"Plaintext")), "BBF316E8D940AF0AD3");
    }

    #[test]
    fn crc_of_zeros_matches_the_bitwise_crc() {
        for len in [0u64, 1, 7, 258, 1000, 4096] {
            assert_eq!(crc32_of_zeros(len), crc32(&vec![0; len as usize]), "{len}");
        }
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn deflated_zeros_inflate_to_zeros() {
        for len in [1u64, 2, 259, 260, 258 * 9 + 1, 100_000] {
            let zip = raw_zip(&[RawEntry::zeros("z", len)]);
            let mut archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
            let mut data = Vec::new();
            archive.by_index(0).unwrap().read_to_end(&mut data).unwrap();
            assert_eq!(data.len() as u64, len);
            assert!(data.iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn the_zip_bomb_is_small() {
        let bomb = zip_bomb_docx();
        assert!(bomb.len() < 8 << 20, "{}", bomb.len());
        let archive = zip::ZipArchive::new(Cursor::new(bomb)).unwrap();
        let index = archive.index_for_name("word/document.xml").unwrap();
        assert_eq!(archive.by_index_data(index).unwrap().size(), ZIP_BOMB_SIZE);
    }

    #[test]
    fn column_names() {
        assert_eq!(column_name(0), "A");
        assert_eq!(column_name(25), "Z");
        assert_eq!(column_name(26), "AA");
        assert_eq!(column_name(27), "AB");
        assert_eq!(column_name(701), "ZZ");
        assert_eq!(column_name(702), "AAA");
    }
}
