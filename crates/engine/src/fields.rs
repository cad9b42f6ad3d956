//! Structured fields from a document: an uploaded file's text turned into
//! JSON that fits a schema (a pack type's, such as `renewal`'s
//! `contract_analysis`, or one sent with the request).
//!
//! The LLM provider is asked first. Its answer is checked against the
//! schema; when it does not fit, it is asked once more with the errors, and
//! refused with them if the second answer does not fit either. With no
//! provider, or when the provider fails, the template provider answers
//! ([`waymark_domain::fields::labelled_fields`]: the document's labelled
//! lines), checked the same way.

use serde_json::Value;
use waymark_domain::FieldError;
use waymark_llm::{Llm, Prompt, Turn, json_object};

/// Most characters of the document sent to the provider.
pub const MAX_DOCUMENT_CHARS: usize = 60_000;

/// What is asked.
pub struct FieldsRequest<'a> {
    /// The schema the answer must fit.
    pub schema: &'a Value,
    /// Checks an answer against the schema: its errors (none: it fits).
    pub check: &'a (dyn Fn(&Value) -> Vec<FieldError> + Sync),
    /// The document's text.
    pub text: &'a str,
    /// The document's name, for the prompt.
    pub name: &'a str,
    /// Guidance for the model beyond the schema (a pack's prompt), if any.
    pub guidance: Option<&'a str>,
    /// Values set on every answer before it is checked (the file's id).
    pub fixed: serde_json::Map<String, Value>,
}

/// An answer that fits the schema.
#[derive(Debug, Clone)]
pub struct Filled {
    pub content: Value,
    /// `ollama:<model>`, `openai:<model>` or `template`.
    pub provenance: String,
    /// How many answers the provider gave (1 or 2; 0 for the template).
    pub attempts: u32,
    /// Why the template answered instead of a provider, if it did.
    pub fallback: Option<String>,
}

/// No answer fit the schema.
#[derive(Debug, Clone)]
pub struct NotFilled {
    pub provenance: String,
    pub attempts: u32,
    /// The last answer's errors.
    pub errors: Vec<FieldError>,
    pub fallback: Option<String>,
}

/// Fills the schema from the document (see the module docs).
pub async fn fill(llm: &Llm, req: &FieldsRequest<'_>) -> Result<Filled, NotFilled> {
    let fallback = if llm.settings().is_some() {
        match ask(llm, req).await {
            Ok(done) => return done,
            Err(why) => Some(why),
        }
    } else {
        None
    };
    let mut content = waymark_domain::fields::labelled_fields(req.text, req.schema);
    with_fixed(&mut content, &req.fixed);
    let errors = (req.check)(&content);
    if errors.is_empty() {
        Ok(Filled {
            content,
            provenance: "template".into(),
            attempts: 0,
            fallback,
        })
    } else {
        Err(NotFilled {
            provenance: "template".into(),
            attempts: 0,
            errors,
            fallback,
        })
    }
}

fn with_fixed(content: &mut Value, fixed: &serde_json::Map<String, Value>) {
    if let Value::Object(map) = content {
        for (k, v) in fixed {
            map.insert(k.clone(), v.clone());
        }
    }
}

/// Asks the provider (twice at most). `Err`: the provider gave no answer at
/// all (the template answers instead), with why.
async fn ask(llm: &Llm, req: &FieldsRequest<'_>) -> Result<Result<Filled, NotFilled>, String> {
    let document: String = req.text.chars().take(MAX_DOCUMENT_CHARS).collect();
    let schema = serde_json::to_string_pretty(req.schema).unwrap_or_default();
    let mut user = format!(
        "Extract the fields of this JSON Schema from the document below.\n\n\
         Schema:\n```json\n{schema}\n```\n\n"
    );
    if let Some(g) = req.guidance {
        user.push_str(&format!("Guidance:\n{g}\n\n"));
    }
    user.push_str(&format!(
        "Fill every field the document states; leave out what it does not say; never \
         invent values. Answer with one JSON object that fits the schema and nothing else.\n\n\
         Document ({}):\n\"\"\"\n{document}\n\"\"\"",
        req.name
    ));
    let mut prompt = Prompt {
        system: Some(
            "You read business documents and extract structured fields exactly as stated.".into(),
        ),
        history: Vec::new(),
        user,
        temperature: Some(0.0),
        json: true,
    };
    let mut last_errors = Vec::new();
    let mut provenance = String::new();
    for attempt in 1..=2u32 {
        let answer = match llm.complete(&prompt, None).await {
            Ok(a) => a,
            Err(e) if attempt == 1 => return Err(e.to_string()),
            Err(e) => {
                return Ok(Err(NotFilled {
                    provenance,
                    attempts: attempt - 1,
                    errors: last_errors,
                    fallback: Some(e.to_string()),
                }));
            }
        };
        provenance = answer.provenance.clone();
        let (content, errors) = match json_object(&answer.text) {
            Some(mut v) => {
                with_fixed(&mut v, &req.fixed);
                let errors = (req.check)(&v);
                (Some(v), errors)
            }
            None => (
                None,
                vec![FieldError::new("", "the answer is not a JSON object")],
            ),
        };
        if errors.is_empty()
            && let Some(content) = content
        {
            return Ok(Ok(Filled {
                content,
                provenance,
                attempts: attempt,
                fallback: None,
            }));
        }
        let listed: Vec<String> = errors
            .iter()
            .take(20)
            .map(|e| {
                let at = e.pointer.strip_prefix("/content").unwrap_or(&e.pointer);
                format!(
                    "- {}: {}",
                    if at.is_empty() {
                        "(the whole answer)"
                    } else {
                        at
                    },
                    e.message
                )
            })
            .collect();
        prompt.history = vec![
            Turn {
                role: "user",
                content: std::mem::take(&mut prompt.user),
            },
            Turn {
                role: "assistant",
                content: answer.text,
            },
        ];
        prompt.user = format!(
            "That answer does not fit the schema:\n{}\n\nAnswer again with one corrected JSON \
             object and nothing else.",
            listed.join("\n")
        );
        last_errors = errors;
    }
    Ok(Err(NotFilled {
        provenance,
        attempts: 2,
        errors: last_errors,
        fallback: None,
    }))
}
