//! Journey templates: the shipped ones load with the stages, thresholds and
//! triggers of their source documents; a bad one is refused at its line with
//! what to fix.

use waymark_domain::criteria::{Aggregate, CheckKind, Op, Span, Trigger};
use waymark_domain::journey::{JourneyTemplate, StageDef};

use crate::tests::{MANIFEST, SCHEMA, load_with, problems};
use crate::{Problem, builtin};

const JOURNEYS: &str = r#"journeys:
  - name: tiny-journey
    title: Tiny journey
    description: Two stages.
    stages:
      - id: first
        name: First
        target_duration: 15d
        exit:
          - { name: precision, metric: search_precision, op: ">=", threshold: 0.8 }
          - name: brief_approved
            artifact_approved: brief
          - name: bugs
            metric: bug_count
            op: "=="
            threshold: 0
            window: 7d
            aggregate: max
        activities:
          - name: Setup
            tasks:
              - { key: a, executor: noop }
              - { key: b, executor: human, depends_on: [a] }
      - id: second
        name: Second
        entry:
          - { name: demo, signoff: client_stakeholder_demo, dry_run: true }
        rollback:
          target: first
          triggers:
            - { trigger: user_satisfaction_low, metric: user_satisfaction, op: "<", threshold: 3.5 }
            - trigger: client_request
          unit:
            name: Undo
            tasks:
              - { key: undo, executor: human }
        milestones:
          - id: uploaded
            name: Uploaded
            executor: noop
            contract: { required: [file_id, checksum] }
          - id: parsed
            name: Parsed
            executor: parser-agent
            contract: { required: [parsed_record_count] }
"#;

/// The tiny pack of `tests.rs` with the journeys above, and `plan` implementing it.
fn manifest() -> String {
    let types = MANIFEST.replace(
        "  - name: plan\n    family: journey\n",
        "  - name: plan\n    family: journey\n    journey: tiny-journey\n",
    );
    format!("{types}{JOURNEYS}")
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> u64 {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` is not in the manifest")) as u64
        + 1
}

/// The manifest with the first `from` replaced by `to`, refused: the problems,
/// and the line the replacement starts on.
fn refused(from: &str, to: &str) -> (Vec<Problem>, u64) {
    let base = manifest();
    let at = base
        .find(from)
        .unwrap_or_else(|| panic!("`{from}` is not in the manifest"));
    let line = base[..at].matches('\n').count() as u64 + 1;
    let m = base.replacen(from, to, 1);
    (problems(&m, SCHEMA), line)
}

fn has(problems: &[Problem], line: u64, text: &str) -> bool {
    problems
        .iter()
        .any(|p| p.file == "pack.yaml" && p.line == Some(line) && p.message.contains(text))
}

fn stage<'a>(j: &'a JourneyTemplate, id: &str) -> &'a StageDef {
    j.stages
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no stage {id} in {}", j.name))
}

/// The metric check `metric` of `checks`: its op, threshold, window, aggregate.
fn metric(
    checks: &[waymark_domain::criteria::Check],
    name: &str,
) -> (Op, f64, Option<Span>, Option<Aggregate>) {
    checks
        .iter()
        .find_map(|c| match &c.kind {
            CheckKind::Metric {
                metric,
                op,
                threshold,
                window,
                aggregate,
                ..
            } if metric == name => Some((*op, *threshold, *window, *aggregate)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no metric check on {name}"))
}

fn template(pack: &str, name: &str) -> &'static JourneyTemplate {
    builtin()
        .iter()
        .find(|p| p.name == pack)
        .unwrap_or_else(|| panic!("no pack {pack}"))
        .journey(name)
        .unwrap_or_else(|| panic!("no journey {name} in {pack}"))
}

fn ids(j: &JourneyTemplate) -> Vec<&str> {
    j.stages.iter().map(|s| s.id.as_str()).collect()
}

#[test]
fn a_good_template_loads_into_the_domain_types() {
    let pack = load_with(&manifest(), SCHEMA).unwrap();
    assert_eq!(pack.journeys.len(), 1);
    assert_eq!(
        pack.artifact_type("plan").unwrap().journey.as_deref(),
        Some("tiny-journey")
    );
    assert_eq!(pack.artifact_type("brief").unwrap().journey, None);
    let j = pack.journey("tiny-journey").unwrap();
    assert!(pack.journey("other").is_none());
    assert_eq!(j.title, "Tiny journey");
    assert_eq!(ids(j), ["first", "second"]);
    let first = stage(j, "first");
    assert_eq!(first.target_duration, Some(Span::parse("15d").unwrap()));
    assert_eq!(
        metric(&first.exit, "search_precision"),
        (Op::Ge, 0.8, None, None)
    );
    assert_eq!(
        metric(&first.exit, "bug_count"),
        (
            Op::Eq,
            0.0,
            Some(Span::parse("7d").unwrap()),
            Some(Aggregate::Max)
        )
    );
    assert_eq!(
        first.exit[1].kind,
        CheckKind::Artifact {
            artifact_type: "brief".into()
        }
    );
    assert_eq!(first.activities[0].tasks[1].depends_on, ["a"]);
    let second = stage(j, "second");
    assert!(second.entry[0].dry_run);
    let rollback = second.rollback.as_ref().unwrap();
    assert_eq!(rollback.target.as_deref(), Some("first"));
    assert_eq!(rollback.triggers[0].threshold, Some(3.5));
    assert_eq!(rollback.triggers[1].trigger, Trigger::ClientRequest);
    assert_eq!(rollback.triggers[1].metric, None);
    assert_eq!(rollback.unit.as_ref().unwrap().tasks[0].key, "undo");
    assert_eq!(
        second.milestones[0].contract.required,
        ["file_id", "checksum"]
    );
    assert_eq!(second.milestones[1].executor, "parser-agent");
}

#[test]
fn a_pack_without_journeys_still_loads() {
    let pack = load_with(MANIFEST, SCHEMA).unwrap();
    assert!(pack.journeys.is_empty());
}

#[test]
fn an_unknown_or_later_rollback_target_is_refused() {
    let (p, line) = refused("target: first", "target: nowhere");
    assert!(has(&p, line, "`nowhere` is not a stage"), "{p:?}");
    assert!(has(&p, line, "stages: first, second"), "{p:?}");
    let (p, line) = refused(
        "        name: First\n",
        "        name: First\n        rollback: { target: second }\n",
    );
    let line = line + 1;
    assert!(has(&p, line, "comes after this stage"), "{p:?}");
}

#[test]
fn duplicate_and_reserved_stage_ids_are_refused() {
    let (p, line) = refused("- id: second", "- id: first");
    assert!(has(&p, line, "stage `first` is declared twice"), "{p:?}");
    for reserved in ["pending", "rolling_back", "completed", "cancelled"] {
        let (p, line) = refused("- id: second", &format!("- id: {reserved}"));
        assert!(has(&p, line, "is reserved"), "{reserved}: {p:?}");
    }
    let (p, line) = refused("- id: second", "- id: Second-Stage");
    assert!(has(&p, line, "lowercase letters, digits and _"), "{p:?}");
}

#[test]
fn a_bad_task_is_refused_at_its_field() {
    let (p, line) = refused(
        "{ key: b, executor: human, depends_on: [a] }",
        "{ key: b, executor: Bad Agent, depends_on: [a] }",
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(has(&p, line, "unit Setup, task b: executor"), "{p:?}");
    assert!(p[0].message.contains("is not an executor"), "{p:?}");
    assert_eq!(p[0].column, Some(37), "{p:?}");
    let (p, line) = refused("depends_on: [a] }", "depends_on: [z] }");
    assert!(has(&p, line, "no task `z` in this unit"), "{p:?}");
    let (p, line) = refused(
        "- { key: undo, executor: human }",
        "- { key: undo, executor: engine }",
    );
    assert!(
        has(&p, line, "stage second, rollback, unit Undo, task undo"),
        "{p:?}"
    );
    let (p, line) = refused("- name: Setup", "- name: '  '");
    assert!(has(&p, line, "a unit's name must be"), "{p:?}");
}

#[test]
fn for_each_names_a_type_of_the_pack_on_activities_only() {
    let ok = load_with(
        &manifest().replacen(
            "          - name: Setup\n",
            "          - name: Setup\n            for_each: brief\n",
            1,
        ),
        SCHEMA,
    );
    let ok = ok.unwrap_or_else(|e| panic!("{e:?}"));
    let first = &ok.journey("tiny-journey").unwrap().stages[0];
    assert_eq!(first.activities[0].for_each.as_deref(), Some("brief"));
    let (p, line) = refused(
        "          - name: Setup\n",
        "          - name: Setup\n            for_each: invoice\n",
    );
    assert!(
        has(
            &p,
            line + 1,
            "for_each names `invoice`, which is not a type"
        ),
        "{p:?}"
    );
    let (p, line) = refused(
        "            name: Undo\n",
        "            name: Undo\n            for_each: brief\n",
    );
    assert!(has(&p, line + 1, "a rollback unit runs once"), "{p:?}");
}

#[test]
fn duplicate_check_names_are_refused() {
    let (p, line) = refused("name: brief_approved", "name: precision");
    assert!(
        has(
            &p,
            line,
            "exit: check precision: the name `precision` is already used"
        ),
        "{p:?}"
    );
}

#[test]
fn mistaken_checks_are_refused() {
    let (p, line) = refused("op: \"==\"\n", "op: \"=<\"\n");
    assert!(has(&p, line, "op `=<` is not one of"), "{p:?}");
    let (p, line) = refused("window: 7d", "window: 7y");
    assert!(has(&p, line, "window `7y` has no known unit"), "{p:?}");
    let (p, line) = refused("aggregate: max", "aggregate: median");
    assert!(has(&p, line, "aggregate `median`"), "{p:?}");
    let (p, line) = refused("aggregate: max", "count: 0");
    assert!(has(&p, line, "count must be at least 1"), "{p:?}");
    let (p, line) = refused("aggregate: max", "count: 2\n            failure_limit: 2");
    assert!(
        has(
            &p,
            line + 1,
            "failure_limit (2) must be less than count (2)"
        ),
        "{p:?}"
    );
    let (p, line) = refused("threshold: 0.8 }", "threshold: .nan }");
    assert!(has(&p, line, "finite"), "{p:?}");
    let (p, line) = refused("threshold: 0.8 }", "window: 7d }");
    assert!(has(&p, line, "needs `threshold`"), "{p:?}");
    let (p, line) = refused("artifact_approved: brief", "artifact_approved: breif");
    assert!(
        has(&p, line, "`breif`, which is not a type of this pack"),
        "{p:?}"
    );
    let (p, line) = refused(
        "artifact_approved: brief",
        "artifact_approved: brief\n            signoff: demo",
    );
    assert!(
        has(&p, line - 1, "mixes artifact_approved and signoff"),
        "{p:?}"
    );
    let (p, line) = refused(
        "{ name: demo, signoff: client_stakeholder_demo, dry_run: true }",
        "{ name: demo, threshold: 3, dry_run: true }",
    );
    assert!(has(&p, line, "says nothing to check"), "{p:?}");
    assert!(
        has(&p, line, "`threshold` only applies to a metric check"),
        "{p:?}"
    );
}

#[test]
fn a_trigger_needs_metric_op_and_threshold_together() {
    let (p, line) = refused(
        "metric: user_satisfaction, op: \"<\", threshold: 3.5 }",
        "metric: user_satisfaction, op: \"<\" }",
    );
    assert!(
        has(
            &p,
            line,
            "watches metric `user_satisfaction` but has no threshold"
        ),
        "{p:?}"
    );
    let (p, line) = refused(
        "- trigger: client_request",
        "- { trigger: client_request, threshold: 1 }",
    );
    assert!(
        has(&p, line, "has an op or a threshold but no metric"),
        "{p:?}"
    );
    let (p, line) = refused("- trigger: client_request", "- trigger: bored");
    assert!(has(&p, line, "`bored` is not a rollback trigger"), "{p:?}");
}

#[test]
fn milestone_mistakes_are_refused() {
    let (p, line) = refused("- id: parsed", "- id: uploaded");
    assert!(
        has(&p, line, "milestone `uploaded` is declared twice"),
        "{p:?}"
    );
    let (p, line) = refused("executor: parser-agent", "executor: Parser");
    assert!(
        has(&p, line, "milestone parsed: `Parser` is not an executor"),
        "{p:?}"
    );
    let (p, line) = refused("[file_id, checksum]", "[file_id, '']");
    assert!(has(&p, line, "a contract field must not be empty"), "{p:?}");
}

#[test]
fn an_unknown_journey_on_a_type_is_refused() {
    let (p, line) = refused("journey: tiny-journey", "journey: nowhere");
    assert!(
        has(&p, line, "type plan implements unknown journey `nowhere`"),
        "{p:?}"
    );
    assert!(has(&p, line, "tiny-journey"), "{p:?}");
    let m = MANIFEST.replace(
        "  - name: plan\n    family: journey\n",
        "  - name: plan\n    family: journey\n    journey: tiny-journey\n",
    );
    let p = problems(&m, SCHEMA);
    assert!(
        p[0].message.contains("declares no journey templates"),
        "{p:?}"
    );
    let m = manifest().replace(
        "  - name: brief\n    family: solution\n",
        "  - name: brief\n    family: solution\n    journey: tiny-journey\n",
    );
    let p = problems(&m, SCHEMA);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].message.contains("type brief is of family solution"),
        "{p:?}"
    );
}

#[test]
fn template_names_are_checked() {
    let (p, line) = refused("- name: tiny-journey", "- name: Tiny_Journey");
    assert!(
        has(&p, line, "lowercase letters, digits and dashes"),
        "{p:?}"
    );
    let m = format!(
        "{}  - name: tiny-journey\n    title: Again\n    stages: [{{ id: only, name: Only }}]\n  - name: empty\n    title: Empty\n",
        manifest()
    );
    let p = problems(&m, SCHEMA);
    assert!(
        p.iter()
            .any(|p| p.message.contains("tiny-journey is declared twice")),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|p| p.message.contains("journey empty has no stages")),
        "{p:?}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let m = manifest()
        .replace("target: first", "target: nowhere")
        .replace("- id: second", "- id: completed")
        .replace("name: brief_approved", "name: precision")
        .replace("executor: human, depends_on", "executor: NOPE, depends_on")
        .replace("journey: tiny-journey", "journey: nowhere");
    let p = problems(&m, SCHEMA);
    assert_eq!(p.len(), 5, "{p:#?}");
    assert!(p.iter().all(|p| p.file == "pack.yaml" && p.line.is_some()));
    let shown = crate::PackError { problems: p }.to_string();
    assert!(shown.contains("pack.yaml:"), "{shown}");
}

#[test]
fn a_wrong_shape_in_a_journey_is_refused_with_its_line() {
    let base = manifest();
    let m = base.replace("target_duration: 15d", "target_durations: 15d");
    let p = problems(&m, SCHEMA);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].line, Some(line_of(&m, "target_durations")), "{p:?}");
    assert!(p[0].message.contains("target_durations"), "{p:?}");
}

// ---------------------------------------------------------------------------
// The shipped templates
// ---------------------------------------------------------------------------

#[test]
fn client_onboarding_is_sandbox_pilot_production_with_the_stage_metrics() {
    let j = template("client-onboarding", "client-onboarding");
    assert_eq!(ids(j), ["sandbox", "pilot", "production"]);
    let days = |d: &str| Some(Span::parse(d).unwrap());
    let durations: Vec<_> = j.stages.iter().map(|s| s.target_duration).collect();
    assert_eq!(durations, [days("15d"), days("15d"), days("30d")]);
    assert!(j.stages.iter().all(|s| s.min_soak.is_none()));

    let sandbox = stage(j, "sandbox");
    assert_eq!(
        metric(&sandbox.exit, "connector_sync_rate"),
        (Op::Ge, 1.0, None, None)
    );
    assert_eq!(
        metric(&sandbox.exit, "search_precision"),
        (Op::Ge, 0.8, None, None)
    );
    assert_eq!(
        metric(&sandbox.exit, "security_vulnerabilities"),
        (Op::Eq, 0.0, None, None)
    );
    assert!(sandbox.exit.iter().any(|c| c.kind
        == CheckKind::Signoff {
            signoff: "client_stakeholder_demo".into()
        }
        && !c.dry_run));
    let setup = &sandbox.activities[0];
    assert_eq!(setup.name, "Sandbox setup");
    let tasks: Vec<(&str, &str)> = setup
        .tasks
        .iter()
        .map(|t| (t.key.as_str(), t.executor.as_str()))
        .collect();
    assert_eq!(
        tasks,
        [
            ("install_connectors", "connector-installation-agent"),
            ("provision_dataset", "dataset-provisioning-agent"),
            ("validate_search", "search-quality-agent"),
        ]
    );
    assert_eq!(
        setup.tasks[0].input,
        serde_json::json!({"connector_type": "confluence", "auth_method": "oauth2"})
    );
    assert_eq!(
        setup.tasks[1].input,
        serde_json::json!({"scenario": "healthcare_demo", "size": "medium"})
    );
    assert_eq!(
        setup.tasks[2].input,
        serde_json::json!({"precision_threshold": 0.8})
    );
    assert_eq!(
        setup.tasks[2].depends_on,
        ["install_connectors", "provision_dataset"]
    );

    let pilot = stage(j, "pilot");
    assert_eq!(
        metric(&pilot.exit, "search_precision"),
        (Op::Ge, 0.85, None, None)
    );
    assert_eq!(
        metric(&pilot.exit, "user_satisfaction"),
        (Op::Ge, 4.0, None, None)
    );
    assert_eq!(
        metric(&pilot.exit, "bug_count"),
        (Op::Eq, 0.0, days("7d"), Some(Aggregate::Max))
    );
    assert_eq!(
        metric(&pilot.exit, "p95_latency_ms"),
        (Op::Le, 500.0, None, None)
    );
    let low = pilot
        .rollback
        .as_ref()
        .unwrap()
        .triggers
        .iter()
        .find(|t| t.trigger == Trigger::UserSatisfactionLow)
        .unwrap();
    assert_eq!(
        (low.metric.as_deref(), low.op, low.threshold),
        (Some("user_satisfaction"), Some(Op::Lt), Some(3.5))
    );

    let production = stage(j, "production");
    assert_eq!(
        metric(&production.exit, "user_adoption"),
        (Op::Ge, 0.7, None, None)
    );
    assert_eq!(
        metric(&production.exit, "search_satisfaction"),
        (Op::Ge, 4.5, None, None)
    );
    assert_eq!(
        metric(&production.exit, "query_volume_growth"),
        (Op::Ge, 0.2, None, None)
    );
    let low = production
        .rollback
        .as_ref()
        .unwrap()
        .triggers
        .iter()
        .find(|t| t.trigger == Trigger::UserSatisfactionLow)
        .unwrap();
    assert_eq!(low.threshold, Some(4.0));

    // Every one of the seven triggers appears somewhere; every stage can roll back.
    for trigger in Trigger::ALL {
        assert!(
            j.stages.iter().any(|s| s
                .rollback
                .as_ref()
                .is_some_and(|r| r.triggers.iter().any(|t| t.trigger == trigger))),
            "{trigger:?} appears in no stage"
        );
    }
    assert!(
        j.stages
            .iter()
            .all(|s| s.rollback.as_ref().is_some_and(|r| r.unit.is_some()))
    );

    let pack = builtin()
        .iter()
        .find(|p| p.name == "client-onboarding")
        .unwrap();
    assert_eq!(
        pack.artifact_type("onboarding_plan")
            .unwrap()
            .journey
            .as_deref(),
        Some("client-onboarding")
    );
}

#[test]
fn insurance_migration_runs_discovery_waves_and_validation() {
    let j = template("insurance-migration", "insurance-migration");
    assert_eq!(ids(j), ["discovery", "wave_migration", "validation"]);
    assert!(stage(j, "discovery").entry.iter().any(|c| c.kind
        == CheckKind::Artifact {
            artifact_type: "migration_plan".into()
        }));
    let waves = stage(j, "wave_migration");
    // One wave unit per approved wave definition.
    assert_eq!(waves.activities.len(), 1);
    assert_eq!(waves.activities[0].name, "Wave");
    assert_eq!(
        waves.activities[0].for_each.as_deref(),
        Some("wave_definition")
    );
    assert_eq!(
        metric(&waves.exit, "waves_reconciled_ratio"),
        (Op::Ge, 1.0, None, None)
    );
    assert_eq!(
        waves.rollback.as_ref().unwrap().target.as_deref(),
        Some("wave_migration")
    );
    let pack = builtin()
        .iter()
        .find(|p| p.name == "insurance-migration")
        .unwrap();
    assert_eq!(
        pack.artifact_type("migration_plan")
            .unwrap()
            .journey
            .as_deref(),
        Some("insurance-migration")
    );
}

#[test]
fn data_flow_hands_off_from_upload_to_insights() {
    let j = template("data-flow", "data-flow");
    let milestones = &j.stages[0].milestones;
    let order: Vec<&str> = milestones.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(order, ["uploaded", "parsed", "semantic", "insights"]);
    for m in milestones {
        assert!(
            !matches!(
                waymark_domain::work::Executor::parse(&m.executor),
                Ok(waymark_domain::work::Executor::Agent(_)) | Err(_)
            ),
            "{} should run on a built-in executor",
            m.id
        );
        assert!(
            m.contract.required.contains(&"file_id".to_owned()),
            "{}",
            m.id
        );
    }
    assert!(
        milestones[3]
            .contract
            .required
            .contains(&"insights_result".to_owned())
    );
}

#[test]
fn renewal_works_through_the_playbooks_with_human_tasks() {
    let j = template("renewal", "renewal");
    assert_eq!(ids(j), ["prepare", "critical", "emergency"]);
    for s in &j.stages {
        assert!(!s.activities.is_empty(), "{}", s.id);
        for u in s
            .activities
            .iter()
            .chain(s.rollback.iter().filter_map(|r| r.unit.as_ref()))
        {
            assert!(u.tasks.iter().all(|t| t.executor == "human"), "{}", u.name);
        }
    }
    assert_eq!(
        metric(&stage(j, "critical").entry, "days_until_renewal"),
        (Op::Le, 30.0, None, None)
    );
}

#[test]
fn every_builtin_template_names_its_own_types_and_loads_once() {
    let mut names = std::collections::BTreeSet::new();
    for pack in builtin() {
        for j in &pack.journeys {
            assert!(names.insert(j.name.clone()), "{} twice", j.name);
            for t in &pack.types {
                if let Some(journey) = &t.journey {
                    assert!(pack.journey(journey).is_some());
                }
            }
        }
    }
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "client-onboarding",
            "data-flow",
            "insurance-migration",
            "renewal",
            "renewal-critical",
            "renewal-emergency",
            "renewal-prepare"
        ]
    );
}

#[test]
fn the_documented_example_loads() {
    let doc = include_str!("../../../docs/PACKS.md");
    let section = &doc[doc.find("## Journey templates").unwrap()..];
    let start = section.find("```yaml\n").unwrap() + "```yaml\n".len();
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let m = format!(
        "name: documented\nversion: 1.0.0\ntypes:\n  - name: integration_spec\n    family: journey\n    \
         schema: schemas/doc.json\n    example: examples/doc.json\n    journey: client-onboarding\n{example}"
    );
    let pack = load_with(&m, SCHEMA).unwrap_or_else(|e| panic!("{e}"));
    let j = pack.journey("client-onboarding").unwrap();
    assert_eq!(ids(j), ["sandbox", "integration", "processing"]);
    assert_eq!(j.stages[0].exit.len(), 5);
    assert_eq!(
        j.stages[1].activities[0].for_each.as_deref(),
        Some("integration_spec")
    );
    assert_eq!(j.stages[2].milestones.len(), 2);
}

#[test]
fn templates_from_the_api_are_checked_like_the_packs() {
    for pack in crate::builtin() {
        for t in &pack.journeys {
            assert_eq!(crate::check_journey(t), vec![], "{}", t.name);
        }
    }
    let mut t = crate::builtin()
        .iter()
        .find_map(|p| p.journey("client-onboarding"))
        .unwrap()
        .clone();
    t.stages[1].id = "completed".into();
    t.stages[2].rollback.as_mut().unwrap().target = Some("nowhere".into());
    let dup = t.stages[0].exit[0].clone();
    t.stages[0].exit.push(dup);
    t.stages[0].activities[0].tasks[0].executor = "NOPE NOPE".into();
    let errors = crate::check_journey(&t);
    let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
    assert!(pointers.contains(&"/stages/1/id"), "{pointers:?}");
    assert!(
        pointers.contains(&"/stages/2/rollback/target"),
        "{pointers:?}"
    );
    assert!(
        pointers.iter().any(|p| p.starts_with("/stages/0/exit/")),
        "{pointers:?}"
    );
    assert!(
        pointers
            .iter()
            .any(|p| p.starts_with("/stages/0/activities/0/tasks/0")),
        "{pointers:?}"
    );
}

#[test]
fn an_over_long_criterion_is_refused_at_its_line_and_column() {
    for (term, op, inside) in [("metrics.m", "+", 779), ("true", "&&", 518)] {
        let chain = vec![term; 5_000].join(&format!(" {op} "));
        let (p, line) = refused(
            r#"{ name: precision, metric: search_precision, op: ">=", threshold: 0.8 }"#,
            &format!(r#"{{ name: precision, cel: "{chain}" }}"#),
        );
        assert_eq!(p.len(), 1, "{op}: {p:?}");
        assert!(
            has(
                &p,
                line,
                &format!(
                    "journey tiny-journey, stage first, exit: check precision: line 1, column {inside}: \
                     more than 64 operators in one chain"
                )
            ),
            "{op}: {p:?}"
        );
        let text = manifest().replacen(
            r#"{ name: precision, metric: search_precision, op: ">=", threshold: 0.8 }"#,
            &format!(r#"{{ name: precision, cel: "{chain}" }}"#),
            1,
        );
        let written = text.lines().nth(line as usize - 1).unwrap();
        assert_eq!(
            p[0].column,
            Some(crate::tests::column_of(written, op, 65)),
            "{op}: {p:?}"
        );
    }
}

#[test]
fn templates_from_the_api_are_refused_at_the_pointer_of_the_field() {
    use waymark_domain::criteria::Check;
    let mut t = crate::builtin()
        .iter()
        .find_map(|p| p.journey("client-onboarding"))
        .unwrap()
        .clone();
    let first = t.stages[0].exit.len();
    let check = |v: serde_json::Value| -> Check { serde_json::from_value(v).unwrap() };
    t.stages[0].exit.extend([
        check(serde_json::json!({"name": "long_sum", "cel": vec!["metrics.m"; 5_000].join(" + ")})),
        check(serde_json::json!({"name": "long_and", "cel": vec!["true"; 5_000].join(" && ")})),
        check(serde_json::json!({"name": "zero_window", "metric": "m", "op": ">=", "threshold": 1, "window": "0s"})),
        check(serde_json::json!({"name": "series", "metric": "m", "op": ">=", "threshold": 1, "count": 3, "aggregate": "avg"})),
    ]);
    let errors = crate::check_journey(&t);
    let at = |i: usize, field: &str| {
        let pointer = format!("/stages/0/exit/{}/{field}", first + i);
        errors
            .iter()
            .find(|e| e.pointer == pointer)
            .unwrap_or_else(|| panic!("nothing at {pointer}: {errors:?}"))
            .message
            .clone()
    };
    assert!(
        at(0, "cel").starts_with("line 1, column 779: more than 64 operators in one chain"),
        "{errors:?}"
    );
    assert!(
        at(1, "cel").starts_with("line 1, column 518: more than 64 operators in one chain"),
        "{errors:?}"
    );
    assert!(at(2, "window").contains("longer than zero"), "{errors:?}");
    assert!(
        at(3, "aggregate").contains("no effect with count"),
        "{errors:?}"
    );
    assert_eq!(errors.len(), 4, "{errors:?}");
}
