-- Uploaded files: one row per client and content (SHA-256), the object kept
-- under a content-addressed key in the object store, the text extracted from it.
CREATE TABLE files (
    id             UUID PRIMARY KEY NOT NULL,
    client_id      UUID NOT NULL REFERENCES clients (id),
    engagement_id  UUID REFERENCES engagements (id),
    artifact_id    UUID REFERENCES artifacts (id),
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('pdf', 'docx', 'xlsx', 'csv', 'text', 'markdown', 'json', 'png', 'jpeg')),
    mime           TEXT NOT NULL,
    size           BIGINT NOT NULL,
    sha256         TEXT NOT NULL,
    storage_key    TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('stored', 'extracting', 'extracted', 'failed')),
    status_reason  TEXT,
    error_code     TEXT,
    text           TEXT,
    text_truncated BIGINT NOT NULL DEFAULT 0,
    pages          BIGINT,
    table_info     JSONB,
    extraction_ms  BIGINT,
    uploaded_by    TEXT NOT NULL,
    uploaded_name  TEXT NOT NULL,
    task_id        UUID,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    extracted_at   BIGINT,
    UNIQUE (client_id, sha256)
);
CREATE INDEX files_by_client ON files (client_id, id);
CREATE INDEX files_by_engagement ON files (engagement_id, id);
CREATE INDEX files_by_artifact ON files (artifact_id, id);
CREATE INDEX files_by_key ON files (storage_key);
