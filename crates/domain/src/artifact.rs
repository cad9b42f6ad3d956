//! Validated inputs for artifacts: type names, titles, content, sources, and the
//! inputs hash that identifies what a version was built from.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::content::{ContentHash, content_hash};
use crate::{ArtifactId, FieldError};

/// Longest title accepted, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest version note accepted, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;
/// Most sources one version may name.
pub const MAX_SOURCES: usize = 100;

/// An artifact type name such as `intake` or `wave_definition`: lowercase letters,
/// digits and underscores, starting with a letter, at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ArtifactType(String);

impl ArtifactType {
    pub fn parse(value: &str, pointer: &str) -> Result<Self, FieldError> {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value.as_bytes()[0].is_ascii_lowercase()
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(FieldError::new(
                pointer,
                "must be a type name: lowercase letters, digits and _, starting with a letter, at most 64 characters (e.g. `strategy`)",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A non-empty title of at most [`MAX_TITLE_CHARS`] characters, trimmed.
pub fn parse_title(value: &str, pointer: &str) -> Result<String, FieldError> {
    let t = value.trim();
    if t.is_empty() {
        return Err(FieldError::new(pointer, "must not be empty"));
    }
    if t.chars().count() > MAX_TITLE_CHARS {
        return Err(FieldError::new(
            pointer,
            format!("must be at most {MAX_TITLE_CHARS} characters"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(FieldError::new(
            pointer,
            "must not contain control characters",
        ));
    }
    Ok(t.to_owned())
}

/// An optional note of at most [`MAX_NOTE_CHARS`] characters.
pub fn parse_note(value: Option<&str>, pointer: &str) -> Result<Option<String>, FieldError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(n) if n.chars().count() > MAX_NOTE_CHARS => Err(FieldError::new(
            pointer,
            format!("must be at most {MAX_NOTE_CHARS} characters"),
        )),
        Some(n) => Ok(Some(n.to_owned())),
    }
}

/// Artifact content must be a JSON object (a document with named sections).
pub fn check_content(content: &Value, pointer: &str) -> Result<(), FieldError> {
    if content.is_object() {
        Ok(())
    } else {
        Err(FieldError::new(
            pointer,
            "must be a JSON object (the artifact's document)",
        ))
    }
}

/// One exact input of a version: an artifact at a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceRef {
    pub artifact_id: ArtifactId,
    #[schema(minimum = 1)]
    pub version: i64,
}

/// Checks a list of sources: at most [`MAX_SOURCES`], versions ≥ 1, no artifact
/// twice, and not the artifact itself.
pub fn check_sources(
    sources: &[SourceRef],
    own_id: Option<ArtifactId>,
    pointer: &str,
) -> Result<(), FieldError> {
    if sources.len() > MAX_SOURCES {
        return Err(FieldError::new(
            pointer,
            format!("at most {MAX_SOURCES} sources"),
        ));
    }
    for (i, s) in sources.iter().enumerate() {
        if s.version < 1 {
            return Err(FieldError::new(
                format!("{pointer}/{i}/version"),
                "versions start at 1",
            ));
        }
        if Some(s.artifact_id) == own_id {
            return Err(FieldError::new(
                format!("{pointer}/{i}/artifact_id"),
                "an artifact cannot be built from itself",
            ));
        }
        if sources[..i].iter().any(|o| o.artifact_id == s.artifact_id) {
            return Err(FieldError::new(
                format!("{pointer}/{i}/artifact_id"),
                "names an artifact already listed; give each source once",
            ));
        }
    }
    Ok(())
}

/// A source resolved against storage: its type and the content hash of the exact
/// version named.
#[derive(Debug, Clone)]
pub struct ResolvedSource {
    pub source: SourceRef,
    pub artifact_type: String,
    pub content_hash: ContentHash,
}

/// Hash of what a version was built from: its type, the generator parameters and
/// the content hashes of its sources (order-independent).
pub fn inputs_hash(
    artifact_type: &str,
    generator: &Value,
    sources: &[ResolvedSource],
) -> ContentHash {
    let mut inputs: Vec<Value> = sources
        .iter()
        .map(|s| {
            json!({
                "artifact_id": s.source.artifact_id.to_string(),
                "type": s.artifact_type,
                "content_hash": s.content_hash.as_str(),
            })
        })
        .collect();
    inputs.sort_by(|a, b| a["artifact_id"].as_str().cmp(&b["artifact_id"].as_str()));
    content_hash(&json!({
        "type": artifact_type,
        "generator": generator,
        "sources": inputs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names() {
        assert!(ArtifactType::parse("wave_definition", "/type").is_ok());
        for bad in ["", "Strategy", "1x", "a-b", "a b", &"x".repeat(65)] {
            assert!(ArtifactType::parse(bad, "/type").is_err(), "{bad}");
        }
    }

    #[test]
    fn titles_and_notes() {
        assert_eq!(parse_title("  Q3 plan ", "/title").unwrap(), "Q3 plan");
        assert!(parse_title("   ", "/title").is_err());
        assert!(parse_title(&"é".repeat(201), "/title").is_err());
        assert!(parse_title("a\nb", "/title").is_err());
        assert_eq!(parse_note(Some(" "), "/note").unwrap(), None);
        assert!(parse_note(Some(&"x".repeat(2001)), "/note").is_err());
    }

    #[test]
    fn content_must_be_an_object() {
        assert!(check_content(&json!({}), "/content").is_ok());
        assert!(check_content(&json!([1]), "/content").is_err());
        assert!(check_content(&json!("x"), "/content").is_err());
    }

    #[test]
    fn sources_are_checked() {
        let a = ArtifactId::new();
        let b = ArtifactId::new();
        let ok = [
            SourceRef {
                artifact_id: a,
                version: 1,
            },
            SourceRef {
                artifact_id: b,
                version: 3,
            },
        ];
        assert!(check_sources(&ok, None, "/sources").is_ok());
        let dup = [
            SourceRef {
                artifact_id: a,
                version: 1,
            },
            SourceRef {
                artifact_id: a,
                version: 2,
            },
        ];
        assert_eq!(
            check_sources(&dup, None, "/sources").unwrap_err().pointer,
            "/sources/1/artifact_id"
        );
        let zero = [SourceRef {
            artifact_id: a,
            version: 0,
        }];
        assert_eq!(
            check_sources(&zero, None, "/sources").unwrap_err().pointer,
            "/sources/0/version"
        );
        assert!(check_sources(&ok, Some(b), "/sources").is_err());
    }

    #[test]
    fn inputs_hash_depends_on_sources_not_their_order() {
        let mk = |v: i64, h: &str| ResolvedSource {
            source: SourceRef {
                artifact_id: ArtifactId::new(),
                version: v,
            },
            artifact_type: "intake".into(),
            content_hash: ContentHash::from_stored(h.into()),
        };
        let (x, y) = (mk(1, "aa"), mk(2, "bb"));
        let g = json!({});
        let h1 = inputs_hash("strategy", &g, &[x.clone(), y.clone()]);
        assert_eq!(h1, inputs_hash("strategy", &g, &[y.clone(), x.clone()]));
        let mut x2 = x.clone();
        x2.content_hash = ContentHash::from_stored("cc".into());
        assert_ne!(h1, inputs_hash("strategy", &g, &[x2, y.clone()]));
        assert_ne!(h1, inputs_hash("creatives", &g, &[x, y]));
    }
}
