//! Reading and checking a pack: every problem found is reported at once, each
//! with its file and, where known, its line and column.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use serde_saphyr::Spanned;
use waymark_domain::artifact::ArtifactType;
use waymark_domain::client::parse_pack_name;
use waymark_domain::content::content_hash;
use waymark_domain::graph::find_cycle;
use waymark_domain::plan::{JobSpec, Module, check_definition};

use crate::files::check_relative;
use crate::manifest::{Manifest, TypeManifest};
use crate::{
    Family, Generator, Pack, PackError, PackFiles, PlanDef, Problem, Rule, TypeDef, schema_errors,
};

pub(crate) const MANIFEST: &str = "pack.yaml";

/// Reads and checks the pack made of `files`.
pub fn load(files: &PackFiles) -> Result<Pack, PackError> {
    let mut problems = Vec::new();
    let refuse = |problems: Vec<Problem>| Err(PackError { problems });
    let Some(text) = files.get(MANIFEST) else {
        return refuse(vec![Problem::in_file(
            MANIFEST,
            "is missing; a pack is a folder with a pack.yaml at its root",
        )]);
    };
    let manifest: Manifest = match serde_saphyr::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            return refuse(vec![Problem::at(
                MANIFEST,
                line,
                column,
                format!(
                    "{}; see docs/PACKS.md for the format",
                    first_line(&e.to_string())
                ),
            )]);
        }
    };

    let name = manifest.name.value.clone();
    if parse_pack_name(&name, "/name").is_err() {
        problems.push(at(
            &manifest.name,
            "the pack name must be lowercase letters, digits and dashes, like marketing-engagement",
        ));
    }
    if manifest.version.trim().is_empty() {
        problems.push(Problem::in_file(
            MANIFEST,
            "version must not be empty, e.g. 1.0.0",
        ));
    }
    if manifest.types.is_empty() {
        problems.push(Problem::in_file(
            MANIFEST,
            "declares no types; list at least one under `types`",
        ));
    }

    let declared: BTreeSet<&str> = manifest
        .types
        .iter()
        .map(|t| t.name.value.as_str())
        .collect();
    let mut seen = BTreeSet::new();
    for t in &manifest.types {
        if ArtifactType::parse(&t.name.value, "/name").is_err() {
            problems.push(at(
                &t.name,
                format!(
                    "type name `{}` must be lowercase letters, digits and _, starting with a letter",
                    t.name.value
                ),
            ));
        }
        if !seen.insert(t.name.value.as_str()) {
            problems.push(at(
                &t.name,
                format!("type {} is declared twice", t.name.value),
            ));
        }
        for r in &t.requires {
            if r.value == t.name.value {
                problems.push(at(r, format!("type {} requires itself", t.name.value)));
            } else if !declared.contains(r.value.as_str()) {
                problems.push(at(
                    r,
                    format!(
                        "type {} requires unknown type `{}`; declared types: {}",
                        t.name.value,
                        r.value,
                        declared.iter().copied().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
    }
    let graph: BTreeMap<&str, Vec<&str>> = manifest
        .types
        .iter()
        .map(|t| {
            let deps = t
                .requires
                .iter()
                .map(|r| r.value.as_str())
                .filter(|r| *r != t.name.value)
                .collect();
            (t.name.value.as_str(), deps)
        })
        .collect();
    if let Some(cycle) = find_cycle(&graph) {
        let first = manifest
            .types
            .iter()
            .find(|t| t.name.value == cycle[0])
            .map(|t| &t.name);
        let message = format!(
            "the requirements form a cycle: {}; a type cannot depend on itself, even indirectly",
            cycle.join(" -> ")
        );
        problems.push(match first {
            Some(s) => at(s, message),
            None => Problem::in_file(MANIFEST, message),
        });
    }

    let mut types = Vec::new();
    for t in &manifest.types {
        if let Some(def) = load_type(files, t, &mut problems) {
            types.push(def);
        }
    }

    let plan = manifest.plan.as_ref().map(|p| {
        for m in &p.modules {
            if !declared.contains(m.artifact_type.value.as_str()) {
                problems.push(at(
                    &m.artifact_type,
                    format!(
                        "module {} writes unknown type `{}`",
                        m.name.value, m.artifact_type.value
                    ),
                ));
            }
        }
        let modules: Vec<Module> = p
            .modules
            .iter()
            .map(|m| Module {
                name: m.name.value.clone(),
                artifact_type: m.artifact_type.value.clone(),
                band: m.band,
                depends_on: m.depends_on.clone(),
            })
            .collect();
        let jobs: Vec<JobSpec> = p
            .jobs
            .iter()
            .map(|j| JobSpec {
                key: j.key.clone(),
                name: j.name.clone(),
                module: j.module.clone(),
                priority: j.priority,
                depends_on: j.depends_on.clone(),
            })
            .collect();
        for message in check_definition(&modules, &jobs) {
            problems.push(Problem::in_file(MANIFEST, format!("plan: {message}")));
        }
        PlanDef { modules, jobs }
    });

    // A pack without a plan of its own generates each type with a generator.
    let plan = plan.or_else(|| {
        let specs: Vec<waymark_domain::plan::TypeSpec> = types
            .iter()
            .map(|t: &crate::TypeDef| waymark_domain::plan::TypeSpec {
                name: &t.name,
                title: &t.title,
                requires: &t.requires,
                generates: t.generator.is_some(),
            })
            .collect();
        waymark_domain::plan::derived(&specs).map(|(modules, jobs)| PlanDef { modules, jobs })
    });

    let journeys =
        crate::journeys::load_journeys(&manifest.journeys, &declared, text, &mut problems);
    let templates: BTreeSet<&str> = journeys.iter().map(|j| j.name.as_str()).collect();
    let playbooks: Vec<&str> = journeys
        .iter()
        .filter(|j| j.playbook.is_some())
        .map(|j| j.name.as_str())
        .collect();
    let queue = crate::queue::load_queue(&manifest.queue, &playbooks, text, &mut problems);
    for t in &manifest.types {
        let Some(j) = &t.journey else { continue };
        if t.family.value == "solution" {
            problems.push(at(
                j,
                format!(
                    "type {} is of family solution, so implementing it does not start a journey; \
                     set `family: journey` or remove `journey`",
                    t.name.value
                ),
            ));
        }
        if !templates.contains(j.value.as_str()) {
            problems.push(at(
                j,
                if templates.is_empty() {
                    format!(
                        "type {} implements journey `{}`, but the pack declares no journey templates; \
                         add it under `journeys` or remove `journey`",
                        t.name.value, j.value
                    )
                } else {
                    format!(
                        "type {} implements unknown journey `{}`; the pack's journey templates: {}",
                        t.name.value,
                        j.value,
                        templates.iter().copied().collect::<Vec<_>>().join(", ")
                    )
                },
            ));
        }
    }

    if !problems.is_empty() {
        return refuse(problems);
    }
    let digest = content_hash(&serde_json::to_value(files.as_map()).unwrap_or(Value::Null));
    Ok(Pack {
        name,
        version: manifest.version.trim().to_owned(),
        description: manifest.description.trim().to_owned(),
        types,
        plan,
        journeys,
        queue,
        digest: digest.to_string(),
        files: files.clone(),
    })
}

fn load_type(files: &PackFiles, t: &TypeManifest, problems: &mut Vec<Problem>) -> Option<TypeDef> {
    let before = problems.len();
    let family = match t.family.value.as_str() {
        "solution" => Some(Family::Solution),
        "journey" => Some(Family::Journey),
        other => {
            problems.push(at(
                &t.family,
                format!("family `{other}` is not one of: solution, journey"),
            ));
            None
        }
    };

    let schema = read_json(files, &t.schema, problems);
    let validator = schema.as_ref().and_then(|(path, schema)| {
        if let Err(e) = jsonschema::meta::validate(schema) {
            problems.push(Problem::in_file(
                path,
                format!(
                    "is not a valid JSON Schema at {}: {e}",
                    pointer_or_root(e.instance_path().as_str())
                ),
            ));
            return None;
        }
        match jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
        {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(Problem::in_file(
                    path,
                    format!("cannot be used as a JSON Schema: {e}"),
                ));
                None
            }
        }
    });

    let example = read_json(files, &t.example, problems);
    if let (Some(v), Some((path, example))) = (&validator, &example) {
        for e in schema_errors(v, example, "") {
            problems.push(Problem::in_file(
                path,
                format!(
                    "does not satisfy the schema of {}: {} {}",
                    t.name.value,
                    pointer_or_root(&e.pointer),
                    e.message
                ),
            ));
        }
    }

    let mut rules = Vec::new();
    for r in &t.rules {
        match Rule::compile(&r.name, &r.when.value, &r.message) {
            Err(e) => {
                let manifest = files.get(MANIFEST).unwrap_or_default();
                let (line, col) = position_in_scalar(manifest, &r.when, e.position);
                let what = if e.over_limit {
                    "is too complex"
                } else {
                    "is not valid CEL"
                };
                problems.push(Problem::at(
                    MANIFEST,
                    line,
                    col,
                    format!(
                        "rule {} of type {} {what}: {}",
                        r.name, t.name.value, e.message
                    ),
                ));
            }
            Ok(rule) => {
                if let Some((_, example)) = &example
                    && let Err(e) = rule.fires(example)
                {
                    let hint = if e.over_limit {
                        ""
                    } else {
                        "; guard optional fields with has(...)"
                    };
                    problems.push(at(
                        &r.when,
                        format!(
                            "rule {} of type {} fails on the example: {}{hint}",
                            r.name, t.name.value, e.message
                        ),
                    ));
                }
                rules.push(rule);
            }
        }
    }

    let generator = t.generator.as_ref().map(|g| {
        let prompt = g
            .prompt
            .as_ref()
            .and_then(|p| read_text(files, p, problems).map(str::to_owned));
        let template = g.template.as_ref().and_then(|p| {
            let (path, template) = read_json(files, p, problems)?;
            if let Some(v) = &validator {
                for e in schema_errors(v, &template, "") {
                    problems.push(Problem::in_file(
                        &path,
                        format!(
                            "the template does not satisfy the schema of {}: {} {}",
                            t.name.value,
                            pointer_or_root(&e.pointer),
                            e.message
                        ),
                    ));
                }
            }
            Some(template)
        });
        Generator {
            prompt,
            template,
            parameters: g
                .parameters
                .clone()
                .unwrap_or(Value::Object(Default::default())),
        }
    });

    if problems.len() > before {
        return None;
    }
    Some(TypeDef {
        name: t.name.value.clone(),
        title: t
            .title
            .clone()
            .unwrap_or_else(|| t.name.value.replace('_', " ")),
        family: family?,
        description: t.description.trim().to_owned(),
        requires: t.requires.iter().map(|r| r.value.clone()).collect(),
        schema: schema?.1,
        example: example?.1,
        rules,
        generator,
        approval: t.approval.unwrap_or_default(),
        journey: t.journey.as_ref().map(|j| j.value.clone()),
        validator: validator?,
    })
}

fn read_text<'f>(
    files: &'f PackFiles,
    path: &Spanned<String>,
    problems: &mut Vec<Problem>,
) -> Option<&'f str> {
    if let Err(m) = check_relative(&path.value) {
        problems.push(at(path, m));
        return None;
    }
    match files.get(&path.value) {
        Some(text) => Some(text),
        None => {
            problems.push(at(
                path,
                format!(
                    "`{}` is not in the pack; add the file or fix the path",
                    path.value
                ),
            ));
            None
        }
    }
}

fn read_json(
    files: &PackFiles,
    path: &Spanned<String>,
    problems: &mut Vec<Problem>,
) -> Option<(String, Value)> {
    let text = read_text(files, path, problems)?;
    match serde_json::from_str::<Value>(text) {
        Ok(v) => Some((path.value.clone(), v)),
        Err(e) => {
            problems.push(Problem::at(
                &path.value,
                e.line() as u64,
                e.column() as u64,
                format!("is not valid JSON: {e}"),
            ));
            None
        }
    }
}

/// Where in `manifest` the character at `position` (1-based line and column
/// inside the string, as a CEL error gives it) of the scalar `span` was
/// written: the scalar's text is walked from its start, skipping its quotes,
/// its escapes and the line breaks and indentation that folding turned into
/// spaces. The start of the scalar when the walk loses its way.
pub(crate) fn position_in_scalar(
    manifest: &str,
    span: &Spanned<String>,
    position: Option<(usize, usize)>,
) -> (u64, u64) {
    let start = (span.referenced.line(), span.referenced.column());
    let Some((line, column)) = position else {
        return start;
    };
    // The character's index in the string.
    let mut target = None;
    let (mut l, mut c) = (1, 1);
    for (i, ch) in span.value.chars().enumerate() {
        if (l, c) == (line, column) {
            target = Some(i);
            break;
        }
        (l, c) = if ch == '\n' { (l + 1, 1) } else { (l, c + 1) };
    }
    let Some(target) = target else { return start };
    // The manifest's characters from the scalar's start, with their positions.
    let mut raw = manifest
        .lines()
        .enumerate()
        .skip(
            usize::try_from(start.0)
                .unwrap_or(usize::MAX)
                .saturating_sub(1),
        )
        .flat_map(|(i, text)| {
            text.chars()
                .chain(std::iter::once('\n'))
                .enumerate()
                .map(move |(j, ch)| (ch, (i as u64 + 1, j as u64 + 1)))
        })
        .skip(
            usize::try_from(start.1)
                .unwrap_or(usize::MAX)
                .saturating_sub(1),
        )
        .peekable();
    match raw.peek() {
        Some(('\'' | '"', _)) => {
            raw.next();
        }
        Some(('>' | '|', _)) => {
            // A block scalar's header: its text starts on the next line.
            for (ch, _) in raw.by_ref() {
                if ch == '\n' {
                    break;
                }
            }
        }
        _ => {}
    }
    let mut chars = span.value.chars();
    for index in 0..=target {
        let Some(ch) = chars.next() else {
            return start;
        };
        loop {
            let Some((r, at)) = raw.next() else {
                return start;
            };
            if r == ch || (ch == ' ' && r == '\n') {
                if index == target {
                    return at;
                }
                break;
            }
            if !(r.is_whitespace() || matches!(r, '\'' | '"' | '\\')) {
                return start;
            }
        }
    }
    start
}

pub(crate) fn at<T>(span: &Spanned<T>, message: impl Into<String>) -> Problem {
    Problem::at(
        MANIFEST,
        span.referenced.line(),
        span.referenced.column(),
        message,
    )
}

fn pointer_or_root(p: &str) -> &str {
    if p.is_empty() { "the root" } else { p }
}

/// The parser's message without its own `error: line N column M:` prefix (the
/// problem carries the position).
fn first_line(s: &str) -> &str {
    let line = s.lines().next().unwrap_or(s).trim_end_matches(':');
    let line = line.strip_prefix("error: ").unwrap_or(line);
    match line
        .strip_prefix("line ")
        .and_then(|rest| rest.split_once(": "))
    {
        Some((position, message)) if position.contains("column") => message,
        _ => line,
    }
}
