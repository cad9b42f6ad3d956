-- The work engine: units of work, tasks and their dependencies, incidents,
-- agents, the fairness clock of each client, generation plan jobs.
-- Engine times are microseconds since the Unix epoch (INTEGER): compared on
-- every claim, they stay cheap and identical on both databases.

CREATE TABLE work_units (
    id            BLOB PRIMARY KEY NOT NULL,
    client_id     BLOB NOT NULL REFERENCES clients (id),
    name          TEXT NOT NULL,
    status        TEXT NOT NULL,
    tasks_total   INTEGER NOT NULL,
    tasks_done    INTEGER NOT NULL DEFAULT 0,
    tasks_cancelled INTEGER NOT NULL DEFAULT 0,
    waiting_units INTEGER NOT NULL DEFAULT 0,
    origin        TEXT,
    trace_id      TEXT,
    created_by    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    finished_at   INTEGER
) STRICT;
CREATE INDEX work_units_by_client ON work_units (client_id, id);

CREATE TABLE work_unit_deps (
    depends_on BLOB NOT NULL REFERENCES work_units (id),
    unit_id    BLOB NOT NULL REFERENCES work_units (id),
    PRIMARY KEY (depends_on, unit_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE tasks (
    id               BLOB PRIMARY KEY NOT NULL,
    unit_id          BLOB NOT NULL REFERENCES work_units (id),
    client_id        BLOB NOT NULL,
    key              TEXT NOT NULL,
    name             TEXT NOT NULL,
    executor         TEXT NOT NULL,
    lane             TEXT NOT NULL,
    status           TEXT NOT NULL,
    input            TEXT NOT NULL,
    output           TEXT,
    depends_on       TEXT NOT NULL,
    priority         INTEGER NOT NULL,
    fair_key         INTEGER NOT NULL DEFAULT 0,
    run_at           INTEGER NOT NULL DEFAULT 0,
    pending_deps     INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    timeout_s        INTEGER NOT NULL,
    backoff_initial_ms INTEGER NOT NULL,
    backoff_max_ms   INTEGER NOT NULL,
    lease_hash       TEXT,
    lease_expires_at INTEGER,
    deadline_at      INTEGER,
    claimed_by       TEXT,
    started_at       INTEGER,
    last_error       TEXT,
    trace_id         TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    UNIQUE (unit_id, key)
) STRICT;
-- Claiming reads one lane in order and stops after the tasks it takes.
CREATE INDEX tasks_claim ON tasks (lane, priority, fair_key, id) WHERE status = 'ready';
CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE status = 'running';
CREATE INDEX tasks_by_client ON tasks (client_id, id);

CREATE TABLE task_deps (
    depends_on BLOB NOT NULL,
    task_id    BLOB NOT NULL,
    PRIMARY KEY (depends_on, task_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE task_attempts (
    task_id    BLOB NOT NULL,
    attempt    INTEGER NOT NULL,
    started_at INTEGER,
    ended_at   INTEGER NOT NULL,
    outcome    TEXT NOT NULL,
    error      TEXT,
    worker     TEXT,
    PRIMARY KEY (task_id, attempt)
) STRICT;

CREATE TABLE incidents (
    id          BLOB PRIMARY KEY NOT NULL,
    unit_id     BLOB NOT NULL REFERENCES work_units (id),
    task_id     BLOB NOT NULL REFERENCES tasks (id),
    client_id   BLOB NOT NULL,
    message     TEXT NOT NULL,
    opened_at   INTEGER NOT NULL,
    resolved_at INTEGER,
    resolution  TEXT,
    resolved_by TEXT,
    note        TEXT
) STRICT;
CREATE INDEX incidents_by_unit ON incidents (unit_id, id);
CREATE INDEX incidents_open ON incidents (id) WHERE resolved_at IS NULL;

CREATE TABLE agents (
    id           TEXT PRIMARY KEY NOT NULL,
    description  TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    last_seen_at INTEGER
) STRICT;

CREATE TABLE work_clients (
    client_id BLOB PRIMARY KEY NOT NULL,
    clock     INTEGER NOT NULL
) STRICT;

CREATE TABLE plan_jobs (
    engagement_id BLOB NOT NULL REFERENCES engagements (id),
    job_key       TEXT NOT NULL,
    inputs_hash   TEXT,
    artifact_id   BLOB,
    version       INTEGER,
    provenance    TEXT,
    task_id       BLOB,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (engagement_id, job_key)
) STRICT;
