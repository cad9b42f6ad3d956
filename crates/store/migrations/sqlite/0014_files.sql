-- Uploaded files: one row per client and content (SHA-256), the object kept
-- under a content-addressed key in the object store, the text extracted from it.
CREATE TABLE files (
    id             BLOB PRIMARY KEY NOT NULL,
    client_id      BLOB NOT NULL REFERENCES clients (id),
    engagement_id  BLOB REFERENCES engagements (id),
    artifact_id    BLOB REFERENCES artifacts (id),
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('pdf', 'docx', 'xlsx', 'csv', 'text', 'markdown', 'json', 'png', 'jpeg')),
    mime           TEXT NOT NULL,
    size           INTEGER NOT NULL,
    sha256         TEXT NOT NULL,
    storage_key    TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('stored', 'extracting', 'extracted', 'failed')),
    status_reason  TEXT,
    error_code     TEXT,
    text           TEXT,
    text_truncated INTEGER NOT NULL DEFAULT 0,
    pages          INTEGER,
    table_info     TEXT,
    extraction_ms  INTEGER,
    uploaded_by    TEXT NOT NULL,
    uploaded_name  TEXT NOT NULL,
    task_id        BLOB,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    extracted_at   INTEGER,
    UNIQUE (client_id, sha256)
) STRICT;
CREATE INDEX files_by_client ON files (client_id, id);
CREATE INDEX files_by_engagement ON files (engagement_id, id);
CREATE INDEX files_by_artifact ON files (artifact_id, id);
CREATE INDEX files_by_key ON files (storage_key);
