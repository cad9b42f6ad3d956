-- Clients, engagements, versioned artifacts, tokens and idempotency keys.
-- Ids are UUIDs (BLOB here), times RFC 3339 text, JSON documents text.

CREATE TABLE clients (
    id                BLOB PRIMARY KEY NOT NULL,
    name              TEXT NOT NULL,
    arr               REAL,
    renewal_date      TEXT,
    health_score      REAL,
    risk_score        REAL,
    opportunity_score REAL,
    owner             TEXT,
    attributes        TEXT NOT NULL DEFAULT '{}',
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
) STRICT;

CREATE TABLE engagements (
    id         BLOB PRIMARY KEY NOT NULL,
    client_id  BLOB NOT NULL REFERENCES clients (id),
    name       TEXT NOT NULL,
    pack       TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX engagements_by_client ON engagements (client_id, id);

CREATE TABLE artifacts (
    id            BLOB PRIMARY KEY NOT NULL,
    client_id     BLOB NOT NULL REFERENCES clients (id),
    engagement_id BLOB REFERENCES engagements (id),
    type          TEXT NOT NULL,
    title         TEXT NOT NULL,
    status        TEXT NOT NULL,
    version       INTEGER NOT NULL,
    content_hash  TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;
CREATE INDEX artifacts_by_client ON artifacts (client_id, id);
CREATE INDEX artifacts_by_engagement ON artifacts (engagement_id, type);
CREATE INDEX artifacts_by_status ON artifacts (status, id);

CREATE TABLE artifact_versions (
    artifact_id  BLOB NOT NULL REFERENCES artifacts (id),
    version      INTEGER NOT NULL,
    content      TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    inputs_hash  TEXT NOT NULL,
    provenance   TEXT NOT NULL,
    author       TEXT NOT NULL,
    note         TEXT,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (artifact_id, version)
) STRICT;

CREATE TABLE version_sources (
    artifact_id    BLOB NOT NULL,
    version        INTEGER NOT NULL,
    source_id      BLOB NOT NULL REFERENCES artifacts (id),
    source_version INTEGER NOT NULL,
    position       INTEGER NOT NULL,
    PRIMARY KEY (artifact_id, version, source_id),
    FOREIGN KEY (artifact_id, version) REFERENCES artifact_versions (artifact_id, version)
) STRICT;
CREATE INDEX version_sources_by_source ON version_sources (source_id, source_version);

CREATE TABLE artifact_history (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    artifact_id BLOB NOT NULL REFERENCES artifacts (id),
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT,
    version     INTEGER,
    reason      TEXT,
    trace_id    TEXT
) STRICT;
CREATE INDEX artifact_history_by_artifact ON artifact_history (artifact_id, seq);

CREATE TABLE tokens (
    id           BLOB PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    secret_hash  BLOB NOT NULL UNIQUE,
    role         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT,
    revoked_at   TEXT
) STRICT;

CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    kind         TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    resource_id  BLOB NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (scope, key)
) STRICT;
