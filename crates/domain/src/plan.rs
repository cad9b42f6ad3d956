//! Generation plans: from the deliverables selected for an engagement, the DAG of
//! generation jobs, each with its module, priority band and dependencies.
//!
//! A job depends on every selected job of the modules its module depends on
//! (creatives on all strategy jobs, and so on), plus the jobs it names itself.
//! Its status comes from what the engine did with it (queued, running, failed,
//! up to date), the gating of its module's artifact type, whether that artifact
//! can take a new version, and the jobs it waits on.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::gating::Gating;
use crate::graph::find_cycle;

/// A module of a plan: the artifact type its jobs write, its priority band and the
/// modules it waits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    pub artifact_type: String,
    /// Lowest and highest priority of its jobs (inclusive).
    pub band: (i64, i64),
    pub depends_on: Vec<String>,
}

/// A job as a pack declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub key: String,
    pub name: String,
    pub module: String,
    pub priority: i64,
    /// Further jobs it waits on, beyond its module's dependencies.
    pub depends_on: Vec<String>,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting on the jobs it depends on.
    Pending,
    /// Its inputs are there: it can run.
    Ready,
    /// A task of the engine will run it.
    Queued,
    Running,
    /// It wrote its section from the current inputs: up to date.
    Completed,
    /// Its last run failed (see `reasons`); an incident is open on its unit.
    Failed,
    /// Its artifact type is locked by gating, or its artifact cannot take a new
    /// version (see `reasons`).
    Blocked,
}

impl JobStatus {
    /// The snake_case name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Ready => "ready",
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Blocked => "blocked",
        }
    }
}

/// One job of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PlannedJob {
    pub key: String,
    pub name: String,
    pub module: String,
    /// The artifact type the job writes.
    #[serde(rename = "type")]
    pub artifact_type: String,
    /// Lower runs first; inside the module's band.
    pub priority: i64,
    /// Keys of the jobs it waits on.
    pub depends_on: Vec<String>,
    pub status: JobStatus,
    /// Why it is blocked or failed: the gating reasons of its type, what locks
    /// its artifact, or its last error.
    pub reasons: Vec<String>,
}

/// What the engine did with a job, as its plan record and last task tell.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum JobRun {
    /// Never run, or its last run was cancelled or skipped.
    #[default]
    NotRun,
    /// It ran, but its inputs changed since: it must run again.
    OutOfDate,
    /// Its task waits for its turn.
    Queued,
    Running,
    /// Its task failed; the error.
    Failed(String),
    /// It ran on the current inputs.
    UpToDate,
}

/// What is wrong with a plan definition or a selection of deliverables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// A type as [`derived`] reads it: its name, title, the types it requires
/// and whether it has a generator.
pub struct TypeSpec<'a> {
    pub name: &'a str,
    pub title: &'a str,
    pub requires: &'a [String],
    pub generates: bool,
}

/// The plan of a pack that declares none: one module and one job per type
/// with a generator, in pipeline order (bands of 100), each module waiting on
/// the modules of the types it requires. `None` when no type has a
/// generator. A job named after its type writes the whole artifact.
pub fn derived(types: &[TypeSpec<'_>]) -> Option<(Vec<Module>, Vec<JobSpec>)> {
    let generating: Vec<&TypeSpec> = types.iter().filter(|t| t.generates).collect();
    if generating.is_empty() {
        return None;
    }
    let names: Vec<&str> = generating.iter().map(|t| t.name).collect();
    let mut modules = Vec::new();
    let mut jobs = Vec::new();
    for (i, t) in generating.iter().enumerate() {
        let low = i as i64 * 100;
        modules.push(Module {
            name: t.name.to_owned(),
            artifact_type: t.name.to_owned(),
            band: (low, low + 99),
            depends_on: t
                .requires
                .iter()
                .filter(|r| names.contains(&r.as_str()))
                .cloned()
                .collect(),
        });
        jobs.push(JobSpec {
            key: t.name.to_owned(),
            name: t.title.to_owned(),
            module: t.name.to_owned(),
            priority: low,
            depends_on: Vec::new(),
        });
    }
    Some((modules, jobs))
}

/// Checks a plan definition: known modules, priorities inside bands, known job
/// dependencies, unique keys, no cycles. Answers every problem found.
pub fn check_definition(modules: &[Module], jobs: &[JobSpec]) -> Vec<String> {
    let mut problems = Vec::new();
    let by_name: BTreeMap<&str, &Module> = modules.iter().map(|m| (m.name.as_str(), m)).collect();
    if by_name.len() != modules.len() {
        problems.push("two modules have the same name; module names must be unique".to_owned());
    }
    for m in modules {
        if m.band.0 > m.band.1 {
            problems.push(format!(
                "module {}: band [{}, {}] is empty; write the lower bound first",
                m.name, m.band.0, m.band.1
            ));
        }
        for d in &m.depends_on {
            if !by_name.contains_key(d.as_str()) {
                problems.push(format!("module {} depends on unknown module {d}", m.name));
            }
        }
    }
    let module_graph: BTreeMap<&str, Vec<&str>> = modules
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                m.depends_on.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    if let Some(cycle) = find_cycle(&module_graph) {
        problems.push(format!(
            "modules depend on each other in a cycle: {}",
            cycle.join(" -> ")
        ));
    }
    let keys: BTreeSet<&str> = jobs.iter().map(|j| j.key.as_str()).collect();
    if keys.len() != jobs.len() {
        let mut seen = BTreeSet::new();
        for j in jobs {
            if !seen.insert(j.key.as_str()) {
                problems.push(format!(
                    "job key {} is used twice; keys must be unique",
                    j.key
                ));
            }
        }
    }
    for j in jobs {
        match by_name.get(j.module.as_str()) {
            None => problems.push(format!(
                "job {} names unknown module {}; declare it under plan.modules",
                j.key, j.module
            )),
            Some(m) if j.priority < m.band.0 || j.priority > m.band.1 => problems.push(format!(
                "job {} has priority {} outside its module {}'s band [{}, {}]",
                j.key, j.priority, m.name, m.band.0, m.band.1
            )),
            Some(_) => {}
        }
        for d in &j.depends_on {
            if !keys.contains(d.as_str()) {
                problems.push(format!("job {} depends on unknown job {d}", j.key));
            }
        }
    }
    if problems.is_empty() {
        let all: Vec<&str> = keys.iter().copied().collect();
        let graph = job_graph(modules, jobs, &all);
        let graph: BTreeMap<&str, Vec<&str>> = graph
            .iter()
            .map(|(k, v)| (*k, v.iter().copied().collect()))
            .collect();
        if let Some(cycle) = find_cycle(&graph) {
            problems.push(format!(
                "jobs depend on each other in a cycle: {}",
                cycle.join(" -> ")
            ));
        }
    }
    problems
}

/// The dependencies of each selected job, restricted to selected jobs.
fn job_graph<'a>(
    modules: &'a [Module],
    jobs: &'a [JobSpec],
    selected: &[&'a str],
) -> BTreeMap<&'a str, BTreeSet<&'a str>> {
    let chosen: BTreeSet<&str> = selected.iter().copied().collect();
    let mut by_module: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for j in jobs.iter().filter(|j| chosen.contains(j.key.as_str())) {
        by_module.entry(&j.module).or_default().push(&j.key);
    }
    jobs.iter()
        .filter(|j| chosen.contains(j.key.as_str()))
        .map(|j| {
            let mut deps: BTreeSet<&str> = BTreeSet::new();
            if let Some(m) = modules.iter().find(|m| m.name == j.module) {
                for upstream in &m.depends_on {
                    deps.extend(by_module.get(upstream.as_str()).into_iter().flatten());
                }
            }
            deps.extend(
                j.depends_on
                    .iter()
                    .map(String::as_str)
                    .filter(|d| chosen.contains(d)),
            );
            (j.key.as_str(), deps)
        })
        .collect()
}

/// The plan for `selected` job keys (`None`: every job), ordered by priority.
/// `gating` answers the gating of an artifact type; `run` what the engine did
/// with a job; `locked` why a type's artifact cannot take a new version (it is
/// in review or approved), if it cannot.
///
/// A job is ready when none of that stops it and every job it waits on is up to
/// date, or belongs to a type whose artifact is locked (a person took it as it
/// is).
pub fn build(
    modules: &[Module],
    jobs: &[JobSpec],
    selected: Option<&[String]>,
    gating: impl Fn(&str) -> Gating,
    run: impl Fn(&str) -> JobRun,
    locked: impl Fn(&str) -> Option<String>,
) -> Result<Vec<PlannedJob>, PlanError> {
    let keys: Vec<&str> = match selected {
        None => jobs.iter().map(|j| j.key.as_str()).collect(),
        Some(sel) => {
            let unknown: Vec<&str> = sel
                .iter()
                .map(String::as_str)
                .filter(|k| !jobs.iter().any(|j| j.key == *k))
                .collect();
            if !unknown.is_empty() {
                return Err(PlanError(format!(
                    "unknown deliverables: {}; the pack offers: {}",
                    unknown.join(", "),
                    jobs.iter()
                        .map(|j| j.key.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            sel.iter().map(String::as_str).collect()
        }
    };
    let graph = job_graph(modules, jobs, &keys);
    let type_of = |key: &str| -> &str {
        jobs.iter()
            .find(|j| j.key == key)
            .and_then(|j| modules.iter().find(|m| m.name == j.module))
            .map(|m| m.artifact_type.as_str())
            .unwrap_or("")
    };
    let satisfied = |key: &str| run(key) == JobRun::UpToDate || locked(type_of(key)).is_some();
    let mut gates: BTreeMap<&str, Gating> = BTreeMap::new();
    let mut planned: Vec<PlannedJob> = jobs
        .iter()
        .filter(|j| graph.contains_key(j.key.as_str()))
        .map(|j| {
            let artifact_type = type_of(&j.key).to_owned();
            let gate = gates
                .entry(type_of(&j.key))
                .or_insert_with(|| gating(&artifact_type))
                .clone();
            let depends_on: Vec<String> = graph[j.key.as_str()]
                .iter()
                .map(|d| (*d).to_owned())
                .collect();
            let (status, reasons) = match run(&j.key) {
                JobRun::UpToDate => (JobStatus::Completed, vec![]),
                JobRun::Queued => (JobStatus::Queued, vec![]),
                JobRun::Running => (JobStatus::Running, vec![]),
                JobRun::Failed(error) => (JobStatus::Failed, vec![error]),
                JobRun::NotRun | JobRun::OutOfDate => {
                    if !gate.allowed {
                        (JobStatus::Blocked, gate.reasons)
                    } else if let Some(why) = locked(&artifact_type) {
                        (JobStatus::Blocked, vec![why])
                    } else if depends_on.iter().all(|d| satisfied(d)) {
                        (JobStatus::Ready, vec![])
                    } else {
                        (JobStatus::Pending, vec![])
                    }
                }
            };
            PlannedJob {
                key: j.key.clone(),
                name: j.name.clone(),
                module: j.module.clone(),
                artifact_type,
                priority: j.priority,
                depends_on,
                status,
                reasons,
            }
        })
        .collect();
    planned.sort_by(|a, b| a.priority.cmp(&b.priority).then_with(|| a.key.cmp(&b.key)));
    Ok(planned)
}

/// The jobs a run takes: the highest-priority ready one (`all = false`) or
/// every ready one, in priority order.
pub fn runnable(plan: &[PlannedJob], all: bool) -> Vec<&PlannedJob> {
    let ready = plan.iter().filter(|j| j.status == JobStatus::Ready);
    if all {
        ready.collect()
    } else {
        ready.take(1).collect()
    }
}

/// For each job of `chosen` (in priority order), the job of the same module run
/// just before it in `chosen`: jobs of one module write one artifact, so they
/// run one after the other.
pub fn chain_by_module<'a>(chosen: &[&'a PlannedJob]) -> Vec<Option<&'a str>> {
    let mut last: BTreeMap<&str, &str> = BTreeMap::new();
    chosen
        .iter()
        .map(|j| last.insert(j.module.as_str(), j.key.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {

    #[test]
    fn packs_without_a_plan_get_one_job_per_generated_type() {
        let none: Vec<String> = vec![];
        let intake = vec!["intake".to_owned()];
        let analysis = vec!["analysis".to_owned(), "intake".to_owned()];
        let types = [
            TypeSpec {
                name: "intake",
                title: "Intake",
                requires: &none,
                generates: false,
            },
            TypeSpec {
                name: "analysis",
                title: "Analysis",
                requires: &intake,
                generates: true,
            },
            TypeSpec {
                name: "proposal",
                title: "Proposal",
                requires: &analysis,
                generates: true,
            },
        ];
        let (modules, jobs) = derived(&types).unwrap();
        assert_eq!(modules.len(), 2);
        assert_eq!(modules[0].depends_on, Vec::<String>::new());
        assert_eq!(modules[1].depends_on, ["analysis"]);
        assert_eq!(modules[1].band, (100, 199));
        assert_eq!(jobs[1].key, "proposal");
        assert_eq!(jobs[1].priority, 100);
        assert!(check_definition(&modules, &jobs).is_empty());
        assert!(derived(&types[..1]).is_none());
    }

    use super::*;

    fn module(name: &str, band: (i64, i64), deps: &[&str]) -> Module {
        Module {
            name: name.into(),
            artifact_type: name.into(),
            band,
            depends_on: deps.iter().map(|d| (*d).into()).collect(),
        }
    }

    fn job(key: &str, module: &str, priority: i64) -> JobSpec {
        JobSpec {
            key: key.into(),
            name: key.into(),
            module: module.into(),
            priority,
            depends_on: vec![],
        }
    }

    fn done(yes: bool) -> JobRun {
        if yes {
            JobRun::UpToDate
        } else {
            JobRun::NotRun
        }
    }

    fn open(t: &str) -> Gating {
        Gating {
            artifact_type: t.into(),
            allowed: true,
            reasons: vec![],
        }
    }

    fn fixture() -> (Vec<Module>, Vec<JobSpec>) {
        (
            vec![
                module("strategy", (0, 99), &[]),
                module("creatives", (100, 199), &["strategy"]),
                module("execution", (200, 299), &["strategy", "creatives"]),
            ],
            vec![
                job("icp", "strategy", 0),
                job("positioning", "strategy", 1),
                job("carousel", "creatives", 100),
                job("calendar", "execution", 200),
            ],
        )
    }

    #[test]
    fn module_dependencies_become_job_dependencies() {
        let (modules, jobs) = fixture();
        assert!(check_definition(&modules, &jobs).is_empty());
        let plan = build(&modules, &jobs, None, open, |_| JobRun::NotRun, |_| None).unwrap();
        let keys: Vec<&str> = plan.iter().map(|j| j.key.as_str()).collect();
        assert_eq!(keys, ["icp", "positioning", "carousel", "calendar"]);
        assert_eq!(plan[2].depends_on, ["icp", "positioning"]);
        assert_eq!(plan[3].depends_on, ["carousel", "icp", "positioning"]);
        assert_eq!(plan[0].status, JobStatus::Ready);
        assert_eq!(plan[2].status, JobStatus::Pending);
        for j in &plan {
            assert_eq!(serde_json::to_value(j.status).unwrap(), j.status.as_str());
        }
    }

    #[test]
    fn a_selection_keeps_only_its_jobs_and_their_edges() {
        let (modules, jobs) = fixture();
        let sel = vec!["icp".to_owned(), "calendar".to_owned()];
        let plan = build(
            &modules,
            &jobs,
            Some(&sel),
            open,
            |k| done(k == "icp"),
            |_| None,
        )
        .unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].status, JobStatus::Completed);
        assert_eq!(plan[1].depends_on, ["icp"]);
        assert_eq!(plan[1].status, JobStatus::Ready);
        let bad = vec!["nope".to_owned()];
        assert!(
            build(
                &modules,
                &jobs,
                Some(&bad),
                open,
                |_| JobRun::NotRun,
                |_| None
            )
            .is_err()
        );
    }

    #[test]
    fn gated_types_block_their_jobs_with_the_reasons() {
        let (modules, jobs) = fixture();
        let plan = build(
            &modules,
            &jobs,
            None,
            |t| Gating {
                artifact_type: t.into(),
                allowed: t == "strategy",
                reasons: if t == "strategy" {
                    vec![]
                } else {
                    vec!["strategy (missing)".into()]
                },
            },
            |_| JobRun::NotRun,
            |_| None,
        )
        .unwrap();
        assert_eq!(plan[2].status, JobStatus::Blocked);
        assert_eq!(plan[2].reasons, ["strategy (missing)"]);
    }

    #[test]
    fn the_engine_state_and_locked_artifacts_decide_the_rest() {
        let (modules, jobs) = fixture();
        let run = |k: &str| match k {
            "icp" => JobRun::UpToDate,
            "positioning" => JobRun::Failed("boom".into()),
            "carousel" => JobRun::Running,
            _ => JobRun::OutOfDate,
        };
        let plan = build(&modules, &jobs, None, open, run, |_| None).unwrap();
        let status: Vec<JobStatus> = plan.iter().map(|j| j.status).collect();
        assert_eq!(
            status,
            [
                JobStatus::Completed,
                JobStatus::Failed,
                JobStatus::Running,
                JobStatus::Pending
            ]
        );
        assert_eq!(plan[1].reasons, ["boom"]);
        // A locked strategy artifact: its jobs cannot write, and count as done for
        // the jobs waiting on them.
        let locked = |t: &str| (t == "strategy").then(|| "strategy is approved".to_owned());
        let plan = build(&modules, &jobs, None, open, |_| JobRun::NotRun, locked).unwrap();
        assert_eq!(plan[0].status, JobStatus::Blocked);
        assert_eq!(plan[0].reasons, ["strategy is approved"]);
        assert_eq!(plan[2].status, JobStatus::Ready);
        assert_eq!(plan[3].status, JobStatus::Pending);
    }

    #[test]
    fn runs_take_the_ready_jobs_and_chain_each_module() {
        let (modules, jobs) = fixture();
        let plan = build(&modules, &jobs, None, open, |_| JobRun::NotRun, |_| None).unwrap();
        let next: Vec<&str> = runnable(&plan, false)
            .iter()
            .map(|j| j.key.as_str())
            .collect();
        assert_eq!(next, ["icp"]);
        let all = runnable(&plan, true);
        let keys: Vec<&str> = all.iter().map(|j| j.key.as_str()).collect();
        assert_eq!(keys, ["icp", "positioning"]);
        assert_eq!(chain_by_module(&all), [None, Some("icp")]);
    }

    #[test]
    fn bad_definitions_are_explained() {
        let (modules, mut jobs) = fixture();
        jobs.push(job("late", "strategy", 150));
        jobs.push(job("lost", "nowhere", 0));
        jobs.push(JobSpec {
            depends_on: vec!["ghost".into()],
            ..job("needy", "strategy", 5)
        });
        let problems = check_definition(&modules, &jobs);
        assert_eq!(problems.len(), 3, "{problems:?}");
        let (modules, mut jobs) = fixture();
        jobs[0].depends_on = vec!["carousel".into()];
        let problems = check_definition(&modules, &jobs);
        assert!(problems[0].contains("cycle"), "{problems:?}");
    }
}
