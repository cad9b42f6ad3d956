-- Journeys: templates added over the API, journeys with their position, the
-- history of every transition, metric observations, sign-offs, and the units
-- of work each stage started. Times are microseconds since the Unix epoch.

CREATE TABLE journey_templates (
    name        TEXT PRIMARY KEY NOT NULL,
    definition  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE journeys (
    id                 BLOB PRIMARY KEY NOT NULL,
    client_id          BLOB NOT NULL REFERENCES clients (id),
    template           TEXT NOT NULL,
    definition         TEXT NOT NULL,
    name               TEXT NOT NULL,
    phase              TEXT NOT NULL,
    stage              INTEGER,
    rollback_to        INTEGER,
    paused             INTEGER NOT NULL DEFAULT 0,
    source_artifact_id BLOB REFERENCES artifacts (id),
    trace_id           TEXT,
    last_validation    TEXT,
    created_by         TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    started_at         INTEGER,
    stage_started_at   INTEGER,
    finished_at        INTEGER
) STRICT;
CREATE INDEX journeys_by_client ON journeys (client_id, id);
CREATE INDEX journeys_by_template ON journeys (template, id);

CREATE TABLE journey_history (
    journey_id  BLOB NOT NULL REFERENCES journeys (id),
    seq         INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    event       TEXT NOT NULL,
    from_state  TEXT NOT NULL,
    to_state    TEXT NOT NULL,
    from_stage  INTEGER,
    to_stage    INTEGER,
    reason      TEXT,
    trigger     TEXT,
    automatic   INTEGER NOT NULL DEFAULT 0,
    validation  TEXT,
    overrides   TEXT,
    trace_id    TEXT,
    PRIMARY KEY (journey_id, seq)
) STRICT;

CREATE TABLE journey_metrics (
    journey_id  BLOB NOT NULL REFERENCES journeys (id),
    seq         INTEGER PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    value       REAL NOT NULL,
    at          INTEGER NOT NULL,
    stage       INTEGER,
    recorded_by TEXT NOT NULL,
    recorded_at INTEGER NOT NULL
) STRICT;
CREATE INDEX journey_metrics_by_name ON journey_metrics (journey_id, name, at);

CREATE TABLE journey_signoffs (
    journey_id  BLOB NOT NULL REFERENCES journeys (id),
    name        TEXT NOT NULL,
    stage       INTEGER,
    signed_by   TEXT NOT NULL,
    note        TEXT,
    at          INTEGER NOT NULL,
    PRIMARY KEY (journey_id, name)
) STRICT;

CREATE TABLE journey_units (
    journey_id  BLOB NOT NULL REFERENCES journeys (id),
    unit_id     BLOB NOT NULL REFERENCES work_units (id),
    stage       INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    entered_seq INTEGER NOT NULL,
    PRIMARY KEY (journey_id, unit_id)
) STRICT;
