//! `pack.yaml` as written: the shape serde reads, with source positions kept where
//! a later check needs to point at a line.

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::journeys::JourneyManifest;
use crate::queue::QueueRuleManifest;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    pub name: Spanned<String>,
    pub version: String,
    #[serde(default)]
    pub description: String,
    pub types: Vec<TypeManifest>,
    #[serde(default)]
    pub plan: Option<PlanManifest>,
    /// Journey templates (see `journeys.rs`).
    #[serde(default)]
    pub journeys: Vec<Spanned<JourneyManifest>>,
    /// Queue rules (see `queue.rs`).
    #[serde(default)]
    pub queue: Vec<Spanned<QueueRuleManifest>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TypeManifest {
    pub name: Spanned<String>,
    #[serde(default)]
    pub title: Option<String>,
    pub family: Spanned<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub requires: Vec<Spanned<String>>,
    pub schema: Spanned<String>,
    pub example: Spanned<String>,
    #[serde(default)]
    pub rules: Vec<RuleManifest>,
    #[serde(default)]
    pub generator: Option<GeneratorManifest>,
    /// Approvals needed, and from whom (`required`, `approvers`: client | any).
    #[serde(default)]
    pub approval: Option<waymark_domain::review::ApprovalPolicy>,
    /// The journey template an approved artifact of the type implements.
    #[serde(default)]
    pub journey: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleManifest {
    pub name: String,
    pub when: Spanned<String>,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GeneratorManifest {
    #[serde(default)]
    pub prompt: Option<Spanned<String>>,
    #[serde(default)]
    pub template: Option<Spanned<String>>,
    #[serde(default)]
    pub parameters: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanManifest {
    pub modules: Vec<ModuleManifest>,
    pub jobs: Vec<JobManifest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModuleManifest {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub artifact_type: Spanned<String>,
    pub band: (i64, i64),
    #[serde(default)]
    pub depends_on: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobManifest {
    pub key: String,
    pub name: String,
    pub module: String,
    pub priority: i64,
    #[serde(default)]
    pub depends_on: Vec<String>,
}
