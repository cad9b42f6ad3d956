//! Queue rules declared under `queue:` in `pack.yaml`: read with the position of
//! each field, checked by [`waymark_domain::queue::check_rules`] (each problem at
//! its field's line and column, a CEL error at its character), and compiled.

use serde::Deserialize;
use serde_saphyr::Spanned;
use waymark_domain::cel_guard;
use waymark_domain::queue::{FactorDef, QueueRule, QueueRuleDef, check_rules};

use crate::Problem;
use crate::load::{MANIFEST, at, position_in_scalar};

/// A queue rule as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueueRuleManifest {
    pub name: Spanned<String>,
    pub template: Spanned<String>,
    pub when: Spanned<String>,
    pub reason: Spanned<String>,
    pub due: Spanned<String>,
    #[serde(default)]
    pub supersedes: Option<Spanned<Vec<String>>>,
    pub factors: Spanned<Vec<FactorDef>>,
}

impl QueueRuleManifest {
    fn def(&self) -> QueueRuleDef {
        QueueRuleDef {
            name: self.name.value.clone(),
            template: self.template.value.clone(),
            when: self.when.value.clone(),
            reason: self.reason.value.trim().to_owned(),
            due: self.due.value.clone(),
            supersedes: self
                .supersedes
                .as_ref()
                .map(|s| s.value.clone())
                .unwrap_or_default(),
            factors: self.factors.value.clone(),
        }
    }
}

/// Checks and compiles the pack's queue rules; `playbooks` are the pack's
/// playbook templates, the only ones a rule may name.
pub(crate) fn load_queue(
    rules: &[Spanned<QueueRuleManifest>],
    playbooks: &[&str],
    manifest: &str,
    problems: &mut Vec<Problem>,
) -> Vec<QueueRule> {
    let defs: Vec<QueueRuleDef> = rules.iter().map(|r| r.value.def()).collect();
    let before = problems.len();
    for p in check_rules(&defs, playbooks) {
        let Some(r) = rules.get(p.index) else {
            continue;
        };
        let r = &r.value;
        let name = &r.name.value;
        let message = format!("queue rule {name}: {}", p.message);
        let cel = |field: &Spanned<String>| {
            let position = cel_guard::compile(&field.value)
                .err()
                .and_then(|e| e.position());
            let (line, col) = position_in_scalar(manifest, field, position);
            Problem::at(MANIFEST, line, col, message.clone())
        };
        problems.push(match p.field {
            "when" => cel(&r.when),
            "due" => cel(&r.due),
            "template" => at(&r.template, message),
            "reason" => at(&r.reason, message),
            "factors" => at(&r.factors, message),
            "supersedes" => match &r.supersedes {
                Some(s) => at(s, message),
                None => at(&r.name, message),
            },
            _ => at(&r.name, message),
        });
    }
    if problems.len() > before {
        return vec![];
    }
    let mut out = Vec::with_capacity(defs.len());
    for (def, r) in defs.into_iter().zip(rules) {
        match QueueRule::compile(def) {
            Ok(rule) => out.push(rule),
            Err(e) => problems.push(at(
                &r.value.name,
                format!("queue rule {}: {}", r.value.name.value, e.located()),
            )),
        }
    }
    out
}
