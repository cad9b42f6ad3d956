//! Hostile bytes through `detect` and `extract`: nothing may panic. A small
//! deterministic generator, so a failure can be replayed.

use waymark_files::fixtures::{self, RawEntry};
use waymark_files::{FileKind, Limits, detect, extract};

use crate::file;

/// xorshift64*: small, deterministic, good enough to make noise.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// `input` with a few bytes changed, inserted, removed, or its end cut off.
    fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + self.below(4) {
            if out.is_empty() {
                break;
            }
            let at = self.below(out.len());
            match self.below(5) {
                0 => out[at] = self.next() as u8,
                1 => out[at] ^= 1 << self.below(8),
                2 => out.insert(at, self.next() as u8),
                3 => {
                    out.remove(at);
                }
                _ => out.truncate(at),
            }
        }
        out
    }
}

/// Runs `bytes` through `detect` and through `extract` as every kind.
fn survive(bytes: &[u8], limits: &Limits) {
    let f = file(bytes);
    let _ = detect(f.path(), "upload.bin", None);
    let _ = detect(f.path(), "upload.json", Some("application/json"));
    for kind in FileKind::ALL {
        let _ = extract(f.path(), kind, limits);
    }
}

fn limits() -> Limits {
    Limits {
        max_text_bytes: 64 * 1024,
        max_uncompressed: 8 << 20,
        ..Limits::default()
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x5EED_0001);
    let limits = limits();
    for _ in 0..150 {
        let len = rng.below(2048);
        let mut bytes = rng.bytes(len);
        // Give some of them a signature, so the deeper readers are reached.
        let prefixes: [&[u8]; 6] = [
            b"%PDF-1.4\n",
            b"PK\x03\x04",
            b"{\"a\":",
            b"\xEF\xBB\xBF",
            b"",
            b"a,b\n",
        ];
        let prefix = prefixes[rng.below(prefixes.len())];
        bytes.splice(0..0, prefix.iter().copied());
        survive(&bytes, &limits);
    }
}

#[test]
fn mutated_pdfs_never_panic() {
    let mut rng = Rng(0x5EED_0002);
    let limits = limits();
    let pdf = fixtures::pdf(&["Some text (with parens)", "second page\nwith two lines"]);
    let encrypted = fixtures::encrypted_pdf();
    for i in 0..120 {
        let base = if i % 4 == 0 { &encrypted } else { &pdf };
        let bytes = rng.mutate(base);
        let f = file(&bytes);
        let _ = extract(f.path(), FileKind::Pdf, &limits);
    }
}

#[test]
fn mutated_office_xml_never_panics() {
    let mut rng = Rng(0x5EED_0003);
    let limits = Limits {
        max_xml_depth: 50,
        ..limits()
    };
    let document = r#"<?xml version="1.0"?><w:document xmlns:w="w"><w:body><w:p><w:r><w:t>Hello &amp; world</w:t><w:tab/><w:br/></w:r></w:p><w:tbl><w:tr><w:tc><w:p><w:r><w:t>cell</w:t></w:r></w:p></w:tc></w:tr></w:tbl></w:body></w:document>"#;
    let workbook = r#"<workbook xmlns:r="r"><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>"#;
    let rels = r#"<Relationships><Relationship Id="rId1" Target="worksheets/sheet1.xml"/></Relationships>"#;
    let strings =
        r#"<sst><si><t>shared</t></si><si><r><t>rich</t></r><rPh><t>ph</t></rPh></si></sst>"#;
    let sheet = r#"<worksheet><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c><c r="C1"><v>2.5</v></c><c r="XFD1" t="b"><v>1</v></c></row><row><c t="inlineStr"><is><t>inline</t></is></c><c r="B2" t="s"><v>99</v></c></row></sheetData></worksheet>"#;
    for _ in 0..150 {
        let docx = fixtures::raw_zip(&[
            RawEntry::stored("[Content_Types].xml", b"<Types/>"),
            RawEntry::stored("word/document.xml", &rng.mutate(document.as_bytes())),
            RawEntry::stored("word/header1.xml", &rng.mutate(document.as_bytes())),
        ]);
        let f = file(&docx);
        let _ = detect(f.path(), "a.docx", None);
        let _ = extract(f.path(), FileKind::Docx, &limits);

        let xlsx = fixtures::raw_zip(&[
            RawEntry::stored("[Content_Types].xml", b"<Types/>"),
            RawEntry::stored("xl/workbook.xml", &rng.mutate(workbook.as_bytes())),
            RawEntry::stored("xl/_rels/workbook.xml.rels", &rng.mutate(rels.as_bytes())),
            RawEntry::stored("xl/sharedStrings.xml", &rng.mutate(strings.as_bytes())),
            RawEntry::stored("xl/worksheets/sheet1.xml", &rng.mutate(sheet.as_bytes())),
        ]);
        let f = file(&xlsx);
        let _ = extract(f.path(), FileKind::Xlsx, &limits);
    }
}

#[test]
fn mutated_zips_never_panic() {
    let mut rng = Rng(0x5EED_0004);
    let limits = limits();
    let docx = fixtures::docx(&["one", "two\tthree"]);
    let xlsx = fixtures::xlsx(&[vec!["a", "1"], vec!["b", "2"]]);
    for i in 0..150 {
        let bytes = rng.mutate(if i % 2 == 0 { &docx } else { &xlsx });
        survive(&bytes, &limits);
    }
}

#[test]
fn mutated_text_never_panics() {
    let mut rng = Rng(0x5EED_0005);
    let limits = limits();
    let csv = "a,b,\"c\"\"d\"\n1,2024-01-01,\"multi\nline\"\n".as_bytes();
    let json = br#"{"a":[1,2,{"b":"\u00e9\n"}],"c":null,"d":true}"#;
    for i in 0..200 {
        let bytes = rng.mutate(if i % 2 == 0 { csv } else { json });
        survive(&bytes, &limits);
    }
}
