//! Clients and engagements.

use serde_json::Value;
use sqlx::FromRow;
use sqlx::types::Json;
use time::Date;
use time::OffsetDateTime;
use uuid::Uuid;

use super::*;

#[derive(FromRow)]
pub(super) struct ClientRow {
    pub(super) id: Uuid,
    name: String,
    arr: Option<f64>,
    renewal_date: Option<Date>,
    health_score: Option<f64>,
    risk_score: Option<f64>,
    opportunity_score: Option<f64>,
    owner: Option<String>,
    attributes: Json<Value>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl From<ClientRow> for Client {
    fn from(r: ClientRow) -> Self {
        Client {
            id: ClientId::from_uuid(r.id),
            name: r.name,
            arr: r.arr,
            renewal_date: r.renewal_date,
            health_score: r.health_score,
            risk_score: r.risk_score,
            opportunity_score: r.opportunity_score,
            owner: r.owner,
            attributes: r.attributes.0,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

pub(super) const CLIENT_COLUMNS: &str = "id, name, arr, renewal_date, health_score, risk_score, \
     opportunity_score, owner, attributes, created_at, updated_at";

#[derive(FromRow)]
struct EngagementRow {
    id: Uuid,
    client_id: Uuid,
    name: String,
    pack: String,
    created_at: OffsetDateTime,
}

impl From<EngagementRow> for Engagement {
    fn from(r: EngagementRow) -> Self {
        Engagement {
            id: EngagementId::from_uuid(r.id),
            client_id: ClientId::from_uuid(r.client_id),
            name: r.name,
            pack: r.pack,
            created_at: r.created_at,
        }
    }
}

pub(crate) async fn create_client(
    store: &SqlStore,
    new: NewClient,
    ctx: &WriteContext,
) -> Result<Created<Client>> {
    let id = ClientId::new();
    let at = now();
    let replayed = {
        let mut tx = store.db.begin().await?;
        if let Some(existing) = idempotency::replay(&mut tx, ctx, "client").await? {
            Some(existing)
        } else {
            sql(
                "INSERT INTO clients (id, name, arr, renewal_date, health_score, risk_score, \
                 opportunity_score, owner, attributes, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
            )
            .bind(id.uuid())
            .bind(&new.name)
            .bind(new.arr)
            .bind(new.renewal_date)
            .bind(new.health_score)
            .bind(new.risk_score)
            .bind(new.opportunity_score)
            .bind(&new.owner)
            .bind(Json(
                new.attributes
                    .clone()
                    .unwrap_or_else(|| Value::Object(Default::default())),
            ))
            .bind(at)
            .execute(&mut tx)
            .await?;
            idempotency::record(&mut tx, ctx, "client", id.uuid(), at).await?;
            let entry = LogEntry::new("client.create", Some(id), id).event(
                "client.created",
                Audience::Staff,
                serde_json::json!({ "client_id": id.to_string(), "name": new.name }),
            );
            append_log(&mut tx, ctx, at, entry).await?;
            tx.commit().await?;
            None
        }
    };
    let record_id = replayed.map(ClientId::from_uuid).unwrap_or(id);
    Ok(Created {
        record: store.get_client(record_id).await?,
        replayed: replayed.is_some(),
    })
}

pub(crate) async fn get_client(store: &SqlStore, id: ClientId) -> Result<Client> {
    let row: Option<ClientRow> = sql(format!(
        "SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1"
    ))
    .bind(id.uuid())
    .fetch_optional(&mut store.db.reader())
    .await?;
    row.map(Client::from).ok_or_else(|| not_found("client", id))
}

pub(crate) async fn list_clients(store: &SqlStore, page: PageRequest) -> Result<Page<Client>> {
    let cursor = id_cursor::<ClientId>(&page)?;
    let rows: Vec<ClientRow> = {
        let p = &mut store.db.reader();
        let mut qb = sql(format!("SELECT {CLIENT_COLUMNS} FROM clients"));
        if let Some(c) = cursor {
            qb.push(" WHERE id < ").push_bind(c.uuid());
        }
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(limit_plus_one(&page));
        qb.fetch_all(p).await?
    };
    let rows = rows.into_iter().map(Client::from).collect();
    Ok(paginate(rows, &page, |c| c.id.to_string()))
}

pub(crate) async fn update_client(
    store: &SqlStore,
    id: ClientId,
    patch: ClientPatch,
    ctx: &WriteContext,
) -> Result<Client> {
    let lock = format!(
        "SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1{}",
        store.lock_clause()
    );
    {
        let mut tx = store.db.begin().await?;
        let row: ClientRow = sql(&lock)
            .bind(id.uuid())
            .fetch_optional(&mut tx)
            .await?
            .ok_or_else(|| not_found("client", id))?;
        let mut c = Client::from(row);
        if let Some(v) = patch.name {
            c.name = v;
        }
        if let Some(v) = patch.arr {
            c.arr = v;
        }
        if let Some(v) = patch.renewal_date {
            c.renewal_date = v;
        }
        if let Some(v) = patch.health_score {
            c.health_score = v;
        }
        if let Some(v) = patch.risk_score {
            c.risk_score = v;
        }
        if let Some(v) = patch.opportunity_score {
            c.opportunity_score = v;
        }
        if let Some(v) = patch.owner {
            c.owner = v;
        }
        if let Some(v) = patch.attributes {
            c.attributes = v;
        }
        c.updated_at = now();
        sql(
            "UPDATE clients SET name = $2, arr = $3, renewal_date = $4, health_score = $5, \
             risk_score = $6, opportunity_score = $7, owner = $8, attributes = $9, updated_at = $10 \
             WHERE id = $1",
        )
        .bind(id.uuid())
        .bind(&c.name)
        .bind(c.arr)
        .bind(c.renewal_date)
        .bind(c.health_score)
        .bind(c.risk_score)
        .bind(c.opportunity_score)
        .bind(&c.owner)
        .bind(Json(&c.attributes))
        .bind(c.updated_at)
        .execute(&mut tx)
        .await?;
        let entry = LogEntry::new("client.update", Some(id), id).event(
            "client.updated",
            Audience::Staff,
            serde_json::json!({ "client_id": id.to_string(), "name": c.name }),
        );
        append_log(&mut tx, ctx, c.updated_at, entry).await?;
        tx.commit().await?;
        Ok(c)
    }
}

pub(crate) async fn create_engagement(
    store: &SqlStore,
    new: NewEngagement,
    ctx: &WriteContext,
) -> Result<Created<Engagement>> {
    let id = EngagementId::new();
    let at = now();
    let replayed = {
        let mut tx = store.db.begin().await?;
        if let Some(existing) = idempotency::replay(&mut tx, ctx, "engagement").await? {
            Some(existing)
        } else {
            require_client(&mut tx, new.client_id).await?;
            sql(
                "INSERT INTO engagements (id, client_id, name, pack, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id.uuid())
            .bind(new.client_id.uuid())
            .bind(&new.name)
            .bind(&new.pack)
            .bind(at)
            .execute(&mut tx)
            .await?;
            idempotency::record(&mut tx, ctx, "engagement", id.uuid(), at).await?;
            let entry = LogEntry::new("engagement.create", Some(new.client_id), id).event(
                "engagement.created",
                Audience::Staff,
                serde_json::json!({
                    "engagement_id": id.to_string(),
                    "client_id": new.client_id.to_string(),
                    "name": new.name,
                    "pack": new.pack,
                }),
            );
            append_log(&mut tx, ctx, at, entry).await?;
            tx.commit().await?;
            None
        }
    };
    let record_id = replayed.map(EngagementId::from_uuid).unwrap_or(id);
    Ok(Created {
        record: store.get_engagement(record_id).await?,
        replayed: replayed.is_some(),
    })
}

pub(crate) async fn get_engagement(store: &SqlStore, id: EngagementId) -> Result<Engagement> {
    let row: Option<EngagementRow> =
        sql("SELECT id, client_id, name, pack, created_at FROM engagements WHERE id = $1")
            .bind(id.uuid())
            .fetch_optional(&mut store.db.reader())
            .await?;
    row.map(Engagement::from)
        .ok_or_else(|| not_found("engagement", id))
}

pub(crate) async fn list_engagements(
    store: &SqlStore,
    client_id: Option<ClientId>,
    page: PageRequest,
) -> Result<Page<Engagement>> {
    let cursor = id_cursor::<EngagementId>(&page)?;
    let rows: Vec<EngagementRow> = {
        let p = &mut store.db.reader();
        let mut qb =
            sql("SELECT id, client_id, name, pack, created_at FROM engagements WHERE 1 = 1");
        if let Some(c) = client_id {
            qb.push(" AND client_id = ").push_bind(c.uuid());
        }
        if let Some(c) = cursor {
            qb.push(" AND id < ").push_bind(c.uuid());
        }
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(limit_plus_one(&page));
        qb.fetch_all(p).await?
    };
    let rows = rows.into_iter().map(Engagement::from).collect();
    Ok(paginate(rows, &page, |e| e.id.to_string()))
}
