//! Structured fields from a document's text, without a model: what the
//! template provider answers when no LLM fills a schema from an uploaded
//! file (a contract, a brief).
//!
//! A field is filled from a line that labels it (`Customer name: Acme`,
//! `Notice period (days) - 90`): the label matches the property's name (with
//! `_` read as a space) or its `title`, case and punctuation aside
//! (`Auto-renew` is `auto_renew`). The value
//! is read as the property's type: numbers without their thousands
//! separators and currency signs, integers, booleans (`yes`, `no`, `true`,
//! `false`), dates kept as written when they look like `YYYY-MM-DD`, strings
//! as they are. A `summary` the text does not label is its first sentence.
//! What no line labels is left out, for the schema (and the person) to say
//! what is missing.

use serde_json::{Map, Number, Value};

/// Most characters of a string field.
const MAX_STRING: usize = 2000;

/// Fills what it can of `schema`'s top-level properties from `text`.
pub fn labelled_fields(text: &str, schema: &Value) -> Value {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Value::Object(Map::new());
    };
    let lines: Vec<(String, &str)> = text
        .lines()
        .filter_map(|line| {
            let (label, value) = split_label(line)?;
            Some((normalise(label), value.trim()))
        })
        .collect();
    let mut out = Map::new();
    for (name, prop) in props {
        let mut keys = vec![normalise(name)];
        if let Some(t) = prop.get("title").and_then(Value::as_str) {
            keys.push(normalise(t));
        }
        let found = lines
            .iter()
            .find(|(label, value)| !value.is_empty() && keys.iter().any(|k| k == label));
        let Some((_, raw)) = found else {
            continue;
        };
        if let Some(v) = read_as(raw, prop) {
            out.insert(name.clone(), v);
        }
    }
    if props
        .get("summary")
        .is_some_and(|p| p.get("type").and_then(Value::as_str) == Some("string"))
        && !out.contains_key("summary")
    {
        let sentence = first_sentence(text);
        if !sentence.is_empty() {
            out.insert("summary".into(), Value::String(sentence));
        }
    }
    Value::Object(out)
}

/// `Label: value`, `Label - value` or `Label = value`; the label is at most
/// 80 characters and holds a letter.
fn split_label(line: &str) -> Option<(&str, &str)> {
    let line = line.trim().trim_start_matches(['-', '*', '•']).trim();
    let at = [": ", " - ", " = ", ":\t"]
        .iter()
        .filter_map(|sep| line.find(sep).map(|i| (i, sep.len())))
        .min_by_key(|(i, _)| *i)?;
    let (label, rest) = (&line[..at.0], &line[at.0 + at.1..]);
    (label.len() <= 80 && label.chars().any(char::is_alphabetic)).then_some((label, rest))
}

/// A label or property name as compared: lowercase letters and digits, words
/// separated by one space (`Term (months)` reads as `term months`, like
/// `term_months`).
fn normalise(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            c if c.is_alphanumeric() => out.extend(c.to_lowercase()),
            _ => {
                if !out.ends_with(' ') && !out.is_empty() {
                    out.push(' ');
                }
            }
        }
    }
    out.trim_end().to_owned()
}

fn first_sentence(text: &str) -> String {
    let t = text.trim();
    let end = t
        .char_indices()
        .find(|&(i, c)| {
            matches!(c, '.' | '!' | '?') && t[i + c.len_utf8()..].starts_with([' ', '\n'])
                || c == '\n' && t[i + 1..].starts_with('\n')
        })
        .map_or(t.len(), |(i, c)| i + c.len_utf8());
    t[..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(300)
        .collect()
}

/// The value as the property's type, or `None` when it cannot be read so.
fn read_as(raw: &str, prop: &Value) -> Option<Value> {
    let ty = prop.get("type").and_then(Value::as_str).unwrap_or("string");
    match ty {
        "number" => number(raw).and_then(Number::from_f64).map(Value::Number),
        "integer" => number(raw)
            .filter(|n| n.fract() == 0.0 && n.abs() < 9.0e15)
            .map(|n| Value::from(n as i64)),
        "boolean" => match raw
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase()
            .as_str()
        {
            "yes" | "true" | "y" => Some(Value::Bool(true)),
            "no" | "false" | "n" => Some(Value::Bool(false)),
            _ => None,
        },
        "string" => {
            let s: String = raw.trim().chars().take(MAX_STRING).collect();
            if let Some(options) = prop.get("enum").and_then(Value::as_array) {
                let lower = s.to_lowercase();
                return options
                    .iter()
                    .find(|o| o.as_str().is_some_and(|o| o.to_lowercase() == lower))
                    .cloned();
            }
            if prop.get("format").and_then(Value::as_str) == Some("date") {
                let d = s.get(..10)?;
                return crate::dates::parse(d).map(|_| Value::String(d.to_owned()));
            }
            (!s.is_empty()).then_some(Value::String(s))
        }
        _ => None,
    }
}

/// A number as documents write it: `1,250,000`, `EUR 48,000.50`, `12%`,
/// `90 days`. The first number in the text.
fn number(raw: &str) -> Option<f64> {
    let mut digits = String::new();
    let mut started = false;
    for c in raw.chars() {
        match c {
            '0'..='9' => {
                started = true;
                digits.push(c);
            }
            '-' if !started && digits.is_empty() => digits.push(c),
            '.' if started => digits.push(c),
            ',' | '_' | '\u{a0}' | '\'' if started => {}
            _ if started => break,
            _ => digits.clear(),
        }
    }
    if !started {
        return None;
    }
    digits.trim_end_matches('.').parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "summary": {"type": "string"},
            "customer_name": {"type": "string", "title": "Customer name"},
            "total_contract_value": {"type": "number", "title": "Total contract value"},
            "term_months": {"type": "integer"},
            "auto_renew": {"type": "boolean", "title": "Auto renew"},
            "start_date": {"type": "string", "format": "date"},
            "extraction_confidence": {"type": "string", "enum": ["high", "medium", "low"]},
            "line_items": {"type": "array"}
        }})
    }

    #[test]
    fn labelled_lines_fill_their_fields_as_their_types() {
        let text = "Master services agreement between Northwind and Acme. Signed in Lyon.\n\n\
            Customer name: Acme Corporation\n\
            Total contract value: EUR 1,250,000.50\n\
            Term (months): 36 months\n\
            - Auto-renew: Yes\n\
            Start date = 2026-03-01\n\
            Extraction confidence: High\n\
            Line items: many\n";
        let out = labelled_fields(text, &schema());
        assert_eq!(out["customer_name"], "Acme Corporation");
        assert_eq!(out["total_contract_value"], 1_250_000.5);
        assert_eq!(out["term_months"], 36);
        assert_eq!(out["auto_renew"], true);
        assert_eq!(out["start_date"], "2026-03-01");
        assert_eq!(out["extraction_confidence"], "high");
        assert_eq!(
            out["summary"],
            "Master services agreement between Northwind and Acme."
        );
        // Arrays and objects are the model's to fill.
        assert!(out.get("line_items").is_none());
    }

    #[test]
    fn what_cannot_be_read_as_its_type_is_left_out() {
        let text = "Total contract value: to be agreed\nTerm months: 12.5\nAuto renew: maybe\n\
                    Start date: next spring\nExtraction confidence: certain\n";
        let out = labelled_fields(text, &schema());
        for k in [
            "total_contract_value",
            "term_months",
            "auto_renew",
            "start_date",
            "extraction_confidence",
        ] {
            assert!(out.get(k).is_none(), "{k}: {out}");
        }
    }

    #[test]
    fn numbers_read_like_documents_write_them() {
        assert_eq!(number("USD 48,000"), Some(48000.0));
        assert_eq!(number("-12.5%"), Some(-12.5));
        assert_eq!(number("90 days"), Some(90.0));
        assert_eq!(number("none"), None);
        assert_eq!(normalise("Notice period (days)"), "notice period days");
        assert_eq!(normalise("notice_period_days"), "notice period days");
    }

    #[test]
    fn no_schema_properties_fill_nothing() {
        assert_eq!(labelled_fields("a: b", &json!({})), json!({}));
        assert_eq!(labelled_fields("", &schema()), json!({}));
    }
}
