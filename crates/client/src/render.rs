//! Human output: compact tables and field blocks, read straight off the server's JSON.

use comfy_table::{Table, presets};
use serde_json::Value;

/// A JSON value as a person would write it: strings without quotes, null as nothing.
pub(crate) fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A table cell: like [`plain`], but an absent value shows as `-`.
fn cell(value: &Value) -> String {
    match plain(value) {
        s if s.is_empty() => "-".to_owned(),
        s => s,
    }
}

/// The `--json` form: the document pretty-printed, one per command.
pub(crate) fn json(value: &Value) -> String {
    let mut out = serde_json::to_string_pretty(value).expect("a Value always serializes");
    out.push('\n');
    out
}

/// A command's answer: the document with `--json`, else `human`'s form of it.
pub(crate) fn output(json: bool, body: &Value, human: fn(&Value) -> String) -> String {
    if json { self::json(body) } else { human(body) }
}

/// A borderless table with the given header and rows.
pub(crate) fn table<R: IntoIterator<Item = String>>(
    header: &[&str],
    rows: impl IntoIterator<Item = R>,
) -> String {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_header(header.iter().copied());
    for row in rows {
        table.add_row(row);
    }
    // Drop the cell padding at the line ends: nobody wants trailing spaces.
    table
        .lines()
        .map(|line| {
            let line = line.strip_prefix(' ').unwrap_or(&line).trim_end();
            format!("{line}\n")
        })
        .collect()
}

/// A list page (`{items, next_cursor}`) as a table of the given fields,
/// followed by how to get the next page when there is one.
pub(crate) fn list(page: &Value, columns: &[&str]) -> String {
    let items = page["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if items.is_empty() {
        return "(none)\n".to_owned();
    }
    let rows = items.iter().map(|item| {
        columns
            .iter()
            .map(|column| cell(&item[*column]))
            .collect::<Vec<_>>()
    });
    let mut out = table(columns, rows);
    if let Some(cursor) = page["next_cursor"].as_str() {
        out.push_str(&format!("more: pass --cursor {cursor} (or --all)\n"));
    }
    out
}

/// Chosen fields of one object, one `name  value` line each.
pub(crate) fn fields(value: &Value, names: &[&str]) -> String {
    let width = names.iter().map(|name| name.len()).max().unwrap_or(0);
    names
        .iter()
        .map(|name| format!("{name:<width$}  {}\n", cell(&value[*name])))
        .collect()
}

/// Artifacts a write made stale (the stale cascade), one `stale:` line each.
pub(crate) fn flagged(value: &Value) -> String {
    let Some(flagged) = value["flagged"].as_array() else {
        return String::new();
    };
    flagged
        .iter()
        .map(|f| {
            format!(
                "stale: {} {}: {}\n",
                f["type"].as_str().unwrap_or("artifact"),
                f["artifact_id"].as_str().unwrap_or_default(),
                f["reason"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// Server warnings (e.g. on create), one `warning:` line each.
pub(crate) fn warnings(value: &Value) -> String {
    let Some(warnings) = value["warnings"].as_array() else {
        return String::new();
    };
    warnings
        .iter()
        .map(|w| match (w["pointer"].as_str(), w["message"].as_str()) {
            (Some(pointer), Some(message)) => format!("warning: {pointer}: {message}\n"),
            (None, Some(message)) => format!("warning: {message}\n"),
            _ => format!("warning: {}\n", plain(w)),
        })
        .collect()
}
