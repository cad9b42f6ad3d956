//! The `llm.generate` executor: runs one job of an engagement's generation plan.
//!
//! The job reads the current artifacts of the types its module's type requires
//! (approved, or gating would stop it), computes its inputs hash (type, the
//! pack's generator and the job key, the sources' content hashes), and is done
//! at once when the hash equals the one its last run recorded: up to date.
//! Otherwise it asks the configured LLM provider for its section, and falls back
//! to the pack's deterministic template when there is no provider, the call
//! fails, or the answer does not fit the type's schema. The new version (with
//! its sources, inputs hash and provenance) is written in the transaction that
//! completes the task, so a job's result is recorded once or not at all.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use serde_json::{Value, json};
use waymark_domain::artifact::{ResolvedSource, SourceRef, inputs_hash};
use waymark_domain::content::ContentHash;
use waymark_domain::generate::{job_generator, job_prompt, merge_section, render_template};
use waymark_domain::lifecycle::ArtifactStatus;
use waymark_domain::{EngagementId, gating};
use waymark_packs::{Pack, TypeDef};
use waymark_store::{Artifact, ArtifactSummary, Generated, Leased, Outcome, Pipeline, StoreError};

use crate::run::{Runtime, Step};
use waymark_llm::{Prompt, json_object};

/// A generation task's input.
#[derive(Debug, Deserialize)]
struct JobInput {
    engagement_id: EngagementId,
    job: String,
}

/// Why an attempt failed, and whether another may succeed.
struct Failure {
    error: String,
    retryable: bool,
}

fn fatal(error: impl Into<String>) -> Failure {
    Failure {
        error: error.into(),
        retryable: false,
    }
}

fn transient(error: impl Into<String>) -> Failure {
    Failure {
        error: error.into(),
        retryable: true,
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => fatal(e.to_string()),
            other => transient(other.to_string()),
        }
    }
}

/// Runs the job of a claimed `llm.generate` task.
pub(crate) async fn run(rt: &Runtime, leased: &Leased) -> Step {
    match generate(rt, leased).await {
        Ok(step) => step,
        Err(f) => Step::Finish(Outcome::Failed {
            error: f.error,
            retryable: f.retryable,
        }),
    }
}

/// What a job produced, and by whom.
struct Produced {
    content: Value,
    provenance: String,
    /// Why the template answered although a provider is configured.
    fallback: Option<String>,
}

async fn generate(rt: &Runtime, leased: &Leased) -> Result<Step, Failure> {
    let task = &leased.task;
    let input: JobInput = serde_json::from_value(task.input.clone()).map_err(|e| {
        fatal(format!(
            "the task's input is not a generation job ({e}); it needs {{\"engagement_id\", \"job\"}}"
        ))
    })?;
    let engagement = rt.store.get_engagement(input.engagement_id).await?;
    let pack = rt.packs.get(&engagement.pack).await?.ok_or_else(|| {
        fatal(format!(
            "engagement {} uses pack {}, which this server does not have; install it",
            engagement.id, engagement.pack
        ))
    })?;
    let plan = pack
        .plan
        .as_ref()
        .ok_or_else(|| fatal(format!("pack {} has no generation plan", pack.name)))?;
    let job = plan
        .jobs
        .iter()
        .find(|j| j.key == input.job)
        .ok_or_else(|| fatal(format!("pack {} has no job {}", pack.name, input.job)))?;
    let ty = plan
        .modules
        .iter()
        .find(|m| m.name == job.module)
        .and_then(|m| pack.artifact_type(&m.artifact_type))
        .ok_or_else(|| fatal(format!("job {} has no artifact type", job.key)))?;

    let current: HashMap<String, ArtifactSummary> = rt
        .store
        .current_artifacts(engagement.id)
        .await?
        .into_iter()
        .map(|a| (a.artifact_type.clone(), a))
        .collect();
    let gate = gating::evaluate(&ty.name, &ty.requires, |t| current.get(t).map(|a| a.status));
    if !gate.allowed {
        return Err(fatal(format!(
            "{} cannot be generated yet: {}",
            ty.name,
            gate.reasons.join("; ")
        )));
    }
    let mut sources: Vec<Artifact> = Vec::with_capacity(ty.requires.len());
    for t in &ty.requires {
        if let Some(a) = current.get(t) {
            sources.push(rt.store.get_artifact(a.id).await?);
        }
    }
    let generator = job_generator(&ty.generator_fingerprint(), &job.key);
    let resolved: Vec<ResolvedSource> = sources
        .iter()
        .map(|a| ResolvedSource {
            source: SourceRef {
                artifact_id: a.summary.id,
                version: a.summary.version,
            },
            artifact_type: a.summary.artifact_type.clone(),
            content_hash: ContentHash::from_stored(a.summary.content_hash.clone()),
        })
        .collect();
    let hash = inputs_hash(&ty.name, &generator, &resolved).to_string();
    let target = current.get(&ty.name);
    let record = rt
        .store
        .plan_jobs(engagement.id)
        .await?
        .into_iter()
        .find(|r| r.job_key == job.key);
    let latest = record.as_ref().and_then(|r| r.task_id);
    if latest != Some(task.id) {
        // A newer run of the job was queued: it writes, this one does not.
        return Ok(Step::Finish(Outcome::Completed {
            output: json!({"superseded_by": latest}),
        }));
    }
    if let (Some(r), Some(t)) = (&record, target)
        && r.inputs_hash.as_deref() == Some(hash.as_str())
        && r.artifact_id == Some(t.id)
        && t.status != ArtifactStatus::Stale
    {
        return Ok(Step::Finish(Outcome::Completed {
            output: json!({
                "up_to_date": true,
                "artifact_id": t.id,
                "version": r.version,
                "inputs_hash": hash,
                "provenance": r.provenance,
            }),
        }));
    }
    if let Some(t) = target
        && !t.status.is_editable()
    {
        return Err(fatal(format!(
            "the {} artifact {} is {}; move it back to draft to regenerate job {}",
            ty.name,
            t.id,
            t.status.as_str(),
            job.key
        )));
    }
    let previous = match target {
        Some(t) => Some(rt.store.get_artifact(t.id).await?),
        None => None,
    };
    let upstream = upstream_contents(rt, &pack, ty, &current, &sources).await?;
    let produced = produce(
        rt,
        ty,
        job,
        &sources,
        &upstream,
        previous.as_ref().map(|p| &p.content),
    )
    .await?;

    let mut output = json!({"job": job.key});
    if let Some(why) = &produced.fallback {
        output["fallback_reason"] = Value::from(why.clone());
    }
    let generated = Generated {
        task_id: task.id,
        lease_token: leased.lease_token.clone(),
        engagement_id: engagement.id,
        job_key: job.key.clone(),
        client_id: engagement.client_id,
        artifact_type: ty.name.clone(),
        title: ty.title.clone(),
        base: previous.as_ref().map(|p| (p.summary.id, p.summary.version)),
        content: produced.content,
        sources: resolved.iter().map(|r| r.source).collect(),
        provenance: produced.provenance.clone(),
        pipeline: Pipeline {
            requires: ty.requires.clone(),
            generator,
        },
        note: format!("{} ({})", job.name, produced.provenance),
        output,
    };
    match rt.store.finish_generation(generated, &rt.ctx).await {
        Ok(done) => {
            tracing::info!(task = %task.id, job = %job.key, artifact = %done.artifact_id,
                version = done.version, provenance = %produced.provenance, "generation job wrote a version");
            Ok(Step::Recorded)
        }
        Err(StoreError::Conflict(why)) => Err(transient(why)),
        Err(e @ StoreError::VersionMismatch { .. }) => Err(transient(e.to_string())),
        Err(StoreError::Gated(g)) => Err(fatal(format!(
            "{} cannot be generated any more: {}",
            ty.name,
            g.reasons.join("; ")
        ))),
        Err(StoreError::Refused { code, detail }) => {
            // The lease expired or the job was queued again: someone else owns
            // the result now.
            tracing::info!(task = %task.id, %code, %detail, "generation result not recorded");
            Ok(Step::Recorded)
        }
        Err(e) => Err(transient(e.to_string())),
    }
}

/// The contents placeholders are looked up in, after the direct sources: the
/// current artifacts further upstream, nearest first (a creatives job finds
/// the client's name in the intake its strategy was built on).
async fn upstream_contents(
    rt: &Runtime,
    pack: &Pack,
    ty: &TypeDef,
    current: &HashMap<String, ArtifactSummary>,
    sources: &[Artifact],
) -> Result<Vec<Value>, Failure> {
    let mut seen: HashSet<String> = ty.requires.iter().cloned().collect();
    seen.insert(ty.name.clone());
    let mut frontier: Vec<String> = ty.requires.clone();
    let mut out: Vec<Value> = sources.iter().map(|a| a.content.clone()).collect();
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for t in &frontier {
            for up in pack
                .artifact_type(t)
                .map(|d| d.requires.as_slice())
                .unwrap_or(&[])
            {
                if seen.insert(up.clone()) {
                    if let Some(a) = current.get(up) {
                        out.push(rt.store.get_artifact(a.id).await?.content);
                    }
                    next.push(up.clone());
                }
            }
        }
        frontier = next;
    }
    Ok(out)
}

/// The job's content: the provider's answer when there is a provider and its
/// answer fits the schema, else the rendered template.
async fn produce(
    rt: &Runtime,
    ty: &TypeDef,
    job: &waymark_domain::plan::JobSpec,
    sources: &[Artifact],
    upstream: &[Value],
    previous: Option<&Value>,
) -> Result<Produced, Failure> {
    let mut fallback = None;
    if rt.llm.settings().is_some() {
        let pack_prompt = ty
            .generator
            .as_ref()
            .and_then(|g| g.prompt.clone())
            .unwrap_or_else(|| format!("# {}\n\n{}", ty.title, ty.description));
        let named: Vec<(String, &Value)> = sources
            .iter()
            .map(|a| (a.summary.artifact_type.clone(), &a.content))
            .collect();
        let prompt = Prompt {
            system: Some(
                "You write deliverables for a client engagement. Answer with one JSON object \
                 and nothing else."
                    .into(),
            ),
            history: vec![],
            user: job_prompt(&pack_prompt, &job.key, &job.name, &named, previous),
            temperature: ty
                .generator
                .as_ref()
                .and_then(|g| g.parameters.get("temperature"))
                .and_then(Value::as_f64),
            json: true,
        };
        match rt.llm.complete(&prompt, None).await {
            Ok(answer) => match json_object(&answer.text) {
                Some(v) => {
                    let content = merge_section(previous, &v, &job.key);
                    let checked = ty.check(&content, "/content");
                    match checked.errors.first() {
                        None => {
                            return Ok(Produced {
                                content,
                                provenance: answer.provenance,
                                fallback: None,
                            });
                        }
                        Some(e) => {
                            fallback = Some(format!(
                                "{}'s answer does not fit the {} schema ({} errors; first: {} {})",
                                answer.provenance,
                                ty.name,
                                checked.errors.len(),
                                e.pointer,
                                e.message
                            ))
                        }
                    }
                }
                None => {
                    fallback = Some(format!(
                        "{}'s answer is not a JSON object",
                        answer.provenance
                    ))
                }
            },
            Err(e) => fallback = Some(e.to_string()),
        }
        tracing::warn!(job = %job.key, reason = fallback.as_deref().unwrap_or(""),
            "the LLM provider did not give usable content; the template answers");
    }
    let template = ty
        .generator
        .as_ref()
        .and_then(|g| g.template.clone())
        .unwrap_or_else(|| ty.example.clone());
    let lookups: Vec<&Value> = upstream.iter().collect();
    let rendered = render_template(&template, &lookups);
    let content = merge_section(previous, &rendered, &job.key);
    let checked = ty.check(&content, "/content");
    if let Some(e) = checked.errors.first() {
        return Err(fatal(format!(
            "the {} template, rendered, does not fit the type's schema ({} {}); fix the pack's template",
            ty.name, e.pointer, e.message
        )));
    }
    Ok(Produced {
        content,
        provenance: "template".into(),
        fallback,
    })
}
