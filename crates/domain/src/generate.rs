//! Generation jobs: what a job of a generation plan writes, and from what.
//!
//! A job writes one section of its module's artifact (the field named after the
//! job key) plus the artifact's `summary`, keeping the sections other jobs wrote.
//! The deterministic `template` provider renders the pack's content template,
//! filling each `{{placeholder}}` from the first same-named field found in the
//! sources. A job's inputs hash covers its artifact type, its generator (the
//! pack's generator fingerprint and the job key) and its sources' content hashes,
//! so an unchanged hash means the job is up to date.

use serde_json::{Map, Value, json};

/// What a placeholder becomes when no source has a field of its name.
pub const MISSING: &str = "To be confirmed";

/// The generator part of a job's inputs hash: the type's generator fingerprint
/// and the job it runs.
pub fn job_generator(fingerprint: &Value, job_key: &str) -> Value {
    json!({"generator": fingerprint, "job": job_key})
}

/// Renders a content template: every `{{name}}` in every string becomes the
/// first field called `name` found in `sources` (searched in order, each depth
/// first in document order). Strings stay as they are, numbers and booleans are
/// written out, lists of those are joined with `, `; objects and nulls are not
/// used. A name nowhere to be found becomes [`MISSING`].
pub fn render_template(template: &Value, sources: &[&Value]) -> Value {
    match template {
        Value::String(s) => Value::String(render_str(s, sources)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| render_template(v, sources)).collect())
        }
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), render_template(v, sources)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn render_str(s: &str, sources: &[&Value]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        let name = rest[start + 2..start + 2 + len].trim();
        out.push_str(&rest[..start]);
        if is_name(name) {
            out.push_str(&lookup(name, sources).unwrap_or_else(|| MISSING.to_owned()));
        } else {
            out.push_str(&rest[start..start + 4 + len]);
        }
        rest = &rest[start + 4 + len..];
    }
    out.push_str(rest);
    out
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The first usable field called `name` in `sources`, written as text.
pub fn lookup(name: &str, sources: &[&Value]) -> Option<String> {
    sources.iter().find_map(|s| find(name, s))
}

fn find(name: &str, v: &Value) -> Option<String> {
    match v {
        Value::Object(fields) => {
            if let Some(text) = fields.get(name).and_then(as_text) {
                return Some(text);
            }
            fields.values().find_map(|child| find(name, child))
        }
        Value::Array(items) => items.iter().find_map(|child| find(name, child)),
        _ => None,
    }
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) if !items.is_empty() => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|i| match i {
                    Value::Array(_) | Value::Object(_) | Value::Null => None,
                    scalar => as_text(scalar),
                })
                .collect();
            parts.map(|p| p.join(", "))
        }
        _ => None,
    }
}

/// The content a job writes: `previous` (the artifact's latest content, if
/// any) with `summary` and the job's own section taken from `generated`. When
/// `generated` has no field named after the job, all of its fields are taken.
pub fn merge_section(previous: Option<&Value>, generated: &Value, job_key: &str) -> Value {
    let mut out: Map<String, Value> = previous
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let Some(fields) = generated.as_object() else {
        return Value::Object(out);
    };
    if fields.contains_key(job_key) {
        for key in ["summary", job_key] {
            if let Some(v) = fields.get(key) {
                out.insert(key.to_owned(), v.clone());
            }
        }
    } else {
        for (k, v) in fields {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// The instructions sent to an LLM for one job: the pack's prompt, the job, the
/// sources and the artifact as it stands.
pub fn job_prompt(
    pack_prompt: &str,
    job_key: &str,
    job_name: &str,
    sources: &[(String, &Value)],
    previous: Option<&Value>,
) -> String {
    let mut p = String::with_capacity(pack_prompt.len() + 1024);
    p.push_str(pack_prompt.trim());
    p.push_str("\n\n## This request\n\n");
    p.push_str(&format!(
        "Write the section `{job_key}` ({job_name}) and `summary` only; answer one JSON \
         object with those two fields.\n"
    ));
    for (ty, content) in sources {
        p.push_str(&format!("\n## Source: {ty}\n\n```json\n{content}\n```\n"));
    }
    if let Some(prev) = previous {
        p.push_str(&format!(
            "\n## The artifact as it stands (keep it consistent)\n\n```json\n{prev}\n```\n"
        ));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_take_the_first_field_of_their_name() {
        let intake = json!({
            "client_identity": {"client_name": "Northwind", "industry": "tech"},
            "offer": {"competitors": ["A", "B"], "price": 390, "nested": {"client_name": "later"}},
        });
        let strategy = json!({"summary": "s", "client_name": "from strategy"});
        let t = json!({
            "title": "{{client_name}} in {{ industry }}",
            "list": ["{{competitors}}", "{{price}}"],
            "missing": "{{nowhere}}",
            "odd": "{{not a name}} and {{unclosed",
            "n": 3,
        });
        let out = render_template(&t, &[&intake, &strategy]);
        assert_eq!(out["title"], "Northwind in tech");
        assert_eq!(out["list"], json!(["A, B", "390"]));
        assert_eq!(out["missing"], MISSING);
        assert_eq!(out["odd"], "{{not a name}} and {{unclosed");
        assert_eq!(out["n"], 3);
        // The first source wins over later ones.
        let out = render_template(&json!("{{client_name}}"), &[&strategy, &intake]);
        assert_eq!(out, "from strategy");
    }

    #[test]
    fn objects_and_nulls_are_not_placeholder_values() {
        let src = json!({"a": {"x": null}, "b": {"x": {"deep": 1}}, "c": [{"x": "found"}]});
        assert_eq!(lookup("x", &[&src]).as_deref(), Some("found"));
        assert_eq!(lookup("deep", &[&src]).as_deref(), Some("1"));
        assert_eq!(lookup("a", &[&src]), None);
    }

    #[test]
    fn a_job_writes_summary_and_its_section_keeping_the_others() {
        let prev = json!({"summary": "old", "icp_definition": {"a": 1}});
        let generated =
            json!({"summary": "new", "positioning": {"b": 2}, "icp_definition": {"z": 0}});
        let out = merge_section(Some(&prev), &generated, "positioning");
        assert_eq!(
            out,
            json!({"summary": "new", "icp_definition": {"a": 1}, "positioning": {"b": 2}})
        );
        // Without a section of its name, the job takes everything.
        let out = merge_section(None, &json!({"summary": "x", "other": 1}), "pdf");
        assert_eq!(out, json!({"summary": "x", "other": 1}));
    }

    #[test]
    fn the_job_key_is_part_of_the_generator() {
        let fp = json!({"parameters": {"t": 0.3}});
        assert_ne!(job_generator(&fp, "a"), job_generator(&fp, "b"));
        assert_eq!(job_generator(&fp, "a"), job_generator(&fp, "a"));
    }

    #[test]
    fn the_prompt_names_the_job_and_carries_the_sources() {
        let intake = json!({"client_name": "N"});
        let p = job_prompt(
            "# Strategy",
            "positioning",
            "Positioning",
            &[("intake".into(), &intake)],
            None,
        );
        assert!(p.starts_with("# Strategy"));
        assert!(p.contains("`positioning` (Positioning)"));
        assert!(p.contains("## Source: intake") && p.contains("\"client_name\":\"N\""));
    }
}
