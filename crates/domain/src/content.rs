//! Artifact content: canonical JSON (RFC 8785), content hashes, JSON Patch
//! (RFC 6902) diffs, and the text search indexes ([`searchable_text`]).
//!
//! The content hash is the SHA-256 of the canonical form, so two documents that
//! differ only in key order or number spelling hash the same on every backend:
//!
//! ```
//! use serde_json::json;
//! use waymark_domain::content::content_hash;
//! let a = content_hash(&json!({"b": 1, "a": [1.0, "x"]}));
//! let b = content_hash(&json!({"a": [1, "x"], "b": 1}));
//! assert_eq!(a, b);
//! assert_eq!(a.as_str().len(), 64);
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The SHA-256 of a document's canonical JSON, as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContentHash(String);

impl ContentHash {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps a hash read back from storage.
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }
}

impl std::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The RFC 8785 canonical form of a JSON value.
pub fn canonical_json(value: &Value) -> String {
    // Canonicalization only fails for values serde_json cannot hold anyway
    // (non-finite numbers), so a `Value` always canonicalizes.
    serde_json_canonicalizer::to_string(value)
        .expect("a serde_json::Value always has a canonical form")
}

/// SHA-256 of the canonical JSON of `value`.
pub fn content_hash(value: &Value) -> ContentHash {
    ContentHash(hex::encode(Sha256::digest(
        canonical_json(value).as_bytes(),
    )))
}

/// The RFC 6902 operations that turn `from` into `to`.
pub fn diff(from: &Value, to: &Value) -> Vec<Value> {
    let patch = json_patch::diff(from, to);
    match serde_json::to_value(patch) {
        Ok(Value::Array(ops)) => ops,
        _ => unreachable!("a JSON Patch serializes to an array"),
    }
}

/// Why a patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The operations are not a well-formed RFC 6902 document.
    #[error("not a JSON Patch: {0}")]
    Malformed(String),
    /// An operation failed against the document (missing path, failed test...).
    #[error("patch failed: {0}")]
    Failed(String),
}

/// Applies RFC 6902 operations to a copy of `doc`. All or nothing: on error the
/// caller's document is untouched.
pub fn apply(doc: &Value, ops: &Value) -> Result<Value, PatchError> {
    let patch: json_patch::Patch =
        serde_json::from_value(ops.clone()).map_err(|e| PatchError::Malformed(e.to_string()))?;
    let mut out = doc.clone();
    json_patch::patch(&mut out, &patch).map_err(|e| PatchError::Failed(e.to_string()))?;
    Ok(out)
}

/// At most this many bytes of a document's text are searchable.
pub const SEARCHABLE_TEXT_MAX: usize = 200_000;

/// The text of a document that search indexes: its string values and
/// numbers, in document order, joined by single spaces; keys, booleans and
/// nulls are left out. Capped at [`SEARCHABLE_TEXT_MAX`] bytes (cut at a
/// character boundary), so one huge document cannot make the index or its
/// writes expensive.
///
/// ```
/// use serde_json::json;
/// use waymark_domain::content::searchable_text;
/// let doc = json!({"title": "Q3 plan", "budget": 1200, "done": false, "tags": ["cloud", null]});
/// let text = searchable_text(&doc);
/// assert!(text.contains("Q3 plan") && text.contains("1200") && text.contains("cloud"));
/// assert!(!text.contains("title") && !text.contains("false"));
/// ```
pub fn searchable_text(value: &Value) -> String {
    let mut out = String::new();
    collect_text(value, &mut out);
    truncate_at_char(&mut out, SEARCHABLE_TEXT_MAX);
    out
}

fn collect_text(value: &Value, out: &mut String) {
    if out.len() >= SEARCHABLE_TEXT_MAX {
        return;
    }
    let mut push = |s: &str| {
        let s = s.trim();
        if s.is_empty() {
            return;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(s);
    };
    match value {
        Value::String(s) => push(s),
        Value::Number(n) => push(&n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| collect_text(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_text(v, out)),
        Value::Null | Value::Bool(_) => {}
    }
}

/// Cuts `s` to at most `max` bytes, at a character boundary.
pub fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn hash_ignores_key_order_and_whitespace() {
        let a: Value = serde_json::from_str(r#"{"z": {"y": 2, "x": 1}, "a": "é"}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{ "a":"\u00e9","z":{"x":1,"y":2} }"#).unwrap();
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(content_hash(&a), content_hash(&json!({"a": "e"})));
    }

    #[test]
    fn diff_is_a_patch_from_one_to_the_other() {
        let from = json!({"title": "Q1", "goals": ["a", "b"], "budget": 10});
        let to = json!({"title": "Q2", "goals": ["a"], "owner": "ana"});
        let ops = diff(&from, &to);
        assert!(!ops.is_empty());
        assert_eq!(apply(&from, &Value::Array(ops)).unwrap(), to);
        assert!(diff(&to, &to).is_empty());
    }

    #[test]
    fn failed_patch_leaves_document_alone() {
        let doc = json!({"a": 1});
        let ops =
            json!([{"op": "add", "path": "/b", "value": 2}, {"op": "remove", "path": "/nope"}]);
        assert!(matches!(apply(&doc, &ops), Err(PatchError::Failed(_))));
        assert_eq!(doc, json!({"a": 1}));
        assert!(matches!(
            apply(&doc, &json!({"op": "x"})),
            Err(PatchError::Malformed(_))
        ));
    }

    #[test]
    fn searchable_text_keeps_values_and_skips_keys() {
        let doc = json!({
            "summary": "Move the <b>billing</b> system",
            "phases": [{"name": "discovery", "weeks": 3}, {"name": "waves", "ratio": 0.5}],
            "approved": true,
            "owner": null,
            "empty": "   ",
        });
        let text = searchable_text(&doc);
        for word in [
            "Move the <b>billing</b> system",
            "discovery",
            "3",
            "waves",
            "0.5",
        ] {
            assert!(text.contains(word), "{word} in {text}");
        }
        for key in [
            "summary", "phases", "name", "weeks", "approved", "true", "owner", "null",
        ] {
            assert!(!text.split(' ').any(|w| w == key), "{key} in {text}");
        }
        assert!(!text.contains("  "), "single spaces: {text:?}");
        assert_eq!(searchable_text(&json!("just text")), "just text");
        assert_eq!(searchable_text(&json!(42)), "42");
        assert_eq!(searchable_text(&json!({})), "");
    }

    #[test]
    fn searchable_text_is_capped_at_a_char_boundary() {
        // Three-byte characters do not divide the cap: the cut must move back.
        let big = "€".repeat(SEARCHABLE_TEXT_MAX);
        let text = searchable_text(&json!({"a": big, "b": "after"}));
        assert!(text.len() <= SEARCHABLE_TEXT_MAX);
        assert!(text.len() > SEARCHABLE_TEXT_MAX - 4);
        assert!(text.chars().all(|c| c == '€'));
        let many: Vec<Value> = (0..100_000).map(|i| json!(format!("w{i}"))).collect();
        assert!(searchable_text(&Value::Array(many)).len() <= SEARCHABLE_TEXT_MAX);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            "[a-z]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map("[a-d~/]{1,3}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn diff_applied_to_from_gives_to(from in json_value(), to in json_value()) {
            let ops = diff(&from, &to);
            prop_assert_eq!(apply(&from, &Value::Array(ops)).unwrap(), to);
        }

        #[test]
        fn equal_content_equal_hash(v in json_value()) {
            let reparsed: Value = serde_json::from_str(&serde_json::to_string_pretty(&v).unwrap()).unwrap();
            prop_assert_eq!(content_hash(&v), content_hash(&reparsed));
        }
    }
}
