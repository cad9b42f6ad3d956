-- Journeys: templates added over the API, journeys with their position, the
-- history of every transition, metric observations, sign-offs, and the units
-- of work each stage started. Times are microseconds since the Unix epoch.

CREATE TABLE journey_templates (
    name        TEXT PRIMARY KEY NOT NULL,
    definition  JSONB NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE journeys (
    id                 UUID PRIMARY KEY NOT NULL,
    client_id          UUID NOT NULL REFERENCES clients (id),
    template           TEXT NOT NULL,
    definition         JSONB NOT NULL,
    name               TEXT NOT NULL,
    phase              TEXT NOT NULL,
    stage              BIGINT,
    rollback_to        BIGINT,
    paused             BIGINT NOT NULL DEFAULT 0,
    source_artifact_id UUID REFERENCES artifacts (id),
    trace_id           TEXT,
    last_validation    JSONB,
    created_by         TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    started_at         BIGINT,
    stage_started_at   BIGINT,
    finished_at        BIGINT
);
CREATE INDEX journeys_by_client ON journeys (client_id, id);
CREATE INDEX journeys_by_template ON journeys (template, id);

CREATE TABLE journey_history (
    journey_id  UUID NOT NULL REFERENCES journeys (id),
    seq         BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    event       TEXT NOT NULL,
    from_state  TEXT NOT NULL,
    to_state    TEXT NOT NULL,
    from_stage  BIGINT,
    to_stage    BIGINT,
    reason      TEXT,
    trigger     TEXT,
    automatic   BIGINT NOT NULL DEFAULT 0,
    validation  JSONB,
    overrides   JSONB,
    trace_id    TEXT,
    PRIMARY KEY (journey_id, seq)
);

CREATE TABLE journey_metrics (
    journey_id  UUID NOT NULL REFERENCES journeys (id),
    seq         BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL,
    value       DOUBLE PRECISION NOT NULL,
    at          BIGINT NOT NULL,
    stage       BIGINT,
    recorded_by TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX journey_metrics_by_name ON journey_metrics (journey_id, name, at);

CREATE TABLE journey_signoffs (
    journey_id  UUID NOT NULL REFERENCES journeys (id),
    name        TEXT NOT NULL,
    stage       BIGINT,
    signed_by   TEXT NOT NULL,
    note        TEXT,
    at          BIGINT NOT NULL,
    PRIMARY KEY (journey_id, name)
);

CREATE TABLE journey_units (
    journey_id  UUID NOT NULL REFERENCES journeys (id),
    unit_id     UUID NOT NULL REFERENCES work_units (id),
    stage       BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    entered_seq BIGINT NOT NULL,
    PRIMARY KEY (journey_id, unit_id)
);
