-- Pipelines: why an artifact is stale, installed packs, generation plans.

ALTER TABLE artifacts ADD COLUMN stale_reason TEXT;
ALTER TABLE artifacts ADD COLUMN stale_causes TEXT;

CREATE TABLE installed_packs (
    name         TEXT PRIMARY KEY NOT NULL,
    version      TEXT NOT NULL,
    digest       TEXT NOT NULL,
    files        TEXT NOT NULL,
    installed_by TEXT NOT NULL,
    installed_at TEXT NOT NULL
) STRICT;

CREATE TABLE generation_plans (
    engagement_id BLOB PRIMARY KEY NOT NULL REFERENCES engagements (id),
    deliverables  TEXT,
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;
