//! Packs: the declarative templates (YAML + JSON Schema + CEL) that configure
//! Waymark for one kind of engagement.
//!
//! A pack is a folder (see `docs/PACKS.md`). [`load`] reads and checks one,
//! answering every problem with its file, line and column where known; a loaded
//! [`Pack`] validates content ([`TypeDef::check`]), derives generation plans
//! ([`Pack::plan`]) and holds its journey templates ([`Pack::journey`]). The
//! built-in packs are embedded in the binary ([`builtin`]).
//!
//! ```
//! let packs = waymark_packs::builtin();
//! let marketing = packs.iter().find(|p| p.name == "marketing-engagement").unwrap();
//! let strategy = marketing.artifact_type("strategy").unwrap();
//! assert_eq!(strategy.requires, ["intake"]);
//!
//! let onboarding = packs.iter().find(|p| p.name == "client-onboarding").unwrap();
//! let journey = onboarding.journey("client-onboarding").unwrap();
//! let stages: Vec<&str> = journey.stages.iter().map(|s| s.id.as_str()).collect();
//! assert_eq!(stages, ["sandbox", "pilot", "production"]);
//! ```

mod files;
mod journeys;
mod load;
mod manifest;
mod queue;
mod rules;

use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde_json::{Value, json};
use waymark_domain::FieldError;
use waymark_domain::gating::Gating;
use waymark_domain::journey::JourneyTemplate;
use waymark_domain::plan::{self, JobSpec, Module, PlanError, PlannedJob};

pub use files::{MAX_FILES, MAX_MANIFEST_BYTES, MAX_PACK_BYTES, PackFiles};
pub use journeys::{RESERVED_STAGE_IDS, check_journey};
pub use load::load;
pub use rules::{Rule, RuleError};

/// One thing wrong with a pack, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// The file, relative to the pack folder.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl Problem {
    pub(crate) fn in_file(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    pub(crate) fn at(file: &str, line: u64, column: u64, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: (line > 0).then_some(line),
            column: (column > 0).then_some(column),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.file, self.message),
            (Some(l), None) => write!(f, "{}:{l}: {}", self.file, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// A pack that was refused, with every problem found.
#[derive(Debug, Clone, thiserror::Error)]
pub struct PackError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "the pack has {n} problem{}",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// What an artifact type becomes when it is implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Solution,
    Journey,
}

/// How a type's content is generated.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Generator {
    /// The prompt template, Markdown.
    pub prompt: Option<String>,
    /// The deterministic content template.
    #[schema(value_type = Option<Object>)]
    pub template: Option<Value>,
    /// Free parameters, part of every inputs hash.
    #[schema(value_type = Object)]
    pub parameters: Value,
}

/// An artifact type of a pack.
#[derive(Debug)]
pub struct TypeDef {
    pub name: String,
    pub title: String,
    pub family: Family,
    pub description: String,
    /// Upstream types that must be approved before this one is created.
    pub requires: Vec<String>,
    pub schema: Value,
    pub example: Value,
    pub rules: Vec<Rule>,
    pub generator: Option<Generator>,
    /// How many approvals an artifact of this type needs, and from whom.
    pub approval: waymark_domain::review::ApprovalPolicy,
    /// The journey template of the pack that an approved artifact of this type
    /// implements (`journey:` in the manifest), if any.
    pub journey: Option<String>,
    validator: jsonschema::Validator,
}

/// The outcome of checking content against a type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Checked {
    /// Schema errors: the write is refused.
    pub errors: Vec<FieldError>,
    /// Rule warnings: the write goes ahead.
    pub warnings: Vec<String>,
}

/// Most schema errors reported for one document.
const MAX_ERRORS: usize = 50;

impl TypeDef {
    /// Checks `content` against the schema (errors, with JSON Pointers under
    /// `prefix`) and, when it is valid, against the rules (warnings).
    ///
    /// A rule that fails on the content (it reads a field the content lacks,
    /// say) does not fire. A rule stopped by its evaluation budget gives a
    /// warning of its own, naming the rule: it was not checked.
    pub fn check(&self, content: &Value, prefix: &str) -> Checked {
        let errors = schema_errors(&self.validator, content, prefix);
        let warnings = if errors.is_empty() {
            self.rules
                .iter()
                .filter_map(|r| match r.fires(content) {
                    Ok(true) => Some(r.message.clone()),
                    Ok(false) => None,
                    Err(e) if e.over_limit => {
                        Some(format!("Rule {} was not checked: {}", r.name, e.message))
                    }
                    Err(_) => None,
                })
                .collect()
        } else {
            vec![]
        };
        Checked { errors, warnings }
    }

    /// What the inputs hash records of the generator: its parameters and the
    /// hashes of its prompt and template, so a changed generator changes the hash.
    pub fn generator_fingerprint(&self) -> Value {
        match &self.generator {
            None => Value::Null,
            Some(g) => json!({
                "parameters": g.parameters,
                "prompt": g.prompt.as_ref().map(|p| waymark_domain::content::content_hash(&Value::String(p.clone())).to_string()),
                "template": g.template.as_ref().map(|t| waymark_domain::content::content_hash(t).to_string()),
            }),
        }
    }
}

/// A JSON Schema sent over the API (a contract extraction's `schema`),
/// checked and compiled the way a pack's type schemas are. References are
/// resolved within the document only: nothing is fetched.
#[derive(Debug)]
pub struct Schema {
    pub value: Value,
    validator: jsonschema::Validator,
}

impl Schema {
    /// Checks that `value` is a JSON Schema (draft 2020-12 by default) and
    /// compiles it; the error says what is wrong and where.
    pub fn compile(value: Value) -> Result<Schema, String> {
        if !value.is_object() {
            return Err("must be a JSON Schema object".into());
        }
        if let Err(e) = jsonschema::meta::validate(&value) {
            let at = e.instance_path().as_str().to_owned();
            return Err(format!(
                "is not a valid JSON Schema at {}: {e}",
                if at.is_empty() { "its root" } else { &at }
            ));
        }
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&value)
            .map_err(|e| format!("cannot be used as a JSON Schema: {e}"))?;
        Ok(Schema { value, validator })
    }

    /// The errors of `instance`, with JSON Pointers under `prefix`.
    pub fn errors(&self, instance: &Value, prefix: &str) -> Vec<FieldError> {
        schema_errors(&self.validator, instance, prefix)
    }
}

impl TypeDef {
    /// The errors of `content` against the type's schema alone (no rules),
    /// with JSON Pointers under `prefix`.
    pub fn schema_errors(&self, content: &Value, prefix: &str) -> Vec<FieldError> {
        schema_errors(&self.validator, content, prefix)
    }
}

pub(crate) fn schema_errors(
    validator: &jsonschema::Validator,
    instance: &Value,
    prefix: &str,
) -> Vec<FieldError> {
    use jsonschema::error::ValidationErrorKind as K;
    let mut out = Vec::new();
    for e in validator.iter_errors(instance).take(MAX_ERRORS) {
        let at = format!("{prefix}{}", e.instance_path().as_str());
        match e.kind() {
            K::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                out.push(FieldError::new(
                    format!("{at}/{}", escape_pointer(name)),
                    "is required",
                ));
            }
            K::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    out.push(FieldError::new(
                        format!("{at}/{}", escape_pointer(name)),
                        "is not a field of this type; remove it or check its spelling",
                    ));
                }
            }
            _ => out.push(FieldError::new(at, e.to_string())),
        }
    }
    out
}

fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// A pack's generation plan definition.
#[derive(Debug, Clone)]
pub struct PlanDef {
    pub modules: Vec<Module>,
    pub jobs: Vec<JobSpec>,
}

/// A loaded, checked pack.
#[derive(Debug)]
pub struct Pack {
    pub name: String,
    pub version: String,
    pub description: String,
    /// Types in pipeline order.
    pub types: Vec<TypeDef>,
    pub plan: Option<PlanDef>,
    /// Journey templates, in the order the manifest declares them.
    pub journeys: Vec<JourneyTemplate>,
    /// Queue rules: which playbook is due for which client, and its score.
    pub queue: Vec<waymark_domain::queue::QueueRule>,
    /// SHA-256 over every file: two packs with the same digest are the same pack.
    pub digest: String,
    pub files: PackFiles,
}

impl Pack {
    /// The type named `name`.
    pub fn artifact_type(&self, name: &str) -> Option<&TypeDef> {
        self.types.iter().find(|t| t.name == name)
    }

    /// The journey template named `name`.
    pub fn journey(&self, name: &str) -> Option<&JourneyTemplate> {
        self.journeys.iter().find(|j| j.name == name)
    }

    /// The names of its types, in pipeline order.
    pub fn type_names(&self) -> Vec<&str> {
        self.types.iter().map(|t| t.name.as_str()).collect()
    }

    /// The generation plan for `selected` deliverables (`None`: all of them).
    pub fn plan(
        &self,
        selected: Option<&[String]>,
        gating: impl Fn(&str) -> Gating,
        run: impl Fn(&str) -> plan::JobRun,
        locked: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<PlannedJob>, PlanError> {
        match &self.plan {
            None => Err(PlanError(format!(
                "pack {} has no generation plan",
                self.name
            ))),
            Some(p) => plan::build(&p.modules, &p.jobs, selected, gating, run, locked),
        }
    }
}

static BUILTIN_DIR: include_dir::Dir<'_> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/../../packs");

/// The packs that ship inside the binary, by name.
///
/// # Panics
/// When a built-in pack does not load: the crate's tests load every one.
pub fn builtin() -> &'static [Arc<Pack>] {
    static PACKS: OnceLock<Vec<Arc<Pack>>> = OnceLock::new();
    PACKS.get_or_init(|| {
        let mut packs: Vec<Arc<Pack>> = BUILTIN_DIR
            .dirs()
            .map(|d| {
                let files = PackFiles::from_embedded(d)
                    .unwrap_or_else(|p| panic!("built-in pack {}: {p}", d.path().display()));
                let pack = load(&files)
                    .unwrap_or_else(|e| panic!("built-in pack {}: {e}", d.path().display()));
                Arc::new(pack)
            })
            .collect();
        packs.sort_by(|a, b| a.name.cmp(&b.name));
        packs
    })
}

#[cfg(test)]
mod journey_tests;
#[cfg(test)]
mod tests;
