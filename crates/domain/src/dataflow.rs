//! The data flow's rules: from an uploaded file's text to its meaning
//! (summary, entities, keywords) and to the insights drawn from it.
//!
//! - [`Table::from_text`] reads back the table of a CSV or XLSX file from its
//!   extracted text (one row per line, cells separated by tabs, the header
//!   first; an XLSX's first sheet).
//! - [`semantic`] is the template provider's meaning of a text: its keywords
//!   (the most frequent words that are not stop words), its entities
//!   (capitalised names for prose, the columns for a table) and a summary
//!   (its opening sentences, or what the table holds). [`check_semantic`]
//!   reads an LLM's answer in the same fixed shape.
//! - [`insights`] draws an `insights_report` (the `data-flow` pack's type)
//!   from the table's figures (each numeric column's total, mean, range;
//!   outliers beyond three standard deviations; the trend over time when a
//!   date column orders the rows; the most common value of a category
//!   column), the data's quality (empty and mistyped cells) and the meaning.
//!   Every number in it is computed from the file: nothing is canned.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A table read back from extracted text.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Most rows read back for insights.
pub const MAX_ROWS: usize = 200_000;

impl Table {
    /// The table of a CSV (`xlsx == false`) or XLSX file's extracted text;
    /// `None` when it has no header line.
    pub fn from_text(text: &str, xlsx: bool) -> Option<Table> {
        let mut lines = text.lines();
        if xlsx {
            // `# <sheet name>` starts each sheet: read the first one only.
            let first = lines.next()?;
            if !first.starts_with("# ") {
                return Table::from_lines(std::iter::once(first).chain(lines));
            }
            return Table::from_lines(lines.take_while(|l| !l.starts_with("# ")));
        }
        Table::from_lines(lines)
    }

    fn from_lines<'a>(mut lines: impl Iterator<Item = &'a str>) -> Option<Table> {
        let headers: Vec<String> = lines
            .next()?
            .split('\t')
            .map(|h| h.trim().to_owned())
            .collect();
        if headers.iter().all(String::is_empty) {
            return None;
        }
        let rows = lines
            .filter(|l| !l.trim().is_empty())
            .take(MAX_ROWS)
            .map(|l| l.split('\t').map(|c| c.trim().to_owned()).collect())
            .collect();
        Some(Table { headers, rows })
    }

    /// The cells of column `i` (empty where a row is short).
    fn column(&self, i: usize) -> impl Iterator<Item = &str> {
        self.rows
            .iter()
            .map(move |r| r.get(i).map(String::as_str).unwrap_or(""))
    }
}

/// One thing a text names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub name: String,
    /// One of the `semantic_model` schema's entity types.
    #[serde(rename = "type")]
    pub kind: String,
    pub mentions: u32,
}

/// A text's meaning in the fixed shape the data flow hands on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Semantic {
    pub summary: String,
    pub entities: Vec<Entity>,
    pub keywords: Vec<String>,
}

/// The entity types of the `semantic_model` schema.
pub const ENTITY_TYPES: [&str; 10] = [
    "organisation",
    "person",
    "product",
    "location",
    "metric",
    "date",
    "policy",
    "process",
    "concept",
    "other",
];

const STOP_WORDS: [&str; 96] = [
    "about", "above", "after", "again", "against", "also", "among", "and", "another", "any", "are",
    "because", "been", "before", "being", "below", "between", "both", "but", "can", "could",
    "does", "doing", "down", "during", "each", "either", "every", "few", "for", "from", "further",
    "had", "has", "have", "having", "her", "here", "hers", "him", "his", "how", "into", "its",
    "itself", "just", "more", "most", "must", "not", "now", "off", "once", "only", "other", "our",
    "ours", "out", "over", "own", "same", "shall", "she", "should", "some", "such", "than", "that",
    "the", "their", "them", "then", "there", "these", "they", "this", "those", "through", "under",
    "until", "upon", "very", "was", "were", "what", "when", "where", "which", "while", "who",
    "whom", "why", "will", "with", "would", "your",
];

/// Words of a text: letters and digits, lowercase, at least 3 letters long.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 3)
        .map(str::to_lowercase)
}

/// The `n` most frequent words that are not stop words, most frequent first
/// (ties alphabetical).
pub fn keywords(text: &str, n: usize) -> Vec<String> {
    let mut counts: HashMap<String, u32> = HashMap::new();
    for w in words(text) {
        if !STOP_WORDS.contains(&w.as_str()) && !w.chars().all(|c| c.is_ascii_digit()) {
            *counts.entry(w).or_default() += 1;
        }
    }
    let mut ranked: Vec<(String, u32)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.into_iter().take(n).map(|(w, _)| w).collect()
}

/// Capitalised names of a prose text (runs of capitalised words, not only
/// the first word of a sentence), most mentioned first.
fn named_entities(text: &str, n: usize) -> Vec<Entity> {
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for sentence in text.split(['.', '!', '?', '\n', ';', ':']) {
        let tokens: Vec<&str> = sentence.split_whitespace().collect();
        let mut i = 0;
        while i < tokens.len() {
            let capital = |t: &str| {
                let t = t.trim_matches(|c: char| !c.is_alphanumeric());
                t.chars().next().is_some_and(char::is_uppercase)
                    && t.chars().count() > 1
                    && !STOP_WORDS.contains(&t.to_lowercase().as_str())
            };
            if capital(tokens[i]) {
                let start = i;
                while i < tokens.len() && capital(tokens[i]) {
                    i += 1;
                }
                // A lone capitalised first word is how sentences start.
                if !(start == 0 && i - start == 1) {
                    let name: Vec<&str> = tokens[start..i]
                        .iter()
                        .map(|t| t.trim_matches(|c: char| !c.is_alphanumeric()))
                        .collect();
                    *counts.entry(name.join(" ")).or_default() += 1;
                }
            } else {
                i += 1;
            }
        }
    }
    let mut ranked: Vec<(String, u32)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked
        .into_iter()
        .take(n)
        .map(|(name, mentions)| Entity {
            kind: entity_kind(&name),
            name,
            mentions,
        })
        .collect()
}

fn entity_kind(name: &str) -> String {
    let lower = name.to_lowercase();
    let org = [
        "inc",
        "ltd",
        "llc",
        "gmbh",
        "corporation",
        "corp",
        "company",
        "group",
        "sa",
        "plc",
    ];
    if lower.split_whitespace().any(|w| org.contains(&w)) {
        "organisation"
    } else if lower.split_whitespace().count() == 2
        && name
            .split_whitespace()
            .all(|w| w.chars().skip(1).all(char::is_lowercase))
    {
        "person"
    } else {
        "concept"
    }
    .into()
}

/// The template provider's meaning of `text` (see the module docs).
pub fn semantic(text: &str, table: Option<&Table>) -> Semantic {
    match table {
        Some(t) => {
            let stats = profile(t);
            let cols: Vec<String> = stats
                .iter()
                .map(|c| format!("{} ({})", c.name, c.kind.as_str()))
                .collect();
            let mut cell_text = String::new();
            for (i, c) in stats.iter().enumerate() {
                if c.kind == Kind::Text {
                    for v in t.column(i).take(10_000) {
                        cell_text.push_str(v);
                        cell_text.push(' ');
                    }
                }
            }
            Semantic {
                summary: format!(
                    "A table of {} rows and {} columns: {}.",
                    t.rows.len(),
                    t.headers.len(),
                    cols.join(", ")
                ),
                entities: stats
                    .iter()
                    .map(|c| Entity {
                        name: c.name.clone(),
                        kind: match c.kind {
                            Kind::Number => "metric",
                            Kind::Date => "date",
                            _ => "concept",
                        }
                        .into(),
                        mentions: c.filled as u32,
                    })
                    .collect(),
                keywords: keywords(&cell_text, 10),
            }
        }
        None => {
            let sentences: Vec<&str> = text
                .split_inclusive(['.', '!', '?'])
                .map(str::trim)
                .filter(|s| s.split_whitespace().count() >= 3)
                .take(2)
                .collect();
            let mut summary = sentences.join(" ");
            if summary.is_empty() {
                summary = text
                    .split_whitespace()
                    .take(40)
                    .collect::<Vec<_>>()
                    .join(" ");
            }
            let summary: String = summary.chars().take(400).collect();
            Semantic {
                summary: if summary.is_empty() {
                    "The file has no text.".into()
                } else {
                    format!("{summary} ({} words)", text.split_whitespace().count())
                },
                entities: named_entities(text, 15),
                keywords: keywords(text, 12),
            }
        }
    }
}

/// Reads an LLM's answer as a [`Semantic`]: `summary` (a string), `entities`
/// (`name`, `type` among [`ENTITY_TYPES`], optional `mentions`) and
/// `keywords` (strings). The error says what is wrong.
pub fn check_semantic(v: &Value) -> Result<Semantic, String> {
    let summary = v
        .get("summary")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or("`summary` must be a non-empty string")?;
    let mut entities = Vec::new();
    for (i, e) in v
        .get("entities")
        .and_then(Value::as_array)
        .ok_or("`entities` must be a list")?
        .iter()
        .enumerate()
    {
        let name = e
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or(format!("entities[{i}].name must be a non-empty string"))?;
        let kind = e.get("type").and_then(Value::as_str).unwrap_or("other");
        let kind = if ENTITY_TYPES.contains(&kind) {
            kind
        } else {
            "other"
        };
        entities.push(Entity {
            name: name.chars().take(200).collect(),
            kind: kind.into(),
            mentions: e.get("mentions").and_then(Value::as_u64).unwrap_or(1) as u32,
        });
    }
    let keywords = v
        .get("keywords")
        .and_then(Value::as_array)
        .ok_or("`keywords` must be a list")?
        .iter()
        .filter_map(Value::as_str)
        .map(|k| k.chars().take(100).collect())
        .take(50)
        .collect();
    Ok(Semantic {
        summary: summary.chars().take(2000).collect(),
        entities: entities.into_iter().take(100).collect(),
        keywords,
    })
}

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Number,
    Date,
    Boolean,
    Text,
    Empty,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Number => "number",
            Kind::Date => "date",
            Kind::Boolean => "boolean",
            Kind::Text => "text",
            Kind::Empty => "empty",
        }
    }
}

fn number(cell: &str) -> Option<f64> {
    let c = cell.trim().replace([',', '_'], "");
    let c = c.trim_start_matches(['$', '€', '£']).trim_end_matches('%');
    c.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn is_date(cell: &str) -> bool {
    cell.get(..10)
        .is_some_and(|d| crate::dates::parse(d).is_some())
}

/// One column's profile.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub kind: Kind,
    /// Non-empty cells.
    pub filled: usize,
    /// Non-empty cells that do not read as the column's kind.
    pub mistyped: usize,
    pub values: Vec<f64>,
}

/// Each column's kind (the kind most of its non-empty cells read as), its
/// filled and mistyped cells, and its numbers.
pub fn profile(t: &Table) -> Vec<Column> {
    (0..t.headers.len())
        .map(|i| {
            let (mut n, mut d, mut b, mut filled) = (0usize, 0usize, 0usize, 0usize);
            for c in t.column(i) {
                if c.is_empty() {
                    continue;
                }
                filled += 1;
                if number(c).is_some() {
                    n += 1;
                } else if is_date(c) {
                    d += 1;
                } else if matches!(
                    c.to_ascii_lowercase().as_str(),
                    "true" | "false" | "yes" | "no"
                ) {
                    b += 1;
                }
            }
            let kind = if filled == 0 {
                Kind::Empty
            } else if n * 10 >= filled * 8 {
                Kind::Number
            } else if d * 10 >= filled * 8 {
                Kind::Date
            } else if b * 10 >= filled * 8 {
                Kind::Boolean
            } else {
                Kind::Text
            };
            let matching = match kind {
                Kind::Number => n,
                Kind::Date => d,
                Kind::Boolean => b,
                _ => filled,
            };
            let values = if kind == Kind::Number {
                t.column(i).filter_map(number).collect()
            } else {
                Vec::new()
            };
            Column {
                name: if t.headers[i].is_empty() {
                    format!("column {}", i + 1)
                } else {
                    t.headers[i].clone()
                },
                kind,
                filled,
                mistyped: filled - matching,
                values,
            }
        })
        .collect()
}

/// A figure as reports write it: thousands separated, at most two decimals.
pub fn figure(x: f64) -> String {
    let rounded = (x * 100.0).round() / 100.0;
    let negative = rounded < 0.0;
    let abs = rounded.abs();
    let whole = abs.trunc() as u64;
    let frac = ((abs - abs.trunc()) * 100.0).round() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if frac > 0 {
        out.push_str(&format!(".{frac:02}"));
    }
    if negative { format!("-{out}") } else { out }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The share of cells that are filled and read as their column's kind, 0 to
/// 1 (1 for a text without a table).
pub fn data_quality(t: &Table, cols: &[Column]) -> (f64, Vec<String>) {
    let cells = t.rows.len() * t.headers.len();
    if cells == 0 {
        return (0.0, vec!["The table has no rows.".into()]);
    }
    let mut bad = 0usize;
    let mut issues = Vec::new();
    for c in cols {
        let empty = t.rows.len() - c.filled;
        bad += empty + c.mistyped;
        if empty > 0 {
            issues.push(format!(
                "{}: {empty} of {} cells are empty",
                c.name,
                t.rows.len()
            ));
        }
        if c.mistyped > 0 {
            issues.push(format!(
                "{}: {} cells do not read as {}",
                c.name,
                c.mistyped,
                c.kind.as_str()
            ));
        }
    }
    (round2(1.0 - bad as f64 / cells as f64), issues)
}

/// The `insights_report` content for a file (see the module docs).
pub fn insights(
    file_name: &str,
    file_id: &str,
    table: Option<&Table>,
    meaning: &Semantic,
    trace_id: Option<&str>,
) -> Value {
    let mut findings: Vec<Value> = Vec::new();
    let mut metrics: Vec<Value> = Vec::new();
    let mut anomalies: Vec<String> = Vec::new();
    let mut recommendations: Vec<Value> = Vec::new();
    let (score, issues) = match table {
        Some(t) => {
            let cols = profile(t);
            let (score, issues) = data_quality(t, &cols);
            metrics.push(json!({"name": "rows", "value": t.rows.len()}));
            let date_col = cols.iter().position(|c| c.kind == Kind::Date);
            for (i, c) in cols.iter().enumerate() {
                match c.kind {
                    Kind::Number if !c.values.is_empty() => {
                        let n = c.values.len() as f64;
                        let sum: f64 = c.values.iter().sum();
                        let mean = sum / n;
                        let sd =
                            (c.values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
                        let min = c.values.iter().cloned().fold(f64::INFINITY, f64::min);
                        let max = c.values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        metrics.push(
                            json!({"name": format!("{} total", c.name), "value": round2(sum)}),
                        );
                        metrics.push(
                            json!({"name": format!("{} mean", c.name), "value": round2(mean)}),
                        );
                        findings.push(json!({
                            "finding": format!("{} ranges from {} to {}, averaging {}.", c.name, figure(min), figure(max), figure(mean)),
                            "evidence": format!("{} values, total {}.", c.values.len(), figure(sum)),
                            "confidence": if c.values.len() >= 30 { "high" } else { "medium" },
                            "impact": "medium",
                        }));
                        if sd > 0.0 && c.values.len() >= 5 {
                            for (row, cell) in t.column(i).enumerate() {
                                if let Some(v) = number(cell)
                                    && ((v - mean) / sd).abs() > 3.0
                                    && anomalies.len() < 20
                                {
                                    anomalies.push(format!(
                                        "Row {}: {} is {}, more than three standard deviations from its mean of {}.",
                                        row + 2, c.name, figure(v), figure(mean)
                                    ));
                                }
                            }
                        }
                        if let Some(d) = date_col
                            && let Some(trend) = trend(t, d, i)
                        {
                            findings.push(json!({
                                "finding": format!("{} {} over time: {} in the later half against {} in the earlier.",
                                    c.name, if trend.1 > trend.0 { "rose" } else { "fell" }, figure(trend.1), figure(trend.0)),
                                "evidence": format!("Mean of {} by {}, rows ordered by date.", c.name, cols[d].name),
                                "confidence": "medium",
                                "impact": "high",
                            }));
                        }
                    }
                    Kind::Text => {
                        let mut counts: HashMap<&str, usize> = HashMap::new();
                        for v in t.column(i).filter(|v| !v.is_empty()) {
                            *counts.entry(v).or_default() += 1;
                        }
                        if counts.len() > 1 && counts.len() * 2 <= c.filled {
                            let (top, n) = counts
                                .iter()
                                .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                                .map(|(k, v)| (*k, *v))
                                .unwrap_or(("", 0));
                            findings.push(json!({
                                "finding": format!("The most common {} is {} ({} of {} rows).", c.name, top, n, c.filled),
                                "evidence": format!("{} distinct values.", counts.len()),
                                "confidence": "high",
                                "impact": "low",
                            }));
                        }
                    }
                    _ => {}
                }
            }
            (score, issues)
        }
        None => {
            if !meaning.keywords.is_empty() {
                findings.push(json!({
                    "finding": format!("The document is mostly about {}.", meaning.keywords.iter().take(5).cloned().collect::<Vec<_>>().join(", ")),
                    "evidence": "The most frequent words of its text.",
                    "confidence": "medium",
                    "impact": "medium",
                }));
            }
            if !meaning.entities.is_empty() {
                findings.push(json!({
                    "finding": format!("It names {}.", meaning.entities.iter().take(5).map(|e| e.name.clone()).collect::<Vec<_>>().join(", ")),
                    "evidence": format!("{} names found in its text.", meaning.entities.len()),
                    "confidence": "medium",
                    "impact": "low",
                }));
            }
            (1.0, Vec::new())
        }
    };
    if !anomalies.is_empty() {
        recommendations.push(json!({
            "action": "Check the outlying values against their source before relying on the totals.",
            "rationale": format!("{} values lie far from their column's mean.", anomalies.len()),
            "priority": "high",
        }));
    }
    if score < 0.9 {
        recommendations.push(json!({
            "action": "Complete or correct the empty and mistyped cells, then upload the file again.",
            "rationale": format!("Only {:.0}% of the cells are usable.", score * 100.0),
            "priority": if score < 0.5 { "high" } else { "medium" },
        }));
    }
    if findings.is_empty() {
        findings.push(json!({
            "finding": "The file holds too little data to draw findings from.",
            "confidence": "low",
            "impact": "low",
        }));
    }
    metrics.push(json!({"name": "data quality score", "value": score}));
    let mut report = json!({
        "title": format!("Insights from {file_name}").chars().take(200).collect::<String>(),
        "summary": format!("{} {} findings, {} anomalies; data quality {:.0}%.",
            meaning.summary, findings.len(), anomalies.len(), score * 100.0),
        "file_id": file_id,
        "key_findings": findings,
        "metrics": metrics,
        "anomalies": anomalies,
        "recommendations": recommendations,
        "data_quality": {"score": score, "issues": issues},
    });
    if let Some(t) = trace_id {
        report["trace_id"] = t.into();
    }
    report
}

/// The mean of column `value` in the earlier and later halves of the rows
/// ordered by date column `date`; `None` with fewer than 4 dated values.
fn trend(t: &Table, date: usize, value: usize) -> Option<(f64, f64)> {
    let mut points: Vec<(&str, f64)> = t
        .rows
        .iter()
        .filter_map(|r| {
            let d = r.get(date)?.as_str();
            let v = number(r.get(value)?)?;
            is_date(d).then_some((d, v))
        })
        .collect();
    if points.len() < 4 {
        return None;
    }
    points.sort_by(|a, b| a.0.cmp(b.0));
    let half = points.len() / 2;
    let mean = |s: &[(&str, f64)]| s.iter().map(|p| p.1).sum::<f64>() / s.len() as f64;
    let (early, late) = (mean(&points[..half]), mean(&points[half..]));
    (early != late).then_some((round2(early), round2(late)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sales() -> Table {
        let mut text = String::from("region\trevenue\tclosed_on\tnote\n");
        let regions = [
            "north", "south", "north", "east", "north", "south", "north", "west",
        ];
        for (i, r) in regions.iter().enumerate() {
            text.push_str(&format!("{r}\t{}\t2026-0{}-10\tok\n", 100 + i * 10, i + 1));
        }
        text.push_str("north\t99000\t2026-09-10\t\n");
        Table::from_text(&text, false).unwrap()
    }

    #[test]
    fn tables_are_read_back_from_extracted_text() {
        let t = Table::from_text("a\tb\n1\t2\n\n3\t4\n", false).unwrap();
        assert_eq!(t.headers, ["a", "b"]);
        assert_eq!(t.rows.len(), 2);
        let x = Table::from_text("# Sheet1\nx\ty\n1\t2\n# Sheet2\nz\n9\n", true).unwrap();
        assert_eq!(x.headers, ["x", "y"]);
        assert_eq!(x.rows, vec![vec!["1".to_owned(), "2".to_owned()]]);
        assert!(Table::from_text("", false).is_none());
    }

    #[test]
    fn insights_come_from_the_figures() {
        let t = sales();
        let m = semantic("", Some(&t));
        assert!(
            m.summary
                .starts_with("A table of 9 rows and 4 columns: region (text), revenue (number)")
        );
        let r = insights("sales.csv", "fil_1", Some(&t), &m, Some("trace"));
        let total = r["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "revenue total")
            .unwrap();
        // 100 + 110 + ... + 170 = 1080, plus 99000.
        assert_eq!(total["value"], 100_080.0);
        let anomalies = r["anomalies"].as_array().unwrap();
        assert_eq!(
            anomalies.len(),
            0,
            "one outlier in 9 values stays within 3 sd: {anomalies:?}"
        );
        let findings = r["key_findings"].to_string();
        assert!(
            findings.contains("The most common region is north (5 of 9 rows)"),
            "{findings}"
        );
        assert!(findings.contains("revenue rose over time"), "{findings}");
        // One empty note of 36 cells.
        assert_eq!(r["data_quality"]["score"], 0.97);
        assert_eq!(r["trace_id"], "trace");
        assert_eq!(r["file_id"], "fil_1");
    }

    #[test]
    fn outliers_are_anomalies() {
        let mut text = String::from("amount\n");
        for _ in 0..30 {
            text.push_str("10\n");
        }
        text.push_str("11\n9\n5000\n");
        let t = Table::from_text(&text, false).unwrap();
        let r = insights("a.csv", "f", Some(&t), &semantic("", Some(&t)), None);
        let anomalies = r["anomalies"].as_array().unwrap();
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert!(
            anomalies[0]
                .as_str()
                .unwrap()
                .starts_with("Row 34: amount is 5,000")
        );
        assert_eq!(r["recommendations"][0]["priority"], "high");
    }

    #[test]
    fn prose_has_keywords_entities_and_a_summary() {
        let text = "The renewal of Acme Corporation is due in March. Maria Lopez leads the renewal \
                    for Acme Corporation. Pricing and renewal terms follow the Northwind Framework.";
        let m = semantic(text, None);
        assert_eq!(m.keywords[0], "renewal");
        let acme = m
            .entities
            .iter()
            .find(|e| e.name == "Acme Corporation")
            .unwrap();
        assert_eq!(acme.mentions, 2);
        assert_eq!(acme.kind, "organisation");
        assert!(
            m.entities
                .iter()
                .any(|e| e.name == "Maria Lopez" && e.kind == "person")
        );
        assert!(
            m.summary
                .starts_with("The renewal of Acme Corporation is due in March.")
        );
        let r = insights("brief.txt", "f", None, &m, None);
        assert_eq!(r["data_quality"]["score"], 1.0);
        assert!(
            r["key_findings"][0]["finding"]
                .as_str()
                .unwrap()
                .contains("renewal")
        );
    }

    #[test]
    fn llm_answers_are_read_in_the_fixed_shape() {
        let ok = check_semantic(&json!({"summary": "S", "entities": [{"name": "Acme", "type": "organisation"}, {"name": "X", "type": "alien"}], "keywords": ["a", 3]})).unwrap();
        assert_eq!(ok.entities[1].kind, "other");
        assert_eq!(ok.keywords, ["a"]);
        assert!(check_semantic(&json!({"entities": [], "keywords": []})).is_err());
        assert!(check_semantic(&json!({"summary": "S", "entities": {}, "keywords": []})).is_err());
    }

    #[test]
    fn figures_are_grouped() {
        assert_eq!(figure(1_250_000.0), "1,250,000");
        assert_eq!(figure(-12.345), "-12.35");
        assert_eq!(figure(0.5), "0.50");
    }
}
