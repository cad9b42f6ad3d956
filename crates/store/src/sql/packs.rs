//! Installed packs and generation plans.

use sqlx::FromRow;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::*;

#[derive(FromRow)]
struct PlanRow {
    engagement_id: Uuid,
    deliverables: Option<Json<Vec<String>>>,
    created_by: String,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

const PACK_COLUMNS: &str = "name, version, digest, files, installed_by, installed_at";

#[derive(FromRow)]
struct PackRow {
    name: String,
    version: String,
    digest: String,
    files: Json<std::collections::BTreeMap<String, String>>,
    installed_by: String,
    installed_at: OffsetDateTime,
}

impl From<PackRow> for InstalledPack {
    fn from(r: PackRow) -> Self {
        InstalledPack {
            name: r.name,
            version: r.version,
            digest: r.digest,
            files: r.files.0,
            installed_by: r.installed_by,
            installed_at: r.installed_at,
        }
    }
}

pub(crate) async fn save_plan(
    store: &SqlStore,
    engagement_id: EngagementId,
    deliverables: Option<Vec<String>>,
    ctx: &WriteContext,
) -> Result<PlanRecord> {
    let at = now();
    {
        let mut tx = store.db.begin().await?;
        let client: Option<(Uuid,)> = sql("SELECT client_id FROM engagements WHERE id = $1")
            .bind(engagement_id.uuid())
            .fetch_optional(&mut tx)
            .await?;
        let client = client
            .map(|c| ClientId::from_uuid(c.0))
            .ok_or_else(|| not_found("engagement", engagement_id))?;
        sql(
            "INSERT INTO generation_plans (engagement_id, deliverables, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (engagement_id) DO UPDATE SET deliverables = excluded.deliverables, \
             updated_at = excluded.updated_at",
        )
        .bind(engagement_id.uuid())
        .bind(deliverables.as_ref().map(Json))
        .bind(&ctx.actor)
        .bind(at)
        .execute(&mut tx)
        .await?;
        let entry = LogEntry::new("plan.save", Some(client), engagement_id).event(
            "plan.saved",
            Audience::Staff,
            serde_json::json!({
                "engagement_id": engagement_id.to_string(),
                "deliverables": deliverables,
            }),
        );
        append_log(&mut tx, ctx, at, entry).await?;
        tx.commit().await?;
    };
    store
        .get_plan(engagement_id)
        .await?
        .ok_or_else(|| not_found("plan", engagement_id))
}

pub(crate) async fn get_plan(
    store: &SqlStore,
    engagement_id: EngagementId,
) -> Result<Option<PlanRecord>> {
    let row: Option<PlanRow> = sql(
        "SELECT engagement_id, deliverables, created_by, created_at, updated_at \
             FROM generation_plans WHERE engagement_id = $1",
    )
    .bind(engagement_id.uuid())
    .fetch_optional(&mut store.db.reader())
    .await?;
    Ok(row.map(|r| PlanRecord {
        engagement_id: EngagementId::from_uuid(r.engagement_id),
        deliverables: r.deliverables.map(|d| d.0),
        created_by: r.created_by,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }))
}

pub(crate) async fn install_pack(
    store: &SqlStore,
    pack: InstalledPack,
    changed_generators: &[String],
    ctx: &WriteContext,
) -> Result<Vec<Flagged>> {
    {
        let mut tx = store.db.begin().await?;
        if idempotency::replay(&mut tx, ctx, "pack").await?.is_some() {
            return Ok(Vec::new());
        }
        idempotency::record(&mut tx, ctx, "pack", Uuid::nil(), pack.installed_at).await?;
        sql(
            "INSERT INTO installed_packs (name, version, digest, files, installed_by, installed_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name) DO UPDATE SET version = excluded.version, digest = excluded.digest, \
             files = excluded.files, installed_by = excluded.installed_by, \
             installed_at = excluded.installed_at",
        )
        .bind(&pack.name)
        .bind(&pack.version)
        .bind(&pack.digest)
        .bind(Json(&pack.files))
        .bind(&pack.installed_by)
        .bind(pack.installed_at)
        .execute(&mut tx)
        .await?;
        let flagged = super::artifacts::cascade::generators_changed(
            &mut tx,
            &pack.name,
            changed_generators,
            ctx,
            pack.installed_at,
        )
        .await?;
        let stale = super::artifacts::cascade::flagged_json(&flagged);
        let entry = LogEntry::new("pack.install", None, format!("pack:{}", pack.name)).event(
            "pack.installed",
            Audience::Staff,
            serde_json::json!({ "name": pack.name, "version": pack.version, "digest": pack.digest,
                "changed_generators": changed_generators,
                "flagged_count": flagged.len(), "flagged": stale }),
        );
        append_log(&mut tx, ctx, pack.installed_at, entry).await?;
        tx.commit().await?;
        Ok(flagged)
    }
}

pub(crate) async fn installed_pack(store: &SqlStore, name: &str) -> Result<Option<InstalledPack>> {
    let row: Option<PackRow> = sql(format!(
        "SELECT {PACK_COLUMNS} FROM installed_packs WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(&mut store.db.reader())
    .await?;
    Ok(row.map(InstalledPack::from))
}

pub(crate) async fn installed_pack_digest(store: &SqlStore, name: &str) -> Result<Option<String>> {
    let row: Option<(String,)> = sql("SELECT digest FROM installed_packs WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut store.db.reader())
        .await?;
    Ok(row.map(|r| r.0))
}

pub(crate) async fn list_installed_packs(store: &SqlStore) -> Result<Vec<InstalledPack>> {
    let rows: Vec<PackRow> = sql(format!(
        "SELECT {PACK_COLUMNS} FROM installed_packs ORDER BY name"
    ))
    .fetch_all(&mut store.db.reader())
    .await?;
    Ok(rows.into_iter().map(InstalledPack::from).collect())
}
