-- People and their tokens, review (comments, approvals, review links), the
-- hash-chained audit log, the event outbox, webhooks and mail.

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    client_id     UUID REFERENCES clients (id),
    password_hash TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    disabled_at   TIMESTAMPTZ
);
CREATE INDEX users_by_client ON users (client_id, role);

ALTER TABLE tokens ADD COLUMN user_id UUID REFERENCES users (id);
ALTER TABLE tokens ADD COLUMN agent_id TEXT;
ALTER TABLE tokens ADD COLUMN client_id UUID;
ALTER TABLE tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'api';
CREATE INDEX tokens_by_user ON tokens (user_id);

CREATE TABLE login_failures (
    email TEXT NOT NULL,
    at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX login_failures_by_email ON login_failures (email, at);

ALTER TABLE artifacts ADD COLUMN shared_at TIMESTAMPTZ;
ALTER TABLE artifacts ADD COLUMN review_round BIGINT NOT NULL DEFAULT 0;

CREATE TABLE comments (
    id          UUID PRIMARY KEY,
    artifact_id UUID NOT NULL REFERENCES artifacts (id),
    client_id   UUID NOT NULL,
    version     BIGINT NOT NULL,
    section     TEXT,
    parent_id   UUID REFERENCES comments (id),
    body        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    internal    BOOLEAN NOT NULL,
    author      TEXT NOT NULL,
    author_name TEXT NOT NULL,
    author_kind TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    resolved_at TIMESTAMPTZ,
    resolved_by TEXT
);
CREATE INDEX comments_by_artifact ON comments (artifact_id, id);

CREATE TABLE approvals (
    artifact_id   UUID NOT NULL REFERENCES artifacts (id),
    round         BIGINT NOT NULL,
    approver      TEXT NOT NULL,
    approver_name TEXT NOT NULL,
    approver_kind TEXT NOT NULL,
    version       BIGINT NOT NULL,
    content_hash  TEXT NOT NULL,
    at            TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (artifact_id, round, approver)
);

CREATE TABLE review_links (
    id             UUID PRIMARY KEY,
    artifact_id    UUID NOT NULL REFERENCES artifacts (id),
    client_id      UUID NOT NULL,
    reviewer_email TEXT NOT NULL,
    reviewer_name  TEXT NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    revoked_at     TIMESTAMPTZ,
    created_by     TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX review_links_by_artifact ON review_links (artifact_id, id);

CREATE TABLE server_keys (
    name       TEXT PRIMARY KEY,
    value      BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);

-- The head of the audit chain and of the event sequence. Writers lock this one
-- row last, just before commit, so sequence numbers follow commit order.
CREATE TABLE log_head (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    audit_seq  BIGINT NOT NULL,
    audit_hash TEXT NOT NULL,
    event_seq  BIGINT NOT NULL
);
INSERT INTO log_head (id, audit_seq, audit_hash, event_seq)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0);

CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,
    actor       TEXT NOT NULL,
    client_id   TEXT,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    before_hash TEXT,
    after_hash  TEXT,
    trace_id    TEXT,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_by_client ON audit_log (client_id, seq);
CREATE INDEX audit_by_actor ON audit_log (actor, seq);
CREATE INDEX audit_by_target ON audit_log (target, seq);

CREATE TABLE events (
    seq       BIGINT PRIMARY KEY,
    id        UUID NOT NULL UNIQUE,
    type      TEXT NOT NULL,
    subject   TEXT NOT NULL,
    time      TIMESTAMPTZ NOT NULL,
    client_id UUID,
    audience  TEXT NOT NULL,
    data      JSONB NOT NULL,
    trace_id  TEXT
);

CREATE TABLE webhooks (
    id          UUID PRIMARY KEY,
    url         TEXT NOT NULL,
    event_types JSONB NOT NULL,
    client_id   UUID,
    secret      TEXT NOT NULL,
    description TEXT,
    cursor      BIGINT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    disabled_at TIMESTAMPTZ
);

CREATE TABLE webhook_deliveries (
    id              BIGSERIAL PRIMARY KEY,
    webhook_id      UUID NOT NULL REFERENCES webhooks (id),
    event_seq       BIGINT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at TIMESTAMPTZ,
    locked_until    TIMESTAMPTZ,
    last_status     BIGINT,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    delivered_at    TIMESTAMPTZ,
    UNIQUE (webhook_id, event_seq)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);

CREATE TABLE webhook_attempts (
    delivery_id BIGINT NOT NULL REFERENCES webhook_deliveries (id),
    attempt     BIGINT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    status_code BIGINT,
    error       TEXT,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- Where each event consumer (the mailer) has read to.
CREATE TABLE event_cursors (
    name TEXT PRIMARY KEY,
    seq  BIGINT NOT NULL
);

CREATE TABLE mail_outbox (
    id              BIGSERIAL PRIMARY KEY,
    event_seq       BIGINT NOT NULL,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at TIMESTAMPTZ,
    locked_until    TIMESTAMPTZ,
    last_error      TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    sent_at         TIMESTAMPTZ
);
CREATE INDEX mail_outbox_due ON mail_outbox (status, next_attempt_at);
