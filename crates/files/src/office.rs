//! Word (DOCX) and Excel (XLSX) documents: zip archives of XML parts, read with
//! the guarded [`Archive`] and [`XmlStream`].

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use quick_xml::events::Event;

use crate::archive::Archive;
use crate::extract::{ExtractError, Extracted, Limits, TextOut};
use crate::table::TableBuilder;
use crate::xml::{XmlStream, attribute, reference_text};

/// The part holding a Word document's body.
pub(crate) const DOCX_BODY: &str = "word/document.xml";
/// The part listing an Excel workbook's sheets.
pub(crate) const XLSX_WORKBOOK: &str = "xl/workbook.xml";
/// The part every Office Open XML package has.
pub(crate) const CONTENT_TYPES: &str = "[Content_Types].xml";

/// The widest sheet Excel makes: columns `A` to `XFD`.
const MAX_COLUMNS: usize = 16_384;

/// Reads a Word document: the body, then headers, footers, footnotes and
/// endnotes. Paragraphs become lines, tabs and breaks stay, and the cells of a
/// table row become one line of tab-separated cells. A damaged header, footer
/// or note part is left out with a warning; a damaged body is an error.
pub(crate) fn extract_docx(path: &Path, limits: &Limits) -> Result<Extracted, ExtractError> {
    let mut archive = Archive::open(path, limits)?;
    if !archive.contains(DOCX_BODY) {
        return Err(ExtractError::Corrupt(format!(
            "the DOCX has no {DOCX_BODY}"
        )));
    }
    let mut out = TextOut::new(limits.max_text_bytes);
    archive.with_entry(DOCX_BODY, |r| docx_part(r, DOCX_BODY, limits, &mut out))?;

    let mut extra: Vec<String> = archive
        .names()
        .into_iter()
        .filter(|n| {
            let Some(file) = n.strip_prefix("word/") else {
                return false;
            };
            !file.contains('/')
                && file.ends_with(".xml")
                && ["header", "footer", "footnotes", "endnotes"]
                    .iter()
                    .any(|p| file.starts_with(p))
        })
        .collect();
    extra.sort_by_key(|n| natural_key(n));
    let mut warnings = Vec::new();
    for part in &extra {
        if out.is_full() {
            break;
        }
        // A blank line before each part; nothing at all for an empty one.
        let before = out.as_str().len();
        out.push('\n');
        match archive.with_entry(part, |r| docx_part(r, part, limits, &mut out)) {
            Ok(()) => {}
            // A damaged header or footer costs its own text, not the body's.
            Err(ExtractError::Corrupt(why)) => {
                warnings.push(format!("{part} could not be read: {why}"));
                out.shrink_to(before);
            }
            Err(e) => return Err(e),
        }
        if out.as_str()[before..].trim().is_empty() {
            out.shrink_to(before);
        }
    }
    out.trim_end_matches(char::is_whitespace);
    let (mut text, truncated) = out.finish();
    if !text.is_empty() && !truncated {
        text.push('\n');
    }
    Ok(Extracted {
        text,
        truncated,
        pages: None,
        table: None,
        warnings,
    })
}

/// Writes the text of one WordprocessingML part.
fn docx_part(
    input: &mut dyn BufRead,
    part: &str,
    limits: &Limits,
    out: &mut TextOut,
) -> Result<(), ExtractError> {
    let mut xml = XmlStream::new(input, part, limits);
    // Inside a `w:t`, a `w:r`, a table cell, an `mc:Fallback` (which repeats its
    // `mc:Choice`).
    let mut in_text = 0usize;
    let mut in_run = 0usize;
    let mut in_cell = 0usize;
    let mut in_fallback = 0usize;
    loop {
        if out.is_full() {
            return Ok(());
        }
        match xml.next()? {
            Event::Eof => return Ok(()),
            Event::Start(e) => match e.local_name().as_ref() {
                "t" => in_text += 1,
                "r" => in_run += 1,
                "tc" => in_cell += 1,
                "Fallback" => in_fallback += 1,
                name if in_fallback == 0 && in_run > 0 => run_mark(name, in_cell, out),
                _ => {}
            },
            Event::Empty(e) => match e.local_name().as_ref() {
                "p" if in_fallback == 0 => paragraph_end(in_cell, out),
                "tc" if in_fallback == 0 => out.push('\t'),
                name if in_fallback == 0 && in_run > 0 => run_mark(name, in_cell, out),
                _ => {}
            },
            Event::End(e) => match e.local_name().as_ref() {
                "t" => in_text = in_text.saturating_sub(1),
                "r" => in_run = in_run.saturating_sub(1),
                "Fallback" => in_fallback = in_fallback.saturating_sub(1),
                "p" if in_fallback == 0 => paragraph_end(in_cell, out),
                "tc" => {
                    in_cell = in_cell.saturating_sub(1);
                    if in_fallback == 0 {
                        out.trim_end_matches(|c| c == ' ');
                        out.push('\t');
                    }
                }
                "tr" if in_fallback == 0 => {
                    out.trim_end_matches(|c| c == '\t' || c == ' ');
                    out.push(if in_cell > 0 { ' ' } else { '\n' });
                }
                _ => {}
            },
            Event::Text(t) if in_text > 0 && in_fallback == 0 => {
                out.push_str(&t.xml10_content());
            }
            Event::CData(t) if in_text > 0 && in_fallback == 0 => {
                out.push_str(&t.xml10_content());
            }
            Event::GeneralRef(r) if in_text > 0 && in_fallback == 0 => {
                if let Some(s) = reference_text(&r) {
                    out.push_str(&s);
                }
            }
            _ => {}
        }
    }
}

/// A tab or break inside a run.
fn run_mark(name: &str, in_cell: usize, out: &mut TextOut) {
    match name {
        "tab" | "ptab" => out.push('\t'),
        "br" | "cr" => out.push(if in_cell > 0 { ' ' } else { '\n' }),
        "noBreakHyphen" => out.push('-'),
        _ => {}
    }
}

/// The end of a paragraph: a new line, or a space inside a table cell.
fn paragraph_end(in_cell: usize, out: &mut TextOut) {
    if in_cell > 0 {
        if !out.as_str().ends_with([' ', '\t']) {
            out.push(' ');
        }
    } else {
        out.push('\n');
    }
}

/// Reads an Excel workbook: each sheet, in workbook order, as a `# name` line and
/// its rows as lines of tab-separated cells; the [`crate::Table`] of the first
/// sheet, its first row being the header. A damaged sheet is left out with a
/// warning (the table is then the first readable sheet's); a workbook none of
/// whose sheets can be read is an error.
///
/// Cells show their stored values: shared and inline strings, numbers as
/// written (a date is the serial number Excel stores), booleans as `TRUE` and
/// `FALSE`, formulas as their cached result.
pub(crate) fn extract_xlsx(path: &Path, limits: &Limits) -> Result<Extracted, ExtractError> {
    let mut archive = Archive::open(path, limits)?;
    if !archive.contains(XLSX_WORKBOOK) {
        return Err(ExtractError::Corrupt(format!(
            "the XLSX has no {XLSX_WORKBOOK}"
        )));
    }
    let sheets = sheet_order(&mut archive, limits)?;
    let shared = if archive.contains("xl/sharedStrings.xml") {
        archive.with_entry("xl/sharedStrings.xml", |r| {
            shared_strings(r, "xl/sharedStrings.xml", limits)
        })?
    } else {
        Vec::new()
    };

    let mut out = TextOut::new(limits.max_text_bytes);
    let mut warnings = Vec::new();
    let (mut table, mut table_done) = (None, false);
    let (mut read_any, mut failure) = (false, None);
    for (name, part) in &sheets {
        if !archive.contains(part) {
            warnings.push(format!(
                "the sheet \"{name}\" is missing from the file ({part})"
            ));
            continue;
        }
        let first = !table_done;
        if !first && out.is_full() {
            break;
        }
        let before = out.as_str().len();
        if before > 0 {
            out.push('\n');
        }
        out.push_str("# ");
        out.push_str(name);
        out.push('\n');
        let mut builder = TableBuilder::default();
        let read = archive.with_entry(part, |r| {
            sheet_rows(r, part, limits, &shared, |cells| {
                if first {
                    builder.push_row(cells);
                }
                if !out.is_full() {
                    for (i, cell) in cells.iter().enumerate() {
                        if i > 0 {
                            out.push('\t');
                        }
                        out.push_str(&cell.replace(['\t', '\n', '\r'], " "));
                    }
                    out.push('\n');
                }
                first || !out.is_full()
            })
        });
        match read {
            Ok(()) => {}
            // A damaged sheet costs its own text, not the other sheets'.
            Err(ExtractError::Corrupt(why)) => {
                out.shrink_to(before);
                warnings.push(format!("the sheet \"{name}\" could not be read: {why}"));
                failure.get_or_insert(why);
                continue;
            }
            Err(e) => return Err(e),
        }
        read_any = true;
        if first {
            table = builder.finish();
            table_done = true;
        }
    }
    if let (false, Some(why)) = (read_any, failure) {
        return Err(ExtractError::Corrupt(why));
    }
    let (text, truncated) = out.finish();
    Ok(Extracted {
        text,
        truncated,
        pages: None,
        table,
        warnings,
    })
}

/// The sheets as (name, part), in the workbook's order; when the workbook or its
/// relationships cannot say, the `xl/worksheets/sheet*.xml` parts by number.
fn sheet_order(
    archive: &mut Archive,
    limits: &Limits,
) -> Result<Vec<(String, String)>, ExtractError> {
    let listed = archive.with_entry(XLSX_WORKBOOK, |r| {
        let mut xml = XmlStream::new(r, XLSX_WORKBOOK, limits);
        let mut sheets = Vec::new();
        loop {
            match xml.next()? {
                Event::Eof => return Ok(sheets),
                Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == "sheet" => {
                    let name = attribute(&e, "name").unwrap_or_default();
                    if let Some(id) = attribute(&e, "id") {
                        sheets.push((name, id));
                    }
                }
                _ => {}
            }
        }
    })?;
    const RELS: &str = "xl/_rels/workbook.xml.rels";
    let targets: HashMap<String, String> = if archive.contains(RELS) {
        archive.with_entry(RELS, |r| {
            let mut xml = XmlStream::new(r, RELS, limits);
            let mut targets = HashMap::new();
            loop {
                match xml.next()? {
                    Event::Eof => return Ok(targets),
                    Event::Start(e) | Event::Empty(e)
                        if e.local_name().as_ref() == "Relationship" =>
                    {
                        if let (Some(id), Some(target)) =
                            (attribute(&e, "Id"), attribute(&e, "Target"))
                        {
                            targets.insert(id, target);
                        }
                    }
                    _ => {}
                }
            }
        })?
    } else {
        HashMap::new()
    };
    let ordered: Vec<(String, String)> = listed
        .into_iter()
        .filter_map(|(name, id)| {
            let target = targets.get(&id)?;
            let part = match target.strip_prefix('/') {
                Some(absolute) => absolute.to_owned(),
                None => format!("xl/{}", target.trim_start_matches("./")),
            };
            Some((name, part))
        })
        .collect();
    if !ordered.is_empty() {
        return Ok(ordered);
    }
    let mut parts: Vec<String> = archive
        .names()
        .into_iter()
        .filter(|n| n.starts_with("xl/worksheets/sheet") && n.ends_with(".xml"))
        .collect();
    parts.sort_by_key(|n| natural_key(n));
    Ok(parts
        .into_iter()
        .map(|p| {
            let name = p
                .trim_start_matches("xl/worksheets/")
                .trim_end_matches(".xml")
                .to_owned();
            (name, p)
        })
        .collect())
}

/// The shared strings table: the text of each `si`, phonetic runs left out.
fn shared_strings(
    input: &mut dyn BufRead,
    part: &str,
    limits: &Limits,
) -> Result<Vec<String>, ExtractError> {
    let mut xml = XmlStream::new(input, part, limits);
    let mut strings = Vec::new();
    let mut current = String::new();
    let (mut in_si, mut in_text, mut in_phonetic) = (false, 0usize, 0usize);
    loop {
        match xml.next()? {
            Event::Eof => return Ok(strings),
            Event::Start(e) => match e.local_name().as_ref() {
                "si" => {
                    in_si = true;
                    current.clear();
                }
                "t" => in_text += 1,
                "rPh" => in_phonetic += 1,
                _ => {}
            },
            Event::Empty(e) if e.local_name().as_ref() == "si" => strings.push(String::new()),
            Event::End(e) => match e.local_name().as_ref() {
                "si" => {
                    in_si = false;
                    strings.push(std::mem::take(&mut current));
                }
                "t" => in_text = in_text.saturating_sub(1),
                "rPh" => in_phonetic = in_phonetic.saturating_sub(1),
                _ => {}
            },
            Event::Text(t) if in_si && in_text > 0 && in_phonetic == 0 => {
                current.push_str(&t.xml10_content());
            }
            Event::GeneralRef(r) if in_si && in_text > 0 && in_phonetic == 0 => {
                if let Some(s) = reference_text(&r) {
                    current.push_str(&s);
                }
            }
            _ => {}
        }
    }
}

/// Calls `row` with the cells of each row of a worksheet part, gaps filled with
/// empty cells. Stops when `row` returns false.
fn sheet_rows(
    input: &mut dyn BufRead,
    part: &str,
    limits: &Limits,
    shared: &[String],
    mut row: impl FnMut(&[String]) -> bool,
) -> Result<(), ExtractError> {
    let mut xml = XmlStream::new(input, part, limits);
    let mut cells: Vec<String> = Vec::new();
    let mut in_row = false;
    // The cell being read: its column, type and value.
    let mut column = 0usize;
    let mut cell_type = String::new();
    let mut value = String::new();
    let (mut in_cell, mut in_value, mut in_inline, mut in_phonetic) =
        (false, false, 0usize, 0usize);
    loop {
        match xml.next()? {
            Event::Eof => return Ok(()),
            Event::Start(e) => match e.local_name().as_ref() {
                "row" => {
                    in_row = true;
                    cells.clear();
                }
                "c" if in_row => {
                    in_cell = true;
                    column = attribute(&e, "r")
                        .and_then(|r| column_of(&r))
                        .unwrap_or(cells.len());
                    cell_type = attribute(&e, "t").unwrap_or_default();
                    value.clear();
                }
                "v" if in_cell => in_value = true,
                "is" if in_cell => in_inline += 1,
                "rPh" => in_phonetic += 1,
                _ => {}
            },
            Event::Empty(e) if e.local_name().as_ref() == "row" => {
                cells.clear();
                if !row(&cells) {
                    return Ok(());
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                "row" if in_row => {
                    in_row = false;
                    if !row(&cells) {
                        return Ok(());
                    }
                }
                "c" if in_cell => {
                    in_cell = false;
                    let text = cell_text(&cell_type, &value, shared);
                    if !text.is_empty() && column < MAX_COLUMNS {
                        if column >= cells.len() {
                            cells.resize(column, String::new());
                            cells.push(text);
                        } else {
                            cells[column] = text;
                        }
                    }
                }
                "v" => in_value = false,
                "is" => in_inline = in_inline.saturating_sub(1),
                "rPh" => in_phonetic = in_phonetic.saturating_sub(1),
                _ => {}
            },
            Event::Text(t) if in_value || (in_inline > 0 && in_phonetic == 0) => {
                value.push_str(&t.xml10_content());
            }
            Event::GeneralRef(r) if in_value || (in_inline > 0 && in_phonetic == 0) => {
                if let Some(s) = reference_text(&r) {
                    value.push_str(&s);
                }
            }
            _ => {}
        }
    }
}

/// What a cell shows, from its type attribute and raw value.
fn cell_text(cell_type: &str, value: &str, shared: &[String]) -> String {
    match cell_type {
        "s" => value
            .trim()
            .parse::<usize>()
            .ok()
            .and_then(|i| shared.get(i))
            .cloned()
            .unwrap_or_default(),
        "b" => match value.trim() {
            "1" => "TRUE".to_owned(),
            "0" => "FALSE".to_owned(),
            other => other.to_owned(),
        },
        _ => value.to_owned(),
    }
}

/// The zero-based column of a cell reference such as `B7` or `AA12`.
fn column_of(reference: &str) -> Option<usize> {
    let letters: &str = &reference[..reference
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(reference.len())];
    if letters.is_empty() || letters.len() > 3 {
        return None;
    }
    let column = letters.bytes().fold(0usize, |n, b| {
        n * 26 + usize::from(b.to_ascii_uppercase() - b'A') + 1
    });
    Some(column - 1)
}

/// A sort key that orders `sheet2` before `sheet10`.
fn natural_key(name: &str) -> (String, u64) {
    let digits_at = name
        .trim_end_matches(".xml")
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    let stem = name.trim_end_matches(".xml");
    let number = stem[digits_at..].parse().unwrap_or(0);
    (stem[..digits_at].to_owned(), number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_references() {
        assert_eq!(column_of("A1"), Some(0));
        assert_eq!(column_of("b7"), Some(1));
        assert_eq!(column_of("AA12"), Some(26));
        assert_eq!(column_of("XFD1"), Some(16_383));
        assert_eq!(column_of("ABCD1"), None);
        assert_eq!(column_of("12"), None);
        assert_eq!(column_of(""), None);
    }

    #[test]
    fn natural_order() {
        let mut names = vec![
            "xl/worksheets/sheet10.xml",
            "xl/worksheets/sheet2.xml",
            "xl/worksheets/sheet1.xml",
        ];
        names.sort_by_key(|n| natural_key(n));
        assert_eq!(
            names,
            [
                "xl/worksheets/sheet1.xml",
                "xl/worksheets/sheet2.xml",
                "xl/worksheets/sheet10.xml"
            ]
        );
    }

    fn docx_text(xml: &str) -> String {
        let mut out = TextOut::new(1 << 20);
        docx_part(
            &mut xml.as_bytes(),
            "word/document.xml",
            &Limits::default(),
            &mut out,
        )
        .unwrap();
        out.finish().0
    }

    #[test]
    fn docx_paragraphs_tabs_breaks_and_tables() {
        let xml = r#"<w:document xmlns:w="w"><w:body>
<w:p><w:pPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr><w:r><w:t>Hello</w:t></w:r><w:r><w:tab/><w:t xml:space="preserve">world &amp; more</w:t><w:br/><w:t>next</w:t></w:r></w:p>
<w:p/>
<w:tbl><w:tr><w:tc><w:p><w:r><w:t>a</w:t></w:r></w:p><w:p><w:r><w:t>b</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>c</w:t></w:r></w:p></w:tc></w:tr>
<w:tr><w:tc><w:p/></w:tc><w:tc><w:p><w:r><w:t>d</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
<w:p><w:r><w:delText>gone</w:delText><w:instrText>PAGE</w:instrText><w:t>kept&#233;</w:t></w:r></w:p>
<w:p><mc:AlternateContent xmlns:mc="mc"><mc:Choice><w:r><w:t>box</w:t></w:r></mc:Choice><mc:Fallback><w:r><w:t>box</w:t></w:r></mc:Fallback></mc:AlternateContent></w:p>
</w:body></w:document>"#;
        assert_eq!(
            docx_text(xml),
            "Hello\tworld & more\nnext\n\na b\tc\n\td\nkepté\nbox\n"
        );
    }
}
