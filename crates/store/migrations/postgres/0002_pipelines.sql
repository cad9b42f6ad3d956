-- Pipelines: why an artifact is stale, installed packs, generation plans.

ALTER TABLE artifacts ADD COLUMN stale_reason TEXT;
ALTER TABLE artifacts ADD COLUMN stale_causes JSONB;

CREATE TABLE installed_packs (
    name         TEXT PRIMARY KEY,
    version      TEXT NOT NULL,
    digest       TEXT NOT NULL,
    files        JSONB NOT NULL,
    installed_by TEXT NOT NULL,
    installed_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE generation_plans (
    engagement_id UUID PRIMARY KEY REFERENCES engagements (id),
    deliverables  JSONB,
    created_by    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
