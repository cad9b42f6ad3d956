-- The work engine: units of work, tasks and their dependencies, incidents,
-- agents, the fairness clock of each client, generation plan jobs.
-- Engine times are microseconds since the Unix epoch (BIGINT): compared on
-- every claim, they stay cheap and identical on both databases.

CREATE TABLE work_units (
    id            UUID PRIMARY KEY,
    client_id     UUID NOT NULL REFERENCES clients (id),
    name          TEXT NOT NULL,
    status        TEXT NOT NULL,
    tasks_total   BIGINT NOT NULL,
    tasks_done    BIGINT NOT NULL DEFAULT 0,
    tasks_cancelled BIGINT NOT NULL DEFAULT 0,
    waiting_units BIGINT NOT NULL DEFAULT 0,
    origin        JSONB,
    trace_id      TEXT,
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    finished_at   BIGINT
);
CREATE INDEX work_units_by_client ON work_units (client_id, id);

CREATE TABLE work_unit_deps (
    depends_on UUID NOT NULL REFERENCES work_units (id),
    unit_id    UUID NOT NULL REFERENCES work_units (id),
    PRIMARY KEY (depends_on, unit_id)
);

CREATE TABLE tasks (
    id               UUID PRIMARY KEY,
    unit_id          UUID NOT NULL REFERENCES work_units (id),
    client_id        UUID NOT NULL,
    key              TEXT NOT NULL,
    name             TEXT NOT NULL,
    executor         TEXT NOT NULL,
    lane             TEXT NOT NULL,
    status           TEXT NOT NULL,
    input            JSONB NOT NULL,
    output           JSONB,
    depends_on       JSONB NOT NULL,
    priority         BIGINT NOT NULL,
    fair_key         BIGINT NOT NULL DEFAULT 0,
    run_at           BIGINT NOT NULL DEFAULT 0,
    pending_deps     BIGINT NOT NULL,
    max_attempts     BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    timeout_s        BIGINT NOT NULL,
    backoff_initial_ms BIGINT NOT NULL,
    backoff_max_ms   BIGINT NOT NULL,
    lease_hash       TEXT,
    lease_expires_at BIGINT,
    deadline_at      BIGINT,
    claimed_by       TEXT,
    started_at       BIGINT,
    last_error       TEXT,
    trace_id         TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    finished_at      BIGINT,
    UNIQUE (unit_id, key)
);
-- Claiming reads one lane in order and stops after the tasks it takes.
CREATE INDEX tasks_claim ON tasks (lane, priority, fair_key, id) WHERE status = 'ready';
CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE status = 'running';
CREATE INDEX tasks_by_client ON tasks (client_id, id);

CREATE TABLE task_deps (
    depends_on UUID NOT NULL,
    task_id    UUID NOT NULL,
    PRIMARY KEY (depends_on, task_id)
);

CREATE TABLE task_attempts (
    task_id    UUID NOT NULL,
    attempt    BIGINT NOT NULL,
    started_at BIGINT,
    ended_at   BIGINT NOT NULL,
    outcome    TEXT NOT NULL,
    error      TEXT,
    worker     TEXT,
    PRIMARY KEY (task_id, attempt)
);

CREATE TABLE incidents (
    id          UUID PRIMARY KEY,
    unit_id     UUID NOT NULL REFERENCES work_units (id),
    task_id     UUID NOT NULL REFERENCES tasks (id),
    client_id   UUID NOT NULL,
    message     TEXT NOT NULL,
    opened_at   BIGINT NOT NULL,
    resolved_at BIGINT,
    resolution  TEXT,
    resolved_by TEXT,
    note        TEXT
);
CREATE INDEX incidents_by_unit ON incidents (unit_id, id);
CREATE INDEX incidents_open ON incidents (id) WHERE resolved_at IS NULL;

CREATE TABLE agents (
    id           TEXT PRIMARY KEY,
    description  TEXT NOT NULL,
    capabilities JSONB NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    last_seen_at BIGINT
);

CREATE TABLE work_clients (
    client_id UUID PRIMARY KEY,
    clock     BIGINT NOT NULL
);

CREATE TABLE plan_jobs (
    engagement_id UUID NOT NULL REFERENCES engagements (id),
    job_key       TEXT NOT NULL,
    inputs_hash   TEXT,
    artifact_id   UUID,
    version       BIGINT,
    provenance    TEXT,
    task_id       UUID,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (engagement_id, job_key)
);
