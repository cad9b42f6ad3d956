//! An artifact's content as a document people read: one section per top-level
//! field, headings for nested records, lists for arrays of values, tables for
//! arrays of flat records. Also the flat lines the side-by-side diff compares.
//!
//! Everything here is pure: JSON in, escaped HTML out. Every string from the
//! content goes through [`esc`].

use std::fmt::Write;

use serde_json::Value;

/// `s` with the five HTML metacharacters escaped, safe in text and in quoted
/// attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A field name as people read it: `target_audience` → `Target audience`.
pub fn humanize(key: &str) -> String {
    let spaced: String = key
        .chars()
        .map(|c| if c == '_' || c == '-' { ' ' } else { c })
        .collect();
    let trimmed = spaced.trim();
    let mut chars = trimmed.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => "(unnamed)".into(),
    }
}

/// One RFC 6901 reference token (`a/b` → `a~1b`).
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A section of the document: a top-level field (or the whole content when it
/// is not an object).
#[derive(Debug, Clone)]
pub struct Section {
    /// Its JSON Pointer (`/goals`), what comments are anchored to.
    pub pointer: String,
    /// An id for the page's anchor (`sec-goals`).
    pub anchor: String,
    pub title: String,
    /// The rendered value, escaped.
    pub html: String,
}

/// The sections of `content`, in its field order.
pub fn sections(content: &Value) -> Vec<Section> {
    match content {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let pointer = format!("/{}", pointer_token(k));
                Section {
                    anchor: anchor_of(&pointer),
                    title: humanize(k),
                    html: render(v, 3),
                    pointer,
                }
            })
            .collect(),
        other => vec![Section {
            pointer: String::new(),
            anchor: "sec-content".into(),
            title: "Content".into(),
            html: render(other, 3),
        }],
    }
}

/// An HTML id for a section: `sec-` and the pointer's characters that are
/// safe in an id, the others as `-`.
pub fn anchor_of(pointer: &str) -> String {
    let mut id = String::from("sec");
    for c in pointer.chars() {
        id.push(if c.is_ascii_alphanumeric() { c } else { '-' });
    }
    id
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// A scalar as text: strings as they are, numbers, `Yes`/`No`, `—` for null.
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::Bool(true) => "Yes".into(),
        Value::Bool(false) => "No".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn paragraphs(text: &str, out: &mut String) {
    let mut any = false;
    for p in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        any = true;
        let _ = write!(out, "<p>{}</p>", esc(p).replace('\n', "<br>"));
    }
    if !any {
        out.push_str("<p class=\"muted\">(empty)</p>");
    }
}

/// Renders a value; `level` is the heading level for nested records (3..=6).
pub fn render(v: &Value, level: u8) -> String {
    let mut out = String::new();
    render_into(v, level.clamp(3, 6), &mut out);
    out
}

fn render_into(v: &Value, level: u8, out: &mut String) {
    match v {
        Value::Null => out.push_str("<p class=\"muted\">—</p>"),
        Value::String(s) => paragraphs(s, out),
        Value::Array(items) if items.is_empty() => out.push_str("<p class=\"muted\">(none)</p>"),
        Value::Array(items) if items.iter().all(is_scalar) => {
            out.push_str("<ul>");
            for i in items {
                let _ = write!(out, "<li>{}</li>", esc(&scalar_text(i)));
            }
            out.push_str("</ul>");
        }
        Value::Array(items) if items.iter().all(is_flat_record) => table(items, out),
        Value::Array(items) => {
            out.push_str("<ol class=\"records\">");
            for item in items {
                out.push_str("<li>");
                render_into(item, (level + 1).min(6), out);
                out.push_str("</li>");
            }
            out.push_str("</ol>");
        }
        Value::Object(map) if map.is_empty() => out.push_str("<p class=\"muted\">(none)</p>"),
        Value::Object(map) => {
            let (flat, nested): (Vec<_>, Vec<_>) = map.iter().partition(|(_, v)| is_scalar(v));
            if !flat.is_empty() {
                out.push_str("<dl class=\"fields\">");
                for (k, v) in flat {
                    let _ = write!(
                        out,
                        "<div><dt>{}</dt><dd>{}</dd></div>",
                        esc(&humanize(k)),
                        esc(&scalar_text(v)).replace('\n', "<br>")
                    );
                }
                out.push_str("</dl>");
            }
            for (k, v) in nested {
                let _ = write!(out, "<h{level}>{}</h{level}>", esc(&humanize(k)));
                render_into(v, (level + 1).min(6), out);
            }
        }
        scalar => {
            let _ = write!(out, "<p>{}</p>", esc(&scalar_text(scalar)));
        }
    }
}

fn is_flat_record(v: &Value) -> bool {
    matches!(v, Value::Object(m) if !m.is_empty() && m.values().all(is_scalar))
}

/// Flat records as a table, with the union of their fields as columns (in the
/// order they first appear).
fn table(items: &[Value], out: &mut String) {
    let mut columns: Vec<&str> = Vec::new();
    for item in items {
        if let Value::Object(m) = item {
            for k in m.keys() {
                if !columns.contains(&k.as_str()) {
                    columns.push(k);
                }
            }
        }
    }
    out.push_str("<div class=\"table-wrap\"><table><thead><tr>");
    for c in &columns {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(&humanize(c)));
    }
    out.push_str("</tr></thead><tbody>");
    for item in items {
        out.push_str("<tr>");
        for c in &columns {
            let cell = item.get(*c).map(scalar_text).unwrap_or_default();
            let _ = write!(out, "<td>{}</td>", esc(&cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
}

/// One line of the flat form the diff compares: where it is, as people read
/// it, and its value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Line {
    pub label: String,
    pub text: String,
}

/// Every scalar of `v` with its path (`Phases › 2 › Name`), in document order.
/// Empty arrays and objects are lines too, so removing every item shows.
pub fn lines(v: &Value) -> Vec<Line> {
    let mut out = Vec::new();
    flatten(v, &mut Vec::new(), &mut out);
    out
}

fn flatten(v: &Value, path: &mut Vec<String>, out: &mut Vec<Line>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                path.push(humanize(k));
                flatten(v, path, out);
                path.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                path.push((i + 1).to_string());
                flatten(v, path, out);
                path.pop();
            }
        }
        Value::Array(_) | Value::Object(_) => out.push(Line {
            label: path.join(" › "),
            text: "(none)".into(),
        }),
        scalar => out.push(Line {
            label: path.join(" › "),
            text: scalar_text(scalar),
        }),
    }
}

/// One row of a side-by-side diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    Same(Line),
    /// Only on the left (removed).
    Removed(Line),
    /// Only on the right (added).
    Added(Line),
    /// Changed in place: the old line and the new.
    Changed(Line, Line),
}

/// A replaced block as rows: lines at the same place (label) side by side as
/// changed, the others removed or added where they fall.
fn pair(old: &[Line], new: &[Line], rows: &mut Vec<Row>) {
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) if o.label == n.label => {
                rows.push(Row::Changed(o.clone(), n.clone()));
                i += 1;
                j += 1;
            }
            (Some(o), Some(n)) if new[j..].iter().any(|l| l.label == o.label) => {
                rows.push(Row::Added(n.clone()));
                j += 1;
            }
            (Some(o), _) => {
                rows.push(Row::Removed(o.clone()));
                i += 1;
            }
            (None, Some(n)) => {
                rows.push(Row::Added(n.clone()));
                j += 1;
            }
            (None, None) => break,
        }
    }
}

/// The side-by-side rows between two contents, in document order.
pub fn diff_rows(from: &Value, to: &Value) -> Vec<Row> {
    use similar::{DiffOp, capture_diff_slices};
    let a = lines(from);
    let b = lines(to);
    let mut rows = Vec::new();
    for op in capture_diff_slices(similar::Algorithm::Myers, &a, &b) {
        match op {
            DiffOp::Equal { old_index, len, .. } => {
                rows.extend(a[old_index..old_index + len].iter().cloned().map(Row::Same))
            }
            DiffOp::Delete {
                old_index, old_len, ..
            } => rows.extend(
                a[old_index..old_index + old_len]
                    .iter()
                    .cloned()
                    .map(Row::Removed),
            ),
            DiffOp::Insert {
                new_index, new_len, ..
            } => rows.extend(
                b[new_index..new_index + new_len]
                    .iter()
                    .cloned()
                    .map(Row::Added),
            ),
            DiffOp::Replace {
                old_index,
                old_len,
                new_index,
                new_len,
            } => {
                pair(
                    &a[old_index..old_index + old_len],
                    &b[new_index..new_index + new_len],
                    &mut rows,
                );
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn markup_in_content_is_text() {
        let content = json!({"<b>key": "<script>alert(1)</script>", "x": ["\"><img src=x onerror=alert(1)>"]});
        let html: String = sections(&content)
            .iter()
            .map(|s| format!("{}{}", esc(&s.title), s.html))
            .collect();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert_eq!(esc("a&'\""), "a&amp;&#39;&quot;");
    }

    #[test]
    fn sections_follow_the_top_level_fields_with_their_pointers() {
        let content =
            json!({"goals": ["grow", "keep"], "a/b": 1, "phases": [{"name": "one", "weeks": 2}]});
        let s = sections(&content);
        assert_eq!(
            s.iter().map(|s| s.pointer.as_str()).collect::<Vec<_>>(),
            ["/goals", "/a~1b", "/phases"]
        );
        assert_eq!(s[0].title, "Goals");
        assert!(s[0].html.starts_with("<ul><li>grow</li>"));
        assert!(s[2].html.contains("<table>"), "{}", s[2].html);
        assert!(s[2].html.contains("<th scope=\"col\">Weeks</th>"));
        assert_eq!(anchor_of("/a~1b"), "sec-a-1b");
        let whole = sections(&json!("just text"));
        assert_eq!(whole[0].pointer, "");
    }

    #[test]
    fn nested_records_get_headings_and_fields() {
        let html = render(
            &json!({"owner": "ana", "budget": {"total": 10, "lines": [{"a": [1]}]}}),
            3,
        );
        assert!(html.contains("<dt>Owner</dt><dd>ana</dd>"), "{html}");
        assert!(html.contains("<h3>Budget</h3>"), "{html}");
        assert!(html.contains("<h4>Lines</h4>"), "{html}");
    }

    #[test]
    fn the_diff_pairs_changes_and_keeps_the_rest() {
        let a = json!({"title": "Plan", "goals": ["grow", "keep"], "owner": "ana"});
        let b = json!({"title": "Plan", "goals": ["grow", "win", "keep"], "owner": "bo"});
        let rows = diff_rows(&a, &b);
        let line = |label: &str, text: &str| Line {
            label: label.into(),
            text: text.into(),
        };
        assert_eq!(
            rows,
            vec![
                Row::Same(line("Title", "Plan")),
                Row::Same(line("Goals › 1", "grow")),
                Row::Changed(line("Goals › 2", "keep"), line("Goals › 2", "win")),
                Row::Added(line("Goals › 3", "keep")),
                Row::Changed(line("Owner", "ana"), line("Owner", "bo")),
            ]
        );
        assert!(diff_rows(&a, &a).iter().all(|r| matches!(r, Row::Same(_))));
        assert_eq!(
            diff_rows(&json!({"x": [1]}), &json!({"x": []})),
            vec![
                Row::Removed(line("X › 1", "1")),
                Row::Added(line("X", "(none)"))
            ]
        );
    }
}
