-- Clients, engagements, versioned artifacts, tokens and idempotency keys.

CREATE TABLE clients (
    id                UUID PRIMARY KEY,
    name              TEXT NOT NULL,
    arr               DOUBLE PRECISION,
    renewal_date      DATE,
    health_score      DOUBLE PRECISION,
    risk_score        DOUBLE PRECISION,
    opportunity_score DOUBLE PRECISION,
    owner             TEXT,
    attributes        JSONB NOT NULL DEFAULT '{}',
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);

CREATE TABLE engagements (
    id         UUID PRIMARY KEY,
    client_id  UUID NOT NULL REFERENCES clients (id),
    name       TEXT NOT NULL,
    pack       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX engagements_by_client ON engagements (client_id, id);

CREATE TABLE artifacts (
    id            UUID PRIMARY KEY,
    client_id     UUID NOT NULL REFERENCES clients (id),
    engagement_id UUID REFERENCES engagements (id),
    type          TEXT NOT NULL,
    title         TEXT NOT NULL,
    status        TEXT NOT NULL,
    version       BIGINT NOT NULL,
    content_hash  TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX artifacts_by_client ON artifacts (client_id, id);
CREATE INDEX artifacts_by_engagement ON artifacts (engagement_id, type);
CREATE INDEX artifacts_by_status ON artifacts (status, id);

CREATE TABLE artifact_versions (
    artifact_id  UUID NOT NULL REFERENCES artifacts (id),
    version      BIGINT NOT NULL,
    content      JSONB NOT NULL,
    content_hash TEXT NOT NULL,
    inputs_hash  TEXT NOT NULL,
    provenance   TEXT NOT NULL,
    author       TEXT NOT NULL,
    note         TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (artifact_id, version)
);

CREATE TABLE version_sources (
    artifact_id    UUID NOT NULL,
    version        BIGINT NOT NULL,
    source_id      UUID NOT NULL REFERENCES artifacts (id),
    source_version BIGINT NOT NULL,
    position       INTEGER NOT NULL,
    PRIMARY KEY (artifact_id, version, source_id),
    FOREIGN KEY (artifact_id, version) REFERENCES artifact_versions (artifact_id, version)
);
CREATE INDEX version_sources_by_source ON version_sources (source_id, source_version);

CREATE TABLE artifact_history (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    artifact_id UUID NOT NULL REFERENCES artifacts (id),
    at          TIMESTAMPTZ NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT,
    version     BIGINT,
    reason      TEXT,
    trace_id    TEXT
);
CREATE INDEX artifact_history_by_artifact ON artifact_history (artifact_id, seq);

CREATE TABLE tokens (
    id           UUID PRIMARY KEY,
    name         TEXT NOT NULL,
    secret_hash  BYTEA NOT NULL UNIQUE,
    role         TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);

CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    kind         TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    resource_id  UUID NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, key)
);
