-- People and their tokens, review (comments, approvals, review links), the
-- hash-chained audit log, the event outbox, webhooks and mail.

CREATE TABLE users (
    id            BLOB PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    client_id     BLOB REFERENCES clients (id),
    password_hash TEXT,
    created_at    TEXT NOT NULL,
    disabled_at   TEXT
) STRICT;
CREATE INDEX users_by_client ON users (client_id, role);

ALTER TABLE tokens ADD COLUMN user_id BLOB REFERENCES users (id);
ALTER TABLE tokens ADD COLUMN agent_id TEXT;
ALTER TABLE tokens ADD COLUMN client_id BLOB;
ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'api';
CREATE INDEX tokens_by_user ON tokens (user_id);

CREATE TABLE login_failures (
    email TEXT NOT NULL,
    at    TEXT NOT NULL
) STRICT;
CREATE INDEX login_failures_by_email ON login_failures (email, at);

ALTER TABLE artifacts ADD COLUMN shared_at TEXT;
ALTER TABLE artifacts ADD COLUMN review_round INTEGER NOT NULL DEFAULT 0;

CREATE TABLE comments (
    id          BLOB PRIMARY KEY NOT NULL,
    artifact_id BLOB NOT NULL REFERENCES artifacts (id),
    client_id   BLOB NOT NULL,
    version     INTEGER NOT NULL,
    section     TEXT,
    parent_id   BLOB REFERENCES comments (id),
    body        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    internal    INTEGER NOT NULL,
    author      TEXT NOT NULL,
    author_name TEXT NOT NULL,
    author_kind TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    resolved_at TEXT,
    resolved_by TEXT
) STRICT;
CREATE INDEX comments_by_artifact ON comments (artifact_id, id);

CREATE TABLE approvals (
    artifact_id   BLOB NOT NULL REFERENCES artifacts (id),
    round         INTEGER NOT NULL,
    approver      TEXT NOT NULL,
    approver_name TEXT NOT NULL,
    approver_kind TEXT NOT NULL,
    version       INTEGER NOT NULL,
    content_hash  TEXT NOT NULL,
    at            TEXT NOT NULL,
    PRIMARY KEY (artifact_id, round, approver)
) STRICT;

CREATE TABLE review_links (
    id             BLOB PRIMARY KEY NOT NULL,
    artifact_id    BLOB NOT NULL REFERENCES artifacts (id),
    client_id      BLOB NOT NULL,
    reviewer_email TEXT NOT NULL,
    reviewer_name  TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    revoked_at     TEXT,
    created_by     TEXT NOT NULL,
    created_at     TEXT NOT NULL
) STRICT;
CREATE INDEX review_links_by_artifact ON review_links (artifact_id, id);

CREATE TABLE server_keys (
    name       TEXT PRIMARY KEY NOT NULL,
    value      BLOB NOT NULL,
    created_at TEXT NOT NULL
) STRICT;

-- The head of the audit chain and of the event sequence. Writers lock this one
-- row last, just before commit, so sequence numbers follow commit order.
CREATE TABLE log_head (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    audit_seq  INTEGER NOT NULL,
    audit_hash TEXT NOT NULL,
    event_seq  INTEGER NOT NULL
) STRICT;
INSERT INTO log_head (id, audit_seq, audit_hash, event_seq)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0);

CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY NOT NULL,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    client_id   TEXT,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    before_hash TEXT,
    after_hash  TEXT,
    trace_id    TEXT,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
) STRICT;
CREATE INDEX audit_by_client ON audit_log (client_id, seq);
CREATE INDEX audit_by_actor ON audit_log (actor, seq);
CREATE INDEX audit_by_target ON audit_log (target, seq);

CREATE TABLE events (
    seq       INTEGER PRIMARY KEY NOT NULL,
    id        BLOB NOT NULL UNIQUE,
    type      TEXT NOT NULL,
    subject   TEXT NOT NULL,
    time      TEXT NOT NULL,
    client_id BLOB,
    audience  TEXT NOT NULL,
    data      TEXT NOT NULL,
    trace_id  TEXT
) STRICT;

CREATE TABLE webhooks (
    id          BLOB PRIMARY KEY NOT NULL,
    url         TEXT NOT NULL,
    event_types TEXT NOT NULL,
    client_id   BLOB,
    secret      TEXT NOT NULL,
    description TEXT,
    cursor      INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    disabled_at TEXT
) STRICT;

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      BLOB NOT NULL REFERENCES webhooks (id),
    event_seq       INTEGER NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at TEXT,
    locked_until    TEXT,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT,
    UNIQUE (webhook_id, event_seq)
) STRICT;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);

CREATE TABLE webhook_attempts (
    delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries (id),
    attempt     INTEGER NOT NULL,
    at          TEXT NOT NULL,
    status_code INTEGER,
    error       TEXT,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
) STRICT;

-- Where each event consumer (the mailer) has read to.
CREATE TABLE event_cursors (
    name TEXT PRIMARY KEY NOT NULL,
    seq  INTEGER NOT NULL
) STRICT;

CREATE TABLE mail_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_seq       INTEGER NOT NULL,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at TEXT,
    locked_until    TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT
) STRICT;
CREATE INDEX mail_outbox_due ON mail_outbox (status, next_attempt_at);
