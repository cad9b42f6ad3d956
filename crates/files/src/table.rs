//! Tables: the shape of a CSV file or a sheet, and reading CSV files.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use serde::Serialize;

use crate::extract::{ExtractError, Extracted, Limits, TextOut, io_error};

/// Data rows kept in [`Table::sample`].
pub const SAMPLE_ROWS: usize = 20;

/// The shape of tabular data: its size, header and column types.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    /// Data rows, the header row not counted.
    pub rows: u64,
    /// Columns: the widest row's width.
    pub columns: u64,
    /// The first row's cells, one per column (blank past the header's end).
    pub headers: Vec<String>,
    /// The type of each column, over all its non-empty data cells.
    pub column_types: Vec<ColumnType>,
    /// The first [`SAMPLE_ROWS`] data rows.
    pub sample: Vec<Vec<String>>,
}

/// What a column holds, inferred from every non-empty data cell in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// Whole numbers (`-12`, `42`).
    Integer,
    /// Numbers with a fraction or exponent, or a mix of those and whole numbers.
    Number,
    /// `true` / `false`, in any case.
    Boolean,
    /// `YYYY-MM-DD`, or an ISO 8601 date and time (`2024-03-01T12:30:00Z`).
    Date,
    /// Anything else, or a mix of types.
    Text,
    /// No non-empty cell.
    Empty,
}

impl ColumnType {
    /// The type of one cell's value.
    pub fn of(cell: &str) -> ColumnType {
        let s = cell.trim();
        if s.is_empty() {
            ColumnType::Empty
        } else if is_integer(s) {
            ColumnType::Integer
        } else if is_number(s) {
            ColumnType::Number
        } else if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") {
            ColumnType::Boolean
        } else if is_date(s) {
            ColumnType::Date
        } else {
            ColumnType::Text
        }
    }

    /// The type of a column holding values of types `self` and `other`.
    pub fn merge(self, other: ColumnType) -> ColumnType {
        use ColumnType::*;
        match (self, other) {
            (Empty, t) | (t, Empty) => t,
            (a, b) if a == b => a,
            (Integer, Number) | (Number, Integer) => Number,
            _ => Text,
        }
    }
}

fn is_integer(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A decimal number: digits with at most one point, an optional sign and
/// exponent. Not `inf`, `NaN` or `0x1F`.
fn is_number(s: &str) -> bool {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let mut parts = mantissa.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next().unwrap_or("");
    let digits_ok = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !digits_ok(whole) || !digits_ok(fraction) {
        return false;
    }
    exponent.is_none_or(is_integer)
}

/// `YYYY-MM-DD`, optionally followed by `T` or a space and `HH:MM[:SS[.f+]]`
/// and a zone (`Z`, `+HH:MM`, `-HHMM`).
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 10 || !b[..10].is_ascii() {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r.clone()]
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| s[r].parse().ok())
            .flatten()
    };
    let (Some(_), Some(month), Some(day)) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return false;
    };
    if b[4] != b'-' || b[7] != b'-' || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return false;
    }
    // The first ten bytes are ASCII, so 10 is a char boundary.
    let rest = &s[10..];
    if rest.is_empty() {
        return true;
    }
    let Some(time) = rest.strip_prefix(['T', 't', ' ']) else {
        return false;
    };
    is_time(time)
}

fn is_time(s: &str) -> bool {
    let b = s.as_bytes();
    let two = |at: usize, max: u8| -> bool {
        b.len() >= at + 2
            && b[at].is_ascii_digit()
            && b[at + 1].is_ascii_digit()
            && (b[at] - b'0') * 10 + (b[at + 1] - b'0') <= max
    };
    if !(two(0, 23) && b.get(2) == Some(&b':') && two(3, 59)) {
        return false;
    }
    let mut at = 5;
    if b.get(at) == Some(&b':') {
        if !two(at + 1, 60) {
            return false;
        }
        at += 3;
        if matches!(b.get(at), Some(b'.' | b',')) {
            let digits = b[at + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if digits == 0 {
                return false;
            }
            at += 1 + digits;
        }
    }
    match &b[at..] {
        [] | [b'Z' | b'z'] => true,
        [b'+' | b'-', zone @ ..] => {
            let zone_ok = |z: &[u8]| z.iter().all(u8::is_ascii_digit);
            match zone {
                [_, _] | [_, _, _, _] => zone_ok(zone),
                [h1, h2, b':', m1, m2] => zone_ok(&[*h1, *h2, *m1, *m2]),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Builds a [`Table`] from rows given one at a time, the first being the header.
#[derive(Debug, Default)]
pub(crate) struct TableBuilder {
    headers: Option<Vec<String>>,
    columns: usize,
    rows: u64,
    types: Vec<ColumnType>,
    sample: Vec<Vec<String>>,
}

impl TableBuilder {
    pub(crate) fn push_row(&mut self, cells: &[String]) {
        self.columns = self.columns.max(cells.len());
        let Some(_) = self.headers else {
            self.headers = Some(cells.to_vec());
            return;
        };
        self.rows += 1;
        if self.types.len() < cells.len() {
            self.types.resize(cells.len(), ColumnType::Empty);
        }
        for (ty, cell) in self.types.iter_mut().zip(cells) {
            if *ty != ColumnType::Text {
                *ty = ty.merge(ColumnType::of(cell));
            }
        }
        if self.sample.len() < SAMPLE_ROWS {
            self.sample.push(cells.to_vec());
        }
    }

    /// The table, or `None` when no row was given.
    pub(crate) fn finish(self) -> Option<Table> {
        let mut headers = self.headers?;
        headers.resize(self.columns, String::new());
        let mut column_types = self.types;
        column_types.resize(self.columns, ColumnType::Empty);
        Some(Table {
            rows: self.rows,
            columns: self.columns as u64,
            headers,
            column_types,
            sample: self.sample,
        })
    }
}

/// Reads a CSV file: every row as a line of tab-separated cells, and its
/// [`Table`]. The delimiter is whichever of `,`, `;` and tab is most common in
/// the first line.
pub(crate) fn extract_csv(path: &Path, limits: &Limits) -> Result<Extracted, ExtractError> {
    let mut file = BufReader::new(File::open(path).map_err(io_error)?);
    let mut head = Vec::with_capacity(4096);
    (&mut file)
        .take(64 * 1024)
        .read_to_end(&mut head)
        .map_err(io_error)?;
    let delimiter = sniff_delimiter(&head);
    let reader = head.as_slice().chain(file);
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(reader);

    let mut out = TextOut::new(limits.max_text_bytes);
    let mut builder = TableBuilder::default();
    let mut record = csv::ByteRecord::new();
    let mut cells: Vec<String> = Vec::new();
    let mut count: u64 = 0;
    loop {
        if count.is_multiple_of(1024) {
            limits.check_deadline()?;
        }
        count += 1;
        match csv.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(e)),
        }
        cells.clear();
        cells.extend(
            record
                .iter()
                .map(|cell| String::from_utf8_lossy(cell).into_owned()),
        );
        if count == 1
            && let Some(first) = cells.first_mut()
            && let Some(rest) = first.strip_prefix('\u{feff}')
        {
            *first = rest.to_owned();
        }
        builder.push_row(&cells);
        if !out.is_full() {
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    out.push('\t');
                }
                out.push_str(&cell.replace(['\t', '\n', '\r'], " "));
            }
            out.push('\n');
        }
    }
    let (text, truncated) = out.finish();
    Ok(Extracted {
        text,
        truncated,
        pages: None,
        table: builder.finish(),
        warnings: Vec::new(),
    })
}

fn csv_error(e: csv::Error) -> ExtractError {
    match e.kind() {
        csv::ErrorKind::Io(_) => ExtractError::Corrupt(format!("the file could not be read: {e}")),
        _ => ExtractError::Corrupt(format!("not valid CSV: {e}")),
    }
}

/// The delimiter most common in the first line, outside quotes; `,` on a tie.
fn sniff_delimiter(head: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let mut quoted = false;
    for &b in head {
        match b {
            b'"' => quoted = !quoted,
            b'\n' if !quoted => break,
            b',' if !quoted => counts[0] += 1,
            b';' if !quoted => counts[1] += 1,
            b'\t' if !quoted => counts[2] += 1,
            _ => {}
        }
    }
    let candidates = [b',', b';', b'\t'];
    let mut best = 0;
    for i in 1..3 {
        if counts[i] > counts[best] {
            best = i;
        }
    }
    candidates[best]
}

#[cfg(test)]
mod tests {
    use super::*;
    use ColumnType::*;

    #[test]
    fn cell_types() {
        for (cell, ty) in [
            ("42", Integer),
            ("-7", Integer),
            ("+0", Integer),
            ("3.14", Number),
            ("-.5", Number),
            ("1e10", Number),
            ("2.5E-3", Number),
            ("TRUE", Boolean),
            ("false", Boolean),
            ("2024-03-01", Date),
            ("2024-03-01T12:30:00Z", Date),
            ("2024-03-01 12:30", Date),
            ("2024-03-01T12:30:00.123+02:00", Date),
            ("2024-13-01", Text),
            ("2024-03-01T25:00", Text),
            ("2024-03-01x", Text),
            ("NaN", Text),
            ("inf", Text),
            ("0x1F", Text),
            (".", Text),
            ("1.2.3", Text),
            ("-", Text),
            ("yes", Text),
            ("hello", Text),
            ("   ", Empty),
            ("2024-03-0é", Text),
            ("20\u{fffd}4-01-01", Text),
            ("2024-01-01T1\u{e9}", Text),
        ] {
            assert_eq!(ColumnType::of(cell), ty, "{cell:?}");
        }
    }

    #[test]
    fn column_types_merge() {
        assert_eq!(Integer.merge(Number), Number);
        assert_eq!(Empty.merge(Date), Date);
        assert_eq!(Integer.merge(Boolean), Text);
        assert_eq!(Date.merge(Date), Date);
        assert_eq!(Text.merge(Empty), Text);
    }

    #[test]
    fn table_builder_counts_rows_and_pads_columns() {
        let mut b = TableBuilder::default();
        let row = |cells: &[&str]| cells.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        b.push_row(&row(&["a", "b"]));
        b.push_row(&row(&["1", "x", "extra"]));
        b.push_row(&row(&["2.5"]));
        let t = b.finish().unwrap();
        assert_eq!(t.rows, 2);
        assert_eq!(t.columns, 3);
        assert_eq!(t.headers, ["a", "b", ""]);
        assert_eq!(t.column_types, [Number, Text, Text]);
        assert_eq!(t.sample.len(), 2);
        assert!(TableBuilder::default().finish().is_none());
    }

    #[test]
    fn delimiter_sniffing() {
        assert_eq!(sniff_delimiter(b"a,b,c\n1;2;3;4;5"), b',');
        assert_eq!(sniff_delimiter(b"a;b;\"c,d,e\"\n"), b';');
        assert_eq!(sniff_delimiter(b"a\tb\tc"), b'\t');
        assert_eq!(sniff_delimiter(b"single"), b',');
    }
}
