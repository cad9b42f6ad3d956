-- The customer-success workspace: the queue, signal observations, stakeholders,
-- conversation threads, to-dos and preferences.

-- One row per identity (client, template, rule): a rules run updates it, never
-- adds a second.
CREATE TABLE queue_items (
    id            BLOB PRIMARY KEY NOT NULL,
    client_id     BLOB NOT NULL REFERENCES clients (id),
    pack          TEXT NOT NULL,
    template      TEXT NOT NULL,
    rule          TEXT NOT NULL,
    status        TEXT NOT NULL,
    reason        TEXT NOT NULL,
    score         REAL NOT NULL,
    factors       TEXT NOT NULL,
    due           TEXT NOT NULL,
    rule_due      TEXT NOT NULL,
    scheduled     INTEGER NOT NULL DEFAULT 0,
    owner         TEXT,
    escalated     INTEGER NOT NULL DEFAULT 0,
    snoozed_until INTEGER,
    journey_id    BLOB REFERENCES journeys (id),
    stage         TEXT,
    superseded_by TEXT,
    closed_reason TEXT,
    outcome       TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (client_id, template, rule)
) STRICT;
CREATE INDEX queue_items_by_owner ON queue_items (owner, status, score DESC, due, id);
CREATE INDEX queue_items_by_journey ON queue_items (journey_id);

-- Usage, financial and engagement figures of a client over time.
CREATE TABLE client_signals (
    client_id   BLOB NOT NULL REFERENCES clients (id),
    name        TEXT NOT NULL,
    value       REAL NOT NULL,
    at          INTEGER NOT NULL,
    recorded_by TEXT NOT NULL
) STRICT;
CREATE INDEX client_signals_by_name ON client_signals (client_id, name, at);

-- A client's contacts as stakeholders of its renewals.
CREATE TABLE stakeholders (
    id         BLOB PRIMARY KEY NOT NULL,
    client_id  BLOB NOT NULL REFERENCES clients (id),
    name       TEXT NOT NULL,
    email      TEXT,
    role       TEXT NOT NULL,
    influence  TEXT NOT NULL CHECK (influence IN ('high', 'medium', 'low')),
    sentiment  TEXT NOT NULL CHECK (sentiment IN ('positive', 'neutral', 'negative')),
    notes      TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX stakeholders_by_client ON stakeholders (client_id, id);

CREATE TABLE threads (
    id           BLOB PRIMARY KEY NOT NULL,
    journey_id   BLOB NOT NULL REFERENCES journeys (id),
    client_id    BLOB NOT NULL REFERENCES clients (id),
    step         TEXT NOT NULL,
    branch       TEXT,
    status       TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    completed_at INTEGER
) STRICT;
CREATE INDEX threads_by_journey ON threads (journey_id, id);

CREATE TABLE thread_messages (
    thread_id BLOB NOT NULL REFERENCES threads (id),
    seq       INTEGER NOT NULL,
    role      TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content   TEXT NOT NULL,
    provider  TEXT,
    fallback  TEXT,
    author    TEXT NOT NULL,
    at        INTEGER NOT NULL,
    PRIMARY KEY (thread_id, seq)
) STRICT;

-- Artifacts saved from a thread's replies.
CREATE TABLE thread_artifacts (
    thread_id   BLOB NOT NULL REFERENCES threads (id),
    artifact_id BLOB NOT NULL REFERENCES artifacts (id),
    message_seq INTEGER,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (thread_id, artifact_id)
) STRICT;

CREATE TABLE todos (
    id           BLOB PRIMARY KEY NOT NULL,
    client_id    BLOB REFERENCES clients (id),
    title        TEXT NOT NULL,
    assigned_to  TEXT,
    due_date     TEXT,
    priority     TEXT NOT NULL CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
    status       TEXT NOT NULL CHECK (status IN ('open', 'completed', 'skipped')),
    journey_id   BLOB REFERENCES journeys (id),
    step         TEXT,
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    completed_at INTEGER,
    sort_key     INTEGER NOT NULL
) STRICT;
-- Lists go in the order of sort_key (open first, then due date, then
-- priority: computed by the store on every write), then id.
CREATE INDEX todos_by_assignee ON todos (assigned_to, sort_key, id);
CREATE INDEX todos_by_journey ON todos (journey_id, sort_key, id);
CREATE INDEX todos_by_client ON todos (client_id, sort_key, id);

-- One JSON document per owner: a user id, or the id of a token without a user.
CREATE TABLE user_preferences (
    owner       TEXT PRIMARY KEY NOT NULL,
    preferences TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

ALTER TABLE journeys ADD COLUMN outcome TEXT;
