//! Generation plan jobs: their latest tasks, and the transaction that
//! completes a generation task together with the artifact version it wrote.

use serde_json::Value;
use uuid::Uuid;
use waymark_domain::{ArtifactId, EngagementId};

use super::*;

pub(crate) async fn plan_jobs(
    store: &SqlStore,
    engagement_id: EngagementId,
) -> Result<Vec<PlanJobRecord>> {
    let rows: Vec<PlanJobRow> = sql(
        "SELECT p.job_key, p.inputs_hash, p.artifact_id, p.version, p.provenance, p.task_id, \
             t.unit_id, t.status AS task_status, t.last_error AS task_error, p.updated_at \
             FROM plan_jobs p LEFT JOIN tasks t ON t.id = p.task_id \
             WHERE p.engagement_id = $1 ORDER BY p.job_key",
    )
    .bind(engagement_id.uuid())
    .fetch_all(&mut store.db.reader())
    .await?;
    rows.into_iter().map(PlanJobRow::record).collect()
}

pub(crate) async fn finish_generation(
    store: &SqlStore,
    g: Generated,
    ctx: &WriteContext,
) -> Result<GenerationDone> {
    let mut woken = Woken::default();
    let created = ArtifactId::new();
    let done = {
        let mut tx = store.db.begin().await?;
        let now = engine_now(&mut tx).await?;
        // Generation results of one engagement commit one at a time (on
        // PostgreSQL the engagement's row is the lock): each reads every
        // current artifact of the engagement, then writes one.
        sql(format!(
            "SELECT id FROM engagements WHERE id = $1{}",
            store.lock_clause()
        ))
        .bind(g.engagement_id.uuid())
        .fetch_optional::<(Uuid,)>(&mut tx)
        .await?;
        let rows = load_tasks(&mut tx, &[g.task_id.uuid()]).await?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| not_found("task", g.task_id))?;
        check_finisher(&row, Some(&g.lease_token), g.task_id, now)?;
        let latest: Option<(Option<Uuid>,)> =
            sql("SELECT task_id FROM plan_jobs WHERE engagement_id = $1 AND job_key = $2")
                .bind(g.engagement_id.uuid())
                .bind(&g.job_key)
                .fetch_optional(&mut tx)
                .await?;
        if latest.and_then(|l| l.0) != Some(row.id) {
            return Err(StoreError::Refused {
                code: "job_superseded",
                detail: format!(
                    "job {} of engagement {} has a newer task; this one's result is not recorded",
                    g.job_key, g.engagement_id
                ),
            });
        }
        let current = current_in_engagement(&mut tx, g.engagement_id.uuid()).await?;
        let now_base = current
            .get(&g.artifact_type)
            .map(|c| (ArtifactId::from_uuid(c.id), c.version));
        if now_base != g.base {
            return Err(StoreError::Conflict(format!(
                "the {} artifact changed while job {} ran (it read {}, it is now {}); the job runs again on the new one",
                g.artifact_type,
                g.job_key,
                describe_base(g.base),
                describe_base(now_base),
            )));
        }
        let gate = gating::evaluate(&g.artifact_type, &g.pipeline.requires, |t| {
            current.get(t).and_then(|c| status(&c.status).ok())
        });
        if !gate.allowed {
            return Err(StoreError::Gated(gate));
        }
        let (artifact, flagged) = match g.base {
            Some((id, expected)) => {
                let input = VersionInput::New(NewVersion {
                    content: g.content.clone(),
                    sources: Some(g.sources.clone()),
                    note: Some(g.note.clone()),
                    provenance: g.provenance.clone(),
                    pipeline: Some(g.pipeline.clone()),
                });
                let written = artifacts::write_version(&mut tx, id, expected, input, ctx).await?;
                (written.artifact, written.flagged)
            }
            None => {
                let new = NewArtifact {
                    client_id: g.client_id,
                    engagement_id: Some(g.engagement_id),
                    artifact_type: g.artifact_type.clone(),
                    title: g.title.clone(),
                    content: g.content.clone(),
                    sources: Some(g.sources.clone()),
                    note: Some(g.note.clone()),
                    provenance: g.provenance.clone(),
                    pipeline: Some(g.pipeline.clone()),
                };
                let artifact =
                    artifacts::insert_artifact(&mut tx, created, &new, ctx, at(now)).await?;
                (artifact, Vec::new())
            }
        };
        let artifact_id = artifact.summary.id;
        let version = artifact.summary.version;
        let inputs_hash = artifact.inputs_hash;
        sql(
            "UPDATE plan_jobs SET inputs_hash = $3, artifact_id = $4, version = $5, provenance = $6, \
             updated_at = $7 WHERE engagement_id = $1 AND job_key = $2",
        )
        .bind(g.engagement_id.uuid())
        .bind(&g.job_key)
        .bind(&inputs_hash)
        .bind(artifact_id.uuid())
        .bind(version)
        .bind(&g.provenance)
        .bind(now)
        .execute(&mut tx)
        .await?;
        let mut output = match g.output {
            Value::Object(m) => m,
            _ => Default::default(),
        };
        output.insert("artifact_id".into(), Value::from(artifact_id.to_string()));
        output.insert("version".into(), Value::from(version));
        output.insert("inputs_hash".into(), Value::from(inputs_hash.clone()));
        output.insert("provenance".into(), Value::from(g.provenance.clone()));
        let mut entries = Vec::new();
        settle(
            &mut tx,
            vec![(
                row,
                Outcome::Completed {
                    output: Value::Object(output),
                },
            )],
            &Ends {
                now,
                finisher: &ctx.actor,
                expired: false,
            },
            &mut woken,
            &mut entries,
        )
        .await?;
        notify_lanes(&mut tx, &woken).await?;
        append_logs(&mut tx, ctx, at(now), entries).await?;
        tx.commit().await?;
        GenerationDone {
            artifact_id,
            version,
            inputs_hash,
            flagged,
        }
    };
    store.wake(&woken);
    Ok(done)
}
