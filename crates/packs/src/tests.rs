//! Loading packs from folders: good ones load, each kind of bad one is refused
//! with its file, line and what to fix.

use std::path::Path;

use serde_json::json;

use super::*;

pub(crate) const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "name": {"type": "string", "minLength": 1},
    "details": {"type": "object", "properties": {"size": {"type": "integer"}}, "required": ["size"]}
  },
  "required": ["name"],
  "additionalProperties": false
}"#;

pub(crate) const MANIFEST: &str = "name: tiny
version: 1.0.0
description: A two-step pipeline.
types:
  - name: brief
    family: solution
    schema: schemas/doc.json
    example: examples/doc.json
    rules:
      - name: short_name
        when: 'size(content.name) < 3'
        message: The name is very short.
  - name: plan
    family: journey
    requires: [brief]
    schema: schemas/doc.json
    example: examples/doc.json
    generator:
      prompt: prompts/plan.md
      parameters: { temperature: 0.2 }
plan:
  modules:
    - { name: planning, type: plan, band: [0, 99] }
  jobs:
    - { key: outline, name: Outline, module: planning, priority: 0 }
    - { key: detail, name: Detail, module: planning, priority: 1, depends_on: [outline] }
";

fn write_pack(dir: &Path, manifest: &str, schema: &str) {
    std::fs::create_dir_all(dir.join("schemas")).unwrap();
    std::fs::create_dir_all(dir.join("examples")).unwrap();
    std::fs::create_dir_all(dir.join("prompts")).unwrap();
    std::fs::write(dir.join("pack.yaml"), manifest).unwrap();
    std::fs::write(dir.join("schemas/doc.json"), schema).unwrap();
    std::fs::write(dir.join("examples/doc.json"), r#"{"name": "Example"}"#).unwrap();
    std::fs::write(dir.join("prompts/plan.md"), "Write the plan.").unwrap();
}

pub(crate) fn load_with(manifest: &str, schema: &str) -> Result<Pack, PackError> {
    let dir = tempfile::tempdir().unwrap();
    write_pack(dir.path(), manifest, schema);
    load(&PackFiles::from_dir(dir.path()).unwrap())
}

pub(crate) fn problems(manifest: &str, schema: &str) -> Vec<Problem> {
    load_with(manifest, schema)
        .expect_err("the pack should be refused")
        .problems
}

#[test]
fn a_good_pack_loads_and_checks_content() {
    let pack = load_with(MANIFEST, SCHEMA).unwrap();
    assert_eq!(pack.name, "tiny");
    assert_eq!(pack.type_names(), ["brief", "plan"]);
    let brief = pack.artifact_type("brief").unwrap();
    let ok = brief.check(&json!({"name": "Al"}), "/content");
    assert!(ok.errors.is_empty());
    assert_eq!(ok.warnings, ["The name is very short."]);
    let bad = brief.check(&json!({"details": {}, "extra": 1}), "/content");
    let pointers: Vec<&str> = bad.errors.iter().map(|e| e.pointer.as_str()).collect();
    assert!(pointers.contains(&"/content/name"), "{pointers:?}");
    assert!(pointers.contains(&"/content/details/size"), "{pointers:?}");
    assert!(pointers.contains(&"/content/extra"), "{pointers:?}");
    assert!(bad.warnings.is_empty());
    let plan = pack
        .plan(
            None,
            |t| waymark_domain::gating::evaluate::<&str>(t, &[], |_| None),
            |_| waymark_domain::plan::JobRun::NotRun,
            |_| None,
        )
        .unwrap();
    assert_eq!(plan[1].depends_on, ["outline"]);
    assert_ne!(
        pack.artifact_type("plan").unwrap().generator_fingerprint(),
        Value::Null
    );
}

#[test]
fn the_digest_changes_with_any_file() {
    let dir = tempfile::tempdir().unwrap();
    write_pack(dir.path(), MANIFEST, SCHEMA);
    let a = load(&PackFiles::from_dir(dir.path()).unwrap()).unwrap();
    std::fs::write(dir.path().join("prompts/plan.md"), "Write a better plan.").unwrap();
    let b = load(&PackFiles::from_dir(dir.path()).unwrap()).unwrap();
    assert_ne!(a.digest, b.digest);
}

#[test]
fn bad_yaml_is_refused_with_its_line() {
    let p = problems("name: tiny\ntypes: [\n  - name: : x\n", SCHEMA);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].file, "pack.yaml");
    assert!(p[0].line.is_some(), "{p:?}");
}

#[test]
fn a_field_of_the_wrong_shape_is_refused_with_its_line() {
    let m = MANIFEST.replace("band: [0, 99]", "band: low");
    let p = problems(&m, SCHEMA);
    assert_eq!(p[0].line, Some(23), "{p:?}");
    let m = MANIFEST.replace("description: A", "descripton: A");
    let p = problems(&m, SCHEMA);
    assert!(p[0].message.contains("descripton"), "{p:?}");
}

#[test]
fn an_unknown_upstream_type_is_refused_where_it_is_named() {
    let m = MANIFEST.replace("requires: [brief]", "requires: [breif]");
    let p = problems(&m, SCHEMA);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!((p[0].line, p[0].column), (Some(15), Some(16)));
    assert!(p[0].message.contains("unknown type `breif`"), "{p:?}");
    assert!(p[0].message.contains("brief, plan"), "{p:?}");
}

#[test]
fn a_cycle_in_the_requirements_is_refused() {
    let m = MANIFEST.replace(
        "  - name: brief\n",
        "  - name: brief\n    requires: [plan]\n",
    );
    let p = problems(&m, SCHEMA);
    assert!(
        p.iter()
            .any(|p| p.message.contains("brief -> plan -> brief")),
        "{p:?}"
    );
}

#[test]
fn an_invalid_schema_is_refused() {
    let p = problems(MANIFEST, r#"{"type": "objekt"}"#);
    assert_eq!(p[0].file, "schemas/doc.json");
    assert!(p[0].message.contains("not a valid JSON Schema"), "{p:?}");
    let p = problems(MANIFEST, "{\"type\": \n");
    assert_eq!(p[0].file, "schemas/doc.json");
    assert_eq!(p[0].line, Some(2), "{p:?}");
}

#[test]
fn an_example_that_breaks_its_schema_is_refused() {
    let strict = SCHEMA.replace("\"minLength\": 1", "\"minLength\": 20");
    let p = problems(MANIFEST, &strict);
    assert_eq!(p[0].file, "examples/doc.json");
    assert!(p[0].message.contains("/name"), "{p:?}");
}

#[test]
fn an_invalid_cel_rule_is_refused_at_its_line() {
    let m = MANIFEST.replace("'size(content.name) < 3'", "'size(content.name) <'");
    let p = problems(&m, SCHEMA);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].line, Some(11), "{p:?}");
    assert!(p[0].message.contains("not valid CEL"), "{p:?}");
    let m = MANIFEST.replace("'size(content.name) < 3'", "'content.nickname == \"x\"'");
    let p = problems(&m, SCHEMA);
    assert!(p[0].message.contains("fails on the example"), "{p:?}");
}

#[test]
fn missing_files_and_escaping_paths_are_refused() {
    let m = MANIFEST.replace("prompts/plan.md", "../secrets.md");
    let p = problems(&m, SCHEMA);
    assert!(p[0].message.contains("not a path inside the pack"), "{p:?}");
    let m = MANIFEST.replace("prompts/plan.md", "prompts/missing.md");
    let p = problems(&m, SCHEMA);
    assert!(p[0].message.contains("is not in the pack"), "{p:?}");
}

#[test]
fn plan_mistakes_are_refused() {
    let m = MANIFEST.replace("priority: 1, depends_on", "priority: 120, depends_on");
    let p = problems(&m, SCHEMA);
    assert!(p[0].message.contains("outside its module"), "{p:?}");
    let m = MANIFEST.replace(
        "module: planning, priority: 0 }",
        "module: planning, priority: 0, depends_on: [detail] }",
    );
    let p = problems(&m, SCHEMA);
    assert!(p[0].message.contains("cycle"), "{p:?}");
}

#[test]
fn every_builtin_pack_loads() {
    let names: Vec<&str> = builtin().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "client-onboarding",
            "data-flow",
            "insurance-migration",
            "marketing-engagement",
            "renewal"
        ]
    );
    for pack in builtin() {
        for t in &pack.types {
            let checked = t.check(&t.example, "");
            assert!(
                checked.errors.is_empty(),
                "{} {}: {:?}",
                pack.name,
                t.name,
                checked.errors
            );
        }
    }
}

/// The 1-based column of the `n`th ` op ` in `line`.
pub(crate) fn column_of(line: &str, op: &str, n: usize) -> u64 {
    let needle = format!(" {op} ");
    let mut from = 0;
    for _ in 0..n {
        from += line[from..].find(&needle).expect("not that many operators") + 1;
    }
    // `from` is the operator's 0-based index.
    from as u64 + 1
}

#[test]
fn an_over_long_rule_is_refused_at_its_line_and_column() {
    for (term, op) in [("1", "+"), ("true", "&&")] {
        let chain = vec![term; 5_000].join(&format!(" {op} "));
        // On one line, quoted.
        let m = MANIFEST.replace("'size(content.name) < 3'", &format!("'{chain}'"));
        let p = problems(&m, SCHEMA);
        assert_eq!(p.len(), 1, "{op}: {p:?}");
        let line = m.lines().nth(10).unwrap();
        assert_eq!(
            (p[0].line, p[0].column),
            (Some(11), Some(column_of(line, op, 65))),
            "{op}: {p:?}"
        );
        assert!(
            p[0].message.starts_with(
                "rule short_name of type brief is too complex: more than 64 operators in one chain"
            ),
            "{p:?}"
        );
        assert!(p[0].message.contains("split it"), "{p:?}");
        // Folded over two lines, as the built-in packs write rules: the 65th
        // operator is on the second.
        let m = MANIFEST.replace(
            "'size(content.name) < 3'",
            &format!(">-\n          size(content.name) < 3\n          && {chain}"),
        );
        let p = problems(&m, SCHEMA);
        let line = m.lines().nth(12).unwrap();
        // `<` and `&&` come first: the 63rd operator of the chain.
        let expected = column_of(line, op, if op == "&&" { 64 } else { 63 });
        assert_eq!(
            (p[0].line, p[0].column),
            (Some(13), Some(expected)),
            "{op}: {p:?}"
        );
        let shown = PackError { problems: p }.to_string();
        assert!(
            shown.contains(&format!("pack.yaml:13:{expected}: rule short_name")),
            "{shown}"
        );
    }
}

#[test]
fn a_rule_over_its_budget_warns_instead_of_holding_the_write() {
    let m = MANIFEST.replace(
        "'size(content.name) < 3'",
        "'has(content.items) && content.items.all(x, content.items.all(y, content.items.all(z, x + y + z >= 0)))'",
    );
    let pack = load_with(&m, r#"{"type": "object"}"#).unwrap();
    let brief = pack.artifact_type("brief").unwrap();
    let small = brief.check(&json!({"items": [1, 2, 3]}), "");
    assert_eq!(small.warnings, ["The name is very short."]);
    let items: Vec<u32> = (0..300).collect();
    let large = brief.check(&json!({ "items": items }), "");
    assert!(large.errors.is_empty());
    assert_eq!(large.warnings.len(), 1, "{large:?}");
    assert!(
        large.warnings[0].starts_with("Rule short_name was not checked: stopped after"),
        "{large:?}"
    );
}

#[test]
fn the_documented_limits_of_cel_are_the_real_ones() {
    use waymark_domain::cel_guard::{MAX_CHAIN, MAX_CHARS, MAX_DEPTH, MAX_LOOPS, MAX_NESTING};
    let doc = include_str!("../../../docs/PACKS.md");
    let section = &doc[doc.find("## Limits of CEL").unwrap()..];
    let section = &section[..section.find("\n## ").unwrap()];
    for (label, value) in [
        ("| characters |", MAX_CHARS),
        ("| brackets open at once", MAX_NESTING),
        ("| operators in one chain", MAX_CHAIN),
        ("| levels of the parsed expression |", MAX_DEPTH),
        ("nested in the body of one another |", MAX_LOOPS),
    ] {
        let row = section
            .lines()
            .find(|l| l.contains(label))
            .unwrap_or_else(|| panic!("no row {label}"));
        assert!(row.contains(&format!("| {value} |")), "{row}");
    }
    let steps = waymark_domain::cel_guard::MAX_STEPS;
    let written = steps
        .to_string()
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(",");
    assert!(
        section.contains(&format!("may spend\n{written}")),
        "{written}"
    );
}
