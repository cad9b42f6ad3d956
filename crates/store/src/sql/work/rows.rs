//! The engine's rows and how they read: tasks, units, incidents, agents,
//! plan jobs; engine times (microseconds).

use serde_json::Value;
use sqlx::FromRow;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;
use waymark_domain::work::{Backoff, LeaseError, Resolution, TaskStatus};
use waymark_domain::{ArtifactId, ClientId, IncidentId, TaskId, UnitId};

use super::*;

/// The PostgreSQL channel woken when tasks become ready.
pub(crate) const CHANNEL: &str = "waymark_work";

pub(crate) const TASK_COLUMNS: &str = "id, unit_id, client_id, key, name, executor, lane, status, input, \
     output, depends_on, priority, fair_key, run_at, max_attempts, attempts, timeout_s, \
     backoff_initial_ms, backoff_max_ms, lease_hash, lease_expires_at, claimed_by, started_at, \
     last_error, trace_id, created_at, updated_at, finished_at, contract, handoff_from, hands_off, \
     attempt_seq";

/// Records one metric observation of a journey: journey, name, value, at,
/// stage, recorded by, recorded at.
pub(crate) const INSERT_METRIC: &str = "INSERT INTO journey_metrics \
     (journey_id, name, value, at, stage, recorded_by, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

#[derive(FromRow, Clone)]
pub(crate) struct TaskRow {
    pub(crate) id: Uuid,
    pub(crate) unit_id: Uuid,
    pub(crate) client_id: Uuid,
    pub(crate) key: String,
    pub(crate) name: String,
    pub(crate) executor: String,
    pub(crate) lane: String,
    pub(crate) status: String,
    pub(crate) input: Json<Value>,
    pub(crate) output: Option<Json<Value>>,
    pub(crate) depends_on: Json<Vec<String>>,
    pub(crate) priority: i64,
    pub(crate) fair_key: i64,
    pub(crate) run_at: i64,
    pub(crate) max_attempts: i64,
    pub(crate) attempts: i64,
    pub(crate) timeout_s: i64,
    pub(crate) backoff_initial_ms: i64,
    pub(crate) backoff_max_ms: i64,
    pub(crate) lease_hash: Option<String>,
    pub(crate) lease_expires_at: Option<i64>,
    pub(crate) claimed_by: Option<String>,
    pub(crate) started_at: Option<i64>,
    pub(crate) last_error: Option<String>,
    pub(crate) trace_id: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) finished_at: Option<i64>,
    pub(crate) contract: Option<Json<Vec<String>>>,
    pub(crate) handoff_from: Option<String>,
    pub(crate) hands_off: i64,
    /// The number of its latest attempt row (never reset).
    pub(crate) attempt_seq: i64,
}

pub(crate) fn now_us() -> i64 {
    unix_micros(OffsetDateTime::now_utc())
}

/// The database's clock in microseconds since the Unix epoch, as SQL (constant
/// within one statement).
pub(crate) fn now_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "CAST(unixepoch('subsec') * 1000000 AS INTEGER)",
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM statement_timestamp()) * 1000000 AS BIGINT)",
    }
}

/// The engine's "now", in microseconds: on PostgreSQL the database's clock, so
/// servers and workers on several hosts agree on lease expiry, deadlines and
/// retry times whatever their own clocks say; on SQLite (one process) this
/// process's.
pub(crate) async fn engine_now(conn: &mut impl Conn) -> Result<i64> {
    match conn.backend() {
        Backend::Sqlite => Ok(now_us()),
        Backend::Postgres => {
            let (now,): (i64,) = sql(format!("SELECT {}", now_sql(Backend::Postgres)))
                .fetch_one(conn)
                .await?;
            Ok(now)
        }
    }
}

pub(crate) fn at(us: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub(crate) fn task_status(s: &str) -> Result<TaskStatus> {
    s.parse().map_err(|_| decode_error("task status", s))
}

impl TaskRow {
    pub(crate) fn status(&self) -> Result<TaskStatus> {
        task_status(&self.status)
    }

    pub(crate) fn backoff(&self) -> Backoff {
        Backoff {
            initial_s: self.backoff_initial_ms as f64 / 1000.0,
            max_s: self.backoff_max_ms as f64 / 1000.0,
        }
    }

    pub(crate) fn into_task(self) -> Result<Task> {
        let status = self.status()?;
        Ok(Task {
            backoff: self.backoff(),
            id: TaskId::from_uuid(self.id),
            unit_id: UnitId::from_uuid(self.unit_id),
            client_id: ClientId::from_uuid(self.client_id),
            key: self.key,
            name: self.name,
            executor: self.executor,
            status,
            input: self.input.0,
            output: self.output.map(|o| o.0),
            depends_on: self.depends_on.0,
            contract: self.contract.map(|c| c.0).unwrap_or_default(),
            handoff_from: self.handoff_from,
            priority: self.priority,
            max_attempts: self.max_attempts,
            attempts: self.attempts,
            timeout_s: self.timeout_s,
            run_at: (status == TaskStatus::Ready && self.run_at > 0).then(|| at(self.run_at)),
            lease_expires_at: if status == TaskStatus::Running {
                self.lease_expires_at.map(at)
            } else {
                None
            },
            claimed_by: self.claimed_by,
            started_at: self.started_at.map(at),
            last_error: self.last_error,
            trace_id: self.trace_id,
            created_at: at(self.created_at),
            updated_at: at(self.updated_at),
            finished_at: self.finished_at.map(at),
        })
    }

    /// What events say about the task.
    pub(crate) fn data(&self, status: TaskStatus) -> Value {
        serde_json::json!({
            "task_id": TaskId::from_uuid(self.id).to_string(),
            "unit_id": UnitId::from_uuid(self.unit_id).to_string(),
            "client_id": ClientId::from_uuid(self.client_id).to_string(),
            "key": self.key,
            "executor": self.executor,
            "status": status.as_str(),
            "attempts": self.attempts,
        })
    }

    pub(crate) fn entry(&self, action: &'static str, event: &'static str, data: Value) -> LogEntry {
        let mut e = LogEntry::new(
            action,
            Some(ClientId::from_uuid(self.client_id)),
            TaskId::from_uuid(self.id),
        )
        .event(event, Audience::Staff, data);
        e.trace_id = self.trace_id.clone();
        e
    }
}

#[derive(FromRow)]
pub(crate) struct AttemptRow {
    pub(crate) attempt: i64,
    pub(crate) started_at: Option<i64>,
    pub(crate) ended_at: Option<i64>,
    pub(crate) outcome: String,
    pub(crate) error: Option<String>,
    pub(crate) worker: Option<String>,
}

impl AttemptRow {
    pub(crate) fn into_attempt(self) -> Result<TaskAttempt> {
        let started_at = self.started_at.map(at);
        let ended_at = self.ended_at.map(at);
        Ok(TaskAttempt {
            attempt: self.attempt,
            outcome: self
                .outcome
                .parse()
                .map_err(|_| decode_error("attempt outcome", &self.outcome))?,
            worker: self.worker,
            duration_ms: match (self.started_at, self.ended_at) {
                (Some(s), Some(e)) => Some((e - s).max(0) / 1000),
                _ => None,
            },
            started_at,
            ended_at,
            error: self.error,
        })
    }
}

#[derive(FromRow)]
pub(crate) struct UnitRow {
    pub(crate) id: Uuid,
    pub(crate) client_id: Uuid,
    pub(crate) name: String,
    pub(crate) status: String,
    pub(crate) tasks_total: i64,
    pub(crate) tasks_done: i64,
    pub(crate) tasks_cancelled: i64,
    pub(crate) origin: Option<Json<Value>>,
    pub(crate) trace_id: Option<String>,
    pub(crate) created_by: String,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) finished_at: Option<i64>,
}

pub(crate) const UNIT_COLUMNS: &str = "id, client_id, name, status, tasks_total, tasks_done, \
     tasks_cancelled, origin, trace_id, created_by, created_at, updated_at, finished_at";

impl UnitRow {
    pub(crate) fn into_unit(self, depends_on_units: Vec<UnitId>) -> Result<Unit> {
        Ok(Unit {
            id: UnitId::from_uuid(self.id),
            client_id: ClientId::from_uuid(self.client_id),
            name: self.name,
            status: self
                .status
                .parse()
                .map_err(|_| decode_error("unit status", &self.status))?,
            tasks_total: self.tasks_total,
            tasks_done: self.tasks_done,
            tasks_cancelled: self.tasks_cancelled,
            depends_on_units,
            origin: self.origin.map(|o| o.0),
            trace_id: self.trace_id,
            created_by: self.created_by,
            created_at: at(self.created_at),
            updated_at: at(self.updated_at),
            finished_at: self.finished_at.map(at),
        })
    }
}

#[derive(FromRow)]
pub(crate) struct IncidentRow {
    pub(crate) id: Uuid,
    pub(crate) unit_id: Uuid,
    pub(crate) task_id: Uuid,
    pub(crate) task_key: String,
    pub(crate) client_id: Uuid,
    pub(crate) message: String,
    pub(crate) opened_at: i64,
    pub(crate) resolved_at: Option<i64>,
    pub(crate) resolution: Option<String>,
    pub(crate) resolved_by: Option<String>,
    pub(crate) note: Option<String>,
}

pub(crate) const INCIDENT_SELECT: &str = "SELECT i.id, i.unit_id, i.task_id, t.key AS task_key, i.client_id, \
     i.message, i.opened_at, i.resolved_at, i.resolution, i.resolved_by, i.note \
     FROM incidents i JOIN tasks t ON t.id = i.task_id";

impl IncidentRow {
    pub(crate) fn into_incident(self) -> Incident {
        Incident {
            id: IncidentId::from_uuid(self.id),
            unit_id: UnitId::from_uuid(self.unit_id),
            task_id: TaskId::from_uuid(self.task_id),
            task_key: self.task_key,
            client_id: ClientId::from_uuid(self.client_id),
            message: self.message,
            opened_at: at(self.opened_at),
            resolved_at: self.resolved_at.map(at),
            resolution: self.resolution.as_deref().and_then(|r| match r {
                "retry" => Some(Resolution::Retry),
                "skip" => Some(Resolution::Skip),
                "cancel" => Some(Resolution::Cancel),
                _ => None,
            }),
            resolved_by: self.resolved_by,
            note: self.note,
        }
    }
}

#[derive(FromRow)]
pub(crate) struct AgentRow {
    pub(crate) id: String,
    pub(crate) description: String,
    pub(crate) capabilities: Json<Vec<String>>,
    pub(crate) created_by: String,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) last_seen_at: Option<i64>,
}

impl From<AgentRow> for Agent {
    fn from(r: AgentRow) -> Self {
        Agent {
            id: r.id,
            description: r.description,
            capabilities: r.capabilities.0,
            created_by: r.created_by,
            created_at: at(r.created_at),
            updated_at: at(r.updated_at),
            last_seen_at: r.last_seen_at.map(at),
        }
    }
}

pub(crate) fn refused(e: LeaseError) -> StoreError {
    let code = match e {
        LeaseError::NotRunning(_) => "task_not_running",
        LeaseError::Foreign => "lease_foreign",
        LeaseError::Expired => "lease_expired",
    };
    StoreError::Refused {
        code,
        detail: e.to_string(),
    }
}

#[derive(FromRow)]
pub(crate) struct PlanJobRow {
    pub(crate) job_key: String,
    pub(crate) inputs_hash: Option<String>,
    pub(crate) artifact_id: Option<Uuid>,
    pub(crate) version: Option<i64>,
    pub(crate) provenance: Option<String>,
    pub(crate) task_id: Option<Uuid>,
    pub(crate) unit_id: Option<Uuid>,
    pub(crate) task_status: Option<String>,
    pub(crate) task_error: Option<String>,
    pub(crate) updated_at: i64,
}

impl PlanJobRow {
    pub(crate) fn record(self) -> Result<PlanJobRecord> {
        Ok(PlanJobRecord {
            job_key: self.job_key,
            inputs_hash: self.inputs_hash,
            artifact_id: self.artifact_id.map(ArtifactId::from_uuid),
            version: self.version,
            provenance: self.provenance,
            task_id: self.task_id.map(TaskId::from_uuid),
            unit_id: self.unit_id.map(UnitId::from_uuid),
            task_status: self.task_status.map(|s| task_status(&s)).transpose()?,
            task_error: self.task_error,
            updated_at: at(self.updated_at),
        })
    }
}

pub(crate) fn describe_base(base: Option<(ArtifactId, i64)>) -> String {
    match base {
        Some((id, v)) => format!("{id} version {v}"),
        None => "none".to_owned(),
    }
}
