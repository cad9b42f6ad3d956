//! Journey templates declared under `journeys:` in `pack.yaml`: read with their
//! source positions, checked (every problem reported at its line and column, with
//! what to do about it), and turned into the domain's [`JourneyTemplate`]s.
//!
//! The YAML is read into the position-keeping shapes of this module rather than
//! straight into the domain types, so that a problem deep in a stage (a task's
//! executor, a check's threshold) points at its own line.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;
use waymark_domain::FieldError;
use waymark_domain::cel_guard;
use waymark_domain::client::parse_pack_name;
use waymark_domain::criteria::{
    Aggregate, Check, CheckKind, Op, Span, Trigger, TriggerSpec, check_checks,
};
use waymark_domain::journey::{
    BranchDef, HandoffContract, JourneyTemplate, MilestoneDef, PlaybookDef, RollbackDef, StageDef,
    UnitTemplate, check_playbook,
};
use waymark_domain::work::{
    Backoff, Executor, TaskSpec, check_tasks, check_unit_name, check_webhook_input,
};

use crate::Problem;
use crate::load::{at, position_in_scalar};

/// States of a journey that are not stages of its template: no stage may take
/// these ids.
pub const RESERVED_STAGE_IDS: [&str; 4] = ["pending", "rolling_back", "completed", "cancelled"];

// ---------------------------------------------------------------------------
// `pack.yaml` as written
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JourneyManifest {
    pub name: Spanned<String>,
    pub title: Spanned<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub stages: Vec<Spanned<StageManifest>>,
    /// Makes the template a customer-success playbook.
    #[serde(default)]
    pub playbook: Option<Spanned<PlaybookDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StageManifest {
    pub id: Spanned<String>,
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub target_duration: Option<Spanned<String>>,
    #[serde(default)]
    pub min_soak: Option<Spanned<String>>,
    #[serde(default)]
    pub entry: Vec<Spanned<CheckManifest>>,
    #[serde(default)]
    pub exit: Vec<Spanned<CheckManifest>>,
    #[serde(default)]
    pub activities: Vec<Spanned<UnitManifest>>,
    #[serde(default)]
    pub rollback: Option<Spanned<RollbackManifest>>,
    #[serde(default)]
    pub milestones: Vec<Spanned<MilestoneManifest>>,
    /// Playbooks: the ways the step can go.
    #[serde(default)]
    pub branches: Vec<Spanned<BranchDef>>,
}

/// A check as written: every field optional, so that what is missing or mixed up
/// is reported by name instead of as "did not match any variant".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckManifest {
    pub name: Spanned<String>,
    #[serde(default)]
    pub metric: Option<Spanned<String>>,
    #[serde(default)]
    pub op: Option<Spanned<String>>,
    #[serde(default)]
    pub threshold: Option<Spanned<f64>>,
    #[serde(default)]
    pub window: Option<Spanned<String>>,
    #[serde(default)]
    pub aggregate: Option<Spanned<String>>,
    #[serde(default)]
    pub count: Option<Spanned<u32>>,
    #[serde(default)]
    pub interval: Option<Spanned<String>>,
    #[serde(default)]
    pub failure_limit: Option<Spanned<u32>>,
    #[serde(default)]
    pub artifact_approved: Option<Spanned<String>>,
    #[serde(default)]
    pub signoff: Option<Spanned<String>>,
    #[serde(default)]
    pub cel: Option<Spanned<String>>,
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UnitManifest {
    pub name: Spanned<String>,
    #[serde(default)]
    pub for_each: Option<Spanned<String>>,
    #[serde(default)]
    pub tasks: Vec<Spanned<TaskManifest>>,
}

/// A task as written ([`TaskSpec`] with positions).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskManifest {
    pub key: Spanned<String>,
    #[serde(default)]
    pub name: Option<Spanned<String>>,
    pub executor: Spanned<String>,
    #[serde(default)]
    pub input: Option<Spanned<Value>>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    pub priority: Option<Spanned<i64>>,
    #[serde(default)]
    pub max_attempts: Option<Spanned<u32>>,
    #[serde(default)]
    pub timeout_s: Option<Spanned<u32>>,
    #[serde(default)]
    pub backoff: Option<Spanned<Backoff>>,
    #[serde(default)]
    pub contract: Option<Spanned<HandoffContract>>,
    #[serde(default)]
    pub handoff_from: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RollbackManifest {
    #[serde(default)]
    pub triggers: Vec<Spanned<TriggerManifest>>,
    #[serde(default)]
    pub unit: Option<Spanned<UnitManifest>>,
    #[serde(default)]
    pub target: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TriggerManifest {
    pub trigger: Spanned<String>,
    #[serde(default)]
    pub metric: Option<Spanned<String>>,
    #[serde(default)]
    pub op: Option<Spanned<String>>,
    #[serde(default)]
    pub threshold: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MilestoneManifest {
    pub id: Spanned<String>,
    pub name: Spanned<String>,
    pub executor: Spanned<String>,
    #[serde(default)]
    pub input: Option<Spanned<Value>>,
    #[serde(default)]
    pub contract: Option<Spanned<ContractManifest>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContractManifest {
    #[serde(default)]
    pub required: Vec<Spanned<String>>,
}

// ---------------------------------------------------------------------------
// Checking and building
// ---------------------------------------------------------------------------

/// Checks the pack's journey templates and builds them. `types` are the pack's
/// artifact types (what `artifact_approved` may name); `manifest` is the text of
/// `pack.yaml`, to point inside CEL expressions. Problems go to `problems`; the
/// templates answered are only meaningful when none were added.
pub(crate) fn load_journeys(
    journeys: &[Spanned<JourneyManifest>],
    types: &BTreeSet<&str>,
    manifest: &str,
    problems: &mut Vec<Problem>,
) -> Vec<JourneyTemplate> {
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(journeys.len());
    for j in journeys {
        let j = &j.value;
        let name = j.name.value.as_str();
        if parse_pack_name(name, "/name").is_err() {
            problems.push(at(
                &j.name,
                format!(
                    "journey template name `{name}` must be lowercase letters, digits and dashes, \
                     starting with a letter, like client-onboarding"
                ),
            ));
        }
        if !names.insert(name) {
            problems.push(at(
                &j.name,
                format!(
                    "journey template {name} is declared twice; template names are unique in a pack"
                ),
            ));
        }
        if j.title.value.trim().is_empty() {
            problems.push(at(
                &j.title,
                format!("journey {name}: title must not be empty, e.g. Client onboarding"),
            ));
        }
        if j.stages.is_empty() {
            problems.push(at(
                &j.name,
                format!(
                    "journey {name} has no stages; list at least one under `stages` \
                     (a journey goes through them in order)"
                ),
            ));
        }
        let stages = load_stages(name, &j.stages, types, manifest, problems);
        let template = JourneyTemplate {
            name: name.to_owned(),
            title: j.title.value.trim().to_owned(),
            description: j.description.trim().to_owned(),
            stages,
            playbook: j.playbook.as_ref().map(|p| p.value.clone()),
        };
        check_playbook_at(j, &template, types, problems);
        out.push(template);
    }
    out
}

fn load_stages(
    journey: &str,
    stages: &[Spanned<StageManifest>],
    types: &BTreeSet<&str>,
    manifest: &str,
    problems: &mut Vec<Problem>,
) -> Vec<StageDef> {
    // Stage ids in order, for rollback targets (first occurrence wins).
    let mut order: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, s) in stages.iter().enumerate() {
        let id = s.value.id.value.as_str();
        if !is_snake_id(id) {
            problems.push(at(
                &s.value.id,
                format!(
                    "journey {journey}: stage id `{id}` must be 1-64 lowercase letters, digits and _, \
                     like sandbox or wave_migration"
                ),
            ));
        } else if RESERVED_STAGE_IDS.contains(&id) {
            problems.push(at(
                &s.value.id,
                format!(
                    "journey {journey}: stage id `{id}` is reserved for the journey's own states \
                     ({}); pick another id",
                    RESERVED_STAGE_IDS.join(", ")
                ),
            ));
        }
        if *order.entry(id).or_insert(i) != i {
            problems.push(at(
                &s.value.id,
                format!(
                    "journey {journey}: stage `{id}` is declared twice; stage ids are unique in a template"
                ),
            ));
        }
    }
    let ids: Vec<&str> = stages.iter().map(|s| s.value.id.value.as_str()).collect();

    let mut out = Vec::with_capacity(stages.len());
    for (i, s) in stages.iter().enumerate() {
        let s = &s.value;
        let ctx = format!("journey {journey}, stage {}", s.id.value);
        if s.name.value.trim().is_empty() {
            problems.push(at(
                &s.name,
                format!("{ctx}: name must not be empty, e.g. Sandbox"),
            ));
        }
        let target_duration = s
            .target_duration
            .as_ref()
            .and_then(|d| span(d, &ctx, "target_duration", problems));
        let min_soak = s
            .min_soak
            .as_ref()
            .and_then(|d| span(d, &ctx, "min_soak", problems));
        let entry = load_checks(
            &format!("{ctx}, entry"),
            &s.entry,
            types,
            manifest,
            problems,
        );
        let exit = load_checks(&format!("{ctx}, exit"), &s.exit, types, manifest, problems);

        let mut unit_names = BTreeSet::new();
        let mut activities = Vec::with_capacity(s.activities.len());
        for u in &s.activities {
            if let Some(unit) = load_unit(&ctx, u, Some(types), problems) {
                if !unit_names.insert(unit.name.clone()) {
                    problems.push(at(
                        &u.value.name,
                        format!(
                            "{ctx}: activity `{}` is declared twice; units of a stage need distinct names",
                            unit.name
                        ),
                    ));
                }
                activities.push(unit);
            }
        }

        let rollback = s
            .rollback
            .as_ref()
            .map(|r| load_rollback(&ctx, i, &ids, &order, &r.value, problems));
        let milestones = load_milestones(&ctx, &s.milestones, problems);

        out.push(StageDef {
            id: s.id.value.clone(),
            name: s.name.value.trim().to_owned(),
            description: s.description.trim().to_owned(),
            target_duration,
            min_soak,
            entry,
            exit,
            activities,
            rollback,
            milestones,
            branches: s.branches.iter().map(|b| b.value.clone()).collect(),
        });
    }
    out
}

/// Checks a template's playbook and branches ([`check_playbook`]), each
/// problem at the line of the playbook or of its branch.
fn check_playbook_at(
    j: &JourneyManifest,
    template: &JourneyTemplate,
    types: &BTreeSet<&str>,
    problems: &mut Vec<Problem>,
) {
    let types: Vec<&str> = types.iter().copied().collect();
    let name = &template.name;
    for e in check_playbook(template, Some(&types)) {
        let mut parts = e.pointer.trim_start_matches('/').split('/');
        let place = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("stages"), Some(si), Some("branches"), Some(bi)) => {
                let si: usize = si.parse().unwrap_or(0);
                let bi: usize = bi.parse().unwrap_or(0);
                j.stages
                    .get(si)
                    .and_then(|s| s.value.branches.get(bi))
                    .map(|b| (b.referenced.line(), b.referenced.column()))
            }
            _ => j
                .playbook
                .as_ref()
                .map(|p| (p.referenced.line(), p.referenced.column())),
        };
        let message = format!("journey {name}, {}: {}", e.pointer, e.message);
        problems.push(match place {
            Some((line, col)) => Problem::at(crate::load::MANIFEST, line, col, message),
            None => at(&j.name, message),
        });
    }
}

fn load_rollback(
    ctx: &str,
    stage: usize,
    ids: &[&str],
    order: &BTreeMap<&str, usize>,
    r: &RollbackManifest,
    problems: &mut Vec<Problem>,
) -> RollbackDef {
    let ctx = format!("{ctx}, rollback");
    if let Some(target) = &r.target {
        match order.get(target.value.as_str()) {
            None => problems.push(at(
                target,
                format!(
                    "{ctx}: target `{}` is not a stage of this template; stages: {}",
                    target.value,
                    ids.join(", ")
                ),
            )),
            Some(&t) if t > stage => problems.push(at(
                target,
                format!(
                    "{ctx}: target `{}` comes after this stage; a rollback returns to an earlier \
                     stage or to this one ({})",
                    target.value,
                    ids[..=stage].join(", ")
                ),
            )),
            Some(_) => {}
        }
    }
    let triggers = r
        .triggers
        .iter()
        .filter_map(|t| load_trigger(&ctx, &t.value, problems))
        .collect();
    let unit = r
        .unit
        .as_ref()
        .and_then(|u| load_unit(&ctx, u, None, problems));
    RollbackDef {
        triggers,
        unit,
        target: r.target.as_ref().map(|t| t.value.clone()),
    }
}

fn load_trigger(
    ctx: &str,
    t: &TriggerManifest,
    problems: &mut Vec<Problem>,
) -> Option<TriggerSpec> {
    let before = problems.len();
    let trigger = Trigger::ALL
        .into_iter()
        .find(|k| k.as_str() == t.trigger.value);
    if trigger.is_none() {
        problems.push(at(
            &t.trigger,
            format!(
                "{ctx}: `{}` is not a rollback trigger; use one of {}",
                t.trigger.value,
                Trigger::ALL.map(Trigger::as_str).join(", ")
            ),
        ));
    }
    let name = &t.trigger.value;
    let op = t.op.as_ref().and_then(|o| op(o, ctx, problems));
    match (&t.metric, &t.op, &t.threshold) {
        (None, None, None) | (Some(_), Some(_), Some(_)) => {}
        (Some(m), _, _) => problems.push(at(
            m,
            format!(
                "{ctx}: trigger {name} watches metric `{}` but has no {}; a trigger that fires by \
                 itself needs metric, op and threshold (e.g. op: \"<\", threshold: 3.5)",
                m.value,
                missing(&[("op", t.op.is_some()), ("threshold", t.threshold.is_some())])
            ),
        )),
        (None, _, _) => problems.push(at(
            &t.trigger,
            format!(
                "{ctx}: trigger {name} has an op or a threshold but no metric; give the metric it \
                 watches, or leave op and threshold out for a trigger only a person invokes"
            ),
        )),
    }
    if let Some(m) = &t.metric
        && let Err(why) = check_metric_name(&m.value)
    {
        problems.push(at(m, format!("{ctx}: trigger {name}: {why}")));
    }
    if let Some(th) = &t.threshold
        && !th.value.is_finite()
    {
        problems.push(at(
            th,
            format!("{ctx}: trigger {name}: threshold must be a finite number"),
        ));
    }
    if problems.len() > before {
        return None;
    }
    Some(TriggerSpec {
        trigger: trigger?,
        metric: t.metric.as_ref().map(|m| m.value.clone()),
        op,
        threshold: t.threshold.as_ref().map(|t| t.value),
    })
}

fn load_milestones(
    ctx: &str,
    milestones: &[Spanned<MilestoneManifest>],
    problems: &mut Vec<Problem>,
) -> Vec<MilestoneDef> {
    let mut ids = BTreeSet::new();
    let mut out = Vec::with_capacity(milestones.len());
    for m in milestones {
        let m = &m.value;
        let before = problems.len();
        let id = m.id.value.as_str();
        let ctx = format!("{ctx}, milestone {id}");
        if !is_snake_id(id) {
            problems.push(at(
                &m.id,
                format!(
                    "{ctx}: milestone id `{id}` must be 1-64 lowercase letters, digits and _, like parsed"
                ),
            ));
        }
        if !ids.insert(id) {
            problems.push(at(
                &m.id,
                format!("{ctx}: milestone `{id}` is declared twice in the stage; ids are unique"),
            ));
        }
        if m.name.value.trim().is_empty() {
            problems.push(at(&m.name, format!("{ctx}: name must not be empty")));
        }
        let input = m
            .input
            .as_ref()
            .map(|i| i.value.clone())
            .unwrap_or(Value::Null);
        match Executor::parse(&m.executor.value) {
            Err(why) => problems.push(at(&m.executor, format!("{ctx}: {why}"))),
            Ok(Executor::HttpWebhook) => {
                if let Err(why) = check_webhook_input(&input) {
                    let (line, column) = m.input.as_ref().map_or(pos_of(&m.executor), pos_of);
                    problems.push(Problem::at(
                        crate::load::MANIFEST,
                        line,
                        column,
                        format!("{ctx}: input.url: {why}"),
                    ));
                }
            }
            Ok(_) => {}
        }
        let mut fields = BTreeSet::new();
        let required = m
            .contract
            .as_ref()
            .map(|c| c.value.required.as_slice())
            .unwrap_or_default();
        for f in required {
            let field = f.value.trim();
            if field.is_empty() {
                problems.push(at(
                    f,
                    format!(
                        "{ctx}: a contract field must not be empty; name a field the task's output must carry"
                    ),
                ));
            } else if !fields.insert(field) {
                problems.push(at(
                    f,
                    format!("{ctx}: contract field `{field}` is listed twice"),
                ));
            }
        }
        if problems.len() == before {
            out.push(MilestoneDef {
                id: id.to_owned(),
                name: m.name.value.trim().to_owned(),
                executor: m.executor.value.clone(),
                input,
                contract: HandoffContract {
                    required: required.iter().map(|f| f.value.trim().to_owned()).collect(),
                },
            });
        }
    }
    out
}

/// A unit of work of a stage (an activity or a rollback unit): its name and its
/// tasks, checked as `POST /work/units` checks them.
/// A unit of work as written. `types` are the pack's types for an activity,
/// which may repeat `for_each` of them; `None` for a rollback unit, which may
/// not.
fn load_unit(
    ctx: &str,
    unit: &Spanned<UnitManifest>,
    types: Option<&BTreeSet<&str>>,
    problems: &mut Vec<Problem>,
) -> Option<UnitTemplate> {
    let u = &unit.value;
    let before = problems.len();
    if let Some(each) = &u.for_each {
        match types {
            None => problems.push(at(
                each,
                format!(
                    "{ctx}, unit {}: for_each repeats a stage's activity per artifact; a rollback unit runs once",
                    u.name.value
                ),
            )),
            Some(types) if !types.contains(each.value.as_str()) => problems.push(at(
                each,
                format!(
                    "{ctx}, unit {}: for_each names `{}`, which is not a type of this pack; declared types: {}",
                    u.name.value,
                    each.value,
                    types.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            )),
            Some(_) => {}
        }
    }
    let name = match check_unit_name(&u.name.value) {
        Ok(name) => name,
        Err(_) => {
            problems.push(at(
                &u.name,
                format!("{ctx}: a unit's name must be 1-200 characters, e.g. Sandbox setup"),
            ));
            String::new()
        }
    };
    let ctx = format!("{ctx}, unit {name}");
    let tasks: Vec<TaskSpec> = u
        .tasks
        .iter()
        .map(|t| {
            let t = &t.value;
            TaskSpec {
                key: t.key.value.clone(),
                name: t.name.as_ref().map(|n| n.value.clone()),
                executor: t.executor.value.clone(),
                input: t
                    .input
                    .as_ref()
                    .map(|i| i.value.clone())
                    .unwrap_or(Value::Null),
                depends_on: t.depends_on.iter().map(|d| d.value.clone()).collect(),
                priority: t.priority.as_ref().map_or(0, |p| p.value),
                max_attempts: t.max_attempts.as_ref().map(|m| m.value),
                timeout_s: t.timeout_s.as_ref().map(|m| m.value),
                backoff: t.backoff.as_ref().map(|b| b.value),
                contract: t.contract.as_ref().map(|c| c.value.clone()),
                handoff_from: t.handoff_from.as_ref().map(|h| h.value.clone()),
            }
        })
        .collect();
    if let Err(errors) = check_tasks(tasks.clone()) {
        for e in errors {
            let (line, column) = task_position(unit, &e.pointer);
            let task = task_label(u, &e.pointer);
            problems.push(Problem::at(
                crate::load::MANIFEST,
                line,
                column,
                format!("{ctx}{task}: {}", describe(&e)),
            ));
        }
    }
    (problems.len() == before).then_some(UnitTemplate {
        name,
        for_each: u.for_each.as_ref().map(|e| e.value.clone()),
        tasks,
    })
}

/// `, task <key>` for an error under `/tasks/<i>`, empty otherwise.
fn task_label(u: &UnitManifest, pointer: &str) -> String {
    task_index(pointer)
        .and_then(|i| u.tasks.get(i))
        .map(|t| format!(", task {}", t.value.key.value))
        .unwrap_or_default()
}

fn task_index(pointer: &str) -> Option<usize> {
    pointer
        .strip_prefix("/tasks/")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// Where in `pack.yaml` the field a task error points at was written.
fn task_position(unit: &Spanned<UnitManifest>, pointer: &str) -> (u64, u64) {
    let u = &unit.value;
    let fallback = (u.name.referenced.line(), u.name.referenced.column());
    let Some(rest) = pointer.strip_prefix("/tasks/") else {
        return fallback;
    };
    let mut parts = rest.split('/');
    let Some(task) = parts
        .next()
        .and_then(|i| i.parse::<usize>().ok())
        .and_then(|i| u.tasks.get(i))
    else {
        return fallback;
    };
    let t = &task.value;
    let key = (t.key.referenced.line(), t.key.referenced.column());
    fn pos<T>(s: &Spanned<T>) -> (u64, u64) {
        (s.referenced.line(), s.referenced.column())
    }
    match parts.next() {
        Some("key") => pos(&t.key),
        Some("executor") => pos(&t.executor),
        Some("name") => t.name.as_ref().map_or(key, pos),
        Some("input") => t.input.as_ref().map_or(key, pos),
        Some("priority") => t.priority.as_ref().map_or(key, pos),
        Some("max_attempts") => t.max_attempts.as_ref().map_or(key, pos),
        Some("timeout_s") => t.timeout_s.as_ref().map_or(key, pos),
        Some("backoff") => t.backoff.as_ref().map_or(key, pos),
        Some("depends_on") => parts
            .next()
            .and_then(|j| j.parse::<usize>().ok())
            .and_then(|j| t.depends_on.get(j))
            .map_or(key, pos),
        _ => key,
    }
}

/// A field error's message, with the field named when the pointer goes deeper
/// than the task itself (`depends_on/1: no task ...`).
fn describe(e: &FieldError) -> String {
    let field = e
        .pointer
        .strip_prefix("/tasks/")
        .and_then(|rest| rest.split_once('/'))
        .map(|(_, field)| field);
    match field {
        Some(field) => format!("{field}: {}", e.message),
        None => e.message.clone(),
    }
}

/// Reads a manifest check into the domain's [`Check`], reporting what is missing
/// or mixed, then runs [`check_checks`] on the list (each problem at the line of
/// its field) and checks that approvals name types of the pack.
fn load_checks(
    ctx: &str,
    checks: &[Spanned<CheckManifest>],
    types: &BTreeSet<&str>,
    manifest: &str,
    problems: &mut Vec<Problem>,
) -> Vec<Check> {
    let mut built = Vec::with_capacity(checks.len());
    // Index in `built` -> the manifest check, to put criteria errors at their line.
    let mut source = Vec::with_capacity(checks.len());
    for c in checks {
        if let Some(check) = read_check(ctx, &c.value, problems) {
            built.push(check);
            source.push(&c.value);
        }
    }
    for e in check_checks(&built) {
        let (index, field) = split_check_pointer(&e.pointer);
        let Some(c) = index.and_then(|i| source.get(i)) else {
            let first = checks.first().map(|c| &c.value.name);
            problems.push(match first {
                Some(s) => at(s, format!("{ctx}: {}", e.message)),
                None => Problem::in_file(crate::load::MANIFEST, format!("{ctx}: {}", e.message)),
            });
            continue;
        };
        let (line, column) = match (field, &c.cel) {
            // A refused expression: at the character where it goes wrong.
            ("cel", Some(cel)) => {
                let inside = cel_guard::compile(&cel.value)
                    .err()
                    .and_then(|e| e.position());
                position_in_scalar(manifest, cel, inside)
            }
            _ => check_field_position(c, field),
        };
        problems.push(Problem::at(
            crate::load::MANIFEST,
            line,
            column,
            format!("{ctx}: check {}: {}", c.name.value, e.message),
        ));
    }
    for c in checks {
        if let Some(t) = &c.value.artifact_approved
            && !t.value.trim().is_empty()
            && !types.contains(t.value.as_str())
        {
            problems.push(at(
                t,
                format!(
                    "{ctx}: check {} needs an approved `{}`, which is not a type of this pack; \
                     declared types: {}",
                    c.value.name.value,
                    t.value,
                    types.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    built
}

/// Splits `/3/threshold` into `(Some(3), "threshold")`.
fn split_check_pointer(pointer: &str) -> (Option<usize>, &str) {
    let rest = pointer.strip_prefix('/').unwrap_or(pointer);
    let (index, field) = rest.split_once('/').unwrap_or((rest, ""));
    (index.parse().ok(), field)
}

fn check_field_position(c: &CheckManifest, field: &str) -> (u64, u64) {
    fn pos<T>(s: &Spanned<T>) -> (u64, u64) {
        (s.referenced.line(), s.referenced.column())
    }
    let name = pos(&c.name);
    let field = field.split('/').next().unwrap_or("");
    match field {
        "metric" => c.metric.as_ref().map_or(name, pos),
        "op" => c.op.as_ref().map_or(name, pos),
        "threshold" => c.threshold.as_ref().map_or(name, pos),
        "window" => c.window.as_ref().map_or(name, pos),
        "aggregate" => c.aggregate.as_ref().map_or(name, pos),
        "count" => c.count.as_ref().map_or(name, pos),
        "interval" => c.interval.as_ref().map_or(name, pos),
        "failure_limit" => c.failure_limit.as_ref().map_or(name, pos),
        "artifact_approved" => c.artifact_approved.as_ref().map_or(name, pos),
        "signoff" => c.signoff.as_ref().map_or(name, pos),
        "cel" => c.cel.as_ref().map_or(name, pos),
        _ => name,
    }
}

/// The shape of one check: exactly one of metric, artifact_approved, signoff and
/// cel; the metric fields only on a metric check; spans, ops and aggregates that
/// parse.
fn read_check(ctx: &str, c: &CheckManifest, problems: &mut Vec<Problem>) -> Option<Check> {
    let before = problems.len();
    let name = &c.name.value;
    let kinds: Vec<&str> = [
        ("metric", c.metric.is_some()),
        ("artifact_approved", c.artifact_approved.is_some()),
        ("signoff", c.signoff.is_some()),
        ("cel", c.cel.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, present)| present.then_some(k))
    .collect();
    match kinds.len() {
        0 => problems.push(at(
            &c.name,
            format!(
                "{ctx}: check {name} says nothing to check; give a metric (with op and threshold), \
                 artifact_approved (a type), signoff (a name) or cel (an expression)"
            ),
        )),
        1 => {}
        _ => problems.push(at(
            &c.name,
            format!(
                "{ctx}: check {name} mixes {}; a check is one of metric, artifact_approved, \
                 signoff or cel: split it into several checks",
                kinds.join(" and ")
            ),
        )),
    }
    let metric_fields: Vec<(&str, Option<(u64, u64)>)> = vec![
        ("op", c.op.as_ref().map(pos_of)),
        ("threshold", c.threshold.as_ref().map(pos_of)),
        ("window", c.window.as_ref().map(pos_of)),
        ("aggregate", c.aggregate.as_ref().map(pos_of)),
        ("count", c.count.as_ref().map(pos_of)),
        ("interval", c.interval.as_ref().map(pos_of)),
        ("failure_limit", c.failure_limit.as_ref().map(pos_of)),
    ];
    match &c.metric {
        None => {
            for (field, position) in &metric_fields {
                if let Some((line, column)) = position {
                    problems.push(Problem::at(
                        crate::load::MANIFEST,
                        *line,
                        *column,
                        format!(
                            "{ctx}: check {name}: `{field}` only applies to a metric check; add the \
                             metric or remove `{field}`"
                        ),
                    ));
                }
            }
        }
        Some(metric) => {
            for (field, present) in [("op", c.op.is_some()), ("threshold", c.threshold.is_some())] {
                if !present {
                    problems.push(at(
                        metric,
                        format!(
                            "{ctx}: check {name} needs `{field}`: a metric check compares the metric \
                             with a threshold, e.g. op: \">=\", threshold: 0.8"
                        ),
                    ));
                }
            }
        }
    }
    let op = c.op.as_ref().and_then(|o| op(o, ctx, problems));
    let window = c
        .window
        .as_ref()
        .and_then(|w| span(w, ctx, "window", problems));
    let interval = c
        .interval
        .as_ref()
        .and_then(|w| span(w, ctx, "interval", problems));
    let aggregate = c.aggregate.as_ref().and_then(|a| {
        let parsed = match a.value.as_str() {
            "last" => Some(Aggregate::Last),
            "max" => Some(Aggregate::Max),
            "min" => Some(Aggregate::Min),
            "avg" => Some(Aggregate::Avg),
            _ => None,
        };
        if parsed.is_none() {
            problems.push(at(
                a,
                format!(
                    "{ctx}: check {name}: aggregate `{}` is not one of last, max, min, avg",
                    a.value
                ),
            ));
        }
        parsed
    });
    if problems.len() > before {
        return None;
    }
    let kind = if let Some(metric) = &c.metric {
        CheckKind::Metric {
            metric: metric.value.clone(),
            op: op?,
            threshold: c.threshold.as_ref()?.value,
            window,
            aggregate,
            count: c.count.as_ref().map(|v| v.value),
            interval,
            failure_limit: c.failure_limit.as_ref().map(|v| v.value),
        }
    } else if let Some(t) = &c.artifact_approved {
        CheckKind::Artifact {
            artifact_type: t.value.clone(),
        }
    } else if let Some(s) = &c.signoff {
        CheckKind::Signoff {
            signoff: s.value.clone(),
        }
    } else {
        CheckKind::Cel {
            cel: c.cel.as_ref()?.value.clone(),
        }
    };
    Some(Check {
        name: name.clone(),
        kind,
        dry_run: c.dry_run,
    })
}

// ---------------------------------------------------------------------------
// Small parsers
// ---------------------------------------------------------------------------

fn pos_of<T>(s: &Spanned<T>) -> (u64, u64) {
    (s.referenced.line(), s.referenced.column())
}

fn missing(fields: &[(&str, bool)]) -> String {
    fields
        .iter()
        .filter(|(_, present)| !present)
        .map(|(f, _)| *f)
        .collect::<Vec<_>>()
        .join(" and ")
}

fn op(o: &Spanned<String>, ctx: &str, problems: &mut Vec<Problem>) -> Option<Op> {
    let parsed = match o.value.trim() {
        ">=" => Some(Op::Ge),
        ">" => Some(Op::Gt),
        "<=" => Some(Op::Le),
        "<" => Some(Op::Lt),
        "==" => Some(Op::Eq),
        "!=" => Some(Op::Ne),
        _ => None,
    };
    if parsed.is_none() {
        problems.push(at(
            o,
            format!(
                "{ctx}: op `{}` is not one of >=, >, <=, <, ==, != (quote it in YAML: op: \">=\")",
                o.value
            ),
        ));
    }
    parsed
}

fn span(s: &Spanned<String>, ctx: &str, field: &str, problems: &mut Vec<Problem>) -> Option<Span> {
    match Span::parse(&s.value) {
        Ok(span) if span.0.is_zero() => {
            problems.push(at(
                s,
                format!("{ctx}: {field} must be longer than zero, e.g. 7d"),
            ));
            None
        }
        Ok(span) => Some(span),
        Err(why) => {
            problems.push(at(s, format!("{ctx}: {field} {why}")));
            None
        }
    }
}

/// Stage and milestone ids: 1-64 of `[a-z0-9_]`.
fn is_snake_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A metric name: 1-128 letters, digits, `_`, `.` or `-`.
fn check_metric_name(name: &str) -> Result<(), String> {
    waymark_domain::criteria::check_name("metric", name)
}

/// Checks a template that did not come from a pack file (`POST
/// /api/v1/journey-templates`): the same rules as the loader's, each problem
/// at a JSON Pointer into the template. Artifact types are not checked against
/// a pack.
pub fn check_journey(t: &JourneyTemplate) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name_ok = !t.name.is_empty()
        && t.name.len() <= 64
        && t.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !name_ok {
        errors.push(FieldError::new(
            "/name",
            "1-64 lowercase letters, digits and dashes, like client-onboarding",
        ));
    }
    if t.title.trim().is_empty() {
        errors.push(FieldError::new("/title", "must not be empty"));
    }
    if t.stages.is_empty() {
        errors.push(FieldError::new(
            "/stages",
            "a journey needs at least one stage",
        ));
    }
    let ids: Vec<&str> = t.stages.iter().map(|s| s.id.as_str()).collect();
    for (i, s) in t.stages.iter().enumerate() {
        let at = |field: &str| format!("/stages/{i}/{field}");
        if !is_snake_id(&s.id) {
            errors.push(FieldError::new(
                at("id"),
                "1-64 lowercase letters, digits and _, like sandbox",
            ));
        } else if RESERVED_STAGE_IDS.contains(&s.id.as_str()) {
            errors.push(FieldError::new(
                at("id"),
                format!(
                    "`{}` is reserved for the journey's own states ({})",
                    s.id,
                    RESERVED_STAGE_IDS.join(", ")
                ),
            ));
        } else if ids[..i].contains(&s.id.as_str()) {
            errors.push(FieldError::new(
                at("id"),
                "stage ids are unique in a template",
            ));
        }
        if s.name.trim().is_empty() {
            errors.push(FieldError::new(at("name"), "must not be empty"));
        }
        for (list, checks) in [("entry", &s.entry), ("exit", &s.exit)] {
            for e in check_checks(checks) {
                errors.push(FieldError::new(
                    at(&format!("{list}{}", e.pointer)),
                    e.message,
                ));
            }
        }
        let mut units = BTreeSet::new();
        for (j, u) in s.activities.iter().enumerate() {
            if u.name.trim().is_empty() || !units.insert(u.name.as_str()) {
                errors.push(FieldError::new(
                    at(&format!("activities/{j}/name")),
                    "units of a stage need distinct, non-empty names",
                ));
            }
            if let Some(each) = &u.for_each
                && !is_snake_id(each)
            {
                errors.push(FieldError::new(
                    at(&format!("activities/{j}/for_each")),
                    "an artifact type: 1-64 lowercase letters, digits and _",
                ));
            }
            if let Err(errs) = waymark_domain::work::check_tasks(u.tasks.clone()) {
                for e in errs {
                    errors.push(FieldError::new(
                        at(&format!("activities/{j}{}", e.pointer)),
                        e.message,
                    ));
                }
            }
        }
        if let Some(r) = &s.rollback {
            if let Some(target) = &r.target
                && !ids[..=i].contains(&target.as_str())
            {
                errors.push(FieldError::new(
                    at("rollback/target"),
                    format!("`{target}` is not this stage or an earlier one"),
                ));
            }
            for (k, tr) in r.triggers.iter().enumerate() {
                if let Err(why) = waymark_domain::criteria::check_trigger(tr) {
                    errors.push(FieldError::new(at(&format!("rollback/triggers/{k}")), why));
                }
            }
            if r.unit.as_ref().is_some_and(|u| u.for_each.is_some()) {
                errors.push(FieldError::new(
                    at("rollback/unit/for_each"),
                    "a rollback unit runs once; for_each applies to a stage's activities",
                ));
            }
            if let Some(u) = &r.unit
                && let Err(errs) = waymark_domain::work::check_tasks(u.tasks.clone())
            {
                for e in errs {
                    errors.push(FieldError::new(
                        at(&format!("rollback/unit{}", e.pointer)),
                        e.message,
                    ));
                }
            }
        }
        let mut milestones = BTreeSet::new();
        for (k, m) in s.milestones.iter().enumerate() {
            if !is_snake_id(&m.id) || !milestones.insert(m.id.as_str()) {
                errors.push(FieldError::new(
                    at(&format!("milestones/{k}/id")),
                    "distinct ids of lowercase letters, digits and _",
                ));
            }
            if let Err(why) = waymark_domain::work::Executor::parse(&m.executor) {
                errors.push(FieldError::new(
                    at(&format!("milestones/{k}/executor")),
                    why,
                ));
            }
            if m.contract.required.iter().any(|f| f.trim().is_empty()) {
                errors.push(FieldError::new(
                    at(&format!("milestones/{k}/contract/required")),
                    "field names must not be empty",
                ));
            }
        }
    }
    // API templates know no pack, so `saves_as` is checked when a thread saves.
    errors.extend(check_playbook(t, None));
    errors
}
