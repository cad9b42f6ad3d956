-- Delivery exports: one ZIP bundle of an engagement's approved work (manifest,
-- each artifact as JSON and Markdown, the engagement's files, a PDF report),
-- kept in the object store under `storage_key`. Rows are never updated: an
-- export is the record of what was handed over, when, and by whom.
CREATE TABLE exports (
    id              UUID PRIMARY KEY NOT NULL,
    client_id       UUID NOT NULL REFERENCES clients (id),
    engagement_id   UUID NOT NULL REFERENCES engagements (id),
    status          TEXT NOT NULL CHECK (status IN ('ready')),
    storage_key     TEXT NOT NULL,
    size            BIGINT NOT NULL,
    sha256          TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    artifacts       BIGINT NOT NULL,
    files           BIGINT NOT NULL,
    created_by      TEXT NOT NULL,
    created_by_name TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX exports_by_engagement ON exports (engagement_id, id);
