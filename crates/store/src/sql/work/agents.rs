//! The registry of external agents.

use sqlx::types::Json;

use uuid::Uuid;

use super::*;

pub(crate) async fn register_agent(
    store: &SqlStore,
    agent: NewAgent,
    ctx: &WriteContext,
) -> Result<(Agent, bool)> {
    let now = now_us();
    let created = {
        let mut tx = store.db.begin().await?;
        // A replay answers as the first request did: registered, or updated.
        if let Some(r) =
            idempotency::replay_of(&mut tx, ctx, &["agent.registered", "agent.updated"]).await?
        {
            drop(tx);
            return Ok((
                store.get_agent(&agent.id).await?,
                r.kind == "agent.registered",
            ));
        }
        let existing: Option<(String,)> = sql(format!(
            "SELECT id FROM agents WHERE id = $1{}",
            store.lock_clause()
        ))
        .bind(&agent.id)
        .fetch_optional(&mut tx)
        .await?;
        if existing.is_some() {
            sql(
                "UPDATE agents SET description = $2, capabilities = $3, updated_at = $4, \
                 last_seen_at = $4 WHERE id = $1",
            )
            .bind(&agent.id)
            .bind(&agent.description)
            .bind(Json(&agent.capabilities))
            .bind(now)
            .execute(&mut tx)
            .await?;
        } else {
            sql(
                "INSERT INTO agents (id, description, capabilities, created_by, created_at, updated_at, last_seen_at) \
                 VALUES ($1, $2, $3, $4, $5, $5, $5)",
            )
            .bind(&agent.id)
            .bind(&agent.description)
            .bind(Json(&agent.capabilities))
            .bind(&ctx.actor)
            .bind(now)
            .execute(&mut tx)
            .await?;
        }
        let entry = LogEntry::new("agent.register", None, &agent.id).event(
            "agent.registered",
            Audience::Staff,
            serde_json::json!({
                "agent_id": agent.id,
                "capabilities": agent.capabilities,
                "description": agent.description,
            }),
        );
        append_log(&mut tx, ctx, at(now), entry).await?;
        let kind = if existing.is_none() {
            "agent.registered"
        } else {
            "agent.updated"
        };
        idempotency::record(&mut tx, ctx, kind, Uuid::nil(), at(now)).await?;
        tx.commit().await?;
        existing.is_none()
    };
    Ok((store.get_agent(&agent.id).await?, created))
}

pub(crate) async fn get_agent(store: &SqlStore, id: &str) -> Result<Agent> {
    let row: Option<AgentRow> = sql(
        "SELECT id, description, capabilities, created_by, created_at, updated_at, last_seen_at \
             FROM agents WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut store.db.reader())
    .await?;
    Ok(row.ok_or_else(|| not_found("agent", id))?.into())
}

pub(crate) async fn list_agents(store: &SqlStore) -> Result<Vec<Agent>> {
    let rows: Vec<AgentRow> = sql(
        "SELECT id, description, capabilities, created_by, created_at, updated_at, last_seen_at \
             FROM agents ORDER BY id LIMIT 1000",
    )
    .fetch_all(&mut store.db.reader())
    .await?;
    Ok(rows.into_iter().map(Agent::from).collect())
}

pub(crate) async fn touch_agent(store: &SqlStore, id: &str) -> Result<()> {
    let now = now_us();
    sql("UPDATE agents SET last_seen_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(&mut store.db.writer())
        .await?;
    Ok(())
}
