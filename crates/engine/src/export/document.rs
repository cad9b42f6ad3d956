//! An artifact's content as a document: a flat list of [`Block`]s
//! (headings from keys, fields, paragraphs, lists, tables for arrays of
//! objects), rendered as Markdown here and as PDF by the report's template,
//! which walks the same blocks. Pure: no I/O.

use serde::Serialize;
use serde_json::Value;

/// The deepest heading level content gets (the artifact's title is 1).
const MAX_LEVEL: u8 = 5;
/// Most columns a table of objects gets before its items become sections.
const MAX_COLUMNS: usize = 6;
/// Longest cell a table takes before its items become sections.
const MAX_CELL: usize = 240;

/// One piece of a document.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Block {
    /// A section's heading, level 2 to 5.
    Heading {
        level: u8,
        text: String,
    },
    /// `Label: value`, for a key holding a single value.
    Field {
        label: String,
        text: String,
    },
    Para {
        text: String,
    },
    List {
        items: Vec<String>,
    },
    Table {
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
    },
}

/// `target_audience` → `Target audience`.
pub fn label(key: &str) -> String {
    let spaced: String = key
        .chars()
        .map(|c| if c == '_' || c == '-' { ' ' } else { c })
        .collect();
    let spaced = spaced.trim();
    let mut chars = spaced.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => key.to_owned(),
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// A value as one line of text: arrays joined with commas, objects as
/// `key: value` pairs.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{}: {}", label(k), text(v)))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// The columns and rows of a table of `items` (all objects), or `None` when
/// they read better as sections (too many columns, long cells).
fn table(items: &[Value]) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    let mut keys: Vec<&str> = Vec::new();
    for item in items {
        for k in item.as_object()?.keys() {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
            }
        }
    }
    if keys.is_empty() || keys.len() > MAX_COLUMNS {
        return None;
    }
    let mut rows = Vec::with_capacity(items.len());
    for item in items {
        let obj = item.as_object()?;
        let row: Vec<String> = keys
            .iter()
            .map(|k| obj.get(*k).map(text).unwrap_or_default())
            .collect();
        if row.iter().any(|c| c.chars().count() > MAX_CELL) {
            return None;
        }
        rows.push(row);
    }
    Some((keys.iter().map(|k| label(k)).collect(), rows))
}

/// The title of the `n`th item (1-based) of a list called `name`: its own
/// `name` or `title` when it has one.
fn item_title(name: &str, n: usize, item: &Value) -> String {
    ["name", "title", "label"]
        .iter()
        .find_map(|k| item.get(k).and_then(Value::as_str))
        .filter(|s| !s.trim().is_empty())
        .map(|s| format!("{name}: {s}"))
        .unwrap_or_else(|| format!("{name} {n}"))
}

fn push_array(name: &str, items: &[Value], level: u8, out: &mut Vec<Block>) {
    if items.iter().all(is_scalar) {
        out.push(Block::List {
            items: items.iter().map(text).collect(),
        });
        return;
    }
    if items.iter().all(Value::is_object)
        && let Some((columns, rows)) = table(items)
    {
        out.push(Block::Table { columns, rows });
        return;
    }
    for (i, item) in items.iter().enumerate() {
        out.push(Block::Heading {
            level: level.min(MAX_LEVEL),
            text: item_title(name, i + 1, item),
        });
        push_value(name, item, level + 1, out);
    }
}

fn push_value(name: &str, v: &Value, level: u8, out: &mut Vec<Block>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let l = label(k);
                match v {
                    Value::Array(a) if a.is_empty() => out.push(Block::Field {
                        label: l,
                        text: "—".into(),
                    }),
                    Value::Object(o) if o.is_empty() => out.push(Block::Field {
                        label: l,
                        text: "—".into(),
                    }),
                    v if is_scalar(v) => out.push(Block::Field {
                        label: l,
                        text: text(v),
                    }),
                    v => {
                        out.push(Block::Heading {
                            level: level.min(MAX_LEVEL),
                            text: l.clone(),
                        });
                        push_value(&l, v, level + 1, out);
                    }
                }
            }
        }
        Value::Array(items) => push_array(name, items, level, out),
        Value::Null => {}
        v => out.push(Block::Para { text: text(v) }),
    }
}

/// Content as blocks, its sections starting at heading level 2.
pub fn blocks(content: &Value) -> Vec<Block> {
    let mut out = Vec::new();
    push_value("Item", content, 2, &mut out);
    out
}

/// Text made literal for Markdown: the characters Markdown reads as syntax
/// anywhere are escaped (CommonMark lets any ASCII punctuation be), and at a
/// line's start what would open a list, a quote or a heading; line breaks
/// are kept as hard breaks.
pub fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            out.push_str("  \n");
        }
        let line = line.trim_end_matches('\r');
        let body = line.trim_start();
        out.push_str(&line[..line.len() - body.len()]);
        // A list marker (`-`, `+`, `1.`, `1)`) or a setext underline (`=`).
        let digits = body.chars().take_while(char::is_ascii_digit).count();
        let marker = match body.as_bytes().get(digits) {
            Some(b'.' | b')') if digits > 0 => Some(digits),
            Some(b'-' | b'+' | b'=') if digits == 0 => Some(0),
            _ => None,
        };
        for (j, c) in body.chars().enumerate() {
            if Some(j) == marker
                || matches!(
                    c,
                    '\\' | '`' | '*' | '_' | '{' | '}' | '[' | ']' | '<' | '>' | '#' | '|' | '~'
                )
            {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}

/// One line of Markdown (a heading, a list item, a cell): line breaks become
/// spaces.
fn md_line(s: &str) -> String {
    md_text(&s.replace(['\r', '\n'], " "))
}

/// Blocks as Markdown.
pub fn markdown(blocks: &[Block]) -> String {
    let mut out = String::new();
    for b in blocks {
        match b {
            Block::Heading { level, text } => {
                out.push_str(&"#".repeat(usize::from(*level)));
                out.push(' ');
                out.push_str(&md_line(text));
                out.push_str("\n\n");
            }
            Block::Field { label, text } => {
                out.push_str(&format!("**{}:** {}\n\n", md_line(label), md_text(text)));
            }
            Block::Para { text } => {
                out.push_str(&md_text(text));
                out.push_str("\n\n");
            }
            Block::List { items } => {
                for i in items {
                    out.push_str(&format!("- {}\n", md_line(i)));
                }
                out.push('\n');
            }
            Block::Table { columns, rows } => {
                let row = |cells: &[String]| {
                    let cells: Vec<String> = cells.iter().map(|c| md_line(c)).collect();
                    format!("| {} |\n", cells.join(" | "))
                };
                out.push_str(&row(columns));
                out.push_str(&format!(
                    "|{}\n",
                    columns.iter().map(|_| " --- |").collect::<String>()
                ));
                for r in rows {
                    out.push_str(&row(r));
                }
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_become_labels() {
        assert_eq!(label("target_audience"), "Target audience");
        assert_eq!(label("kpi-dashboard"), "Kpi dashboard");
        assert_eq!(label("éclat"), "Éclat");
    }

    #[test]
    fn content_becomes_headings_fields_lists_and_tables() {
        let content = json!({
            "summary": "Grow leads.",
            "audience": {"segment": "SMB", "regions": ["EU", "US"]},
            "channels": [
                {"name": "LinkedIn", "budget": 1200, "active": true},
                {"name": "Email", "budget": 300, "active": false}
            ],
            "notes": [],
        });
        let b = blocks(&content);
        assert_eq!(
            b,
            vec![
                Block::Field {
                    label: "Summary".into(),
                    text: "Grow leads.".into()
                },
                Block::Heading {
                    level: 2,
                    text: "Audience".into()
                },
                Block::Field {
                    label: "Segment".into(),
                    text: "SMB".into()
                },
                Block::Heading {
                    level: 3,
                    text: "Regions".into()
                },
                Block::List {
                    items: vec!["EU".into(), "US".into()]
                },
                Block::Heading {
                    level: 2,
                    text: "Channels".into()
                },
                Block::Table {
                    columns: vec!["Name".into(), "Budget".into(), "Active".into()],
                    rows: vec![
                        vec!["LinkedIn".into(), "1200".into(), "yes".into()],
                        vec!["Email".into(), "300".into(), "no".into()],
                    ],
                },
                Block::Field {
                    label: "Notes".into(),
                    text: "—".into()
                },
            ]
        );
        let md = markdown(&b);
        assert!(md.contains("**Summary:** Grow leads.\n"), "{md}");
        assert!(md.contains("## Audience\n"), "{md}");
        assert!(md.contains("### Regions\n\n- EU\n- US\n"), "{md}");
        assert!(
            md.contains(
                "| Name | Budget | Active |\n| --- | --- | --- |\n| LinkedIn | 1200 | yes |\n"
            ),
            "{md}"
        );
    }

    #[test]
    fn wide_or_nested_items_become_sections_and_depth_is_capped() {
        let wide: Vec<Value> = (0..2)
            .map(|i| json!({"name": format!("Wave {i}"), "a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6}))
            .collect();
        let b = blocks(&json!({ "waves": wide }));
        assert_eq!(
            b[1],
            Block::Heading {
                level: 3,
                text: "Waves: Wave 0".into()
            }
        );
        let deep = json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": "x"}}}}}}});
        let levels: Vec<u8> = blocks(&deep)
            .iter()
            .filter_map(|b| match b {
                Block::Heading { level, .. } => Some(*level),
                _ => None,
            })
            .collect();
        assert_eq!(levels, [2, 3, 4, 5, 5, 5]);
    }

    #[test]
    fn markdown_escapes_what_could_be_syntax() {
        let b = vec![
            Block::Heading {
                level: 2,
                text: "# not a\nheading".into(),
            },
            Block::Para {
                text: "<script>*x*</script> [a](b)\nnext".into(),
            },
            Block::Table {
                columns: vec!["a|b".into()],
                rows: vec![vec!["c\nd".into()]],
            },
        ];
        let md = markdown(&b);
        assert!(md.contains("## \\# not a heading\n"), "{md}");
        assert!(
            md.contains("\\<script\\>\\*x\\*\\</script\\> \\[a\\](b)  \nnext"),
            "{md}"
        );
        assert!(md.contains("| a\\|b |\n| --- |\n| c d |"), "{md}");
        assert_eq!(
            md_text("- item\n2. two\ne-mail 3.5"),
            "\\- item  \n2\\. two  \ne-mail 3.5"
        );
    }
}
